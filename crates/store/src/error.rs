use endusers_core::{AlreadyEnded, FieldError};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule would be broken; names what is taken.
    #[error("{0} is already taken")]
    Conflict(&'static str),
    /// The request does not fit the object's current state (ending an
    /// ended conversation); the text says how.
    #[error("{0}")]
    State(&'static str),
    /// The change breaks a domain rule that needs the stored state.
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// The store was closed (the server is shutting down).
    #[error("the store is closed")]
    Closed,
    /// A configuration the backend cannot work with.
    #[error("{0}")]
    Config(String),
    /// The database failed; the text is for logs, never for clients.
    #[error("database error: {0}")]
    Backend(String),
}

impl From<AlreadyEnded> for StoreError {
    fn from(_: AlreadyEnded) -> Self {
        Self::State(AlreadyEnded::MESSAGE)
    }
}
