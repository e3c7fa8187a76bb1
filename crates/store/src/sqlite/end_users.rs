//! End-user rows.

use endusers_core::{
    AgentId, AvatarUrl, Email, EndUser, EndUserId, ExternalId, FieldError, LanguageTag, Metadata,
    Profile, ProfileText, SystemProperties, Timestamp,
};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, params, params_from_iter};

use crate::{Applied, Created, StoreError};

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

/// The columns every update sets, numbered as in [`column_values`]: all but
/// the key and the two indexed ones (`external_id` ?3, `orphan_until` ?16).
macro_rules! profile_assignments {
    () => {
        "first_name = ?4, last_name = ?5, display_name = ?6, avatar = ?7, email = ?8,
         language = ?9, metadata = ?10, sunshine_user_id = ?11, last_conversation_at = ?12,
         version = ?13, created_at = ?14, updated_at = ?15"
    };
}

/// Rewrites every column but the key, numbered as in [`column_values`].
macro_rules! update_all {
    () => {
        concat!(
            "UPDATE end_users SET external_id = ?3, orphan_until = ?16, ",
            profile_assignments!(),
            " WHERE agent_id = ?1 AND id = ?2"
        )
    };
}

/// [`update_all`] for the usual change, which leaves `external_id` and
/// `orphan_until` as they were. SQLite rewrites the index entry of every
/// indexed column a statement sets, even to the value it had, so setting
/// `external_id` to itself wrote a random page of its index on every update
/// of a user who has one: two pages written per update instead of one
/// (counted in the log). The two keep their numbers (?3, ?16) as guards,
/// which hold by construction: see [`update_statement`].
macro_rules! update_profile {
    () => {
        concat!(
            "UPDATE end_users SET ",
            profile_assignments!(),
            " WHERE agent_id = ?1 AND id = ?2 AND external_id IS ?3 AND orphan_until IS ?16"
        )
    };
}

/// The condition that the row is still exactly as it was read: every
/// column but the key equal to ?17..?30, the read row's values in
/// [`columns`] order from `external_id` on.
macro_rules! as_read {
    () => {
        " AND external_id IS ?17 AND first_name IS ?18 AND last_name IS ?19
          AND display_name IS ?20 AND avatar IS ?21 AND email IS ?22 AND language IS ?23
          AND metadata IS ?24 AND sunshine_user_id IS ?25 AND last_conversation_at IS ?26
          AND version IS ?27 AND created_at IS ?28 AND updated_at IS ?29
          AND orphan_until IS ?30"
    };
}

const UPDATE: &str = update_all!();
const UPDATE_PROFILE: &str = update_profile!();
const UPDATE_AS_READ: &str = concat!(update_all!(), as_read!());
const UPDATE_PROFILE_AS_READ: &str = concat!(update_profile!(), as_read!());

fn text(value: Option<&str>) -> ToSqlOutput<'_> {
    ToSqlOutput::Borrowed(value.map_or(ValueRef::Null, |v| ValueRef::Text(v.as_bytes())))
}

fn integer(value: Option<i64>) -> ToSqlOutput<'static> {
    ToSqlOutput::Borrowed(value.map_or(ValueRef::Null, ValueRef::Integer))
}

/// The user's columns in [`columns`] order, as SQL values borrowed from
/// the user, from `id` (its id as text) and from `metadata` (its metadata
/// as stored JSON): bound as ?1..?16 by every statement that writes a row.
fn column_values<'a>(user: &'a EndUser, id: &'a str, metadata: &'a str) -> [ToSqlOutput<'a>; 16] {
    let p = &user.profile;
    [
        integer(Some(user.agent_id.0)),
        text(Some(id)),
        text(user.external_id.as_ref().map(ExternalId::as_str)),
        text(p.first_name.as_ref().map(ProfileText::as_str)),
        text(p.last_name.as_ref().map(ProfileText::as_str)),
        text(p.display_name.as_ref().map(ProfileText::as_str)),
        text(p.avatar.as_ref().map(AvatarUrl::as_str)),
        text(p.email.as_ref().map(Email::as_str)),
        text(p.language.as_ref().map(LanguageTag::as_str)),
        text(Some(metadata)),
        text(p.system_properties.sunshine_user_id.as_deref()),
        integer(
            p.system_properties
                .last_conversation_at
                .map(Timestamp::as_micros),
        ),
        integer(Some(user.version)),
        integer(Some(user.created_at.as_micros())),
        integer(Some(user.updated_at.as_micros())),
        integer(user.orphan_until.map(Timestamp::as_micros)),
    ]
}

/// Runs `sql` with the user's columns bound as ?1..?16 (see [`column_values`]).
fn write_row(conn: &Connection, sql: &str, user: &EndUser) -> rusqlite::Result<usize> {
    let (id, metadata) = (user.end_user_id.text(), user.profile.metadata.to_json());
    conn.prepare_cached(sql)?
        .execute(params_from_iter(&column_values(
            user,
            id.as_str(),
            &metadata,
        )))
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
) -> Result<Option<EndUser>, StoreError> {
    Ok(conn
        .prepare_cached(BY_EXTERNAL_ID)?
        .query_row(params![agent.0, external_id.as_str()], from_row)
        .optional()?)
}

