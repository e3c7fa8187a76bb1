//! Webhook endpoints as their agents manage them, and their attempt logs.
//! What disabling and enabling do to an endpoint's queue is the outbox's
//! part ([`outbox::park`], [`outbox::read_from_newest`]).

use endusers_core::{AgentId, QueueTransition, Standing, Timestamp};
use endusers_store::{Attempt, EndpointMutation, SigningSecret, WebhookEndpoint};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::outbox::{self, OutboxReader};

use crate::Error;

/// A macro rather than a `const`, so the statements using it are constants
/// too: no SQL text is built per call.
macro_rules! endpoint_columns {
    () => {
        "agent_id, id, url, description, event_filters, enabled, failing_since, disabled_reason,
     secret, previous_secret, previous_secret_until, created_at, updated_at"
    };
}

/// The event filters stored in `column` (a JSON array of type names).
pub(crate) fn filters_at(row: &Row<'_>, column: usize) -> rusqlite::Result<Vec<String>> {
    let raw = row.get_ref(column)?.as_str()?;
    // Read as empty, damaged filters would subscribe to every event.
    serde_json::from_str(raw).map_err(|_| super::unreadable(column, "event filters"))
}

/// An endpoint's standing from `enabled, failing_since, disabled_reason`
/// read from `first` on.
pub(crate) fn standing_at(row: &Row<'_>, first: usize) -> rusqlite::Result<Standing> {
    Ok(Standing {
        enabled: row.get(first)?,
        failing_since: row
            .get::<_, Option<i64>>(first + 1)?
            .map(Timestamp::from_micros),
        disabled_reason: row.get(first + 2)?,
    })
}

fn endpoint_from_row(row: &Row<'_>) -> rusqlite::Result<WebhookEndpoint> {
    Ok(WebhookEndpoint {
        agent_id: AgentId(row.get(0)?),
        id: row.get(1)?,
        url: row.get(2)?,
        description: row.get(3)?,
        event_filters: filters_at(row, 4)?,
        standing: standing_at(row, 5)?,
        secret: SigningSecret::new(row.get(8)?),
        previous_secret: row.get::<_, Option<String>>(9)?.map(SigningSecret::new),
        previous_secret_until: row.get::<_, Option<i64>>(10)?.map(Timestamp::from_micros),
        created_at: Timestamp::from_micros(row.get(11)?),
        updated_at: Timestamp::from_micros(row.get(12)?),
    })
}

fn write_endpoint(conn: &Connection, sql: &str, e: &WebhookEndpoint) -> rusqlite::Result<usize> {
    let filters = serde_json::to_string(&e.event_filters)
        .map_err(|err| rusqlite::Error::ToSqlConversionFailure(Box::new(err)))?;
    conn.prepare_cached(sql)?.execute(params![
        e.agent_id.0,
        e.id,
        e.url,
        e.description,
        filters,
        e.standing.enabled,
        e.standing.failing_since.map(Timestamp::as_micros),
        e.standing.disabled_reason,
        e.secret.expose(),
        e.previous_secret.as_ref().map(SigningSecret::expose),
        e.previous_secret_until.map(Timestamp::as_micros),
        e.created_at.as_micros(),
        e.updated_at.as_micros(),
    ])
}

pub(super) fn create_endpoint(conn: &Connection, endpoint: &WebhookEndpoint) -> Result<(), Error> {
    write_endpoint(
        conn,
        concat!(
            "INSERT INTO webhook_endpoints (",
            endpoint_columns!(),
            ", outbox_position) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ",
            newest_seq!(),
            ")"
        ),
        endpoint,
    )?;
    Ok(())
}

pub(super) fn get_endpoint(
    conn: &Connection,
    agent: AgentId,
    id: &str,
) -> Result<Option<WebhookEndpoint>, Error> {
    Ok(conn
        .prepare_cached(concat!(
            "SELECT ",
            endpoint_columns!(),
            " FROM webhook_endpoints WHERE agent_id = ?1 AND id = ?2"
        ))?
        .query_row(params![agent.0, id], endpoint_from_row)
        .optional()?)
}

