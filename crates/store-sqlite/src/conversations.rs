//! Channels, conversations, and the end-user lifecycle they drive.

use endusers_core::{
    AgentId, Channel, Conversation, ConversationStatus, EndUserId, IdText, Modality, OrphanRule,
    OutboxEvent, ScalarMap, Timestamp,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{end_users, outbox};
use endusers_store::{ConversationMutation, NewConversation, StartedConversation};

use crate::Error;

/// A macro rather than a `const`, so the statements using it are constants
/// too: no SQL text is built per call.
macro_rules! channel_columns {
    () => {
        "agent_id, id, name, description, modality, metadata, created_at, updated_at"
    };
}

fn channel_from_row(row: &Row<'_>) -> rusqlite::Result<Channel> {
    let modality: String = row.get(4)?;
    let metadata: String = row.get(5)?;
    Ok(Channel {
        agent_id: AgentId(row.get(0)?),
        id: super::id_at(row, 1)?,
        name: row.get(2)?,
        description: row.get(3)?,
        kind: "custom",
        modality: Modality::parse(&modality).ok_or_else(|| super::unreadable(4, "modality"))?,
        metadata: ScalarMap::from_stored(&metadata)
            .ok_or_else(|| super::unreadable(5, "channel metadata"))?,
        created_at: Timestamp::from_micros(row.get(6)?),
        updated_at: Timestamp::from_micros(row.get(7)?),
    })
}

pub(super) fn create_channel(conn: &Connection, channel: &Channel) -> Result<(), Error> {
    conn.prepare_cached(concat!(
        "INSERT INTO channels (",
        channel_columns!(),
        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
    ))?
    .execute(params![
        channel.agent_id.0,
        channel.id.text().as_str(),
        channel.name,
        channel.description,
        channel.modality.as_str(),
        channel.metadata.to_json(),
        channel.created_at.as_micros(),
        channel.updated_at.as_micros()
    ])?;
    Ok(())
}

pub(super) fn get_channel(
    conn: &Connection,
    agent: AgentId,
    id: EndUserId,
) -> Result<Option<Channel>, Error> {
    Ok(conn
        .prepare_cached(concat!(
            "SELECT ",
            channel_columns!(),
            " FROM channels WHERE agent_id = ?1 AND id = ?2"
        ))?
        .query_row(params![agent.0, id.text().as_str()], channel_from_row)
        .optional()?)
}

pub(super) fn list_channels(
    conn: &Connection,
    agent: AgentId,
    from: Option<EndUserId>,
    limit: usize,
) -> Result<Vec<Channel>, Error> {
    let from = from.unwrap_or(EndUserId::MIN).text();
    let mut stmt = conn.prepare_cached(concat!(
        "SELECT ",
        channel_columns!(),
        " FROM channels WHERE agent_id = ?1 AND id >= ?2 ORDER BY id LIMIT ?3"
    ))?;
    let rows = stmt
        .query_map(
            params![agent.0, from.as_str(), super::sql_limit(limit)],
            channel_from_row,
        )?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// A macro rather than a `const`, so the statements using it are constants
/// too: no SQL text is built per call.
macro_rules! conversation_columns {
    () => {
        "agent_id, id, channel_id, end_user_id, ended, metadata, created_at, updated_at"
    };
}

fn conversation_from_row(row: &Row<'_>) -> rusqlite::Result<Conversation> {
    let metadata: String = row.get(5)?;
    Ok(Conversation {
        agent_id: AgentId(row.get(0)?),
        id: super::id_at(row, 1)?,
        channel_id: super::id_at(row, 2)?,
        end_user_id: super::optional_id_at(row, 3)?,
        status: if row.get::<_, bool>(4)? {
            ConversationStatus::Ended
        } else {
            ConversationStatus::Active
        },
        metadata: ScalarMap::from_stored(&metadata)
            .ok_or_else(|| super::unreadable(5, "conversation metadata"))?,
        created_at: Timestamp::from_micros(row.get(6)?),
        updated_at: Timestamp::from_micros(row.get(7)?),
    })
}

fn write_conversation(conn: &Connection, sql: &str, c: &Conversation) -> rusqlite::Result<usize> {
    let end_user_id = c.end_user_id.map(EndUserId::text);
    conn.prepare_cached(sql)?.execute(params![
        c.agent_id.0,
        c.id.text().as_str(),
        c.channel_id.text().as_str(),
        end_user_id.as_ref().map(IdText::as_str),
        c.status == ConversationStatus::Ended,
        c.metadata.to_json(),
        c.created_at.as_micros(),
        c.updated_at.as_micros()
    ])
}

/// Starts a conversation in one transaction: checks the channel, claims
/// the existing user (it stops being an orphan and gets
/// `last_conversation_at`) or stores the new one, stores the conversation
/// and its events. The claim and the orphan sweep both run in the writer,
/// so a user is either claimed before the sweep looks or deleted before
/// the claim does: never both.
pub(super) fn start(conn: &Connection, new: NewConversation) -> Result<StartedConversation, Error> {
    let c = &new.conversation;
    let channel_exists = conn
        .prepare_cached("SELECT 1 FROM channels WHERE agent_id = ?1 AND id = ?2")?
        .query_row(params![c.agent_id.0, c.channel_id.text().as_str()], |_| {
            Ok(())
        })
        .optional()?
        .is_some();
    if !channel_exists {
        return Ok(StartedConversation::UnknownChannel);
    }
    match new.new_end_user {
        Some(user) => {
            end_users::create(conn, user)?;
        }
        None => {
            let Some(user_id) = c.end_user_id else {
                return Ok(StartedConversation::UnknownEndUser);
            };
            let claim = OrphanRule::claim(c.created_at);
            let claimed = conn
                .prepare_cached(
                    "UPDATE end_users SET orphan_until = ?3, last_conversation_at = ?4
                     WHERE agent_id = ?1 AND id = ?2",
                )?
                .execute(params![
                    c.agent_id.0,
                    user_id.text().as_str(),
                    claim.orphan_until.map(Timestamp::as_micros),
                    claim.last_conversation_at.as_micros()
                ])?;
            if claimed == 0 {
                return Ok(StartedConversation::UnknownEndUser);
            }
        }
    }
    write_conversation(
        conn,
        concat!(
            "INSERT INTO conversations (",
            conversation_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        ),
        c,
    )?;
    outbox::record_events(conn, c.agent_id, &new.events)?;
    Ok(StartedConversation::Started(new.conversation))
}

pub(super) fn get_conversation(
    conn: &Connection,
    agent: AgentId,
    id: EndUserId,
) -> Result<Option<Conversation>, Error> {
    Ok(conn
        .prepare_cached(concat!(
            "SELECT ",
            conversation_columns!(),
            " FROM conversations WHERE agent_id = ?1 AND id = ?2"
        ))?
        .query_row(params![agent.0, id.text().as_str()], conversation_from_row)
        .optional()?)
}

pub(super) fn update_conversation(
    conn: &Connection,
    agent: AgentId,
    id: EndUserId,
    mutation: ConversationMutation,
) -> Result<Option<Conversation>, Error> {
    let Some(mut conversation) = get_conversation(conn, agent, id)? else {
        return Ok(None);
    };
    let events: Vec<OutboxEvent> = mutation(&mut conversation)?;
    write_conversation(
        conn,
        "UPDATE conversations SET channel_id = ?3, end_user_id = ?4, ended = ?5, metadata = ?6,
             created_at = ?7, updated_at = ?8
         WHERE agent_id = ?1 AND id = ?2",
        &conversation,
    )?;
    outbox::record_events(conn, agent, &events)?;
    Ok(Some(conversation))
}

/// Deletes up to `limit` users whose orphan deadline has passed, with
/// their sensitive values. Returns how many.
pub(super) fn delete_orphans(
    conn: &Connection,
    now: Timestamp,
    limit: usize,
) -> Result<usize, Error> {
    // The index on the deadline finds the candidates; the rule decides.
    let orphans: Vec<(i64, String, Option<i64>)> = conn
        .prepare_cached(
            "SELECT agent_id, id, orphan_until FROM end_users WHERE orphan_until <= ?1 LIMIT ?2",
        )?
        .query_map(params![now.as_micros(), super::sql_limit(limit)], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut deleted = 0;
    for (agent, id, deadline) in orphans {
        if OrphanRule::is_due(deadline.map(Timestamp::from_micros), now)
            && end_users::erase(conn, AgentId(agent), &id)?
        {
            deleted += 1;
        }
    }
    Ok(deleted)
}
