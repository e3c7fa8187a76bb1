//! The outbox: messages written with the changes that cause them, read
//! through each endpoint's cursor, leased to dispatchers as deliveries,
//! and settled by the attempts recorded; what parking an endpoint does to
//! its queue; pruning the history.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::time::Duration;

use endusers_core::webhook::subscribes;
use endusers_core::{AgentId, DeliveryState, OutboxEvent, QueueTransition, Standing, Timestamp};
use endusers_store::{AttemptRecord, Claim, Delivery, Lease, SigningSecret};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::cursors::Cursors;
use super::endpoints::{filters_at, standing_at};
use super::outbox_lock::{Holding, OutboxLock};
use super::run_cached;

use crate::Error;

const DELIVERY_PENDING: i64 = 0;
const DELIVERY_DONE: i64 = 1;
const DELIVERY_FAILED: i64 = 2;

/// This process's side of the outbox: whether it is the one reading it
/// (see [`OutboxLock`]) and how far it has read for each endpoint.
#[derive(Debug)]
pub(super) struct OutboxReader {
    pub(super) lock: OutboxLock,
    pub(super) cursors: Cursors,
    /// The longest lease a claim of this process has given, which bounds
    /// how long a delivery may be out anywhere (every process has the same
    /// settings).
    pub(super) longest_lease: Duration,
}

impl OutboxReader {
    pub(super) fn new(lock: OutboxLock) -> Self {
        Self {
            lock,
            cursors: Cursors::default(),
            longest_lease: Duration::ZERO,
        }
    }
}

/// The lease of a delivery row (a retry, or a parked message).
const ROW_LEASE: Lease = Lease::from_backend(0);

/// The lease of a message read through the endpoint's cursor: its number.
fn cursor_lease(seq: i64) -> Lease {
    Lease::from_backend(seq)
}

/// The message number a lease read through a cursor carries.
fn read_through(lease: Lease) -> Option<i64> {
    let token = lease.backend_token();
    (token > 0).then_some(token)
}

/// The SQL condition "endpoint `e` is sent events of type `$event_type`":
/// [`subscribes`] written for a statement, so that one statement can skip
/// an event nobody wants (the contract suite holds both to the same
/// answers). A macro, so that statements stay constants.
macro_rules! subscribed {
    ($event_type:literal) => {
        concat!(
            "(e.event_filters = '[]' OR EXISTS (SELECT 1 FROM json_each(e.event_filters) WHERE value = ",
            $event_type,
            "))"
        )
    };
}

