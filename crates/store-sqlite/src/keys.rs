//! Agents and API keys.

use endusers_core::{AgentHandle, AgentId, RatePolicy, Timestamp};
use rusqlite::{Connection, OptionalExtension, Row, params};

use endusers_store::{Agent, AgentLimits, ApiKeyRecord, NewApiKey, StoreError};

use crate::Error;

fn agent_from_row(row: &Row<'_>) -> rusqlite::Result<Agent> {
    Ok(Agent {
        id: AgentId(row.get(0)?),
        handle: AgentHandle::from_stored(row.get(1)?),
        created_at: Timestamp::from_micros(row.get(2)?),
    })
}

/// An empty database gets the agent `default`, so a first start is usable.
pub(super) fn ensure_an_agent(conn: &Connection, now: Timestamp) -> Result<(), Error> {
    conn.execute(
        "INSERT INTO agents (handle, created_at) SELECT ?1, ?2 WHERE NOT EXISTS (SELECT 1 FROM agents)",
        params![AgentHandle::DEFAULT, now.as_micros()],
    )?;
    Ok(())
}

pub(super) fn create_agent(
    conn: &Connection,
    handle: &AgentHandle,
    now: Timestamp,
) -> Result<Agent, Error> {
    let inserted = conn
        .prepare_cached("INSERT INTO agents (handle, created_at) VALUES (?1, ?2) ON CONFLICT (handle) DO NOTHING")?
        .execute(params![handle.as_str(), now.as_micros()])?;
    if inserted == 0 {
        return Err(StoreError::Conflict("agent handle").into());
    }
    Ok(Agent {
        id: AgentId(conn.last_insert_rowid()),
        handle: handle.clone(),
        created_at: now,
    })
}

pub(super) fn find_agent(conn: &Connection, handle: &AgentHandle) -> Result<Option<Agent>, Error> {
    Ok(conn
        .prepare_cached("SELECT id, handle, created_at FROM agents WHERE handle = ?1")?
        .query_row([handle.as_str()], agent_from_row)
        .optional()?)
}

pub(super) fn list_agents(conn: &Connection) -> Result<Vec<Agent>, Error> {
    let mut stmt = conn.prepare_cached("SELECT id, handle, created_at FROM agents ORDER BY id")?;
    let agents = stmt
        .query_map([], agent_from_row)?
        .collect::<Result<_, _>>()?;
    Ok(agents)
}

pub(super) fn insert_api_key(conn: &Connection, key: &NewApiKey) -> Result<(), Error> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO api_keys (key_id, agent_id, name, secret_hash, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (key_id) DO NOTHING",
        )?
        .execute(params![
            key.key_id,
            key.agent_id.0,
            key.name,
            key.secret_hash.as_slice(),
            key.created_at.as_micros()
        ])?;
    if inserted == 0 {
        return Err(StoreError::Conflict("key id").into());
    }
    Ok(())
}

/// A macro rather than a `const`, so the statements using it are constants
/// too: no SQL text is built per call.
macro_rules! key_columns {
    () => {
        "k.key_id, k.agent_id, a.handle, k.name, k.secret_hash, k.created_at, k.revoked_at,
     a.rate_limit_end_user, a.rate_limit_global
     FROM api_keys k JOIN agents a ON a.id = k.agent_id"
    };
}

fn key_from_row(row: &Row<'_>) -> rusqlite::Result<ApiKeyRecord> {
    let hash: Vec<u8> = row.get(4)?;
    Ok(ApiKeyRecord {
        key_id: row.get(0)?,
        agent_id: AgentId(row.get(1)?),
        agent_handle: AgentHandle::from_stored(row.get(2)?),
        name: row.get(3)?,
        // A hash of the wrong length can match nothing: all zeros.
        secret_hash: hash.try_into().unwrap_or([0; 32]),
        created_at: Timestamp::from_micros(row.get(5)?),
        revoked_at: row.get::<_, Option<i64>>(6)?.map(Timestamp::from_micros),
        agent_limits: limits_from_row(row, 7)?,
    })
}

/// The two override columns from `first` on. They were checked when set,
/// so one that does not parse is a damaged row.
fn limits_from_row(row: &Row<'_>, first: usize) -> rusqlite::Result<AgentLimits> {
    let policy = |column: usize| -> rusqlite::Result<Option<RatePolicy>> {
        row.get::<_, Option<String>>(column)?
            .map(|text| {
                RatePolicy::parse(&text).map_err(|_| super::unreadable(column, "rate limit"))
            })
            .transpose()
    };
    Ok(AgentLimits {
        end_user: policy(first)?,
        global: policy(first + 1)?,
    })
}

pub(super) fn find_api_key(conn: &Connection, key_id: &str) -> Result<Option<ApiKeyRecord>, Error> {
    Ok(conn
        .prepare_cached(concat!("SELECT ", key_columns!(), " WHERE k.key_id = ?1"))?
        .query_row([key_id], key_from_row)
        .optional()?)
}

pub(super) fn list_api_keys(conn: &Connection) -> Result<Vec<ApiKeyRecord>, Error> {
    let mut stmt = conn.prepare_cached(concat!(
        "SELECT ",
        key_columns!(),
        " ORDER BY k.created_at, k.key_id"
    ))?;
    let keys = stmt
        .query_map([], key_from_row)?
        .collect::<Result<_, _>>()?;
    Ok(keys)
}

pub(super) fn revoke_api_key(
    conn: &Connection,
    key_id: &str,
    now: Timestamp,
) -> Result<bool, Error> {
    let changed = conn
        .prepare_cached(
            "UPDATE api_keys SET revoked_at = ?2 WHERE key_id = ?1 AND revoked_at IS NULL",
        )?
        .execute(params![key_id, now.as_micros()])?;
    Ok(changed == 1)
}

pub(super) fn set_agent_limits(
    conn: &Connection,
    handle: &AgentHandle,
    limits: &AgentLimits,
) -> Result<bool, Error> {
    let changed = conn
        .prepare_cached(
            "UPDATE agents SET rate_limit_end_user = ?2, rate_limit_global = ?3 WHERE handle = ?1",
        )?
        .execute(params![
            handle.as_str(),
            limits.end_user.as_ref().map(ToString::to_string),
            limits.global.as_ref().map(ToString::to_string)
        ])?;
    Ok(changed == 1)
}

pub(super) fn agent_limits(
    conn: &Connection,
    handle: &AgentHandle,
) -> Result<Option<AgentLimits>, Error> {
    Ok(conn
        .prepare_cached(
            "SELECT rate_limit_end_user, rate_limit_global FROM agents WHERE handle = ?1",
        )?
        .query_row([handle.as_str()], |row| limits_from_row(row, 0))
        .optional()?)
}
