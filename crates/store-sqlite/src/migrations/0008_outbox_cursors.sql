-- Each endpoint reads the outbox through a cursor instead of getting a
-- delivery row per message: a first attempt that succeeds then costs its
-- attempt row and a share of the cursor's move, where a row cost an insert
-- with two index entries, a lease and an update. Rows remain for the
-- deliveries that need a schedule (retries, failures for good) and for the
-- queue an endpoint had when it was disabled.

-- Messages in the order their transactions committed: ids are made before
-- the writer's queue, so they do not give that order, and a cursor must
-- never pass a message that commits after it moved.
ALTER TABLE webhook_messages ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
UPDATE webhook_messages SET seq = numbered.n
FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM webhook_messages) AS numbered
WHERE numbered.id = webhook_messages.id;
CREATE INDEX webhook_messages_by_agent_seq ON webhook_messages (agent_id, seq);

-- The last sequence number given out. A counter rather than MAX(seq), so
-- that pruning the newest messages can never hand their numbers out again.
CREATE TABLE webhook_sequence (
    only  INTEGER PRIMARY KEY CHECK (only = 1),
    last  INTEGER NOT NULL
);
INSERT INTO webhook_sequence (only, last) SELECT 1, COALESCE(MAX(seq), 0) FROM webhook_messages;

-- Every message up to outbox_position has been sent to the endpoint or
-- has a delivery row. Existing endpoints already have rows for every
-- message they want, so they start at the newest.
ALTER TABLE webhook_endpoints ADD COLUMN outbox_position INTEGER NOT NULL DEFAULT 0;
UPDATE webhook_endpoints SET outbox_position = (SELECT last FROM webhook_sequence);
