//! Webhook endpoints, the outbox, deliveries and attempts.

use std::collections::HashSet;

use endusers_core::{AgentId, OutboxEvent, Timestamp};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::{
    Attempt, AttemptRecord, Claim, Delivery, EndpointMutation, NextStep, SigningSecret, StoreError,
    WebhookEndpoint,
};

const DELIVERY_PENDING: i64 = 0;
const DELIVERY_DONE: i64 = 1;
const DELIVERY_FAILED: i64 = 2;

/// Writes events to the outbox and fans each out to the agent's enabled
/// endpoints that subscribe to its type, in the caller's transaction.
/// An event no endpoint wants leaves no row.
pub(super) fn record_events(
    conn: &Connection,
    agent: AgentId,
    events: &[OutboxEvent],
) -> Result<(), StoreError> {
    for event in events {
        let fanned_out = conn
            .prepare_cached(
                "INSERT INTO webhook_deliveries
                     (endpoint_id, message_id, agent_id, state, attempts, next_attempt_at, leased_until, created_at)
                 SELECT id, ?2, agent_id, 0, 0, ?4, 0, ?4 FROM webhook_endpoints
                 WHERE agent_id = ?1 AND enabled = 1
                   AND (event_filters = '[]' OR EXISTS (SELECT 1 FROM json_each(event_filters) WHERE value = ?3))",
            )?
            .execute(params![agent.0, event.id, event.event_type.name(), event.created_at.as_micros()])?;
        if fanned_out > 0 {
            conn.prepare_cached(
                "INSERT INTO webhook_messages (id, agent_id, event_type, payload, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                event.id,
                agent.0,
                event.event_type.name(),
                event.payload,
                event.created_at.as_micros()
            ])?;
        }
    }
    Ok(())
}

/// A macro rather than a `const`, so the statements using it are constants
/// too: no SQL text is built per call.
macro_rules! endpoint_columns {
    () => {
        "agent_id, id, url, description, event_filters, enabled, secret, previous_secret,
     previous_secret_until, disabled_reason, failing_since, created_at, updated_at"
    };
}

fn endpoint_from_row(row: &Row<'_>) -> rusqlite::Result<WebhookEndpoint> {
    let filters: String = row.get(4)?;
    Ok(WebhookEndpoint {
        agent_id: AgentId(row.get(0)?),
        id: row.get(1)?,
        url: row.get(2)?,
        description: row.get(3)?,
        // Read as empty, damaged filters would subscribe to every event.
        event_filters: serde_json::from_str(&filters)
            .map_err(|_| super::unreadable(4, "event filters"))?,
        enabled: row.get(5)?,
        secret: SigningSecret::new(row.get(6)?),
        previous_secret: row.get::<_, Option<String>>(7)?.map(SigningSecret::new),
        previous_secret_until: row.get::<_, Option<i64>>(8)?.map(Timestamp::from_micros),
        disabled_reason: row.get(9)?,
        failing_since: row.get::<_, Option<i64>>(10)?.map(Timestamp::from_micros),
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
        e.enabled,
        e.secret.expose(),
        e.previous_secret.as_ref().map(SigningSecret::expose),
        e.previous_secret_until.map(Timestamp::as_micros),
        e.disabled_reason,
        e.failing_since.map(Timestamp::as_micros),
        e.created_at.as_micros(),
        e.updated_at.as_micros(),
    ])
}

pub(super) fn create_endpoint(
    conn: &Connection,
    endpoint: &WebhookEndpoint,
) -> Result<(), StoreError> {
    write_endpoint(
        conn,
        concat!(
            "INSERT INTO webhook_endpoints (",
            endpoint_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
        ),
        endpoint,
    )?;
    Ok(())
}

