//! Email addresses, checked only for looking like one.
//!
//! Full RFC 5322 syntax (quoted local parts, comments, address literals) is
//! deliberately not accepted: those forms are almost always typos or abuse in
//! a profile field, and the only real test of an address is sending to it.

use serde::Serialize;

use crate::error::FieldError;

const MESSAGE: &str = "must be an email address such as name@example.com";

/// RFC 5321 section 4.5.3.1.3 limits a path to 256 octets including the
/// surrounding angle brackets, which leaves 254 for the address.
const MAX_LEN: usize = 254;

/// RFC 5321 section 4.5.3.1.1.
const MAX_LOCAL_LEN: usize = 64;

/// RFC 1035 section 2.3.4.
const MAX_LABEL_LEN: usize = 63;

/// An address of the shape `local@domain.tld`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Email(String);

crate::string_newtype!(Email);

impl Email {
    /// Accepts `raw` if it looks like an address, keeping it as given.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        if raw.chars().count() > MAX_LEN {
            return Err(FieldError::new("must be at most 254 characters"));
        }
        // The last '@' separates the domain, which can never contain one.
        let well_formed = raw
            .rsplit_once('@')
            .is_some_and(|(local, domain)| is_local_part(local) && is_domain(domain));
        if well_formed {
            Ok(Self(raw.to_owned()))
        } else {
            Err(FieldError::new(MESSAGE))
        }
    }
}

/// A dot-atom-ish local part (RFC 5322 section 3.4.1), but lenient about
/// which printable characters appear, so that internationalised local parts
/// (RFC 6531) pass.
fn is_local_part(local: &str) -> bool {
    let len = local.chars().count();
    (1..=MAX_LOCAL_LEN).contains(&len)
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && !"\"(),:;<>[\\]@".contains(c))
}

/// At least two labels, so `name@localhost` is refused; Unicode letters are
/// allowed so that internationalised domain names need not be punycoded.
fn is_domain(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|label| is_label(label))
        // An all-digit top-level label means an IP address, not a domain.
        && labels
            .last()
            .is_some_and(|tld| !tld.chars().all(|c| c.is_ascii_digit()))
}

fn is_label(label: &str) -> bool {
    (1..=MAX_LABEL_LEN).contains(&label.chars().count())
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .chars()
            .all(|c| c.is_alphabetic() || c.is_ascii_digit() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[rustfmt::skip]
    const ADDRESSES: &[&str] = &[
        "name@example.com", "first.last+tag@sub.example.co.uk", "o'brien@example.ie", "x@a.io",
        "user@xn--bcher-kva.example", "jörg@bücher.de", "用户@例子.广告", "1@123.com",
        "a-b_c@my-host.example",
    ];

    #[rustfmt::skip]
    const NOT_ADDRESSES: &[&str] = &[
        "", "name", "@example.com", "name@", "name@localhost", "name@example.", "name@.com",
        "name@-example.com", "name@example-.com", "name@example..com", "name@1.2.3.4",
        ".name@example.com", "name.@example.com", "na..me@example.com", "na me@example.com",
        "name@exa mple.com", "na\"me@example.com", "a(b)@example.com", "a,b@example.com",
        "a:b@example.com", "a;b@example.com", "<a>@example.com", "a[b]@example.com",
        "a\\b@example.com", "a@b@example.com", "name@exa_mple.com", "na\u{7}me@example.com",
        "name@example.com\n",
    ];

    #[test]
    fn accepts_addresses() {
        for &address in ADDRESSES {
            let parsed = Email::parse(address).unwrap_or_else(|_| panic!("{address} should parse"));
            assert_eq!(parsed.as_str(), address);
            assert_eq!(parsed.to_string(), address);
        }
    }

    #[test]
    fn rejects_non_addresses_without_echoing_them() {
        let long_local = format!("{}@example.com", "a".repeat(65));
        let long_label = format!("a@{}.com", "b".repeat(64));
        for address in NOT_ADDRESSES
            .iter()
            .copied()
            .chain([long_local.as_str(), long_label.as_str()])
        {
            let err = Email::parse(address).expect_err(address);
            assert_eq!(err.message(), MESSAGE);
        }
    }

    #[test]
    fn rejects_over_long_addresses() {
        let domain = format!(
            "{}.{}.{}.com",
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(57)
        );
        let ok = format!("{}@{domain}", "a".repeat(64));
        assert_eq!(ok.chars().count(), 254);
        assert!(Email::parse(&ok).is_ok());
        let long = format!("a{ok}");
        let err = Email::parse(&long).unwrap_err();
        assert_eq!(err.message(), "must be at most 254 characters");
    }

    #[test]
    fn serializes_as_a_plain_string() {
        let email = Email::parse("name@example.com").unwrap();
        assert_eq!(
            serde_json::to_string(&email).unwrap(),
            "\"name@example.com\""
        );
    }

    fn address() -> impl Strategy<Value = String> {
        (
            "[a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]{1,20}(\\.[a-zA-Z0-9_+-]{1,10}){0,2}",
            "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?",
            "[a-zA-Z0-9]{1,20}",
            "[a-z]{2,10}",
        )
            .prop_map(|(local, label1, label2, tld)| format!("{local}@{label1}.{label2}.{tld}"))
    }

    proptest! {
        #[test]
        fn generated_addresses_parse(address in address()) {
            let parsed = Email::parse(&address);
            prop_assert_eq!(parsed.as_ref().map(Email::as_str), Ok(address.as_str()));
        }

        #[test]
        fn strings_without_an_at_sign_fail(raw in "[^@]*") {
            prop_assert!(Email::parse(&raw).is_err());
        }

        #[test]
        fn whitespace_anywhere_fails(
            address in address(),
            at in any::<prop::sample::Index>(),
            space in prop::sample::select(vec![' ', '\t', '\n', '\r', '\u{a0}', '\u{2003}', '\u{3000}']),
        ) {
            let mut address = address;
            address.insert(at.index(address.len() + 1), space);
            prop_assert!(Email::parse(&address).is_err(), "{:?} accepted", address);
        }
    }
}
