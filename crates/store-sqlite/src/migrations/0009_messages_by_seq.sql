-- Messages keyed by their sequence number, in a table of rowids.
--
-- Keyed by id (WITHOUT ROWID), every message went into a b-tree of index
-- format, whose full right-most leaf is split by redistributing cells over
-- it and its neighbours: about two messages of 530 bytes filled the leaf,
-- and each split rewrote three leaves and their parent. The log carried
-- 6.2 pages of messages a commit for ten messages. A table of rowids
-- appended to at its end starts a new leaf holding just the new row
-- instead, and leaves the full one as it is.
--
-- Lookups by id are gone with it: a delivery row names its message's
-- number (message_seq) as well as its id, so that a retry finds the
-- message by number.
CREATE TABLE webhook_messages_by_seq (
    seq         INTEGER PRIMARY KEY,
    id          TEXT    NOT NULL,
    agent_id    INTEGER NOT NULL,
    event_type  TEXT    NOT NULL,
    payload     TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);
INSERT INTO webhook_messages_by_seq (seq, id, agent_id, event_type, payload, created_at)
    SELECT seq, id, agent_id, event_type, payload, created_at FROM webhook_messages ORDER BY seq;

ALTER TABLE webhook_deliveries ADD COLUMN message_seq INTEGER NOT NULL DEFAULT 0;
UPDATE webhook_deliveries
SET message_seq = COALESCE((SELECT m.seq FROM webhook_messages m WHERE m.id = webhook_deliveries.message_id), 0);

DROP TABLE webhook_messages;
ALTER TABLE webhook_messages_by_seq RENAME TO webhook_messages;
-- An index of a rowid table holds the rowid after its columns: this one
-- is (agent_id, seq), what a cursor reads in order.
CREATE INDEX webhook_messages_by_agent ON webhook_messages (agent_id);
