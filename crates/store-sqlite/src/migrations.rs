//! Schema migrations, applied in order inside one immediate transaction;
//! `PRAGMA user_version` records the last one applied, so a server and an
//! admin command starting together cannot both apply the same step.

use rusqlite::Connection;

use endusers_store::StoreError;

use crate::Error;

const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_sensitive_values.sql"),
    include_str!("migrations/0003_webhooks.sql"),
    include_str!("migrations/0004_webhook_history.sql"),
    include_str!("migrations/0005_conversations.sql"),
    include_str!("migrations/0006_agent_limits.sql"),
    include_str!("migrations/0007_pending_deliveries_index.sql"),
    include_str!("migrations/0008_outbox_cursors.sql"),
    include_str!("migrations/0009_messages_by_seq.sql"),
    include_str!("migrations/0010_orphaned_deliveries.sql"),
];

pub(crate) fn run(conn: &mut Connection) -> Result<(), Error> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let applied: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let applied = usize::try_from(applied).unwrap_or(0);
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Config(format!(
            "the database schema (version {applied}) is newer than this binary knows ({}); upgrade endusers",
            MIGRATIONS.len()
        )).into());
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index + 1)?;
        tracing::info!(version = index + 1, "applied database migration");
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database in memory with the first `applied` migrations.
    fn database_at(applied: usize) -> rusqlite::Result<Connection> {
        let conn = Connection::open_in_memory()?;
        for sql in &MIGRATIONS[..applied] {
            conn.execute_batch(sql)?;
        }
        Ok(conn)
    }

    /// A database made before cursors: its messages are numbered in id
    /// (creation) order, and its endpoints start at the newest, since each
    /// already has a delivery row for every message it wants.
    #[test]
    fn outbox_cursors_start_after_the_rows_a_database_already_has() -> rusqlite::Result<()> {
        let conn = database_at(7)?;
        conn.execute_batch(
            "INSERT INTO webhook_endpoints (agent_id, id, url, enabled, secret, created_at, updated_at)
                 VALUES (1, 'ep_1', 'https://example.com/', 1, 'whsec_x', 0, 0);
             INSERT INTO webhook_messages VALUES ('msg_b', 1, 't', '{}', 0), ('msg_a', 1, 't', '{}', 0);
             INSERT INTO webhook_deliveries VALUES ('ep_1', 'msg_b', 1, 0, 0, 0, 0, 0);",
        )?;
        conn.execute_batch(MIGRATIONS[7])?;
        let numbered: Vec<(String, i64)> = conn
            .prepare("SELECT id, seq FROM webhook_messages ORDER BY seq")?
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<Result<_, _>>()?;
        assert_eq!(numbered, [("msg_a".to_owned(), 1), ("msg_b".to_owned(), 2)]);
        let (last, position): (i64, i64) = conn.query_row(
            "SELECT (SELECT last FROM webhook_sequence), outbox_position FROM webhook_endpoints",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        assert_eq!((last, position), (2, 2));
        Ok(())
    }

    /// Messages move to a table keyed by their number, each with what it
    /// had, and delivery rows learn their message's number.
    #[test]
    fn messages_keep_their_numbers_and_deliveries_learn_them() -> rusqlite::Result<()> {
        let conn = database_at(8)?;
        conn.execute_batch(
            "INSERT INTO webhook_messages (id, agent_id, event_type, payload, created_at, seq)
                 VALUES ('msg_b', 1, 'v1.end_user.updated', '{\"b\":1}', 20, 7),
                        ('msg_a', 2, 'v1.end_user.created', '{\"a\":1}', 10, 9);
             INSERT INTO webhook_deliveries VALUES ('ep_1', 'msg_a', 2, 0, 1, 30, 0, 10);",
        )?;
        conn.execute_batch(MIGRATIONS[8])?;
        let messages: Vec<(i64, String, i64, String, String, i64)> = conn
            .prepare(
                "SELECT seq, id, agent_id, event_type, payload, created_at
                 FROM webhook_messages ORDER BY seq",
            )?
            .query_map([], |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    row.get(5)?,
                ))
            })?
            .collect::<Result<_, _>>()?;
        assert_eq!(
            messages,
            [
                (
                    7,
                    "msg_b".into(),
                    1,
                    "v1.end_user.updated".into(),
                    r#"{"b":1}"#.into(),
                    20
                ),
                (
                    9,
                    "msg_a".into(),
                    2,
                    "v1.end_user.created".into(),
                    r#"{"a":1}"#.into(),
                    10
                ),
            ]
        );
        let (message, seq, attempts): (String, i64, i64) = conn.query_row(
            "SELECT message_id, message_seq, attempts FROM webhook_deliveries",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )?;
        assert_eq!((message.as_str(), seq, attempts), ("msg_a", 9, 1));
        // The number is the rowid: a message gets no number it did not bring.
        let rowid: i64 = conn.query_row(
            "SELECT rowid FROM webhook_messages WHERE id = 'msg_a'",
            [],
            |row| row.get(0),
        )?;
        assert_eq!(rowid, 9);
        Ok(())
    }

    /// Delivery rows of a deleted endpoint go; those of endpoints that
    /// exist stay.
    #[test]
    fn deliveries_of_deleted_endpoints_are_removed() -> rusqlite::Result<()> {
        let conn = database_at(9)?;
        conn.execute_batch(
            "INSERT INTO webhook_endpoints (agent_id, id, url, enabled, secret, created_at, updated_at)
                 VALUES (1, 'ep_kept', 'https://example.com/', 1, 'whsec_x', 0, 0);
             INSERT INTO webhook_deliveries
                 (endpoint_id, message_id, agent_id, state, attempts, next_attempt_at, leased_until, created_at, message_seq)
                 VALUES ('ep_kept', 'msg_a', 1, 0, 1, 0, 0, 0, 1),
                        ('ep_gone', 'msg_a', 1, 0, 1, 0, 0, 0, 1),
                        ('ep_kept', 'msg_b', 2, 0, 1, 0, 0, 0, 2);",
        )?;
        conn.execute_batch(MIGRATIONS[9])?;
        let left: Vec<(String, String)> = conn
            .prepare("SELECT endpoint_id, message_id FROM webhook_deliveries ORDER BY 1, 2")?
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<Result<_, _>>()?;
        assert_eq!(
            left,
            [("ep_kept".to_owned(), "msg_a".to_owned())],
            "ep_gone's row and the row naming ep_kept under another agent went"
        );
        Ok(())
    }
}
