-- Sensitive metadata: one encrypted value per (user, key). Only ciphertext
-- is stored; `key_id` names the master key that sealed it, `expires_at`
-- (microseconds) is when it stops being served.
CREATE TABLE sensitive_values (
    agent_id     INTEGER NOT NULL,
    end_user_id  TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    key_id       TEXT    NOT NULL,
    nonce        BLOB    NOT NULL,
    ciphertext   BLOB    NOT NULL,
    expires_at   INTEGER NOT NULL,
    PRIMARY KEY (agent_id, end_user_id, name)
) WITHOUT ROWID;

CREATE INDEX sensitive_values_by_expiry ON sensitive_values (expires_at);
CREATE INDEX sensitive_values_by_key_id ON sensitive_values (key_id);