/// Writes each event that an enabled endpoint of the agent subscribes to
/// into the outbox, in the caller's transaction, numbered in commit order.
/// An event nobody wants leaves no row.
pub(super) fn record_events(
    conn: &Connection,
    agent: AgentId,
    events: &[OutboxEvent],
) -> Result<(), Error> {
    // One statement asks whether anyone wants the event and writes it,
    // numbered by the table itself: a new rowid is the largest plus one.
    // (Reading the number in the statement would make SQLite copy what it
    // reads of its own table into a temporary table first, and reading it
    // in a statement of its own would cost every write with events one
    // more, wanted or not.)
    let mut insert = conn.prepare_cached(concat!(
        "INSERT INTO webhook_messages (id, agent_id, event_type, payload, created_at)
         SELECT ?1, ?2, ?3, ?4, ?5
         WHERE EXISTS (SELECT 1 FROM webhook_endpoints e WHERE e.agent_id = ?2 AND e.enabled = 1 AND ",
        subscribed!("?3"),
        ")"
    ))?;
    let mut numbered = false;
    for event in events {
        let written = insert.execute(params![
            event.id,
            agent.0,
            event.event_type.name(),
            event.payload,
            event.created_at.as_micros(),
        ])?;
        if written == 1 && !numbered {
            numbered = true;
            // Only after pruning took the newest message can the table's
            // number be one given out before; the counter kept it (see
            // `newest_seq!`). Messages after this one follow it.
            conn.prepare_cached(
                "UPDATE webhook_messages SET seq = (SELECT last + 1 FROM webhook_sequence)
                 WHERE seq = ?1 AND seq <= (SELECT last FROM webhook_sequence)",
            )?
            .execute([conn.last_insert_rowid()])?;
        }
    }
    Ok(())
}

/// Gives a disabled endpoint a delivery row for every message its cursor
/// has not passed, and moves the cursor to the newest message: the rows
/// wait while it is disabled and go out when it is enabled again, as its
/// queue; messages committed while it is disabled get none.
///
/// A message out at the moment gets a row that is not due before the
/// attempt's lease ends ([`QueueTransition::parked_due`]); the attempt,
/// once recorded, settles the row. Memory knows exactly which messages are
/// out where this process reads the outbox. Elsewhere every message past
/// the stored position may be out in the process that reads it, so each
/// is held for the longest lease this process has seen given.
pub(crate) fn park(
    conn: &Connection,
    reader: &mut OutboxReader,
    agent: AgentId,
    id: &str,
    now: Timestamp,
) -> Result<(), Error> {
    let mut queue = conn.prepare_cached(concat!(
        "INSERT INTO webhook_deliveries
             (endpoint_id, message_id, agent_id, state, attempts, next_attempt_at, leased_until, created_at, message_seq)
         SELECT e.id, m.id, m.agent_id, 0, 0, m.created_at, ?5, m.created_at, m.seq
         FROM webhook_endpoints e JOIN webhook_messages m ON m.agent_id = e.agent_id AND m.seq > ?3 AND m.seq <= ?4
         WHERE e.agent_id = ?1 AND e.id = ?2 AND ",
        subscribed!("m.event_type"),
        " ON CONFLICT DO NOTHING"
    ))?;
    let stored: i64 = conn
        .prepare_cached(
            "SELECT outbox_position FROM webhook_endpoints WHERE agent_id = ?1 AND id = ?2",
        )?
        .query_row(params![agent.0, id], |row| row.get(0))?;
    let unread_until = if reader.lock.is_held() {
        None
    } else {
        Some(now.saturating_add(reader.longest_lease))
    };
    // What memory knows beyond the stored position, if it agrees with it:
    // messages it passed and that are not out need no row.
    let cursor = reader.cursors.at(id, stored);
    for (seq, until) in cursor.out_until() {
        let due = QueueTransition::parked_due(now, Some(until));
        queue.execute(params![agent.0, id, seq - 1, seq, due.as_micros()])?;
    }
    let from = cursor.read();
    let due = QueueTransition::parked_due(now, unread_until);
    queue.execute(params![agent.0, id, from, i64::MAX, due.as_micros()])?;
    read_from_newest(conn, &mut reader.cursors, agent, id)
}

/// Moves the endpoint's cursor to the newest message: it reads only what
/// commits from now on.
pub(crate) fn read_from_newest(
    conn: &Connection,
    cursors: &mut Cursors,
    agent: AgentId,
    id: &str,
) -> Result<(), Error> {
    conn.prepare_cached(concat!(
        "UPDATE webhook_endpoints SET outbox_position = ",
        newest_seq!(),
        " WHERE agent_id = ?1 AND id = ?2"
    ))?
    .execute(params![agent.0, id])?;
    cursors.forget(id);
    Ok(())
}

/// How many reads of an endpoint's outbox one claim makes at most, when the
/// messages read are passed over as not wanted: a long run of events the
/// endpoint does not subscribe to is read over several claims, not one.
const MAX_READS: usize = 4;

/// An enabled endpoint, as a claim needs it.
struct Serving {
    agent_id: i64,
    id: String,
    url: String,
    secret: String,
    previous_secret: Option<String>,
    filters: Vec<String>,
    position: i64,
}

/// A message as a delivery carries it.
struct Message {
    id: String,
    event_type: String,
    payload: String,
    created_at: i64,
}

impl Message {
    /// Reads `id, event_type, payload, created_at` from `first` on.
    fn at(row: &Row<'_>, first: usize) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(first)?,
            event_type: row.get(first + 1)?,
            payload: row.get(first + 2)?,
            created_at: row.get(first + 3)?,
        })
    }
}

impl Serving {
    fn delivery(&self, message: Message, attempts: u32, lease: Lease) -> Delivery {
        Delivery {
            agent_id: AgentId(self.agent_id),
            endpoint_id: self.id.clone(),
            message_id: message.id,
            event_type: message.event_type,
            payload: message.payload,
            url: self.url.clone(),
            secret: SigningSecret::new(self.secret.clone()),
            previous_secret: self.previous_secret.clone().map(SigningSecret::new),
            attempts,
            message_created_at: Timestamp::from_micros(message.created_at),
            lease,
        }
    }
}

