//! Avatar image URLs: absolute `http`/`https` URLs that a client can fetch.
//!
//! Only the parts that decide where a client would connect are checked
//! (scheme and authority, RFC 3986 section 3.2); the path, query and fragment
//! are opaque to us apart from the ban on whitespace and control characters.

use serde::Serialize;

use crate::error::FieldError;

const MESSAGE: &str = "must be an absolute http or https URL";

/// A common ceiling for URLs that browsers, proxies and CDNs all handle.
const MAX_LEN: usize = 2048;

/// An absolute `http` or `https` URL with a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct AvatarUrl(String);

crate::string_newtype!(AvatarUrl);

impl AvatarUrl {
    /// Accepts `raw` if it is an absolute http(s) URL with a valid host, keeping it as given.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        if raw.chars().count() > MAX_LEN {
            return Err(FieldError::new("must be at most 2048 characters"));
        }
        if is_http_url(raw) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(FieldError::new(MESSAGE))
        }
    }
}

fn is_http_url(raw: &str) -> bool {
    if raw
        .chars()
        .any(|c| c.is_whitespace() || c.is_ascii_control())
    {
        return false;
    }
    let Some((scheme, rest)) = raw.split_once("://") else {
        return false;
    };
    // Schemes are case-insensitive (RFC 3986 section 3.1).
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return false;
    }
    // The authority ends at the first '/', '?' or '#' (RFC 3986 section 3.2).
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    // Split at the last '@', as browsers do, so the host checked here is the
    // one a client would actually connect to.
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    is_host_port(host_port)
}

fn is_host_port(host_port: &str) -> bool {
    // IP-literal = "[" IPv6address "]" (RFC 3986 section 3.2.2); only the
    // alphabet is checked, not the full IPv6 grammar.
    if let Some(literal) = host_port.strip_prefix('[') {
        let Some((ip, after)) = literal.split_once(']') else {
            return false;
        };
        let ip_ok = ip.contains(':')
            && ip
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
        return ip_ok && (after.is_empty() || after.strip_prefix(':').is_some_and(is_port));
    }
    match host_port.split_once(':') {
        Some((host, port)) => is_reg_name(host) && is_port(port),
        None => is_reg_name(host_port),
    }
}

/// reg-name (RFC 3986 section 3.2.2), widened to Unicode letters so that
/// internationalised host names (RFC 3987) need not be punycoded; the
/// sub-delims are left out because no real host name uses them.
fn is_reg_name(host: &str) -> bool {
    let mut chars = host.chars();
    while let Some(c) = chars.next() {
        let ok = match c {
            '%' => matches!(
                (chars.next(), chars.next()),
                (Some(a), Some(b)) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit()
            ),
            '-' | '.' | '_' | '~' => true,
            c => c.is_ascii_digit() || c.is_alphabetic(),
        };
        if !ok {
            return false;
        }
    }
    !host.is_empty()
}

/// port = 1 to 5 digits, at most 65535 (RFC 3986 section 3.2.3 allows an
/// empty or longer port; nothing can connect to one).
fn is_port(port: &str) -> bool {
    (1..=5).contains(&port.len())
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u32>().is_ok_and(|p| p <= 65535)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[rustfmt::skip]
    const URLS: &[&str] = &[
        "https://example.com", "http://example.com/", "HTTPS://cdn.example.com/a/b.png?size=64#top",
        "https://example.com:8443/avatar.png", "https://user:pass@example.com/x",
        "https://[2001:db8::1]/a.png", "http://[::ffff:192.0.2.1]:8080", "https://127.0.0.1/a",
        "https://bücher.example/ü.png", "https://my_host.local~1/%20", "https://ex%41mple.com?x",
        "https://example.com#frag", "https://example.com:65535/",
    ];

    #[rustfmt::skip]
    const NOT_URLS: &[&str] = &[
        "", "example.com/a.png", "//example.com/a.png", "ftp://example.com/a",
        "javascript://example.com/%0Aalert(1)", "data:image/png;base64,AAAA", "https:/x.com",
        "https://", "https:///path", "https://:80/", "https://user@/", "https://example.com:/",
        "https://example.com:65536/", "https://example.com:123456/", "https://example.com:8a/",
        "https://exa mple.com/", "https://example.com/a b.png", "https://example.com/\t",
        "https://example.com/\u{7f}", "https://exa%4mple.com/", "https://exa%zzmple.com/",
        "https://[2001:db8::1/", "https://[]/", "https://[example]/", "https://[::1]x/",
        "https://a:b:c/", "https://exa!mple.com/", " https://example.com",
    ];

    #[test]
    fn accepts_http_urls() {
        for &url in URLS {
            let parsed = AvatarUrl::parse(url).unwrap_or_else(|_| panic!("{url} should parse"));
            assert_eq!(parsed.as_str(), url);
            assert_eq!(parsed.to_string(), url);
        }
    }

    #[test]
    fn rejects_other_strings_without_echoing_them() {
        for &url in NOT_URLS {
            let err = AvatarUrl::parse(url).expect_err(url);
            assert_eq!(err.message(), MESSAGE);
        }
    }

    #[test]
    fn rejects_over_long_urls() {
        let ok = format!("https://example.com/{}", "a".repeat(MAX_LEN - 20));
        assert!(AvatarUrl::parse(&ok).is_ok());
        let err = AvatarUrl::parse(&format!("{ok}a")).unwrap_err();
        assert_eq!(err.message(), "must be at most 2048 characters");
    }

    #[test]
    fn serializes_as_a_plain_string() {
        let url = AvatarUrl::parse("https://example.com/a.png").unwrap();
        assert_eq!(
            serde_json::to_string(&url).unwrap(),
            "\"https://example.com/a.png\""
        );
    }

    /// `host[:port]/path`, the part after `scheme://`.
    fn authority_and_path() -> impl Strategy<Value = String> {
        (
            "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\\.[a-z0-9]{1,10}){0,3}",
            proptest::option::of(0..=65535u32),
            "(/[a-zA-Z0-9._~%-]{0,10}){0,4}",
        )
            .prop_map(|(host, port, path)| match port {
                Some(port) => format!("{host}:{port}{path}"),
                None => format!("{host}{path}"),
            })
    }

    fn url() -> impl Strategy<Value = String> {
        ("[hH][tT][tT][pP][sS]?", authority_and_path())
            .prop_map(|(scheme, rest)| format!("{scheme}://{rest}"))
    }

    proptest! {
        #[test]
        fn generated_urls_parse(url in url()) {
            let parsed = AvatarUrl::parse(&url);
            prop_assert_eq!(parsed.as_ref().map(AvatarUrl::as_str), Ok(url.as_str()));
        }

        #[test]
        fn a_space_anywhere_fails(url in url(), at in any::<prop::sample::Index>()) {
            let mut url = url;
            url.insert(at.index(url.len() + 1), ' ');
            prop_assert!(AvatarUrl::parse(&url).is_err(), "{:?} accepted", url);
        }

        #[test]
        fn urls_without_a_scheme_fail(rest in authority_and_path()) {
            let scheme_relative = format!("//{rest}");
            prop_assert!(AvatarUrl::parse(&rest).is_err());
            prop_assert!(AvatarUrl::parse(&scheme_relative).is_err());
        }

        #[test]
        fn other_schemes_fail(scheme in "[a-z][a-z0-9+.-]{0,8}", rest in authority_and_path()) {
            prop_assume!(scheme != "http" && scheme != "https");
            let url = format!("{scheme}://{rest}");
            prop_assert!(AvatarUrl::parse(&url).is_err());
        }
    }
}
