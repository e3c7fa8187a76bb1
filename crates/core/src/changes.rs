//! Turning a request into checked changes, applying them to a user, and
//! telling which changes are worth an `v1.end_user.updated` event.

use std::collections::BTreeSet;

use crate::agent::AgentId;
use crate::end_user::EndUser;
use crate::error::FieldError;
use crate::external_id::ExternalId;
use crate::id::EndUserId;
use crate::metadata::{Metadata, MetadataPatch};
use crate::sensitive::SensitivePatch;
use crate::time::Timestamp;
use crate::wire::{CreateEndUserRequest, Patch, ProfileRequest, UpdateEndUserRequest};
use crate::{AvatarUrl, Email, LanguageTag, ProfileText};

/// Metadata keys that channels rewrite all the time (browser, device, ...):
/// changing only these emits no `v1.end_user.updated`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolatileKeys {
    exact: BTreeSet<String>,
    prefixes: Vec<String>,
}

impl VolatileKeys {
    /// The keys named by the contract; `sunshine_*` is a prefix.
    pub const DEFAULT: &'static [&'static str] = &[
        "ip_address",
        "user_agent",
        "browser",
        "browser_version",
        "device",
        "introshown",
        "initialurl",
        "last_answer_id",
        "last_question_asked",
        "channel_last_seen",
        "channel_active",
        "channel_status",
        "sunshine_*",
    ];

    /// Builds the list from names; a name ending in `*` matches every key
    /// that starts with the rest of it.
    pub fn new<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> Self {
        let mut exact = BTreeSet::new();
        let mut prefixes = Vec::new();
        for name in names {
            let name = name.as_ref();
            match name.strip_suffix('*') {
                Some(prefix) => prefixes.push(prefix.to_owned()),
                None => {
                    exact.insert(name.to_owned());
                }
            }
        }
        Self { exact, prefixes }
    }

    pub fn contains(&self, key: &str) -> bool {
        self.exact.contains(key) || self.prefixes.iter().any(|p| key.starts_with(p.as_str()))
    }
}

impl Default for VolatileKeys {
    fn default() -> Self {
        Self::new(Self::DEFAULT)
    }
}

/// The rules that depend on configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfilePolicy {
    pub max_metadata_bytes: usize,
    pub volatile_keys: VolatileKeys,
}

impl Default for ProfilePolicy {
    fn default() -> Self {
        Self {
            max_metadata_bytes: 10_240,
            volatile_keys: VolatileKeys::default(),
        }
    }
}

/// Checked changes to the visible profile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileChanges {
    pub first_name: Patch<ProfileText>,
    pub last_name: Patch<ProfileText>,
    pub display_name: Patch<ProfileText>,
    pub avatar: Patch<AvatarUrl>,
    pub email: Patch<Email>,
    pub language: Patch<LanguageTag>,
    pub metadata: MetadataPatch,
}

/// Everything one create or update request asks for, every rule checked
/// except the ones that need the stored user (metadata size, uniqueness).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndUserChanges {
    pub external_id: Patch<ExternalId>,
    pub profile: ProfileChanges,
    /// `None` when the request carried no `sensitive_metadata`.
    pub sensitive: Option<SensitivePatch>,
}

impl EndUserChanges {
    /// Reads a `POST` body: a merge patch applied to a blank user, plus the
    /// rule that a sensitive key may not also be a metadata key.
    pub fn from_create(request: CreateEndUserRequest) -> Result<Self, FieldError> {
        let external_id = match request.external_id {
            Patch::Value(raw) => {
                Patch::Value(ExternalId::parse(&raw).map_err(|e| e.at("external_id"))?)
            }
            Patch::Absent | Patch::Null => Patch::Absent,
        };
        let (profile, sensitive) = match request.profile {
            Patch::Value(profile) => parse_profile(profile)?,
            Patch::Absent | Patch::Null => (ProfileChanges::default(), None),
        };
        if let Some(sensitive) = &sensitive {
            let assigned: BTreeSet<&str> = profile.metadata.assigned_keys().collect();
            if let Some((key, _)) = sensitive
                .entries()
                .find(|(k, _)| assigned.contains(k.as_str()))
            {
                return Err(
                    FieldError::new("must not also be a key of profile.metadata")
                        .at(key.as_str())
                        .at("fields")
                        .at("sensitive_metadata")
                        .at("profile"),
                );
            }
        }
        Ok(Self {
            external_id,
            profile,
            sensitive,
        })
    }

    /// Reads a `PATCH` body; `profile` is required.
    pub fn from_update(request: UpdateEndUserRequest) -> Result<Self, FieldError> {
        let external_id = request
            .external_id
            .try_map(|raw| ExternalId::parse(&raw))
            .map_err(|e| e.at("external_id"))?;
        let (profile, sensitive) = match request.profile {
            Patch::Value(profile) => parse_profile(profile)?,
            Patch::Absent => return Err(FieldError::at_path("profile", "is required")),
            Patch::Null => return Err(FieldError::at_path("profile", "must be an object")),
        };
        Ok(Self {
            external_id,
            profile,
            sensitive,
        })
    }
}

