-- Recovery: checkpoints of the derived state, and what rehydrate/replay runs found.

-- A snapshot of the law's state after entry `seq`, linked to the ledger by that entry's hash:
-- hash = sha256(ledger_hash || state_json). Written by the validator in the batch transaction that
-- reaches it; a checkpoint that does not verify is skipped for an earlier one.
CREATE TABLE checkpoints (
    seq         bigint PRIMARY KEY CHECK (seq >= 0),
    ledger_hash bytea  NOT NULL CHECK (length(ledger_hash) = 32),
    state_json  text   NOT NULL,   -- law/snapshot.py canonical JSON, hashed verbatim
    hash        bytea  NOT NULL CHECK (length(hash) = 32),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per rehydrate, replay or counterfactual run; the dashboard shows the latest.
CREATE TABLE replay_runs (
    run_id        text PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('rehydrate', 'replay', 'counterfactual')),
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    entries       bigint NOT NULL DEFAULT 0,
    entries_per_s double precision,
    anomalies     integer NOT NULL DEFAULT 0,
    ok            boolean,          -- NULL while running, or when the run died
    report_json   text
);
CREATE INDEX replay_runs_started ON replay_runs (started_at DESC);

-- An entry, checkpoint or cache row a run found wrong; each is also raised as a critical alert.
CREATE TABLE replay_anomalies (
    id          bigserial PRIMARY KEY,
    run_id      text NOT NULL REFERENCES replay_runs (run_id),
    seq         bigint,             -- NULL for differences that belong to no single entry
    reason      text NOT NULL,      -- HASH_MISMATCH, CHAIN_BROKEN, SEQ_GAP, CHECKPOINT_CORRUPT, ...
    detail      text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX replay_anomalies_run ON replay_anomalies (run_id, id);
CREATE INDEX replay_anomalies_recent ON replay_anomalies (recorded_at DESC);
