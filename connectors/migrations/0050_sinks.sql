-- Sinks: what is to be, or was, delivered to Linear and Discord, so nothing is filed twice or lost.
--
-- A delivery is planned (a 'pending' row with its full payload) in the same transaction that records
-- which topic records it accounts for; it becomes 'delivered' once the outside service confirmed it.
-- Pending rows are the outbox: a sink without credentials plans and stops there ("offline"), and
-- delivers the backlog in seq order when credentials arrive. attempts > 0 on a pending row means a
-- request may have reached the service, so the sink looks before it sends again.

CREATE TABLE sink_deliveries (
    seq          bigserial PRIMARY KEY,
    delivery_id  text NOT NULL UNIQUE,
    sink         text NOT NULL CHECK (sink IN ('linear', 'discord')),
    operation    text NOT NULL CHECK (operation IN ('issue', 'comment', 'message')),
    conflict_id  text,
    payload      jsonb NOT NULL,
    state        text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered')),
    offline      boolean NOT NULL,
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text,
    target_id    text,
    target_url   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz
);

CREATE INDEX sink_deliveries_pending ON sink_deliveries (sink, seq) WHERE state = 'pending';

-- Each topic record (rejection, incident, alert) is accounted for by exactly one delivery.
CREATE TABLE sink_records (
    sink        text NOT NULL,
    record_id   text NOT NULL,
    delivery_id text NOT NULL REFERENCES sink_deliveries (delivery_id),
    PRIMARY KEY (sink, record_id)
);

-- One row per conflict (reason, agent, kind, window): its Linear issue and running totals.
CREATE TABLE sink_conflicts (
    conflict_id        text PRIMARY KEY,
    reason_code        text NOT NULL,
    agent              text NOT NULL,
    kind               text NOT NULL,
    window_start       timestamptz NOT NULL,
    occurrences        bigint NOT NULL,
    updates            integer NOT NULL DEFAULT 0,
    first_source_offset bigint NOT NULL,
    last_source_offset  bigint NOT NULL,
    issue_id           text,
    issue_url          text,
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE VIEW sink_outbox AS
    SELECT seq, delivery_id, sink, operation, payload, attempts, last_error, created_at
    FROM sink_deliveries
    WHERE state = 'pending' AND offline;
