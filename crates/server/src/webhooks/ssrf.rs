//! Which addresses a webhook may be delivered to.
//!
//! As Svix does it: refuse the endpoint if any address its host resolves
//! to is not public, and dial only addresses that passed (the delivery
//! client's own resolver applies [`check_addresses`] to what it is about to
//! dial, and no redirect is followed). Checking a name and letting the HTTP
//! client resolve it again would let DNS rebinding swap in a private
//! address between check and dial.
//!
//! The ranges come from RFC 6890 and the IANA IPv4/IPv6 Special-Purpose
//! Address Registries. Anything not globally reachable is refused, along with
//! transition ranges (NAT64, 6to4, Teredo) that can tunnel to private IPv4.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use UrlCheckError as E;

#[derive(Debug, thiserror::Error)]
pub enum UrlCheckError {
    #[error("not a valid URL: {0}")]
    Invalid(&'static str),
    #[error("unsupported URL scheme `{0}`: webhook URLs must use https")]
    UnsupportedScheme(String),
    #[error("URL must not contain credentials (user:password@)")]
    Userinfo,
    #[error("URL has no host")]
    MissingHost,
    #[error("invalid port `{0}`")]
    InvalidPort(String),
    #[error("could not resolve `{host}`: {source}")]
    Resolve {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{host}` resolves to a non-public address ({addr})")]
    NonPublicAddress { host: String, addr: IpAddr },
    #[error("`{host}` resolves to no addresses")]
    NoAddresses { host: String },
}

/// Where to deliver: the URL's host (lowercased; IPv6 without brackets), its
/// port, and the checked addresses — the only ones that may be dialed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub addrs: Vec<SocketAddr>,
}

/// IPv4 blocks that are not public (RFC 6890; IANA IPv4 Special-Purpose
/// Address Registry; RFC 5771 multicast; RFC 1112 class E).
const V4_BLOCKED: &[(Ipv4Addr, u8)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8),          // "this network", RFC 791
    (Ipv4Addr::new(10, 0, 0, 0), 8),         // private, RFC 1918
    (Ipv4Addr::new(100, 64, 0, 0), 10),      // shared address space (CGNAT), RFC 6598
    (Ipv4Addr::new(127, 0, 0, 0), 8),        // loopback, RFC 1122
    (Ipv4Addr::new(169, 254, 0, 0), 16),     // link-local (cloud metadata!), RFC 3927
    (Ipv4Addr::new(172, 16, 0, 0), 12),      // private, RFC 1918
    (Ipv4Addr::new(192, 0, 0, 0), 24),       // IETF protocol assignments, RFC 6890
    (Ipv4Addr::new(192, 0, 2, 0), 24),       // TEST-NET-1, RFC 5737
    (Ipv4Addr::new(192, 88, 99, 0), 24),     // 6to4 relay anycast, RFC 7526
    (Ipv4Addr::new(192, 168, 0, 0), 16),     // private, RFC 1918
    (Ipv4Addr::new(198, 18, 0, 0), 15),      // benchmarking, RFC 2544
    (Ipv4Addr::new(198, 51, 100, 0), 24),    // TEST-NET-2, RFC 5737
    (Ipv4Addr::new(203, 0, 113, 0), 24),     // TEST-NET-3, RFC 5737
    (Ipv4Addr::new(224, 0, 0, 0), 4),        // multicast, RFC 5771
    (Ipv4Addr::new(240, 0, 0, 0), 4),        // reserved, RFC 1112 (incl. broadcast)
    (Ipv4Addr::new(255, 255, 255, 255), 32), // limited broadcast, RFC 919
];

/// IPv6 blocks that are not public (RFC 6890; IANA IPv6 Special-Purpose
/// Address Registry). IPv4-mapped `::ffff:0:0/96` is judged by its IPv4.
const V6_BLOCKED: &[(Ipv6Addr, u8)] = &[
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 96), // ::/128, ::1/128, IPv4-compatible (RFC 4291)
    (Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96), // NAT64 well-known, RFC 6052
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48), // NAT64 local-use, RFC 8215
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64), // discard-only, RFC 6666
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23), // IETF protocol assignments, Teredo; RFC 2928
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32), // documentation, RFC 3849
    (Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16), // 6to4, RFC 3056: tunnels to any IPv4
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20), // documentation, RFC 9637
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7), // unique local, RFC 4193
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10), // link-local, RFC 4291
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10), // site-local (deprecated), RFC 3879
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8), // multicast, RFC 4291
];

/// True only for addresses a webhook may be delivered to.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            !V4_BLOCKED.iter().any(|&(net, len)| {
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                bits & mask == u32::from(net) & mask
            })
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let bits = u128::from(v6);
            // Only 2000::/3 is allocated for global unicast (IANA IPv6 Address
            // Space registry); the rest is reserved or special (ULA, link-local,
            // multicast), so it is never a public destination.
            bits >> 125 == 0b001
                && !V6_BLOCKED.iter().any(|&(net, len)| {
                    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                    bits & mask == u128::from(net) & mask
                })
        }
    }
}

/// Checks a webhook URL's shape and returns `(scheme, host, port)`, scheme
/// and host lowercased, IPv6 literals without brackets.
///
/// Deliberately stricter than RFC 3986 so that no HTTP client can read the
/// URL differently: no whitespace, control characters or backslashes, no
/// userinfo, no percent-encoding or non-ASCII in the host (use punycode),
/// and a host whose last label is numeric must be a plain dotted-quad IPv4
/// (WHATWG parsers and `inet_aton` read `127.1` or `2130706433` as IPv4).
pub fn check_url_syntax(url: &str, allow_insecure: bool) -> Result<(String, String, u16), E> {
    let bad_char = |c: char| c.is_whitespace() || c.is_control() || c == '\\';
    if url.contains(bad_char) {
        return Err(E::Invalid("whitespace, control character or backslash"));
    }
    let (scheme, rest) = url.split_once("://").ok_or(E::Invalid("missing `://`"))?;
    let scheme_chars = |c: char| c.is_ascii_alphanumeric() || "+-.".contains(c);
    if !scheme.starts_with(|c: char| c.is_ascii_alphabetic()) || !scheme.chars().all(scheme_chars) {
        return Err(E::Invalid("malformed scheme"));
    }
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => 443,
        "http" if allow_insecure => 80,
        _ => return Err(E::UnsupportedScheme(scheme)),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(E::Userinfo);
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (literal, after) = bracketed
            .split_once(']')
            .ok_or(E::Invalid("unclosed `[`"))?;
        let ip: Ipv6Addr = literal
            .parse()
            .map_err(|_| E::Invalid("bad IPv6 literal"))?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or(E::Invalid("junk after `]`"))?,
            ),
        };
        (ip.to_string(), port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        (check_reg_name(host)?, port)
    };
    let port = match port {
        None => default_port,
        Some(text) => match text.parse::<u16>() {
            Ok(port) if port != 0 && text.bytes().all(|b| b.is_ascii_digit()) => port,
            _ => return Err(E::InvalidPort(text.to_owned())),
        },
    };
    Ok((scheme, host, port))
}

