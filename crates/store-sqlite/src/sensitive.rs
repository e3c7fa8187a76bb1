//! Encrypted sensitive values. Rows are opaque to the store: sealing and
//! opening happen in the vault, with keys the store never holds.

use endusers_core::{AgentId, EndUserId, SensitiveKey, Timestamp};
use rusqlite::{Connection, Row, params};

use endusers_store::{OwnedSealedValue, SealedValue, SensitiveChange};

use crate::Error;

fn sealed_from_row(row: &Row<'_>, first: usize) -> rusqlite::Result<SealedValue> {
    Ok(SealedValue {
        name: SensitiveKey::from_stored(row.get(first)?),
        key_id: row.get(first + 1)?,
        nonce: row.get(first + 2)?,
        ciphertext: row.get(first + 3)?,
        expires_at: Timestamp::from_micros(row.get(first + 4)?),
    })
}

pub(super) fn apply(
    conn: &Connection,
    agent: AgentId,
    end_user: EndUserId,
    changes: &[SensitiveChange],
) -> Result<(), Error> {
    let id = end_user.text();
    for change in changes {
        match change {
            SensitiveChange::Set(value) => {
                conn.prepare_cached(
                    "INSERT INTO sensitive_values (agent_id, end_user_id, name, key_id, nonce, ciphertext, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (agent_id, end_user_id, name) DO UPDATE SET
                         key_id = excluded.key_id, nonce = excluded.nonce,
                         ciphertext = excluded.ciphertext, expires_at = excluded.expires_at",
                )?
                .execute(params![
                    agent.0,
                    id.as_str(),
                    value.name.as_str(),
                    value.key_id,
                    value.nonce,
                    value.ciphertext,
                    value.expires_at.as_micros()
                ])?;
            }
            SensitiveChange::Remove(name) => {
                conn.prepare_cached(
                    "DELETE FROM sensitive_values WHERE agent_id = ?1 AND end_user_id = ?2 AND name = ?3",
                )?
                .execute(params![agent.0, id.as_str(), name.as_str()])?;
            }
        }
    }
    Ok(())
}

pub(super) fn live(
    conn: &Connection,
    agent: AgentId,
    end_user: EndUserId,
    now: Timestamp,
) -> Result<Vec<SealedValue>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, key_id, nonce, ciphertext, expires_at FROM sensitive_values
         WHERE agent_id = ?1 AND end_user_id = ?2 AND expires_at > ?3 ORDER BY name",
    )?;
    let rows = stmt
        .query_map(
            params![agent.0, end_user.text().as_str(), now.as_micros()],
            |row| sealed_from_row(row, 0),
        )?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

pub(super) fn delete_expired(
    conn: &Connection,
    now: Timestamp,
    limit: usize,
) -> Result<usize, Error> {
    let limit = super::sql_limit(limit);
    let deleted = conn
        .prepare_cached(
            "DELETE FROM sensitive_values WHERE (agent_id, end_user_id, name) IN (
                 SELECT agent_id, end_user_id, name FROM sensitive_values WHERE expires_at <= ?1 LIMIT ?2)",
        )?
        .execute(params![now.as_micros(), limit])?;
    Ok(deleted)
}

pub(super) fn sealed_under_other_keys(
    conn: &Connection,
    active_key_id: &str,
    limit: usize,
) -> Result<Vec<OwnedSealedValue>, Error> {
    let limit = super::sql_limit(limit);
    let mut stmt = conn.prepare_cached(
        "SELECT agent_id, end_user_id, name, key_id, nonce, ciphertext, expires_at FROM sensitive_values
         WHERE key_id <> ?1 LIMIT ?2",
    )?;
    // A row whose user id no longer parses is an error, not skipped: skipped,
    // it would be read again on every pass and hold up the re-sealing.
    let rows = stmt
        .query_map(params![active_key_id, limit], |row| {
            Ok(OwnedSealedValue {
                agent_id: AgentId(row.get(0)?),
                end_user_id: super::id_at(row, 1)?,
                value: sealed_from_row(row, 2)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Swaps each value's ciphertext for a re-sealed one, unless the value was
/// rewritten meanwhile (its nonce changed): then the newer write stands.
pub(super) fn replace_sealed(
    conn: &Connection,
    replacements: &[(OwnedSealedValue, SealedValue)],
) -> Result<usize, Error> {
    let mut replaced = 0;
    // Taken from the cache once for the batch, not once per value.
    let mut replace = conn.prepare_cached(
        "UPDATE sensitive_values SET key_id = ?5, nonce = ?6, ciphertext = ?7
         WHERE agent_id = ?1 AND end_user_id = ?2 AND name = ?3 AND nonce = ?4",
    )?;
    for (old, new) in replacements {
        replaced += replace.execute(params![
            old.agent_id.0,
            old.end_user_id.text().as_str(),
            old.value.name.as_str(),
            old.value.nonce,
            new.key_id,
            new.nonce,
            new.ciphertext
        ])?;
    }
    Ok(replaced)
}

pub(super) fn count_by_key_id(conn: &Connection) -> Result<Vec<(String, u64)>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT key_id, COUNT(*) FROM sensitive_values GROUP BY key_id ORDER BY key_id",
    )?;
    let rows = stmt
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })?
        .map(|r| r.map(|(k, n)| (k, u64::try_from(n).unwrap_or(0))))
        .collect::<Result<_, _>>()?;
    Ok(rows)
}
