//! JSON text written straight into a `String`, for what the server
//! writes most: an end user (every answer about one, every page of them,
//! every event about one) and its metadata (every stored profile).
//!
//! serde_json writes these through its general machinery, a separate
//! small write for each quote, colon and comma, and the user inside an
//! event through `#[serde(flatten)]`'s map serializer, which made it a
//! large part of every answer's and event's cost. Here each fixed piece (`,"last_name":`) is one copy and
//! a string without characters to escape is one more. The text goes into
//! a `String`: every piece is a `&str` or ASCII, so nothing is checked
//! again for UTF-8 afterwards.
//!
//! The text is byte for byte what serde_json writes for the same value:
//! the derived `Serialize` impls stay the definition of each shape, and
//! the tests hold the two together over arbitrary values.

use crate::end_user::EndUser;
use crate::end_user_view::EndUserView;
use crate::metadata::{Metadata, MetadataValue};
use crate::time::Timestamp;

/// Room for one end user's JSON text (about 400 bytes) or a small object
/// without growing: where an answer's buffer starts.
pub const ANSWER_CAPACITY: usize = 1024;

/// A value that can write itself as JSON text.
pub trait WriteJson {
    /// Appends the value's JSON text to `out`.
    fn write_json(&self, out: &mut String);

    /// The value's JSON text in a buffer of its own, with room for
    /// `capacity` bytes before it grows.
    fn to_json_string(&self, capacity: usize) -> String {
        let mut out = String::with_capacity(capacity);
        self.write_json(&mut out);
        out
    }
}

/// `"text"`, escaped as serde_json escapes: `"`, `\` and control
/// characters only, the common ones by their short forms.
pub fn string(out: &mut String, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(text.len() + 2);
    out.push('"');
    let mut rest = text;
    // What needs escaping is ASCII, so `at` and `at + 1` are character
    // boundaries.
    while let Some(at) = first_to_escape(rest.as_bytes()) {
        out.push_str(&rest[..at]);
        let byte = rest.as_bytes()[at];
        let short = match byte {
            b'"' => '"',
            b'\\' => '\\',
            b'\n' => 'n',
            b'\r' => 'r',
            b'\t' => 't',
            0x08 => 'b',
            0x0c => 'f',
            _ => '\0',
        };
        if short == '\0' {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        } else {
            out.push('\\');
            out.push(short);
        }
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
    out.push('"');
}

/// Whether JSON needs `byte` escaped.
fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

/// Where the first byte JSON needs escaped is. Eight bytes are looked at
/// in one step: most text has nothing to escape, and this runs over every
/// string of every answer.
fn first_to_escape(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Not zero exactly when some byte of `word` is zero (which byte the
    // high bits point to is exact only for the first, so the chunk is then
    // looked at byte by byte).
    let has_zero_byte = |word: u64| word.wrapping_sub(ONES) & !word & HIGHS;
    let mut chunks = bytes.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        // Bytes below 0x20 are those whose top three bits are all zero.
        let control = has_zero_byte(word & (0xe0 * ONES));
        let quote = has_zero_byte(word ^ (u64::from(b'"') * ONES));
        let backslash = has_zero_byte(word ^ (u64::from(b'\\') * ONES));
        if control | quote | backslash != 0
            && let Some(at) = chunk.iter().position(|&byte| needs_escape(byte))
        {
            return Some(offset + at);
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&byte| needs_escape(byte))
        .map(|at| offset + at)
}

/// `items`, each written by `write`, separated by commas (the inside of
/// an array or an object).
pub fn separated<I: IntoIterator>(
    out: &mut String,
    items: I,
    mut write: impl FnMut(&mut String, I::Item),
) {
    for (n, item) in items.into_iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        write(out, item);
    }
}

/// A string, or `null`.
pub fn optional_string(out: &mut String, text: Option<&str>) {
    match text {
        Some(text) => string(out, text),
        None => out.push_str("null"),
    }
}

/// An integer in decimal.
pub fn integer(out: &mut String, value: i64) {
    out.push_str(itoa::Buffer::new().format(value));
}

fn optional_timestamp(out: &mut String, at: Option<Timestamp>) {
    match at {
        Some(at) => at.write_json(out),
        None => out.push_str("null"),
    }
}

/// A timestamp as [`Timestamp::to_rfc3339_millis`] has it, as a string.
pub fn timestamp_millis(out: &mut String, at: Timestamp) {
    let mut buf = [0u8; 32];
    timestamp_text(out, at.rfc3339_millis_into(&mut buf), || {
        at.to_rfc3339_millis()
    });
}

impl WriteJson for Timestamp {
    fn write_json(&self, out: &mut String) {
        let mut buf = [0u8; 32];
        timestamp_text(out, self.rfc3339_into(&mut buf), || self.to_string());
    }
}

/// A timestamp's text as a string: written as it is when the digit-by-digit
/// form exists (digits and punctuation, nothing to escape), otherwise the
/// general formatting's, escaped.
fn timestamp_text(out: &mut String, fast: Option<&str>, general: impl FnOnce() -> String) {
    match fast {
        Some(text) => {
            out.push('"');
            out.push_str(text);
            out.push('"');
        }
        None => string(out, &general()),
    }
}

impl WriteJson for MetadataValue {
    fn write_json(&self, out: &mut String) {
        match self {
            Self::String(text) => string(out, text),
            Self::Integer(value) => integer(out, *value),
            Self::Boolean(true) => out.push_str("true"),
            Self::Boolean(false) => out.push_str("false"),
        }
    }
}

impl WriteJson for Metadata {
    fn write_json(&self, out: &mut String) {
        out.push('{');
        separated(out, self.iter(), |out, (key, value)| {
            string(out, key);
            out.push(':');
            value.write_json(out);
        });
        out.push('}');
    }
}

impl EndUserView<'_> {
    /// The user's fields as the API shows them, without the braces around
    /// them, so that an event can add its own after them.
    pub(crate) fn write_json_fields(&self, out: &mut String) {
        // The id's text is lowercase hex: nothing to escape.
        out.push_str("\"end_user_id\":\"");
        out.push_str(self.end_user_id.as_str());
        out.push_str("\",\"external_id\":");
        optional_string(out, self.external_id);
        let texts: [(&str, Option<&str>); 6] = [
            (",\"profile\":{\"first_name\":", self.first_name),
            (",\"last_name\":", self.last_name),
            (",\"display_name\":", self.display_name),
            (",\"avatar\":", self.avatar),
            (",\"email\":", self.email),
            (",\"language\":", self.language),
        ];
        for (key, text) in texts {
            out.push_str(key);
            optional_string(out, text);
        }
        out.push_str(",\"metadata\":");
        self.metadata.write_json(out);
        out.push_str(",\"system_properties\":{\"sunshine_user_id\":");
        optional_string(out, self.sunshine_user_id);
        out.push_str(",\"last_conversation_at\":");
        optional_timestamp(out, self.last_conversation_at);
        // System properties, then the profile, end here.
        out.push_str("}},\"created_at\":");
        self.created_at.write_json(out);
        out.push_str(",\"updated_at\":");
        self.updated_at.write_json(out);
    }
}

