-- Agents (tenants) and the API keys that act for them.
CREATE TABLE agents (
    id          INTEGER PRIMARY KEY,
    handle      TEXT    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

CREATE TABLE api_keys (
    key_id       TEXT    PRIMARY KEY,
    agent_id     INTEGER NOT NULL REFERENCES agents (id),
    name         TEXT,
    secret_hash  BLOB    NOT NULL,
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER
);

-- One row per end user. The primary key leads with the agent so that a
-- page of one agent's users is a range scan in id (= creation) order.
CREATE TABLE end_users (
    agent_id              INTEGER NOT NULL REFERENCES agents (id),
    id                    TEXT    NOT NULL,
    external_id           TEXT,
    first_name            TEXT,
    last_name             TEXT,
    display_name          TEXT,
    avatar                TEXT,
    email                 TEXT,
    language              TEXT,
    metadata              TEXT    NOT NULL DEFAULT '{}',
    sunshine_user_id      TEXT,
    last_conversation_at  INTEGER,
    version               INTEGER NOT NULL,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    PRIMARY KEY (agent_id, id)
) WITHOUT ROWID;

CREATE UNIQUE INDEX end_users_by_external_id
    ON end_users (agent_id, external_id) WHERE external_id IS NOT NULL;
