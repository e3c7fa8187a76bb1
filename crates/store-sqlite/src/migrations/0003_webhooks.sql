-- Webhook endpoints of each agent.
CREATE TABLE webhook_endpoints (
    agent_id               INTEGER NOT NULL,
    id                     TEXT    NOT NULL,
    url                    TEXT    NOT NULL,
    description            TEXT    NOT NULL DEFAULT '',
    -- A JSON array of event type names; [] means every type.
    event_filters          TEXT    NOT NULL DEFAULT '[]',
    enabled                INTEGER NOT NULL,
    secret                 TEXT    NOT NULL,
    -- The secret before the last rotation, still signing until the time given.
    previous_secret        TEXT,
    previous_secret_until  INTEGER,
    disabled_reason        TEXT,
    -- The first failure since the last success; NULL while healthy.
    failing_since          INTEGER,
    created_at             INTEGER NOT NULL,
    updated_at             INTEGER NOT NULL,
    PRIMARY KEY (agent_id, id)
) WITHOUT ROWID;

-- The outbox: one row per event, written in the transaction that caused it.
CREATE TABLE webhook_messages (
    id          TEXT    PRIMARY KEY,
    agent_id    INTEGER NOT NULL,
    event_type  TEXT    NOT NULL,
    payload     TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;

-- One row per (endpoint, message): the delivery's state and schedule.
-- state: 0 pending, 1 delivered, 2 failed (schedule spent).
CREATE TABLE webhook_deliveries (
    endpoint_id      TEXT    NOT NULL,
    message_id       TEXT    NOT NULL,
    agent_id         INTEGER NOT NULL,
    state            INTEGER NOT NULL,
    attempts         INTEGER NOT NULL,
    next_attempt_at  INTEGER NOT NULL,
    -- A dispatcher holds the delivery until then; after a crash the lease
    -- runs out and the delivery is taken again (at-least-once).
    leased_until     INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    PRIMARY KEY (endpoint_id, message_id)
) WITHOUT ROWID;

-- A dispatcher asks each endpoint for its oldest due deliveries.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint_id, state, next_attempt_at);

-- Every attempt, for the attempts/ listing and for failure tracking.
CREATE TABLE webhook_attempts (
    id           INTEGER PRIMARY KEY,
    agent_id     INTEGER NOT NULL,
    endpoint_id  TEXT    NOT NULL,
    message_id   TEXT    NOT NULL,
    event_type   TEXT    NOT NULL,
    attempt      INTEGER NOT NULL,
    status_code  INTEGER,
    error        TEXT,
    duration_ms  INTEGER NOT NULL,
    created_at   INTEGER NOT NULL
);

CREATE INDEX webhook_attempts_by_endpoint ON webhook_attempts (endpoint_id, id);
