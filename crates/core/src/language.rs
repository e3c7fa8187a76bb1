//! BCP 47 language tags, checked for well-formedness (RFC 5646 section 2.1).
//!
//! Only the syntax is checked, not whether the subtags are registered with
//! IANA: `qq-Zzzz` is well-formed even though nobody speaks it. The caller's
//! spelling is kept, since tags are case-insensitive (RFC 5646 section 2.1.1).

use serde::Serialize;

use crate::error::FieldError;

const MESSAGE: &str = "must be a well-formed BCP 47 language tag (for example en, en-US, pt-BR)";

/// RFC 5646 section 2.2.9 sets no upper limit on a tag's length; this one
/// keeps stored values bounded and is far above any real tag.
const MAX_LEN: usize = 255;

/// The `grandfathered` production of RFC 5646 section 2.1: tags registered
/// before RFC 4646 that the regular grammar does not (or not fully) cover.
#[rustfmt::skip]
const GRANDFATHERED: [&str; 26] = [
    // irregular
    "en-GB-oed", "i-ami", "i-bnn", "i-default", "i-enochian", "i-hak", "i-klingon", "i-lux",
    "i-mingo", "i-navajo", "i-pwn", "i-tao", "i-tay", "i-tsu", "sgn-BE-FR", "sgn-BE-NL",
    "sgn-CH-DE",
    // regular
    "art-lojban", "cel-gaulish", "no-bok", "no-nyn", "zh-guoyu", "zh-hakka", "zh-min",
    "zh-min-nan", "zh-xiang",
];

/// A well-formed BCP 47 language tag such as `en`, `pt-BR` or `zh-Hant-TW`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct LanguageTag(String);

crate::string_newtype!(LanguageTag);

impl LanguageTag {
    /// Accepts `raw` if it is a well-formed tag, keeping its spelling as given.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        if is_well_formed(raw) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(FieldError::new(MESSAGE))
        }
    }
}

fn is_well_formed(tag: &str) -> bool {
    if tag.is_empty() || tag.len() > MAX_LEN {
        return false;
    }
    if GRANDFATHERED.iter().any(|g| g.eq_ignore_ascii_case(tag)) {
        return true;
    }
    let subtags: Vec<&str> = tag.split('-').collect();
    // Every subtag in every production is 1 to 8 ASCII alphanumerics, so this
    // also rejects empty subtags (leading, trailing or doubled hyphens),
    // underscores and non-ASCII text up front.
    if !subtags
        .iter()
        .all(|s| (1..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric()))
    {
        return false;
    }
    if is_x(subtags[0]) {
        return is_privateuse(&subtags);
    }
    is_langtag(&subtags)
}

