use serde_json::{Value, json};

use super::*;
use crate::agent::AgentId;
use crate::id::IdGenerator;

fn create(body: Value) -> Result<EndUserChanges, FieldError> {
    let request: CreateEndUserRequest =
        serde_json::from_value(body).map_err(|e| FieldError::new(e.to_string()))?;
    EndUserChanges::from_create(request)
}

fn update(body: Value) -> Result<EndUserChanges, FieldError> {
    let request: UpdateEndUserRequest =
        serde_json::from_value(body).map_err(|e| FieldError::new(e.to_string()))?;
    EndUserChanges::from_update(request)
}

fn user_with(body: Value) -> EndUser {
    let ids = IdGenerator::new();
    let id = ids.next(Timestamp::from_micros(1), 7);
    let user = EndUser::create(
        AgentId(1),
        id,
        &create(body).unwrap(),
        Timestamp::from_micros(1),
        &ProfilePolicy::default(),
    )
    .unwrap();
    assert_eq!((user.version, user.created_at), (1, user.updated_at));
    user
}

fn patch(user: &mut EndUser, body: Value) -> Change {
    user.apply(
        &update(body).unwrap(),
        Timestamp::from_micros(99),
        &ProfilePolicy::default(),
    )
    .unwrap()
}

#[test]
fn absent_fields_are_kept_and_null_clears() {
    let mut user = user_with(json!({"profile": {"first_name": "Maria", "last_name": "Santos"}}));
    let change = patch(&mut user, json!({"profile": {"last_name": null}}));
    assert_eq!(
        change,
        Change {
            stored: true,
            notify: true
        }
    );
    assert_eq!(
        user.profile.first_name.as_ref().map(ProfileText::as_str),
        Some("Maria")
    );
    assert_eq!(user.profile.last_name, None);
    assert_eq!(user.updated_at, Timestamp::from_micros(99));
    assert_eq!(user.version, 2);
}

#[test]
fn metadata_merges_per_key_and_null_removes() {
    let mut user =
        user_with(json!({"profile": {"metadata": {"plan": "pro", "seats": 4, "vip": true}}}));
    patch(
        &mut user,
        json!({"profile": {"metadata": {"seats": null, "region": "eu"}}}),
    );
    assert_eq!(
        user.profile.metadata.to_json(),
        r#"{"plan":"pro","region":"eu","vip":true}"#
    );
    patch(&mut user, json!({"profile": {"metadata": null}}));
    assert!(user.profile.metadata.is_empty());
}

#[test]
fn equal_values_change_nothing() {
    let mut user = user_with(json!({"profile": {"first_name": "Ada", "metadata": {"a": 1}}}));
    let before = user.clone();
    let change = patch(
        &mut user,
        json!({"profile": {"first_name": "Ada", "metadata": {"a": 1, "gone": null}}}),
    );
    assert_eq!(change, Change::default());
    assert_eq!(user, before);
}

#[test]
fn volatile_keys_are_stored_but_not_announced() {
    let mut user = user_with(json!({}));
    let change = patch(
        &mut user,
        json!({"profile": {"metadata": {"browser": "firefox", "sunshine_user_id": "x"}}}),
    );
    assert_eq!(
        change,
        Change {
            stored: true,
            notify: false
        }
    );
    let change = patch(
        &mut user,
        json!({"profile": {"metadata": {"browser": null, "plan": "pro"}}}),
    );
    assert_eq!(
        change,
        Change {
            stored: true,
            notify: true
        }
    );
}

#[test]
fn sensitive_only_changes_nothing_visible() {
    let mut user = user_with(json!({}));
    let change = patch(
        &mut user,
        json!({"profile": {"sensitive_metadata": {"fields": {"token": "t"}}}}),
    );
    assert_eq!(change, Change::default());
}

#[test]
fn external_id_changes_are_visible() {
    let mut user = user_with(json!({"external_id": "CRM-1"}));
    assert_eq!(
        user.external_id.as_ref().map(ExternalId::as_str),
        Some("crm-1")
    );
    assert!(patch(&mut user, json!({"external_id": null, "profile": {}})).notify);
    assert_eq!(user.external_id, None);
}

#[test]
fn metadata_size_is_checked_after_merging() {
    let policy = ProfilePolicy {
        max_metadata_bytes: 40,
        ..ProfilePolicy::default()
    };
    let mut user = user_with(json!({"profile": {"metadata": {"a": "0123456789"}}}));
    let changes = update(json!({"profile": {"metadata": {"b": "0123456789012345678"}}})).unwrap();
    let before = user.clone();
    let err = user
        .apply(&changes, Timestamp::from_micros(5), &policy)
        .unwrap_err();
    assert_eq!(err.path(), "profile.metadata");
    assert_eq!(user, before, "a refused change leaves the user as it was");
}

#[test]
fn errors_name_the_field() {
    let cases = [
        (json!({"profile": {"email": "nope"}}), "profile.email"),
        (
            json!({"profile": {"language": "en_US"}}),
            "profile.language",
        ),
        (json!({"profile": {"avatar": "ftp://x"}}), "profile.avatar"),
        (
            json!({"profile": {"first_name": "x".repeat(256)}}),
            "profile.first_name",
        ),
        (
            json!({"profile": {"metadata": {"plan": [1]}}}),
            "profile.metadata.plan",
        ),
        (
            json!({"profile": {"system_properties": {}}}),
            "profile.system_properties",
        ),
        (json!({"external_id": "a<b"}), "external_id"),
        (
            json!({"profile": {"sensitive_metadata": {"fields": {"bad key": 1}}}}),
            "profile.sensitive_metadata.fields.bad key",
        ),
    ];
    for (body, path) in cases {
        assert_eq!(create(body.clone()).unwrap_err().path(), path, "{body}");
    }
}

#[test]
fn create_refuses_sensitive_keys_that_are_also_metadata() {
    let err = create(json!({"profile": {"metadata": {"token": "a"}, "sensitive_metadata": {"fields": {"token": "b"}}}})).unwrap_err();
    assert_eq!(err.path(), "profile.sensitive_metadata.fields.token");
    // A metadata key being removed is not an overlap, and PATCH has no such rule.
    assert!(create(json!({"profile": {"metadata": {"token": null}, "sensitive_metadata": {"fields": {"token": "b"}}}})).is_ok());
    assert!(update(json!({"profile": {"metadata": {"token": "a"}, "sensitive_metadata": {"fields": {"token": "b"}}}})).is_ok());
}

#[test]
fn update_requires_a_profile_object() {
    assert_eq!(
        update(json!({})).unwrap_err().to_string(),
        "profile: is required"
    );
    assert_eq!(
        update(json!({"profile": null})).unwrap_err().to_string(),
        "profile: must be an object"
    );
    assert!(update(json!({"profile": {}})).is_ok());
}

#[test]
fn volatile_list_is_configurable() {
    let keys = VolatileKeys::new(["seen_at", "tmp_*"]);
    assert!(keys.contains("seen_at") && keys.contains("tmp_x") && !keys.contains("browser"));
    assert!(VolatileKeys::default().contains("sunshine_conversation_started"));
}