pub(super) fn create(conn: &Connection, user: EndUser) -> Result<Created, StoreError> {
    if let Some(external_id) = &user.external_id
        && let Some(existing) = find_by_external_id(conn, user.agent_id, external_id)?
    {
        return Ok(Created::Existing(existing));
    }
    write_row(conn, INSERT, &user).map_err(|e| {
        if is_unique_violation(&e) {
            StoreError::Conflict("end_user_id")
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
) -> Result<Option<EndUser>, StoreError> {
    Ok(conn
        .prepare_cached(BY_ID)?
        .query_row(params![agent.0, id.text().as_str()], from_row)
        .optional()?)
}

pub(super) fn list(
    conn: &Connection,
    agent: AgentId,
    from: Option<EndUserId>,
    limit: usize,
) -> Result<Vec<EndUser>, StoreError> {
    let from = from.unwrap_or(EndUserId::MIN).text();
    let limit = super::sql_limit(limit);
    let mut stmt = conn.prepare_cached(PAGE)?;
    let users = stmt
        .query_map(params![agent.0, from.as_str(), limit], from_row)?
        .collect::<Result<_, _>>()?;
    Ok(users)
}

/// A user as read, with its metadata's JSON exactly as stored: what
/// [`write_if_unchanged`] finds the row still is, or not.
pub(super) struct Snapshot {
    pub(super) user: EndUser,
    stored_metadata: String,
}

pub(super) fn snapshot(
    conn: &Connection,
    agent: AgentId,
    id: EndUserId,
) -> Result<Option<Snapshot>, StoreError> {
    Ok(conn
        .prepare_cached(BY_ID)?
        .query_row(params![agent.0, id.text().as_str()], |row| {
            Ok(Snapshot {
                user: from_row(row)?,
                stored_metadata: row.get(9)?,
            })
        })
        .optional()?)
}

/// The statement that writes `after` over `before`: [`update_profile`]
/// when the two indexed columns are kept, which is what makes its guards
/// on them hold.
fn update_statement(before: &EndUser, after: &EndUser, as_read: bool) -> &'static str {
    let indexed_columns_kept =
        after.external_id == before.external_id && after.orphan_until == before.orphan_until;
    match (indexed_columns_kept, as_read) {
        (true, false) => UPDATE_PROFILE,
        (false, false) => UPDATE,
        (true, true) => UPDATE_PROFILE_AS_READ,
        (false, true) => UPDATE_AS_READ,
    }
}

/// Another user's external id is the one conflict an update can meet.
fn update_error(err: rusqlite::Error) -> StoreError {
    if is_unique_violation(&err) {
        StoreError::Conflict("external_id")
    } else {
        StoreError::from(err)
    }
}

/// Reads the user, changes it and writes it back, in the caller's
/// transaction.
pub(super) fn update(
    conn: &Connection,
    agent: AgentId,
    id: EndUserId,
    mutation: &(dyn Fn(&mut EndUser) -> Result<Applied, FieldError> + Send),
) -> Result<Option<(EndUser, Applied)>, StoreError> {
    let Some(before) = get(conn, agent, id)? else {
        return Ok(None);
    };
    let mut user = before.clone();
    let applied = mutation(&mut user)?;
    if applied.change.stored {
        let written = write_row(conn, update_statement(&before, &user, false), &user)
            .map_err(update_error)?;
        // The row was read in this transaction, so it is there and its
        // guards hold; anything else is a bug to report, not a lost update.
        if written != 1 {
            return Err(StoreError::Backend(format!(
                "an end-user update wrote {written} rows instead of 1"
            )));
        }
    }
    Ok(Some((user, applied)))
}

/// Writes `after` (whose metadata's JSON is `metadata`) over the row read
/// as `before`, if the row is still exactly that: every column compared,
/// so whichever statement changed it since, `false` says so and nothing
/// is written. Gone is changed too.
pub(super) fn write_if_unchanged(
    conn: &Connection,
    before: &Snapshot,
    after: &EndUser,
    metadata: &str,
) -> Result<bool, StoreError> {
    let id = after.end_user_id.text();
    let new = column_values(after, id.as_str(), metadata);
    let old = column_values(&before.user, id.as_str(), &before.stored_metadata);
    let written = conn
        .prepare_cached(update_statement(&before.user, after, true))?
        .execute(params_from_iter(new.iter().chain(&old[2..])))
        .map_err(update_error)?;
    Ok(written == 1)
}

/// Deletes a user with what hangs off it: its sensitive values, and its
/// link from conversations (which stay, with no user). Takes the id as
/// stored, so a row whose id no longer parses can still be removed rather
/// than block the orphan sweep that keeps finding it.
pub(super) fn erase(
    conn: &Connection,
    agent: AgentId,
    stored_id: &str,
) -> Result<bool, StoreError> {
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