/// A DNS name or dotted-quad IPv4, lowercased.
fn check_reg_name(host: &str) -> Result<String, E> {
    if host.is_empty() {
        return Err(E::MissingHost);
    }
    if host.len() > 254
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
    {
        return Err(E::Invalid("host is too long or not [A-Za-z0-9-._]"));
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.split('.').any(str::is_empty) {
        return Err(E::Invalid("host has an empty label"));
    }
    let last = name
        .rsplit('.')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let hex = |h: &str| h.bytes().all(|b| b.is_ascii_hexdigit());
    let numeric =
        last.bytes().all(|b| b.is_ascii_digit()) || last.strip_prefix("0x").is_some_and(hex);
    if numeric && host.parse::<Ipv4Addr>().is_err() {
        return Err(E::Invalid("numeric host is not a dotted-quad IPv4 address"));
    }
    Ok(host.to_ascii_lowercase())
}

/// Checks the URL, resolves its host and, unless `allow_insecure`, refuses
/// it if *any* address is not public: a DNS answer mixing public and private
/// addresses is an attack, not a partial success. Dial only the returned
/// addresses. Wrap in a timeout if needed (`getaddrinfo` runs on a blocking
/// thread).
pub async fn resolve_target(url: &str, allow_insecure: bool) -> Result<Target, E> {
    let (_scheme, host, port) = check_url_syntax(url, allow_insecure)?;
    let addrs = resolve_public(&host, port, allow_insecure).await?;
    Ok(Target { host, port, addrs })
}

/// Resolves `host` (each address once) and applies [`check_addresses`] to
/// the answer: the one resolution for both the check when an endpoint is
/// saved and the delivery client's resolver, which dials what it returns.
pub async fn resolve_public(
    host: &str,
    port: u16,
    allow_insecure: bool,
) -> Result<Vec<SocketAddr>, E> {
    // IP literals come back as they are: tokio parses before asking DNS.
    let mut addrs: Vec<SocketAddr> = match tokio::net::lookup_host((host, port)).await {
        Ok(found) => found.collect(),
        Err(source) => {
            return Err(E::Resolve {
                host: host.to_owned(),
                source,
            });
        }
    };
    let mut seen = std::collections::HashSet::new();
    addrs.retain(|addr| seen.insert(*addr));
    check_addresses(host, &addrs, allow_insecure)?;
    Ok(addrs)
}

/// What `host` resolved to must be some addresses, all of them public
/// (unless `allow_insecure`).
pub fn check_addresses(host: &str, addrs: &[SocketAddr], allow_insecure: bool) -> Result<(), E> {
    if addrs.is_empty() {
        return Err(E::NoAddresses {
            host: host.to_owned(),
        });
    }
    if !allow_insecure && let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
        return Err(E::NonPublicAddress {
            host: host.to_owned(),
            addr: bad.ip(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `+` public, `-` not: for each range, an address inside and the
    /// nearest ones outside.
    const CASES: &str = "
        -0.255.255.255 +1.0.0.0 +1.1.1.1 +8.8.8.8 +9.255.255.255 -10.0.0.0 -10.255.255.255
        +11.0.0.0 +100.63.255.255 -100.64.0.0 -100.127.255.255 +100.128.0.0 +126.255.255.255
        -127.0.0.1 -127.255.255.255 +128.0.0.0 +169.253.255.255 -169.254.169.254 +169.255.0.0
        +172.15.255.255 -172.16.0.0 -172.31.255.255 +172.32.0.0 +191.255.255.255 -192.0.0.1
        +192.0.1.0 -192.0.2.5 +192.0.3.0 +192.88.98.255 -192.88.99.1 +192.88.100.0
        +192.167.255.255 -192.168.1.1 +192.169.0.0 +198.17.255.255 -198.18.0.0 -198.19.255.255
        +198.20.0.0 +198.51.99.255 -198.51.100.7 +198.51.101.0 +203.0.112.255 -203.0.113.9
        +203.0.114.0 +223.255.255.255 -224.0.0.1 -239.255.255.255 -240.0.0.1 -255.255.255.254
        -255.255.255.255
        -:: -::1 -::8.8.8.8 -::ffff:127.0.0.1 -::ffff:10.0.0.1 -::ffff:169.254.169.254
        +::ffff:8.8.8.8 -64:ff9b::a00:1 -64:ff9b::808:808 -64:ff9b:1::808:808
        -64:ff9b:1:ffff:ffff:ffff:ffff:ffff -100::1 -100:0:0:1:: -2001::1 -2001:1ff:ffff::
        +2001:200::1 -2001:db8::1 +2001:db9::1 -2002:0808:0808:: +2003::1 +2001:4860:4860::8888
        +2606:4700:4700::1111 -3fff::1 +3ffe:ffff::1 -fbff::1 -fc00::1 -fdff:ffff::1 -fe80::1
        -febf::1 -fec0::1 -ff02::1 -4000::1 -1fff:ffff::1";

    #[test]
    fn ranges_inside_and_just_outside() {
        for case in CASES.split_whitespace() {
            let (sign, text) = case.split_at(1);
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(is_public(ip), sign == "+", "{text}");
        }
    }

    /// `url scheme host port`, all accepted.
    const GOOD_URLS: &str = "
        https://Example.COM/hook?a=1 https example.com 443
        HTTPS://example.com:8443 https example.com 8443
        http://example.com/x http example.com 80
        https://[2606:4700:0::1111]:444/x https 2606:4700::1111 444
        https://[::1]/ https ::1 443
        https://8.8.8.8#f https 8.8.8.8 443
        https://a_b.example.com./ https a_b.example.com. 443";

    /// Malformed URLs, refused as `Invalid` even when insecure is allowed.
    const BAD_URLS: &str = r"
        example.com https:/example.com https://example.com\@evil.com https://[::1
        https://[::1]x https://[fe80::1%25eth0]/ https://ex%61mple.com https://exämple.com
        https://127.1/ https://2130706433/ https://0x7f.0.0.1/ https://1.2.3.04/ https://a..b/
        https://.a/ 1https://x";

    /// `Variant url…`: refused with that error even when insecure is allowed
    /// (except for plain http, which is refused when it is not).
    const REFUSED: &str = "
        UnsupportedScheme http://example.com/ ftp://example.com/ gopher://x.com
        Userinfo https://user:pw@example.com/ https://@example.com/ https://u@[::1]/
        MissingHost https:///x https://:443/x https://?x https://
        InvalidPort https://x.com:0 https://x.com:65536/ https://x.com:99999 https://x.com:-1/
        InvalidPort https://x.com:12a https://x.com:/ https://x.com:123456 https://x.com:+80
        InvalidPort https://[::1]:0/ https://[::1]:/";

    #[test]
    fn url_syntax() {
        for line in GOOD_URLS.lines().filter(|l| !l.trim().is_empty()) {
            let (url, want) = line.trim().split_once(' ').unwrap();
            let (scheme, host, port) = check_url_syntax(url, url.starts_with("http:")).unwrap();
            assert_eq!(format!("{scheme} {host} {port}"), want, "{url}");
        }
        let spaced = ["", " https://a.com", "https://a b.com", "https://a.com/\n"];
        for url in BAD_URLS.split_whitespace().chain(spaced) {
            let err = check_url_syntax(url, true).unwrap_err();
            assert!(matches!(err, E::Invalid(_)), "{url:?}: {err:?}");
        }
        for line in REFUSED.lines() {
            let mut words = line.split_whitespace();
            let want = words.next().unwrap_or_default();
            for url in words {
                let err = check_url_syntax(url, !url.starts_with("http:")).unwrap_err();
                assert!(format!("{err:?}").starts_with(want), "{url}: {err:?}");
            }
        }
    }

    #[tokio::test]
    async fn resolve_localhost_and_literals() {
        let resolve = |url: &'static str, insecure| resolve_target(url, insecure);
        for url in [
            "https://localhost/x",
            "https://127.0.0.1/",
            "https://[::ffff:10.0.0.1]/",
        ] {
            let err = resolve(url, false).await.unwrap_err();
            assert!(matches!(err, E::NonPublicAddress { .. }), "{url}: {err}");
        }
        let err = resolve("https://127.0.0.1/x", false).await.unwrap_err();
        let want = "`127.0.0.1` resolves to a non-public address (127.0.0.1)";
        assert_eq!(err.to_string(), want);

        let target = resolve("http://127.0.0.1:9/x", true).await.unwrap();
        assert_eq!(target.addrs, ["127.0.0.1:9".parse().unwrap()]);
        assert_eq!((target.host.as_str(), target.port), ("127.0.0.1", 9));

        let target = resolve("https://localhost:8443/", true).await.unwrap();
        let loopback = |a: &SocketAddr| a.ip().is_loopback() && a.port() == 8443;
        assert!(!target.addrs.is_empty() && target.addrs.iter().all(loopback));

        let v6 = resolve("https://[2606:4700:4700::1111]/", false)
            .await
            .unwrap();
        assert_eq!(v6.addrs, ["[2606:4700:4700::1111]:443".parse().unwrap()]);
    }
}
