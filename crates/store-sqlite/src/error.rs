//! What the backend's own functions fail with. The [`endusers_store::Store`]
//! methods turn it into a [`StoreError`]: a database error becomes
//! [`StoreError::Backend`], whose text is for logs only.

use endusers_core::FieldError;
use endusers_store::StoreError;

#[derive(Debug)]
pub(crate) enum Error {
    /// SQLite failed.
    Sqlite(rusqlite::Error),
    /// An answer the store's contract defines (a conflict, a refused change).
    Store(StoreError),
}

impl From<rusqlite::Error> for Error {
    fn from(err: rusqlite::Error) -> Self {
        Self::Sqlite(err)
    }
}

impl From<StoreError> for Error {
    fn from(err: StoreError) -> Self {
        Self::Store(err)
    }
}

impl From<FieldError> for Error {
    fn from(err: FieldError) -> Self {
        Self::Store(StoreError::Invalid(err))
    }
}

impl From<Error> for StoreError {
    fn from(err: Error) -> Self {
        match err {
            Error::Sqlite(err) => StoreError::Backend(err.to_string()),
            Error::Store(err) => err,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(err) => write!(f, "database error: {err}"),
            Self::Store(err) => err.fmt(f),
        }
    }
}
