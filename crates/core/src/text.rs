use crate::error::FieldError;

/// A free-text profile field (`first_name`, `last_name`, `display_name`):
/// at most 255 characters.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct ProfileText(String);

crate::string_newtype!(ProfileText);

impl ProfileText {
    pub const MAX_CHARS: usize = 255;

    pub fn parse(raw: String) -> Result<Self, FieldError> {
        if raw.chars().count() > Self::MAX_CHARS {
            return Err(FieldError::new("must be at most 255 characters"));
        }
        Ok(Self(raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_characters_not_bytes() {
        assert!(ProfileText::parse("é".repeat(255)).is_ok());
        assert!(ProfileText::parse("é".repeat(256)).is_err());
        assert!(ProfileText::parse(String::new()).is_ok());
    }
}