pub(super) fn list_endpoints(
    conn: &Connection,
    agent: AgentId,
    from: Option<&str>,
    limit: usize,
) -> Result<Vec<WebhookEndpoint>, Error> {
    let limit = super::sql_limit(limit);
    let mut stmt = conn.prepare_cached(concat!(
        "SELECT ",
        endpoint_columns!(),
        " FROM webhook_endpoints WHERE agent_id = ?1 AND id >= ?2 ORDER BY id LIMIT ?3"
    ))?;
    let rows = stmt
        .query_map(
            params![agent.0, from.unwrap_or_default(), limit],
            endpoint_from_row,
        )?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Changes an endpoint, and its queue as [`QueueTransition`] says:
/// disabled, it keeps what it was still to be sent (see [`outbox::park`]);
/// enabled again, it reads on from the newest message.
pub(super) fn update_endpoint(
    conn: &Connection,
    reader: &mut OutboxReader,
    agent: AgentId,
    id: &str,
    mutation: EndpointMutation,
) -> Result<Option<WebhookEndpoint>, Error> {
    let Some(mut endpoint) = get_endpoint(conn, agent, id)? else {
        return Ok(None);
    };
    let was_enabled = endpoint.standing.enabled;
    mutation(&mut endpoint);
    write_endpoint(
        conn,
        "UPDATE webhook_endpoints SET url = ?3, description = ?4, event_filters = ?5, enabled = ?6,
             failing_since = ?7, disabled_reason = ?8, secret = ?9, previous_secret = ?10,
             previous_secret_until = ?11, created_at = ?12, updated_at = ?13
         WHERE agent_id = ?1 AND id = ?2",
        &endpoint,
    )?;
    match QueueTransition::of(was_enabled, endpoint.standing.enabled) {
        QueueTransition::Resume => outbox::read_from_newest(conn, &mut reader.cursors, agent, id)?,
        // The change's own time (every change sets it) is when it parks.
        QueueTransition::Park => outbox::park(conn, reader, agent, id, endpoint.updated_at)?,
        QueueTransition::Keep => {}
    }
    Ok(Some(endpoint))
}

pub(super) fn delete_endpoint(conn: &Connection, agent: AgentId, id: &str) -> Result<bool, Error> {
    let deleted = conn
        .prepare_cached("DELETE FROM webhook_endpoints WHERE agent_id = ?1 AND id = ?2")?
        .execute(params![agent.0, id])?;
    if deleted == 1 {
        conn.prepare_cached(
            "DELETE FROM webhook_deliveries WHERE agent_id = ?1 AND endpoint_id = ?2",
        )?
        .execute(params![agent.0, id])?;
        conn.prepare_cached(
            "DELETE FROM webhook_attempts WHERE agent_id = ?1 AND endpoint_id = ?2",
        )?
        .execute(params![agent.0, id])?;
    }
    Ok(deleted == 1)
}

pub(super) fn list_attempts(
    conn: &Connection,
    agent: AgentId,
    endpoint: &str,
    before: Option<i64>,
    limit: usize,
) -> Result<Vec<Attempt>, Error> {
    let limit = super::sql_limit(limit);
    let mut stmt = conn.prepare_cached(
        "SELECT id, message_id, event_type, attempt, status_code, error, duration_ms, created_at FROM webhook_attempts
         WHERE agent_id = ?1 AND endpoint_id = ?2 AND id <= ?3 ORDER BY id DESC LIMIT ?4",
    )?;
    let rows = stmt
        .query_map(
            params![agent.0, endpoint, before.unwrap_or(i64::MAX), limit],
            |row| {
                Ok(Attempt {
                    id: row.get(0)?,
                    message_id: row.get(1)?,
                    event_type: row.get(2)?,
                    attempt: row.get(3)?,
                    status_code: row.get(4)?,
                    error: row.get(5)?,
                    duration_ms: u64::try_from(row.get::<_, i64>(6)?).unwrap_or(0),
                    created_at: Timestamp::from_micros(row.get(7)?),
                })
            },
        )?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Puts every delivery to the endpoint that failed for good since `since`
/// back in the queue, due now. Returns how many.
pub(super) fn recover(
    conn: &Connection,
    agent: AgentId,
    endpoint: &str,
    since: Timestamp,
    now: Timestamp,
) -> Result<usize, Error> {
    Ok(conn
        .prepare_cached(
            "UPDATE webhook_deliveries SET state = 0, attempts = 0, next_attempt_at = ?4, leased_until = 0
             WHERE agent_id = ?1 AND endpoint_id = ?2 AND state = 2 AND created_at >= ?3",
        )?
        .execute(params![agent.0, endpoint, since.as_micros(), now.as_micros()])?)
}
