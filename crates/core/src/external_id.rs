use crate::error::FieldError;

/// The integrator's own identifier for an end user: 1 to 36 characters, no
/// `<` or `>`. Unique per agent and case-insensitive, so it is kept in lower
/// case and compared that way.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct ExternalId(String);

crate::string_newtype!(ExternalId);

impl ExternalId {
    pub const MAX_CHARS: usize = 36;

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        match raw.chars().count() {
            0 => return Err(FieldError::new("must not be empty")),
            1..=Self::MAX_CHARS => {}
            _ => return Err(FieldError::new("must be at most 36 characters")),
        }
        if raw.contains(['<', '>']) {
            return Err(FieldError::new("must not contain < or >"));
        }
        Ok(Self(raw.to_lowercase()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_case_insensitive() {
        assert_eq!(
            ExternalId::parse("CRM-42").ok(),
            ExternalId::parse("crm-42").ok()
        );
        assert_eq!(
            ExternalId::parse("CRM-42")
                .map(|e| e.to_string())
                .ok()
                .as_deref(),
            Some("crm-42")
        );
    }

    #[test]
    fn enforces_length_and_forbidden_characters() {
        assert!(ExternalId::parse(&"a".repeat(36)).is_ok());
        assert_eq!(
            ExternalId::parse(&"a".repeat(37)).map_err(|e| e.to_string()),
            Err("must be at most 36 characters".into())
        );
        assert!(ExternalId::parse("").is_err());
        assert!(ExternalId::parse("a<b").is_err());
        assert!(ExternalId::parse("a>b").is_err());
        assert!(ExternalId::parse("+1 (555) 010-9999").is_ok());
    }
}
