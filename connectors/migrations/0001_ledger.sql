-- The ledger and everything the validator writes in the same transaction as it.
-- The ledger and its postings are append-only: triggers refuse UPDATE, DELETE and TRUNCATE for
-- every role (a superuser must disable the trigger on purpose, which verify/rehydrate then catch),
-- and no role but the owner holds those privileges.

CREATE TABLE ledger (
    seq               bigint PRIMARY KEY CHECK (seq >= 0),
    source_offset     bigint NOT NULL UNIQUE,
    proposal_id       text   NOT NULL UNIQUE,
    kind              text   NOT NULL,
    agent             text   NOT NULL,
    tick              bigint NOT NULL,
    expires_tick      bigint NOT NULL,
    validator_version text   NOT NULL,
    policy_version    integer NOT NULL,
    effects_json      text   NOT NULL,   -- canonical JSON, hashed verbatim
    proposal_json     text   NOT NULL,   -- the signed canonical proposal, hashed verbatim
    prev_hash         bytea  NOT NULL CHECK (length(prev_hash) = 32),
    hash              bytea  NOT NULL CHECK (length(hash) = 32),
    -- Wall-clock time of the commit, for dashboards only: it is not hashed and no rule reads it.
    recorded_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ledger_agent_seq ON ledger (agent, seq);

CREATE TABLE postings (
    seq      bigint   NOT NULL,
    idx      smallint NOT NULL,
    account  text     NOT NULL,
    resource text     NOT NULL,
    amount   bigint   NOT NULL,
    PRIMARY KEY (seq, idx)
);

CREATE FUNCTION refuse_ledger_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the % table is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER ledger_append_only BEFORE UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION refuse_ledger_change();
CREATE TRIGGER ledger_no_truncate BEFORE TRUNCATE ON ledger
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_ledger_change();
CREATE TRIGGER postings_append_only BEFORE UPDATE OR DELETE ON postings
    FOR EACH ROW EXECUTE FUNCTION refuse_ledger_change();
CREATE TRIGGER postings_no_truncate BEFORE TRUNCATE ON postings
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_ledger_change();
REVOKE UPDATE, DELETE, TRUNCATE ON ledger, postings FROM PUBLIC;

-- Every proposal offset ends in exactly one place: a ledger entry or a rejection.
CREATE TABLE rejections (
    source_offset     bigint PRIMARY KEY,
    proposal_id       text,
    agent             text,
    kind              text,
    reason_code       text    NOT NULL,
    field             text,
    detail            text    NOT NULL,
    tick              bigint,
    validator_version text    NOT NULL,
    policy_version    integer NOT NULL,
    provenance_json   text,
    recorded_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rejections_agent ON rejections (agent, source_offset);
CREATE INDEX rejections_reason ON rejections (reason_code, source_offset);

-- Caches of the fold of the ledger, rewritten in the same transaction as the entries that change them.
CREATE TABLE world_state (
    account  text   NOT NULL,
    resource text   NOT NULL,
    balance  bigint NOT NULL,
    seq      bigint NOT NULL,   -- the last entry that changed this balance
    PRIMARY KEY (account, resource)
);

CREATE TABLE open_offers (
    offer_id        text PRIMARY KEY,
    seller          text   NOT NULL,
    account         text   NOT NULL,
    resource        text   NOT NULL,
    quantity        bigint NOT NULL,
    price           bigint NOT NULL,
    open_until_tick bigint NOT NULL
);

CREATE TABLE participants (
    agent          text PRIMARY KEY,
    role           text    NOT NULL,
    kind           text    NOT NULL,
    accounts       text[]  NOT NULL,
    emits_carbon   boolean NOT NULL,
    critical_load  boolean NOT NULL,
    suspended      boolean NOT NULL
);

CREATE TABLE grid_status (
    id              boolean PRIMARY KEY DEFAULT true CHECK (id),
    head_seq        bigint  NOT NULL,
    head_hash       bytea   NOT NULL,
    tick            bigint  NOT NULL,
    policy_version  integer NOT NULL,
    policy_json     text    NOT NULL,
    breaker_open    boolean NOT NULL,
    breaker_reason  text    NOT NULL,
    telemetry_json  text    NOT NULL,
    shortfall_json  text    NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- pyeventsourcing's tracking record: the next offset to decide, written with the effects.
CREATE TABLE consumer_position (
    consumer    text    NOT NULL,
    topic       text    NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint  NOT NULL,
    PRIMARY KEY (consumer, topic, partition)
);

-- How far the relay has published ledger entries (by seq) and rejections (by source offset).
CREATE TABLE relay_position (
    stream   text PRIMARY KEY,
    position bigint NOT NULL
);
