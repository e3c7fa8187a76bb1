//! Schema migrations, applied in order inside one immediate transaction;
//! `PRAGMA user_version` records the last one applied, so a server and an
//! admin command starting together cannot both apply the same step.

use rusqlite::Connection;

use crate::StoreError;

const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_sensitive_values.sql"),
    include_str!("migrations/0003_webhooks.sql"),
    include_str!("migrations/0004_webhook_history.sql"),
    include_str!("migrations/0005_conversations.sql"),
    include_str!("migrations/0006_agent_limits.sql"),
    include_str!("migrations/0007_pending_deliveries_index.sql"),
];

pub(crate) fn run(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let applied: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let applied = usize::try_from(applied).unwrap_or(0);
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Config(format!(
            "the database schema (version {applied}) is newer than this binary knows ({}); upgrade endusers",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index + 1)?;
        tracing::info!(version = index + 1, "applied database migration");
    }
    tx.commit()?;
    Ok(())
}