/// The `langtag` production. The subtag kinds that may follow each other are
/// told apart by length and character class alone, so a greedy left-to-right
/// scan never has to backtrack.
fn is_langtag(subtags: &[&str]) -> bool {
    let n = subtags.len();
    let language = subtags[0];
    if language.len() < 2 || !is_alpha(language) {
        return false;
    }
    let mut i = 1;
    // extlang = 3ALPHA *2("-" 3ALPHA), only after a 2- or 3-letter language.
    if language.len() <= 3 {
        let start = i;
        while i < n && i - start < 3 && subtags[i].len() == 3 && is_alpha(subtags[i]) {
            i += 1;
        }
    }
    // script = 4ALPHA
    if i < n && subtags[i].len() == 4 && is_alpha(subtags[i]) {
        i += 1;
    }
    // region = 2ALPHA / 3DIGIT
    if i < n && is_region(subtags[i]) {
        i += 1;
    }
    // variant = 5*8alphanum / (DIGIT 3alphanum)
    while i < n && is_variant(subtags[i]) {
        i += 1;
    }
    // extension = singleton 1*("-" (2*8alphanum))
    while i < n && subtags[i].len() == 1 && !is_x(subtags[i]) {
        i += 1;
        let start = i;
        while i < n && subtags[i].len() >= 2 {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    if i < n && is_x(subtags[i]) {
        return is_privateuse(&subtags[i..]);
    }
    i == n
}

/// privateuse = "x" 1*("-" (1*8alphanum)); subtag lengths are already checked.
fn is_privateuse(subtags: &[&str]) -> bool {
    subtags.len() >= 2
}

fn is_x(subtag: &str) -> bool {
    subtag.eq_ignore_ascii_case("x")
}

fn is_alpha(subtag: &str) -> bool {
    subtag.bytes().all(|b| b.is_ascii_alphabetic())
}

fn is_region(subtag: &str) -> bool {
    (subtag.len() == 2 && is_alpha(subtag))
        || (subtag.len() == 3 && subtag.bytes().all(|b| b.is_ascii_digit()))
}

fn is_variant(subtag: &str) -> bool {
    (5..=8).contains(&subtag.len()) || (subtag.len() == 4 && subtag.as_bytes()[0].is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[rustfmt::skip]
    const WELL_FORMED: &[&str] = &[
        "en", "en-US", "pt-BR", "zh-Hant-TW", "es-419", "sr-Latn-RS", "de-CH-1901",
        "en-US-x-twain", "x-private", "i-klingon", "zh-yue-HK", "EN-us", "en-GB-oed",
        "SGN-be-fr", "zh-min-nan", "de-DE-u-co-phonebk", "en-a-bbb-x-a-ccc", "zh-cmn-Hans-CN",
        "qaa-Qaaa-QM-x-southern", "abcdefgh",
    ];

    #[rustfmt::skip]
    const MALFORMED: &[&str] = &[
        "", "e", "en-", "-en", "en--US", "en_US", "english-language-tag", "en-US-x", "123",
        "en-a", "toolongsubtag", "x", "en-a-x-foo", "de-1-2", "en-US-oed", "ab-abc-abc-abc-abc",
        "abcd-abc", "fr-ç", "en US", "en-x-a_b",
    ];

    #[test]
    fn accepts_well_formed_tags() {
        for &tag in WELL_FORMED {
            let parsed = LanguageTag::parse(tag).unwrap_or_else(|_| panic!("{tag} should parse"));
            assert_eq!(parsed.as_str(), tag);
            assert_eq!(parsed.to_string(), tag);
        }
    }

    #[test]
    fn rejects_malformed_tags_without_echoing_them() {
        // Well-formed but for its length.
        let too_long = format!("en{}", "-abcdefgh".repeat(30));
        for tag in MALFORMED.iter().copied().chain([too_long.as_str()]) {
            let err = LanguageTag::parse(tag).expect_err(tag);
            assert_eq!(err.message(), MESSAGE);
        }
    }

    #[test]
    fn serializes_as_a_plain_string() {
        let tag = LanguageTag::parse("pt-BR").unwrap();
        assert_eq!(serde_json::to_string(&tag).unwrap(), "\"pt-BR\"");
    }

    /// Tags built from the RFC 5646 section 2.1 grammar, each part optional
    /// or repeated as the ABNF allows.
    fn langtag() -> impl Strategy<Value = String> {
        (
            "[a-zA-Z]{2,3}(-[a-zA-Z]{3}){0,3}|[a-zA-Z]{4,8}",
            "(-[a-zA-Z]{4})?",
            "(-([a-zA-Z]{2}|[0-9]{3}))?",
            "(-([a-zA-Z0-9]{5,8}|[0-9][a-zA-Z0-9]{3})){0,3}",
            "(-[0-9a-wyzA-WYZ](-[a-zA-Z0-9]{2,8}){1,3}){0,3}",
            "(-[xX](-[a-zA-Z0-9]{1,8}){1,3})?",
        )
            .prop_map(|(lang, script, region, variants, extensions, private)| {
                format!("{lang}{script}{region}{variants}{extensions}{private}")
            })
    }

    proptest! {
        #[test]
        fn grammar_generated_tags_parse(tag in langtag()) {
            let parsed = LanguageTag::parse(&tag);
            prop_assert_eq!(parsed.as_ref().map(LanguageTag::as_str), Ok(tag.as_str()));
        }

        #[test]
        fn parsing_ignores_case(tag in langtag()) {
            prop_assert!(LanguageTag::parse(&tag.to_ascii_uppercase()).is_ok());
            prop_assert!(LanguageTag::parse(&tag.to_ascii_lowercase()).is_ok());
        }

        #[test]
        fn a_char_outside_the_alphabet_is_rejected(
            tag in langtag(),
            at in any::<prop::sample::Index>(),
            // Mostly ASCII, where the near misses ('_', '.', ' ') live.
            bad in prop_oneof![prop::char::range('\0', '\x7f'), any::<char>()]
                .prop_filter("outside [A-Za-z0-9-]", |c| !c.is_ascii_alphanumeric() && *c != '-'),
        ) {
            let mut tag = tag;
            tag.insert(at.index(tag.len() + 1), bad);
            prop_assert!(LanguageTag::parse(&tag).is_err(), "{:?} accepted", tag);
        }
    }
}