/// Leases deliveries until `lease_until`, within each enabled endpoint up
/// to its free slots (`free_slots`, or `default_slots` for endpoints not
/// listed), its agent's (`agent_slots`, or `default_agent_slots`) and
/// `limit` in all: first its delivery rows that are due
/// (retries, oldest due first), then, if this process is the outbox's
/// reader, messages from its cursor (see [`read_outbox`]). Asking each
/// endpoint on its own keeps one endpoint's backlog from being scanned on
/// behalf of the others.
pub(super) fn claim_deliveries(
    conn: &Connection,
    reader: &mut OutboxReader,
    now: Timestamp,
    lease_until: Timestamp,
    claim: &Claim,
) -> Result<Vec<Delivery>, Error> {
    let endpoints: Vec<Serving> = conn
        .prepare_cached(
            "SELECT agent_id, id, url, secret, CASE WHEN previous_secret_until > ?1 THEN previous_secret END,
                 event_filters, outbox_position
             FROM webhook_endpoints WHERE enabled = 1 ORDER BY id",
        )?
        .query_map([now.as_micros()], |row| {
            Ok(Serving {
                agent_id: row.get(0)?,
                id: row.get(1)?,
                url: row.get(2)?,
                secret: row.get(3)?,
                previous_secret: row.get(4)?,
                filters: filters_at(row, 5)?,
                position: row.get(6)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let reads_outbox = match reader.lock.hold() {
        Holding::Newly => {
            reader.cursors.clear();
            true
        }
        Holding::Still => true,
        Holding::No => false,
    };
    let lease = Duration::from_micros(
        u64::try_from(lease_until.as_micros().saturating_sub(now.as_micros())).unwrap_or(0),
    );
    reader.longest_lease = reader.longest_lease.max(lease);
    reader.cursors.retain(|id| {
        endpoints
            .binary_search_by(|e| e.id.as_str().cmp(id))
            .is_ok()
    });
    let mut due = conn.prepare_cached(
        "SELECT d.attempts, m.id, m.event_type, m.payload, m.created_at
         FROM webhook_deliveries d JOIN webhook_messages m ON m.seq = d.message_seq
         WHERE d.endpoint_id = ?1 AND d.state = 0 AND d.next_attempt_at <= ?2 AND d.leased_until <= ?2
         ORDER BY d.next_attempt_at LIMIT ?3",
    )?;
    let mut lease = conn.prepare_cached(
        "UPDATE webhook_deliveries SET leased_until = ?3 WHERE endpoint_id = ?1 AND message_id = ?2",
    )?;
    // Round robin: start after the endpoint the previous claim ended on.
    let first = claim.after.as_deref().map_or(0, |after| {
        endpoints.partition_point(|e| e.id.as_str() <= after)
    });
    let (passed, turn) = endpoints.split_at(first);
    let mut claimed = Vec::new();
    // What each agent may still take, across its endpoints.
    let mut agent_room: HashMap<i64, usize> = HashMap::new();
    for endpoint in turn.iter().chain(passed) {
        let room = claim.limit.saturating_sub(claimed.len());
        let agent_left = agent_room.entry(endpoint.agent_id).or_insert_with(|| {
            claim
                .agent_slots
                .get(&AgentId(endpoint.agent_id))
                .copied()
                .unwrap_or(claim.default_agent_slots)
        });
        let slots = claim
            .free_slots
            .get(endpoint.id.as_str())
            .copied()
            .unwrap_or(claim.default_slots)
            .min(room)
            .min(*agent_left);
        if slots == 0 {
            continue;
        }
        let before = claimed.len();
        let rows: Vec<(u32, Message)> = due
            .query_map(
                params![endpoint.id, now.as_micros(), super::sql_limit(slots)],
                |row| Ok((row.get(0)?, Message::at(row, 1)?)),
            )?
            .collect::<Result<_, _>>()?;
        let left = slots.saturating_sub(rows.len());
        for (attempts, message) in rows {
            lease.execute(params![endpoint.id, message.id, lease_until.as_micros()])?;
            claimed.push(endpoint.delivery(message, attempts, ROW_LEASE));
        }
        if reads_outbox && left > 0 {
            read_outbox(conn, reader, endpoint, now, lease_until, left, &mut claimed)?;
        }
        if let Some(agent_left) = agent_room.get_mut(&endpoint.agent_id) {
            *agent_left = agent_left.saturating_sub(claimed.len() - before);
        }
        if claimed.len() >= claim.limit {
            break;
        }
    }
    Ok(claimed)
}

/// Hands out up to `room` messages through the endpoint's cursor: first
/// those whose lease ran out, then the next ones in commit order, passing
/// over the types it does not subscribe to.
fn read_outbox(
    conn: &Connection,
    reader: &mut OutboxReader,
    endpoint: &Serving,
    now: Timestamp,
    lease_until: Timestamp,
    room: usize,
    claimed: &mut Vec<Delivery>,
) -> Result<(), Error> {
    let cursor = reader.cursors.at(&endpoint.id, endpoint.position);
    let mut handed = 0;
    let mut by_seq = conn.prepare_cached(
        "SELECT id, event_type, payload, created_at FROM webhook_messages WHERE agent_id = ?1 AND seq = ?2",
    )?;
    for seq in cursor.lapsed(now, room) {
        match by_seq
            .query_row(params![endpoint.agent_id, seq], |row| Message::at(row, 0))
            .optional()?
        {
            Some(message) => {
                cursor.pass(seq, Some(lease_until));
                claimed.push(endpoint.delivery(message, 0, cursor_lease(seq)));
                handed += 1;
            }
            None => cursor.finish(seq),
        }
    }
    let mut next = conn.prepare_cached(
        "SELECT seq, id, event_type, payload, created_at FROM webhook_messages
         WHERE agent_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    )?;
    for _ in 0..MAX_READS {
        let asked = room.saturating_sub(handed);
        if asked == 0 {
            break;
        }
        let mut rows = next.query(params![
            endpoint.agent_id,
            cursor.read(),
            super::sql_limit(asked)
        ])?;
        let mut read = 0;
        while let Some(row) = rows.next()? {
            read += 1;
            let seq: i64 = row.get(0)?;
            let event_type = row.get_ref(2)?.as_str().map_err(rusqlite::Error::from)?;
            if subscribes(&endpoint.filters, event_type) {
                cursor.pass(seq, Some(lease_until));
                claimed.push(endpoint.delivery(Message::at(row, 1)?, 0, cursor_lease(seq)));
                handed += 1;
            } else {
                cursor.pass(seq, None);
            }
        }
        if read < asked {
            break;
        }
    }
    // With nothing out, the stored position follows what was read: for an
    // endpoint that has passed over everything lately, nothing else would
    // move it.
    if cursor.out().next().is_none() {
        store_position(
            conn,
            &mut reader.cursors,
            AgentId(endpoint.agent_id),
            &endpoint.id,
        )?;
    }
    Ok(())
}

/// Writes where the endpoint's cursor has got to, if it moved. The write
/// only lands if the database still holds the position memory started
/// from; if not (the endpoint was disabled, or another process moved it),
/// memory starts over from the database at the next claim.
fn store_position(
    conn: &Connection,
    cursors: &mut Cursors,
    agent: AgentId,
    id: &str,
) -> Result<(), Error> {
    let Some(cursor) = cursors.get_mut(id) else {
        return Ok(());
    };
    let Some((from, to)) = cursor.advance() else {
        return Ok(());
    };
    let moved = conn
        .prepare_cached(
            "UPDATE webhook_endpoints SET outbox_position = ?4
             WHERE agent_id = ?1 AND id = ?2 AND outbox_position = ?3",
        )?
        .execute(params![agent.0, id, from, to])?;
    if moved == 1 {
        cursor.stored_at(to);
    } else {
        cursors.forget(id);
    }
    Ok(())
}

/// An endpoint as a batch of records sees it: its standing when the batch
/// read it and as the batch's attempts left it.
struct Tracked {
    agent: AgentId,
    read: Standing,
    standing: Standing,
    /// When an attempt of the batch disabled it.
    disabled_at: Option<Timestamp>,
    /// Whether rows may wait for it (asked once, when first needed).
    has_waiting: Option<bool>,
}

/// Records attempts and their consequences: each delivery's next state
/// ([`DeliveryState::after`]) and each endpoint's standing
/// ([`Standing::record`]), written once per endpoint for the batch. An
/// endpoint an attempt disabled is parked (see [`park`]). Attempts at an
/// endpoint deleted meanwhile leave nothing behind.
///
/// A delivery read through the cursor has no row: if it failed, it gets one
/// now, for its schedule; if it arrived, a copy parked while it was out (by
/// any process) is dropped. Either way the cursor can move past it, which
/// is written once per endpoint at the end.
pub(super) fn record_attempts(
    conn: &Connection,
    reader: &mut OutboxReader,
    records: &[AttemptRecord],
    disable_if_failing_since: Timestamp,
) -> Result<(), Error> {
    let mut endpoints: HashMap<&str, Option<Tracked>> = HashMap::new();
    // Endpoints whose cursors this batch moved, with their agents.
    let mut read_through_cursor: HashMap<&str, AgentId> = HashMap::new();
    // Taken from the statement cache once for the batch, not once per
    // attempt: each look-up hashes and copies the statement's text.
    let mut insert_attempt = conn.prepare_cached(
        "INSERT INTO webhook_attempts
             (agent_id, endpoint_id, message_id, event_type, attempt, status_code, error, duration_ms, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    let mut standing_of = conn.prepare_cached(
        "SELECT enabled, failing_since, disabled_reason FROM webhook_endpoints WHERE agent_id = ?1 AND id = ?2",
    )?;
    for r in records {
        let tracked = match endpoints.entry(&r.endpoint_id) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(new) => new.insert(
                standing_of
                    .query_row(params![r.agent_id.0, r.endpoint_id], |row| {
                        standing_at(row, 0)
                    })
                    .optional()?
                    .map(|standing| Tracked {
                        agent: r.agent_id,
                        read: standing.clone(),
                        standing,
                        disabled_at: None,
                        has_waiting: None,
                    }),
            ),
        };
        let Some(tracked) = tracked else {
            continue;
        };
        insert_attempt.execute(params![
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
        let state = DeliveryState::after(&r.next);
        match (read_through(r.lease), state) {
            (None, _) => {
                let (code, next_at) = stored_state(state, r.at);
                conn.prepare_cached(
                    "UPDATE webhook_deliveries SET state = ?3, attempts = ?4, next_attempt_at = ?5, leased_until = 0
                     WHERE endpoint_id = ?1 AND message_id = ?2",
                )?
                .execute(params![r.endpoint_id, r.message_id, code, r.attempt, next_at.as_micros()])?;
            }
            (Some(_), DeliveryState::Delivered) => {
                let has_waiting = match tracked.has_waiting {
                    Some(known) => known,
                    None => *tracked.has_waiting.insert(
                        conn.prepare_cached(
                            "SELECT EXISTS (SELECT 1 FROM webhook_deliveries WHERE endpoint_id = ?1 AND state = 0)",
                        )?
                        .query_row([&r.endpoint_id], |row| row.get(0))?,
                    ),
                };
                if has_waiting {
                    conn.prepare_cached(
                        "DELETE FROM webhook_deliveries WHERE endpoint_id = ?1 AND message_id = ?2 AND state = 0",
                    )?
                    .execute(params![r.endpoint_id, r.message_id])?;
                }
            }
            (Some(seq), state) => {
                let (code, next_at) = stored_state(state, r.at);
                // The row may exist already if the endpoint was parked
                // with this message out.
                conn.prepare_cached(
                    "INSERT INTO webhook_deliveries
                         (endpoint_id, message_id, agent_id, state, attempts, next_attempt_at, leased_until, created_at, message_seq)
                     SELECT ?1, id, agent_id, ?3, ?4, ?5, 0, created_at, seq FROM webhook_messages WHERE seq = ?2
                     ON CONFLICT DO UPDATE SET
                         state = excluded.state, attempts = excluded.attempts,
                         next_attempt_at = excluded.next_attempt_at, leased_until = 0",
                )?
                .execute(params![r.endpoint_id, seq, code, r.attempt, next_at.as_micros()])?;
                tracked.has_waiting = Some(true);
            }
        }
        if let Some(seq) = read_through(r.lease)
            && let Some(cursor) = reader.cursors.get_mut(&r.endpoint_id)
        {
            cursor.finish(seq);
            read_through_cursor.insert(&r.endpoint_id, r.agent_id);
        }
        if tracked
            .standing
            .record(&r.next, r.at, disable_if_failing_since)
        {
            tracked.disabled_at = Some(r.at);
        }
    }
    for (id, tracked) in &endpoints {
        let Some(tracked) = tracked else {
            // Deleted: nothing of it is kept, in memory either.
            reader.cursors.forget(id);
            continue;
        };
        if tracked.standing == tracked.read {
            continue;
        }
        let s = &tracked.standing;
        conn.prepare_cached(
            "UPDATE webhook_endpoints SET enabled = ?3, failing_since = ?4, disabled_reason = ?5,
                 updated_at = COALESCE(?6, updated_at)
             WHERE agent_id = ?1 AND id = ?2",
        )?
        .execute(params![
            tracked.agent.0,
            id,
            s.enabled,
            s.failing_since.map(Timestamp::as_micros),
            s.disabled_reason,
            tracked.disabled_at.map(Timestamp::as_micros),
        ])?;
        if let Some(at) = tracked.disabled_at {
            read_through_cursor.remove(id);
            park(conn, reader, tracked.agent, id, at)?;
        }
    }
    for (endpoint, agent) in read_through_cursor {
        store_position(conn, &mut reader.cursors, agent, endpoint)?;
    }
    Ok(())
}

/// How a delivery row stores a [`DeliveryState`]: its state code and when
/// it is next due (for a finished one, when it finished).
fn stored_state(state: DeliveryState, at: Timestamp) -> (i64, Timestamp) {
    match state {
        DeliveryState::Delivered => (DELIVERY_DONE, at),
        DeliveryState::Pending(next) => (DELIVERY_PENDING, next),
        DeliveryState::Failed => (DELIVERY_FAILED, at),
    }
}

/// Counts for tests and metrics: (pending, delivered, failed). Pending
/// counts the rows waiting and the messages enabled endpoints want past
/// their stored positions (those out at the moment included); delivered
/// counts the deliveries the attempt history shows a success for, so it
/// forgets what pruning removed.
pub(super) fn delivery_counts(conn: &Connection) -> Result<(u64, u64, u64), Error> {
    let (waiting, failed): (i64, i64) = conn
        .prepare_cached(
            "SELECT COUNT(*) FILTER (WHERE state = 0), COUNT(*) FILTER (WHERE state = 2) FROM webhook_deliveries",
        )?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    let unread: i64 = conn
        .prepare_cached(concat!(
            "SELECT COUNT(*) FROM webhook_endpoints e
             JOIN webhook_messages m ON m.agent_id = e.agent_id AND m.seq > e.outbox_position
             WHERE e.enabled = 1 AND ",
            subscribed!("m.event_type")
        ))?
        .query_row([], |row| row.get(0))?;
    let delivered: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM (SELECT DISTINCT endpoint_id, message_id FROM webhook_attempts
                                   WHERE status_code BETWEEN 200 AND 299)",
        )?
        .query_row([], |row| row.get(0))?;
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    Ok((count(waiting + unread), count(delivered), count(failed)))
}

/// Deletes up to `limit` attempts and up to `limit` messages older than
/// `before`, with their finished deliveries. A message is kept while a
/// delivery of it waits (to a disabled endpoint, say) or an enabled
/// endpoint's cursor has not passed it.
///
/// Each looks at the oldest `limit` rows only (attempts by id, messages by
/// number, both in the order they were written) and takes those old
/// enough: asked for rows older than a time, with none that old, SQLite
/// would read the whole table to find out.
pub(super) fn prune_history(
    conn: &Connection,
    before: Timestamp,
    limit: usize,
) -> Result<usize, Error> {
    let limit = super::sql_limit(limit);
    let mut pruned = conn
        .prepare_cached(
            "DELETE FROM webhook_attempts WHERE id IN
                 (SELECT id FROM (SELECT id, created_at FROM webhook_attempts ORDER BY id LIMIT ?2)
                  WHERE created_at < ?1)",
        )?
        .execute(params![before.as_micros(), limit])?;
    let old: Vec<(i64, String)> = conn
        .prepare_cached(
            "SELECT seq, id FROM (SELECT seq, id, created_at FROM webhook_messages ORDER BY seq LIMIT ?2)
             WHERE created_at < ?1",
        )?
        .query_map(params![before.as_micros(), limit], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?
        .collect::<Result<_, _>>()?;
    if old.is_empty() {
        return Ok(pruned);
    }
    // The newest message may go too: its number is kept, never to be
    // given out again (see `newest_seq!`).
    run_cached(
        conn,
        "UPDATE webhook_sequence SET last = (SELECT max(seq) FROM webhook_messages)
         WHERE last < (SELECT max(seq) FROM webhook_messages)",
    )?;
    // Each statement taken from the cache once for the batch.
    let mut delete_finished =
        conn.prepare_cached("DELETE FROM webhook_deliveries WHERE message_id = ?1 AND state <> 0")?;
    let mut delete_message = conn.prepare_cached(
        "DELETE FROM webhook_messages AS m WHERE m.seq = ?1
         AND NOT EXISTS (SELECT 1 FROM webhook_deliveries WHERE message_id = ?2)
         AND NOT EXISTS (SELECT 1 FROM webhook_endpoints e
                         WHERE e.agent_id = m.agent_id AND e.enabled = 1 AND e.outbox_position < m.seq)",
    )?;
    for (seq, id) in old {
        pruned += delete_finished.execute([&id])?;
        pruned += delete_message.execute(params![seq, id])?;
    }
    Ok(pruned)
}
