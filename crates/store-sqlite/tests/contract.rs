//! The storage contract, run against the SQLite backend.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use endusers_store::contract::{Fixture, NOW};

/// A fresh store on a new file in a temporary directory.
async fn fresh_store() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("contract.db");
    let store = endusers_store_sqlite::SqliteStore::open(&file, Default::default(), NOW)
        .await
        .unwrap();
    Fixture::new(Arc::new(store), dir)
}

endusers_store::contract_suite!(fresh_store);