pub(super) fn get_endpoint(
    conn: &Connection,
    agent: AgentId,
    id: &str,
) -> Result<Option<WebhookEndpoint>, StoreError> {
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
) -> Result<Vec<WebhookEndpoint>, StoreError> {
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

pub(super) fn update_endpoint(
    conn: &Connection,
    agent: AgentId,
    id: &str,
    mutation: EndpointMutation,
) -> Result<Option<WebhookEndpoint>, StoreError> {
    let Some(mut endpoint) = get_endpoint(conn, agent, id)? else {
        return Ok(None);
    };
    mutation(&mut endpoint);
    write_endpoint(
        conn,
        "UPDATE webhook_endpoints SET url = ?3, description = ?4, event_filters = ?5, enabled = ?6, secret = ?7,
             previous_secret = ?8, previous_secret_until = ?9, disabled_reason = ?10, failing_since = ?11,
             created_at = ?12, updated_at = ?13
         WHERE agent_id = ?1 AND id = ?2",
        &endpoint,
    )?;
    Ok(Some(endpoint))
}

pub(super) fn delete_endpoint(
    conn: &Connection,
    agent: AgentId,
    id: &str,
) -> Result<bool, StoreError> {
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

/// Leases due deliveries until `lease_until`, oldest due first within each
/// enabled endpoint: up to the endpoint's free slots (`free_slots`, or
/// `default_slots` for endpoints not listed) and `limit` in all. Asking
/// each endpoint on its own keeps one endpoint's backlog from being
/// scanned on behalf of the others.
pub(super) fn claim_deliveries(
    conn: &Connection,
    now: Timestamp,
    lease_until: Timestamp,
    claim: &Claim,
) -> Result<Vec<Delivery>, StoreError> {
    let endpoints: Vec<(i64, String, String, String, Option<String>)> = conn
        .prepare_cached(
            "SELECT agent_id, id, url, secret, CASE WHEN previous_secret_until > ?1 THEN previous_secret END
             FROM webhook_endpoints WHERE enabled = 1 ORDER BY id",
        )?
        .query_map([now.as_micros()], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?)))?
        .collect::<Result<_, _>>()?;
    let mut due = conn.prepare_cached(
        "SELECT d.message_id, m.event_type, m.payload, d.attempts, m.created_at
         FROM webhook_deliveries d JOIN webhook_messages m ON m.id = d.message_id
         WHERE d.endpoint_id = ?1 AND d.state = 0 AND d.next_attempt_at <= ?2 AND d.leased_until <= ?2
         ORDER BY d.next_attempt_at LIMIT ?3",
    )?;
    let mut lease = conn.prepare_cached(
        "UPDATE webhook_deliveries SET leased_until = ?3 WHERE endpoint_id = ?1 AND message_id = ?2",
    )?;
    // Round robin: start after the endpoint the previous claim ended on.
    let first = claim.after.as_deref().map_or(0, |after| {
        endpoints.partition_point(|(_, id, ..)| id.as_str() <= after)
    });
    let (passed, turn) = endpoints.split_at(first);
    let mut claimed = Vec::new();
    for (agent_id, endpoint_id, url, secret, previous_secret) in turn.iter().chain(passed) {
        let room = claim.limit.saturating_sub(claimed.len());
        let slots = claim
            .free_slots
            .get(endpoint_id.as_str())
            .copied()
            .unwrap_or(claim.default_slots)
            .min(room);
        if slots == 0 {
            continue;
        }
        let rows: Vec<(String, String, String, u32, i64)> = due
            .query_map(
                params![
                    endpoint_id,
                    now.as_micros(),
                    i64::try_from(slots).unwrap_or(i64::MAX)
                ],
                |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                    ))
                },
            )?
            .collect::<Result<_, _>>()?;
        for (message_id, event_type, payload, attempts, created_at) in rows {
            lease.execute(params![endpoint_id, message_id, lease_until.as_micros()])?;
            claimed.push(Delivery {
                agent_id: AgentId(*agent_id),
                endpoint_id: endpoint_id.clone(),
                message_id,
                event_type,
                payload,
                url: url.clone(),
                secret: SigningSecret::new(secret.clone()),
                previous_secret: previous_secret.clone().map(SigningSecret::new),
                attempts,
                message_created_at: Timestamp::from_micros(created_at),
            });
        }
        if claimed.len() >= claim.limit {
            break;
        }
    }
    Ok(claimed)
}