impl WriteJson for EndUserView<'_> {
    fn write_json(&self, out: &mut String) {
        out.push('{');
        self.write_json_fields(out);
        out.push('}');
    }
}

impl EndUser {
    /// [`EndUserView::write_json_fields`] for this user.
    pub(crate) fn write_json_fields(&self, out: &mut String) {
        self.view().write_json_fields(out);
    }
}

impl WriteJson for EndUser {
    fn write_json(&self, out: &mut String) {
        out.push('{');
        self.write_json_fields(out);
        out.push('}');
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{AgentId, AvatarUrl, Email, EndUserId, ExternalId, LanguageTag, ProfileText};

    /// Text with what needs escaping in it: quotes, backslashes, every
    /// control character, and characters beyond ASCII.
    fn text() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                4 => proptest::char::range('a', 'z'),
                1 => proptest::char::range('\u{0}', '\u{1f}'),
                1 => Just('"'),
                1 => Just('\\'),
                1 => Just('/'),
                1 => Just('\u{7f}'),
                1 => any::<char>(),
            ],
            0..24,
        )
        .prop_map(|chars| chars.into_iter().collect())
    }

    fn timestamp() -> impl Strategy<Value = Timestamp> {
        // Years from about 1700 to 2300, and a few beyond 9999, which
        // take the general formatting.
        prop_oneof![
            9 => -8_000_000_000_000_000i64..10_000_000_000_000_000,
            1 => 253_402_300_800_000_000i64..253_402_300_800_000_000 + 1_000_000_000_000,
        ]
        .prop_map(Timestamp::from_micros)
    }

    fn metadata() -> impl Strategy<Value = Metadata> {
        proptest::collection::vec(
            (
                text(),
                prop_oneof![
                    text().prop_map(MetadataValue::String),
                    any::<i64>().prop_map(MetadataValue::Integer),
                    any::<bool>().prop_map(MetadataValue::Boolean),
                ],
            ),
            0..6,
        )
        .prop_map(|entries| {
            let mut metadata = Metadata::default();
            for (key, value) in entries {
                metadata.insert(key, value);
            }
            metadata
        })
    }

    /// Any end user, with every optional field both present and absent.
    pub(crate) fn end_user() -> impl Strategy<Value = EndUser> {
        (
            any::<u64>(),
            proptest::option::of(text()),
            proptest::collection::vec(proptest::option::of(text()), 6),
            metadata(),
            proptest::option::of(text()),
            proptest::option::of(timestamp()),
            (timestamp(), timestamp(), any::<i64>()),
        )
            .prop_map(
                |(id, external_id, texts, metadata, sunshine, last_conversation, times)| {
                    let (created_at, updated_at, version) = times;
                    let mut user = EndUser::blank(
                        AgentId(1),
                        EndUserId::parse(&format!("{:024x}", u128::from(id) << 16 | 0x5)).unwrap(),
                        created_at,
                    );
                    user.external_id = external_id.map(ExternalId::from_stored);
                    let profile = &mut user.profile;
                    profile.first_name = texts[0].clone().map(ProfileText::from_stored);
                    profile.last_name = texts[1].clone().map(ProfileText::from_stored);
                    profile.display_name = texts[2].clone().map(ProfileText::from_stored);
                    profile.avatar = texts[3].clone().map(AvatarUrl::from_stored);
                    profile.email = texts[4].clone().map(Email::from_stored);
                    profile.language = texts[5].clone().map(LanguageTag::from_stored);
                    profile.metadata = metadata;
                    profile.system_properties.sunshine_user_id = sunshine;
                    profile.system_properties.last_conversation_at = last_conversation;
                    user.updated_at = updated_at;
                    user.version = version;
                    user
                },
            )
    }

    fn written<T: WriteJson>(value: &T) -> String {
        value.to_json_string(0)
    }

    proptest! {
        #[test]
        fn strings_are_escaped_as_serde_json_escapes_them(text in text()) {
            let mut out = String::new();
            string(&mut out, &text);
            prop_assert_eq!(out, serde_json::to_string(&text).unwrap());
        }

        #[test]
        fn an_end_user_is_written_as_serde_json_writes_it(user in end_user()) {
            prop_assert_eq!(written(&user), serde_json::to_string(&user).unwrap());
        }

        #[test]
        fn metadata_is_written_as_serde_json_writes_it(metadata in metadata()) {
            prop_assert_eq!(written(&metadata), serde_json::to_string(&metadata).unwrap());
        }

        #[test]
        fn long_strings_are_escaped_as_serde_json_escapes_them(
            parts in proptest::collection::vec(text(), 0..8),
        ) {
            // Longer than one eight-byte step, with what needs escaping at
            // every offset within one.
            let text = parts.concat();
            let mut out = String::new();
            string(&mut out, &text);
            prop_assert_eq!(out, serde_json::to_string(&text).unwrap());
        }

        #[test]
        fn timestamps_to_the_millisecond_are_written_as_serde_json_writes_them(at in timestamp()) {
            let mut out = String::new();
            timestamp_millis(&mut out, at);
            prop_assert_eq!(
                out,
                serde_json::to_string(&at.to_rfc3339_millis()).unwrap()
            );
        }

        #[test]
        fn integers_are_written_as_serde_json_writes_them(value in any::<i64>()) {
            let mut out = String::new();
            integer(&mut out, value);
            prop_assert_eq!(out, serde_json::to_string(&value).unwrap());
        }
    }

    #[test]
    fn every_control_character_and_the_extremes_are_written_as_serde_json_writes_them() {
        let controls: String = ('\u{0}'..='\u{1f}')
            .chain(['"', '\\', '\u{7f}', 'é'])
            .collect();
        let mut out = String::new();
        string(&mut out, &controls);
        assert_eq!(out, serde_json::to_string(&controls).unwrap());
        for value in [i64::MIN, -1, 0, i64::MAX] {
            let mut out = String::new();
            integer(&mut out, value);
            assert_eq!(out, value.to_string());
        }
        for at in [
            Timestamp::from_micros(0),
            Timestamp::from_micros(-62_167_219_200_000_000 - 1),
            Timestamp::from_micros(253_402_300_800_000_000),
        ] {
            assert_eq!(written(&at), serde_json::to_string(&at).unwrap());
        }
    }
}
