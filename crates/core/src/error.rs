use std::fmt;

/// A rejected input, named by the JSON path of the offending field
/// (`profile.metadata.plan`) and a sentence saying what is wrong with it.
///
/// The message never contains the rejected value itself: values may be
/// secrets, and error bodies end up in client logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    path: String,
    message: String,
}

impl FieldError {
    /// An error about the value being parsed; the caller prefixes the path
    /// with [`FieldError::at`] once it knows where the value sits.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            path: String::new(),
            message: message.into(),
        }
    }

    /// An error at a known path.
    pub fn at_path(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }

    /// Puts `segment` in front of the path: `metadata` + `plan` = `metadata.plan`.
    #[must_use]
    pub fn at(mut self, segment: &str) -> Self {
        self.path = if self.path.is_empty() {
            segment.to_owned()
        } else {
            format!("{segment}.{}", self.path)
        };
        self
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for FieldError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_compose_from_the_inside_out() {
        let err = FieldError::new("must not be empty")
            .at("plan")
            .at("metadata")
            .at("profile");
        assert_eq!(err.path(), "profile.metadata.plan");
        assert_eq!(err.to_string(), "profile.metadata.plan: must not be empty");
    }

    #[test]
    fn a_pathless_error_is_just_its_message() {
        assert_eq!(FieldError::new("bad").to_string(), "bad");
    }
}
