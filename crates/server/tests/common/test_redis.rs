//! The Redis the tests share: `ENDUSERS_TEST_REDIS_URL`, by default
//! `redis://127.0.0.1:6379`. The binary's tests include this file too.

use std::time::Duration;

/// The shared Redis's URL, or `None` with a notice when nothing answers
/// there. In CI (`CI` set) a missing Redis fails the test instead.
pub fn test_redis() -> Option<String> {
    let url = std::env::var("ENDUSERS_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    if answers(&url) {
        return Some(url);
    }
    assert!(
        std::env::var("CI").is_err(),
        "CI must provide Redis at {url}"
    );
    eprintln!("skipped: no Redis at {url} (start it, or set ENDUSERS_TEST_REDIS_URL)");
    None
}

/// Whether something accepts connections at a
/// `redis://[user:password@]host[:port][/db]` URL.
fn answers(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let address = if host_port.ends_with(']') || !host_port.contains(':') {
        format!("{host_port}:6379")
    } else {
        host_port.to_owned()
    };
    std::net::ToSocketAddrs::to_socket_addrs(address.as_str())
        .into_iter()
        .flatten()
        .any(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok())
}
