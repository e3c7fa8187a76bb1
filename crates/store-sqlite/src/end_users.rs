//! End-user rows.

use endusers_core::json::ANSWER_CAPACITY;
use endusers_core::{
    AgentId, AvatarUrl, Email, EndUser, EndUserId, EndUserView, ExternalId, IdText, LanguageTag,
    Metadata, Profile, ProfileText, StoredMetadata, SystemProperties, Timestamp, WriteJson,
};
use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, params};

use endusers_store::{Applied, Created, Mutation, StoreError};

use crate::Error;

/// The user's columns, in the order [`from_row`] reads them. A macro, so
/// the statements below are constants: the statement cache is looked up
/// without building the SQL text on every call.
macro_rules! columns {
    () => {
        "agent_id, id, external_id, first_name, last_name, display_name, avatar, email,
         language, metadata, sunshine_user_id, last_conversation_at, version, created_at,
         updated_at, orphan_until"
    };
}

const INSERT: &str = concat!(
    "INSERT INTO end_users (",
    columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
);
const BY_ID: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM end_users WHERE agent_id = ?1 AND id = ?2"
);
const BY_EXTERNAL_ID: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM end_users WHERE agent_id = ?1 AND external_id = ?2"
);
const PAGE: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM end_users WHERE agent_id = ?1 AND id >= ?2 ORDER BY id LIMIT ?3"
);

/// The columns every update sets, numbered as in [`write_row`]: all but
/// the key and the two indexed ones (`external_id` ?3, `orphan_until` ?16).
macro_rules! profile_assignments {
    () => {
        "first_name = ?4, last_name = ?5, display_name = ?6, avatar = ?7, email = ?8,
         language = ?9, metadata = ?10, sunshine_user_id = ?11, last_conversation_at = ?12,
         version = ?13, created_at = ?14, updated_at = ?15"
    };
}

/// Rewrites every column but the key, numbered as in [`write_row`].
const UPDATE: &str = concat!(
    "UPDATE end_users SET external_id = ?3, orphan_until = ?16, ",
    profile_assignments!(),
    " WHERE agent_id = ?1 AND id = ?2"
);

/// [`UPDATE`] for the usual change, which leaves `external_id` and
/// `orphan_until` as they were. SQLite rewrites the index entry of every
/// indexed column a statement sets, even to the value it had, so setting
/// `external_id` to itself wrote a random page of its index on every update
/// of a user who has one: two pages written per update instead of one
/// (counted in the log). The two keep their numbers (?3, ?16) as guards,
/// which hold by construction: see [`update`].
const UPDATE_PROFILE: &str = concat!(
    "UPDATE end_users SET ",
    profile_assignments!(),
    " WHERE agent_id = ?1 AND id = ?2 AND external_id IS ?3 AND orphan_until IS ?16"
);

