//! What each handler module is given: a part of the application made for
//! it, holding only the store roles and settings its handlers use.

use std::ops::Deref;
use std::sync::Arc;

use axum::extract::FromRef;

use crate::AppState;

/// A handler module's part, behind one pointer: axum clones a handler's
/// state for every request, and a clone is one counter increment.
pub struct Part<D>(Arc<D>);

impl<D> Part<D> {
    pub fn new(deps: D) -> Self {
        Self(Arc::new(deps))
    }
}

impl<D> Clone for Part<D> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<D> Deref for Part<D> {
    type Target = D;

    fn deref(&self) -> &D {
        &self.0
    }
}

/// Where the application keeps a module's part.
pub trait PartOf: Sized {
    fn of(state: &AppState) -> &Part<Self>;
}

impl<D: PartOf> FromRef<AppState> for Part<D> {
    fn from_ref(state: &AppState) -> Self {
        D::of(state).clone()
    }
}
