use crate::error::FieldError;

/// The handle of an agent (one AI agent, one tenant): 1 to 63 characters of
/// lowercase letters, digits and `-`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AgentHandle(String);

crate::string_newtype!(AgentHandle);

impl AgentHandle {
    /// The agent every empty database starts with.
    pub const DEFAULT: &'static str = "default";

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let valid_chars = raw
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'));
        let valid_start = raw.bytes().next().is_some_and(|b| b != b'-');
        if raw.len() > 63 || !valid_chars || !valid_start {
            return Err(FieldError::new(
                "must be 1 to 63 lowercase letters, digits or '-', not starting with '-'",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn default_handle() -> Self {
        Self(Self::DEFAULT.to_owned())
    }
}

/// The storage key of an agent; every stored object carries one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentId(pub i64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_slugs_only() {
        for ok in ["default", "acme", "acme-eu-1", "7eleven"] {
            assert!(AgentHandle::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-acme", "Acme", "acme_eu", "acme eu", &"a".repeat(64)] {
            assert!(AgentHandle::parse(bad).is_err(), "{bad}");
        }
    }
}
