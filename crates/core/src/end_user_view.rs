//! An end user as the API shows it, borrowed: the one shape the JSON
//! writer reads, whether the user is an [`EndUser`] in memory or a row
//! that a store has just read.
//!
//! Answering `GET /v2/end-users/{id}` from a row through an [`EndUser`]
//! copies every text into a `String` of its own and parses the stored
//! metadata into a map, only to write them all out again and drop them.
//! A store can instead fill a view with the row's own text and write the
//! answer at once; [`EndUser`] writes itself through the same view, so
//! there is one layout, not two that could drift apart.

use crate::end_user::EndUser;
use crate::id::IdText;
use crate::json::WriteJson;
use crate::time::Timestamp;

/// The fields the API shows of a user, in the order it shows them.
#[derive(Clone, Copy)]
pub struct EndUserView<'a> {
    pub end_user_id: IdText,
    pub external_id: Option<&'a str>,
    pub first_name: Option<&'a str>,
    pub last_name: Option<&'a str>,
    pub display_name: Option<&'a str>,
    pub avatar: Option<&'a str>,
    pub email: Option<&'a str>,
    pub language: Option<&'a str>,
    /// The metadata object: a [`crate::Metadata`], or its stored text.
    pub metadata: &'a dyn WriteJson,
    pub sunshine_user_id: Option<&'a str>,
    pub last_conversation_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl EndUser {
    /// The user as the API shows it.
    pub fn view(&self) -> EndUserView<'_> {
        let p = &self.profile;
        EndUserView {
            end_user_id: self.end_user_id.text(),
            external_id: self.external_id.as_ref().map(|v| v.as_str()),
            first_name: p.first_name.as_ref().map(|v| v.as_str()),
            last_name: p.last_name.as_ref().map(|v| v.as_str()),
            display_name: p.display_name.as_ref().map(|v| v.as_str()),
            avatar: p.avatar.as_ref().map(|v| v.as_str()),
            email: p.email.as_ref().map(|v| v.as_str()),
            language: p.language.as_ref().map(|v| v.as_str()),
            metadata: &p.metadata,
            sunshine_user_id: p.system_properties.sunshine_user_id.as_deref(),
            last_conversation_at: p.system_properties.last_conversation_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// Metadata as a store keeps it: the JSON object [`crate::Metadata::to_json`]
/// wrote, written out again as it is. (Text the server did not write, with
/// keys out of order or repeated, say, would be answered as it was stored,
/// where reading it into a map would sort the keys and keep the last of a
/// repeated one.)
#[derive(Debug, Clone, Copy)]
pub struct StoredMetadata<'a>(&'a str);

impl<'a> StoredMetadata<'a> {
    /// The stored text, if [`crate::Metadata::from_json`] would read it: a
    /// damaged value must fail the read, not reach a client as broken
    /// JSON or as values the contract does not allow. The check builds
    /// nothing; reading the metadata would build the whole map.
    pub fn checked(stored: &'a str) -> Option<Self> {
        crate::Metadata::is_readable(stored).then_some(Self(stored))
    }
}

impl WriteJson for StoredMetadata<'_> {
    fn write_json(&self, out: &mut String) {
        out.push_str(self.0);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::Metadata;

    proptest! {
        #[test]
        fn a_view_with_stored_metadata_writes_what_the_user_writes(
            user in crate::json::tests::end_user(),
        ) {
            let stored = user.profile.metadata.to_json();
            let metadata = StoredMetadata::checked(&stored).unwrap();
            let view = EndUserView { metadata: &metadata, ..user.view() };
            prop_assert_eq!(view.to_json_string(0), serde_json::to_string(&user).unwrap());
        }
    }

    #[test]
    fn stored_metadata_is_written_as_stored_and_only_if_it_is_an_object() {
        for stored in [
            r#"{}"#,
            r#"{"n":1,"plan":"pro","ok":true,"é":"\"q\""}"#,
            r#"{"min":-9223372036854775808,"max":9223372036854775807}"#,
        ] {
            assert!(
                Metadata::from_json(stored).is_ok(),
                "{stored:?} does not read"
            );
            let checked = StoredMetadata::checked(stored).expect(stored);
            assert_eq!(checked.to_json_string(0), stored);
        }
        for damaged in [
            "",
            "{",
            r#"{"n":1"#,
            r#"{"n":1}}"#,
            r#"{"n":1} x"#,
            "[1]",
            "null",
            r#""text""#,
            "7",
            r#"{"n":1.5}"#,
            r#"{"n":null}"#,
            r#"{"n":[1]}"#,
            r#"{"n":{"m":1}}"#,
            r#"{"n":9223372036854775808}"#,
        ] {
            assert!(Metadata::from_json(damaged).is_err(), "{damaged:?} reads");
            assert!(
                StoredMetadata::checked(damaged).is_none(),
                "{damaged:?} was taken for metadata"
            );
        }
    }

    #[test]
    fn metadata_as_stored_reads_back_as_stored() {
        let metadata: Metadata = Metadata::from_json(r#"{"b":"x\ny","a":-3,"c":false}"#).unwrap();
        let stored = metadata.to_json();
        let checked = StoredMetadata::checked(&stored).unwrap();
        assert_eq!(checked.to_json_string(0), metadata.to_json_string(0));
    }
}