/// Runs `sql` with the user's columns bound as ?1..?16 in [`columns`] order.
fn write_row(conn: &Connection, sql: &str, user: &EndUser) -> rusqlite::Result<usize> {
    let p = &user.profile;
    conn.prepare_cached(sql)?.execute(params![
        user.agent_id.0,
        user.end_user_id.text().as_str(),
        user.external_id.as_ref().map(ExternalId::as_str),
        p.first_name.as_ref().map(ProfileText::as_str),
        p.last_name.as_ref().map(ProfileText::as_str),
        p.display_name.as_ref().map(ProfileText::as_str),
        p.avatar.as_ref().map(AvatarUrl::as_str),
        p.email.as_ref().map(Email::as_str),
        p.language.as_ref().map(LanguageTag::as_str),
        p.metadata.to_json(),
        p.system_properties.sunshine_user_id,
        p.system_properties
            .last_conversation_at
            .map(Timestamp::as_micros),
        user.version,
        user.created_at.as_micros(),
        user.updated_at.as_micros(),
        user.orphan_until.map(Timestamp::as_micros),
    ])
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<EndUser> {
    // Parsed from the row's own text, not from a copy of it.
    let metadata = Metadata::from_json(row.get_ref(9)?.as_str()?)
        .map_err(|_| super::unreadable(9, "metadata"))?;
    Ok(EndUser {
        agent_id: AgentId(row.get(0)?),
        end_user_id: super::id_at(row, 1)?,
        external_id: row
            .get::<_, Option<String>>(2)?
            .map(ExternalId::from_stored),
        profile: Profile {
            first_name: row
                .get::<_, Option<String>>(3)?
                .map(ProfileText::from_stored),
            last_name: row
                .get::<_, Option<String>>(4)?
                .map(ProfileText::from_stored),
            display_name: row
                .get::<_, Option<String>>(5)?
                .map(ProfileText::from_stored),
            avatar: row.get::<_, Option<String>>(6)?.map(AvatarUrl::from_stored),
            email: row.get::<_, Option<String>>(7)?.map(Email::from_stored),
            language: row
                .get::<_, Option<String>>(8)?
                .map(LanguageTag::from_stored),
            metadata,
            system_properties: SystemProperties {
                sunshine_user_id: row.get(10)?,
                last_conversation_at: row.get::<_, Option<i64>>(11)?.map(Timestamp::from_micros),
            },
        },
        version: row.get(12)?,
        created_at: Timestamp::from_micros(row.get(13)?),
        updated_at: Timestamp::from_micros(row.get(14)?),
        orphan_until: row.get::<_, Option<i64>>(15)?.map(Timestamp::from_micros),
    })
}

/// A taken key or unique value, and no other constraint (a foreign key or
/// a NOT NULL failing is a bug to report, not a conflict to answer).
fn is_unique_violation(err: &rusqlite::Error) -> bool {
    matches!(
        err,
        rusqlite::Error::SqliteFailure(e, _)
            if e.code == ErrorCode::ConstraintViolation
                && matches!(
                    e.extended_code,
                    rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                )
    )
}

pub(super) fn find_by_external_id(
    conn: &Connection,
    agent: AgentId,
    external_id: &ExternalId,
) -> Result<Option<EndUser>, Error> {
    Ok(conn
        .prepare_cached(BY_EXTERNAL_ID)?
        .query_row(params![agent.0, external_id.as_str()], from_row)
        .optional()?)
}

pub(super) fn create(conn: &Connection, user: EndUser) -> Result<Created, Error> {
    if let Some(external_id) = &user.external_id
        && let Some(existing) = find_by_external_id(conn, user.agent_id, external_id)?
    {
        return Ok(Created::Existing(existing));
    }
    write_row(conn, INSERT, &user).map_err(|e| {
        if is_unique_violation(&e) {
            Error::from(StoreError::Conflict("end_user_id"))
        } else {
            e.into()
        }
    })?;
    Ok(Created::New(user))
}

pub(super) fn get(
    conn: &Connection,
    agent: AgentId,
    id: EndUserId,
) -> Result<Option<EndUser>, Error> {
    Ok(conn
        .prepare_cached(BY_ID)?
        .query_row(params![agent.0, id.text().as_str()], from_row)
        .optional()?)
}

/// The columns a user's answer shows, in the order [`answer_of_row`] reads
/// them, and no others: SQLite copies every text column it returns, and
/// the statement cache hashes and compares the statement's text on every
/// use.
const ANSWER_BY_ID: &str = "SELECT external_id,first_name,last_name,display_name,avatar,email,\
    language,metadata,sunshine_user_id,last_conversation_at,created_at,updated_at \
    FROM end_users WHERE agent_id=?1 AND id=?2";

/// [`get`], written as the API answers it straight from the row: no text
/// is copied out of the row but into the answer, and the stored metadata
/// is checked, not parsed into a map: building the user was a large part
/// of a GET's instructions (bench/HISTORY.md).
pub(super) fn get_json(
    conn: &Connection,
    agent: AgentId,
    id: EndUserId,
) -> Result<Option<String>, Error> {
    let id_text = id.text();
    let mut statement = conn.prepare_cached(ANSWER_BY_ID)?;
    let mut rows = statement.query(params![agent.0, id_text.as_str()])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    Ok(Some(answer_of_row(row, id_text)?))
}

/// The JSON answer for the user in `row` (read by [`ANSWER_BY_ID`]), whose
/// id text is `id_text`.
fn answer_of_row(row: &Row<'_>, id_text: IdText) -> rusqlite::Result<String> {
    let text = |column: usize| -> rusqlite::Result<Option<&str>> {
        Ok(row.get_ref(column)?.as_str_or_null()?)
    };
    let metadata = StoredMetadata::checked(row.get_ref(7)?.as_str()?)
        .ok_or_else(|| super::unreadable(7, "metadata"))?;
    let view = EndUserView {
        // The row was found by this id, and ids compare as bytes.
        end_user_id: id_text,
        external_id: text(0)?,
        first_name: text(1)?,
        last_name: text(2)?,
        display_name: text(3)?,
        avatar: text(4)?,
        email: text(5)?,
        language: text(6)?,
        metadata: &metadata,
        sunshine_user_id: text(8)?,
        last_conversation_at: row.get::<_, Option<i64>>(9)?.map(Timestamp::from_micros),
        created_at: Timestamp::from_micros(row.get(10)?),
        updated_at: Timestamp::from_micros(row.get(11)?),
    };
    Ok(view.to_json_string(ANSWER_CAPACITY))
}

pub(super) fn list(
    conn: &Connection,
    agent: AgentId,
    from: Option<EndUserId>,
    limit: usize,
) -> Result<Vec<EndUser>, Error> {
    let from = from.unwrap_or(EndUserId::MIN).text();
    let limit = super::sql_limit(limit);
    let mut stmt = conn.prepare_cached(PAGE)?;
    let users = stmt
        .query_map(params![agent.0, from.as_str(), limit], from_row)?
        .collect::<Result<_, _>>()?;
    Ok(users)
}

pub(super) fn update(
    conn: &Connection,
    agent: AgentId,
    id: EndUserId,
    mutation: Mutation,
) -> Result<Option<(EndUser, Applied)>, Error> {
    let Some(mut user) = get(conn, agent, id)? else {
        return Ok(None);
    };
    let (external_id, orphan_until) = (user.external_id.clone(), user.orphan_until);
    let applied = mutation(&mut user)?;
    if applied.change.stored {
        let indexed_columns_kept =
            user.external_id == external_id && user.orphan_until == orphan_until;
        let sql = if indexed_columns_kept {
            UPDATE_PROFILE
        } else {
            UPDATE
        };
        let written = write_row(conn, sql, &user).map_err(|e| {
            if is_unique_violation(&e) {
                Error::from(StoreError::Conflict("external_id"))
            } else {
                Error::from(e)
            }
        })?;
        // The row was read in this transaction, so it is there and its
        // guards hold; anything else is a bug to report, not a lost update.
        if written != 1 {
            return Err(StoreError::Backend(format!(
                "an end-user update wrote {written} rows instead of 1"
            ))
            .into());
        }
    }
    Ok(Some((user, applied)))
}

/// Deletes a user with what hangs off it: its sensitive values, and its
/// link from conversations (which stay, with no user). Takes the id as
/// stored, so a row whose id no longer parses can still be removed rather
/// than block the orphan sweep that keeps finding it.
pub(super) fn erase(conn: &Connection, agent: AgentId, stored_id: &str) -> Result<bool, Error> {
    let key = params![agent.0, stored_id];
    conn.prepare_cached("DELETE FROM sensitive_values WHERE agent_id = ?1 AND end_user_id = ?2")?
        .execute(key)?;
    conn.prepare_cached(
        "UPDATE conversations SET end_user_id = NULL WHERE agent_id = ?1 AND end_user_id = ?2",
    )?
    .execute(key)?;
    let deleted = conn
        .prepare_cached("DELETE FROM end_users WHERE agent_id = ?1 AND id = ?2")?
        .execute(key)?;
    Ok(deleted == 1)
}
