//! End-user identifiers: 24 lowercase hex characters that sort by creation.
//!
//! The 96 bits are 48 bits of milliseconds since the epoch followed by 48
//! bits that start random in each millisecond and count up within it, so
//! ids made by one process are strictly increasing and ids made by several
//! nodes are still ordered by time to the millisecond.

use std::fmt;
use std::sync::Mutex;

use crate::time::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EndUserId(u128);

const MASK_96: u128 = (1 << 96) - 1;

impl EndUserId {
    /// The smallest id: it sorts before every id made, so a listing from it
    /// starts at the beginning.
    pub const MIN: Self = Self(0);

    /// Accepts exactly 24 lowercase hex characters; anything else cannot be
    /// an id this server made.
    pub fn parse(raw: &str) -> Option<Self> {
        // One pass that checks and decodes each digit: every GET parses
        // an id from its path and another from the row it reads, and a
        // check followed by `u128::from_str_radix` reads every digit twice,
        // which showed in a GET's instruction count.
        let digits: &[u8; 24] = raw.as_bytes().try_into().ok()?;
        let mut value = 0u128;
        for &b in digits {
            let digit = match b {
                b'0'..=b'9' => b - b'0',
                b'a'..=b'f' => b - b'a' + 10,
                _ => return None,
            };
            value = (value << 4) | u128::from(digit);
        }
        Some(Self(value))
    }

    /// The instant (to the millisecond) the id was made.
    pub fn created_millis(self) -> i64 {
        i64::try_from(self.0 >> 48).unwrap_or(i64::MAX)
    }

    /// The id's text, written on the stack: ids are written into every
    /// answer, query and event, and this needs neither an allocation nor
    /// the formatting machinery.
    pub fn text(self) -> IdText {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0u8; 24];
        for (n, digit) in text.iter_mut().enumerate() {
            let shift = 4 * (23 - n);
            *digit = HEX[((self.0 >> shift) & 0xf) as usize];
        }
        IdText(text)
    }
}

/// An id as its 24 lowercase hex characters (see [`EndUserId::text`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IdText([u8; 24]);

impl IdText {
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever written into it.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Debug for IdText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for EndUserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.text().as_str())
    }
}

impl serde::Serialize for EndUserId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.text().as_str())
    }
}

/// Hands out strictly increasing ids. The caller supplies the randomness so
/// this type stays free of I/O.
#[derive(Debug, Default)]
pub struct IdGenerator {
    last: Mutex<u128>,
}

impl IdGenerator {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn next(&self, now: Timestamp, random: u64) -> EndUserId {
        let millis = u128::try_from(now.as_millis()).unwrap_or(0) & ((1 << 48) - 1);
        let candidate = (millis << 48) | u128::from(random & ((1 << 48) - 1));
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Same millisecond (or a clock that stepped back): count up from the
        // last id instead, which keeps the sequence strictly increasing.
        let id = if candidate > *last {
            candidate
        } else {
            (*last + 1) & MASK_96
        };
        *last = id;
        EndUserId(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn displays_as_24_lowercase_hex() {
        let ids = IdGenerator::new();
        let id = ids.next(Timestamp::from_micros(1_795_773_600_123_456), 0xABCDEF);
        let text = id.to_string();
        assert_eq!(text.len(), 24);
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(EndUserId::parse(&text), Some(id));
        assert_eq!(id.created_millis(), 1_795_773_600_123);
    }

    #[test]
    fn rejects_what_is_not_an_id() {
        for bad in [
            "",
            "abc",
            "67A8B2C1D3F4E5A6B7C8D9E0",
            "67a8b2c1d3f4e5a6b7c8d9e",
            "67a8b2c1d3f4e5a6b7c8d9e0f",
            "67a8b2c1d3f4e5a6b7c8d9eg",
        ] {
            assert_eq!(EndUserId::parse(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn the_text_is_the_hex_of_the_96_bits_and_parses_back(bits in any::<u128>()) {
            let id = EndUserId(bits & MASK_96);
            let text = id.text();
            prop_assert_eq!(text.as_str(), format!("{:024x}", bits & MASK_96));
            prop_assert_eq!(id.to_string(), text.as_str());
            prop_assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{}\"", text.as_str()));
            prop_assert_eq!(EndUserId::parse(text.as_str()), Some(id));
            // Listings bind the text, so the smallest id's sorts first there too.
            prop_assert!(EndUserId::MIN.text().as_str() <= text.as_str());
        }

        /// Any 24 characters parse exactly when they are lowercase hex,
        /// to the number they spell.
        #[test]
        fn parses_exactly_the_lowercase_hex_of_24_digits(raw in prop_oneof![
            "[0-9a-f]{24}",
            "[0-9a-f]{0,12}[g-zA-F/:`@\u{e9}][0-9a-f]{0,12}",
            "[0-9a-f]{23,25}",
        ]) {
            let lowercase_hex = raw.len() == 24
                && raw.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            let expected = lowercase_hex
                .then(|| u128::from_str_radix(&raw, 16).ok())
                .flatten()
                .map(EndUserId);
            prop_assert_eq!(EndUserId::parse(&raw), expected);
        }

        #[test]
        fn ids_strictly_increase_even_when_time_repeats_or_steps_back(
            steps in prop::collection::vec((0i64..5, any::<u64>()), 1..200)
        ) {
            let ids = IdGenerator::new();
            let mut now = 1_795_773_600_000_000i64;
            let mut previous: Option<EndUserId> = None;
            for (delta_ms, random) in steps {
                now += (delta_ms - 2) * 1000;
                let id = ids.next(Timestamp::from_micros(now), random);
                if let Some(p) = previous {
                    prop_assert!(id > p);
                    prop_assert!(id.to_string() > p.to_string());
                }
                previous = Some(id);
            }
        }
    }
}