/// Records attempts and their consequences: the delivery's next state, and
/// the endpoint's failing streak (cleared by a success, started by a
/// failure, and ending in the endpoint being disabled once it has lasted
/// since `disable_if_failing_since`).
pub(super) fn record_attempts(
    conn: &Connection,
    records: &[AttemptRecord],
    disable_if_failing_since: Timestamp,
) -> Result<(), StoreError> {
    // Endpoints whose failing streak this batch has already cleared, with
    // no failure since: clearing it again would look the endpoint up for
    // nothing, once per delivery.
    let mut cleared: HashSet<&str> = HashSet::new();
    for r in records {
        conn.prepare_cached(
            "INSERT INTO webhook_attempts
                 (agent_id, endpoint_id, message_id, event_type, attempt, status_code, error, duration_ms, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![
            r.agent_id.0,
            r.endpoint_id,
            r.message_id,
            r.event_type,
            r.attempt,
            r.status_code,
            r.error,
            i64::try_from(r.duration_ms).unwrap_or(i64::MAX),
            r.at.as_micros()
        ])?;
        let (state, next_at) = match &r.next {
            NextStep::Delivered => (DELIVERY_DONE, r.at),
            NextStep::RetryAt(at) => (DELIVERY_PENDING, *at),
            NextStep::GiveUp | NextStep::DisableEndpoint(_) => (DELIVERY_FAILED, r.at),
        };
        conn.prepare_cached(
            "UPDATE webhook_deliveries SET state = ?3, attempts = ?4, next_attempt_at = ?5, leased_until = 0
             WHERE endpoint_id = ?1 AND message_id = ?2",
        )?
        .execute(params![r.endpoint_id, r.message_id, state, r.attempt, next_at.as_micros()])?;
        match &r.next {
            NextStep::Delivered if cleared.contains(r.endpoint_id.as_str()) => {}
            NextStep::Delivered => {
                cleared.insert(&r.endpoint_id);
                conn.prepare_cached(
                    "UPDATE webhook_endpoints SET failing_since = NULL
                     WHERE agent_id = ?1 AND id = ?2 AND failing_since IS NOT NULL",
                )?
                .execute(params![r.agent_id.0, r.endpoint_id])?;
            }
            NextStep::DisableEndpoint(reason) => {
                cleared.remove(r.endpoint_id.as_str());
                conn.prepare_cached(
                    "UPDATE webhook_endpoints SET enabled = 0, disabled_reason = ?4, updated_at = ?3,
                         failing_since = COALESCE(failing_since, ?3)
                     WHERE agent_id = ?1 AND id = ?2",
                )?
                .execute(params![r.agent_id.0, r.endpoint_id, r.at.as_micros(), reason])?;
            }
            NextStep::RetryAt(_) | NextStep::GiveUp => {
                cleared.remove(r.endpoint_id.as_str());
                conn.prepare_cached(
                    "UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, ?3)
                     WHERE agent_id = ?1 AND id = ?2",
                )?
                .execute(params![
                    r.agent_id.0,
                    r.endpoint_id,
                    r.at.as_micros()
                ])?;
                conn.prepare_cached(
                    "UPDATE webhook_endpoints SET enabled = 0, updated_at = ?3,
                         disabled_reason = 'every delivery has failed since ' || strftime('%Y-%m-%dT%H:%M:%SZ', failing_since / 1000000, 'unixepoch')
                     WHERE agent_id = ?1 AND id = ?2 AND enabled = 1 AND failing_since <= ?4",
                )?
                .execute(params![r.agent_id.0, r.endpoint_id, r.at.as_micros(), disable_if_failing_since.as_micros()])?;
            }
        }
    }
    Ok(())
}

pub(super) fn list_attempts(
    conn: &Connection,
    agent: AgentId,
    endpoint: &str,
    before: Option<i64>,
    limit: usize,
) -> Result<Vec<Attempt>, StoreError> {
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
) -> Result<usize, StoreError> {
    Ok(conn
        .prepare_cached(
            "UPDATE webhook_deliveries SET state = 0, attempts = 0, next_attempt_at = ?4, leased_until = 0
             WHERE agent_id = ?1 AND endpoint_id = ?2 AND state = 2 AND created_at >= ?3",
        )?
        .execute(params![agent.0, endpoint, since.as_micros(), now.as_micros()])?)
}

/// Counts for tests and metrics: (pending, delivered, failed).
pub(super) fn delivery_counts(conn: &Connection) -> Result<(u64, u64, u64), StoreError> {
    let mut counts = [0u64; 3];
    let mut stmt =
        conn.prepare_cached("SELECT state, COUNT(*) FROM webhook_deliveries GROUP BY state")?;
    let rows = stmt.query_map([], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)))?;
    for row in rows {
        let (state, n) = row?;
        if let Some(slot) = usize::try_from(state).ok().and_then(|s| counts.get_mut(s)) {
            *slot = u64::try_from(n).unwrap_or(0);
        }
    }
    Ok((counts[0], counts[1], counts[2]))
}

/// Deletes up to `limit` attempts and up to `limit` messages older than
/// `before`, with their finished deliveries. A message that still has a
/// pending delivery (to a disabled endpoint, say) is kept. Message ids sort
/// by creation, so `before_message_id` bounds the old ones.
pub(super) fn prune_history(
    conn: &Connection,
    before: Timestamp,
    before_message_id: &str,
    limit: usize,
) -> Result<usize, StoreError> {
    let limit = super::sql_limit(limit);
    let mut pruned = conn
        .prepare_cached(
            "DELETE FROM webhook_attempts WHERE id IN
                 (SELECT id FROM webhook_attempts WHERE created_at < ?1 ORDER BY id LIMIT ?2)",
        )?
        .execute(params![before.as_micros(), limit])?;
    let old: Vec<String> = conn
        .prepare_cached("SELECT id FROM webhook_messages WHERE id < ?1 ORDER BY id LIMIT ?2")?
        .query_map(params![before_message_id, limit], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    for id in old {
        pruned += conn
            .prepare_cached("DELETE FROM webhook_deliveries WHERE message_id = ?1 AND state <> 0")?
            .execute([&id])?;
        pruned += conn
            .prepare_cached(
                "DELETE FROM webhook_messages WHERE id = ?1
                 AND NOT EXISTS (SELECT 1 FROM webhook_deliveries WHERE message_id = ?1)",
            )?
            .execute([&id])?;
    }
    Ok(pruned)
}
