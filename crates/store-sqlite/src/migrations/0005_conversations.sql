-- Custom channels and conversations.
CREATE TABLE channels (
    agent_id     INTEGER NOT NULL,
    id           TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    description  TEXT    NOT NULL,
    modality     TEXT    NOT NULL,
    metadata     TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (agent_id, id)
) WITHOUT ROWID;

CREATE TABLE conversations (
    agent_id     INTEGER NOT NULL,
    id           TEXT    NOT NULL,
    channel_id   TEXT    NOT NULL,
    -- NULL once the end user was deleted.
    end_user_id  TEXT,
    ended        INTEGER NOT NULL,
    metadata     TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (agent_id, id)
) WITHOUT ROWID;

CREATE INDEX conversations_by_end_user ON conversations (agent_id, end_user_id) WHERE end_user_id IS NOT NULL;

-- An end user made by POST /v2/end-users/ must be used by a conversation
-- before this time or it is deleted; NULL once one has (or when a
-- conversation made it).
ALTER TABLE end_users ADD COLUMN orphan_until INTEGER;
CREATE INDEX end_users_orphans ON end_users (orphan_until) WHERE orphan_until IS NOT NULL;