fn parse_profile(
    raw: ProfileRequest,
) -> Result<(ProfileChanges, Option<SensitivePatch>), FieldError> {
    if !raw.system_properties.is_absent() {
        return Err(FieldError::at_path(
            "profile.system_properties",
            "is read-only: the server sets it",
        ));
    }
    let at = |name: &'static str| move |e: FieldError| e.at(name).at("profile");
    let changes = ProfileChanges {
        first_name: raw
            .first_name
            .try_map(ProfileText::parse)
            .map_err(at("first_name"))?,
        last_name: raw
            .last_name
            .try_map(ProfileText::parse)
            .map_err(at("last_name"))?,
        display_name: raw
            .display_name
            .try_map(ProfileText::parse)
            .map_err(at("display_name"))?,
        avatar: raw
            .avatar
            .try_map(|s| AvatarUrl::parse(&s))
            .map_err(at("avatar"))?,
        email: raw
            .email
            .try_map(|s| Email::parse(&s))
            .map_err(at("email"))?,
        language: raw
            .language
            .try_map(|s| LanguageTag::parse(&s))
            .map_err(at("language"))?,
        metadata: MetadataPatch::parse(raw.metadata).map_err(at("metadata"))?,
    };
    let sensitive = match raw.sensitive_metadata {
        Patch::Value(request) => Some(
            SensitivePatch::parse(request.fields)
                .map_err(|e| e.at("fields").at("sensitive_metadata").at("profile"))?,
        ),
        Patch::Absent | Patch::Null => None,
    };
    Ok((changes, sensitive))
}

/// What applying changes did to a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Change {
    /// Something the API shows changed, so the user was stored anew
    /// (`updated_at` moved, `version` grew).
    pub stored: bool,
    /// A change integrators subscribe to: `v1.end_user.updated` is due.
    pub notify: bool,
}

fn assign<T: Clone>(field: &mut Option<T>, patch: &Patch<T>) {
    match patch {
        Patch::Absent => {}
        Patch::Null => *field = None,
        Patch::Value(value) => *field = Some(value.clone()),
    }
}

/// Whether two metadata maps differ in a key that is not volatile.
fn metadata_differs(before: &Metadata, after: &Metadata, volatile: &VolatileKeys) -> bool {
    let changed_or_removed = before
        .iter()
        .any(|(k, v)| after.get(k) != Some(v) && !volatile.contains(k));
    let added = after
        .iter()
        .any(|(k, _)| !before.contains_key(k) && !volatile.contains(k));
    changed_or_removed || added
}

impl EndUser {
    /// A new user: the changes applied to a blank profile, at version 1.
    pub fn create(
        agent_id: AgentId,
        end_user_id: EndUserId,
        changes: &EndUserChanges,
        now: Timestamp,
        policy: &ProfilePolicy,
    ) -> Result<Self, FieldError> {
        let mut user = Self::blank(agent_id, end_user_id, now);
        user.apply(changes, now, policy)?;
        user.version = 1;
        Ok(user)
    }

    /// Applies checked changes (sensitive values aside: those are stored
    /// apart). On error the user is left as it was.
    pub fn apply(
        &mut self,
        changes: &EndUserChanges,
        now: Timestamp,
        policy: &ProfilePolicy,
    ) -> Result<Change, FieldError> {
        let mut next = self.clone();
        assign(&mut next.external_id, &changes.external_id);
        let p = &changes.profile;
        assign(&mut next.profile.first_name, &p.first_name);
        assign(&mut next.profile.last_name, &p.last_name);
        assign(&mut next.profile.display_name, &p.display_name);
        assign(&mut next.profile.avatar, &p.avatar);
        assign(&mut next.profile.email, &p.email);
        assign(&mut next.profile.language, &p.language);
        p.metadata.apply_to(&mut next.profile.metadata);

        let size = next.profile.metadata.serialized_len();
        if size > policy.max_metadata_bytes {
            return Err(FieldError::at_path(
                "profile.metadata",
                format!(
                    "must be at most {} bytes when serialized (would be {size})",
                    policy.max_metadata_bytes
                ),
            ));
        }

        let (before, after) = (&self.profile, &next.profile);
        let notify = self.external_id != next.external_id
            || before.first_name != after.first_name
            || before.last_name != after.last_name
            || before.display_name != after.display_name
            || before.avatar != after.avatar
            || before.email != after.email
            || before.language != after.language
            || metadata_differs(&before.metadata, &after.metadata, &policy.volatile_keys);
        let stored = notify || self.profile.metadata != next.profile.metadata;
        if stored {
            next.updated_at = now;
            next.version += 1;
            *self = next;
        }
        Ok(Change { stored, notify })
    }
}

#[cfg(test)]
mod tests;
