//! The backend a `database_url` names. The one place that knows every
//! backend this build has; everything else sees the store traits.

use std::sync::Arc;

use endusers_core::Timestamp;
use endusers_server::vault::KeyFile;
use endusers_store::{Store, StoreError};
use endusers_store_sqlite as sqlite;

/// Opens the backend a `database_url` names, runs its migrations, and makes
/// sure an agent `default` exists when there is none.
pub async fn open(database_url: &str, now: Timestamp) -> Result<Arc<dyn Store>, StoreError> {
    if let Some(path) = sqlite::path_from_url(database_url) {
        let store = sqlite::SqliteStore::open(&path, sqlite::Options::default(), now).await?;
        return Ok(Arc::new(store));
    }
    Err(StoreError::Config(unsupported_url(database_url)))
}

/// The key file that holds the master keys when `master_key` is not
/// configured: beside the database file, which only the embedded backend
/// has.
pub fn key_file(database_url: &str) -> Option<KeyFile> {
    sqlite::path_from_url(database_url).map(|path| KeyFile::beside(&path))
}

/// Why `database_url` names no backend this build has, naming only its
/// scheme: the rest of a URL may carry a password.
fn unsupported_url(database_url: &str) -> String {
    match database_url.split_once(':') {
        Some(("postgres" | "postgresql", _)) => {
            "database_url: the PostgreSQL backend is not built yet; use sqlite://PATH".to_owned()
        }
        Some((scheme, _)) => {
            format!("database_url must start with sqlite:// (got scheme {scheme:?})")
        }
        None => "database_url must start with sqlite:// (it has no scheme)".to_owned(),
    }
}

/// `database_url` as logs and messages may show it: a SQLite URL whole (a
/// path), any other without the user, password, query and fragment, which
/// may carry credentials. A password typed without percent-encoding may
/// hold `/`, `?`, `#` or `@`; where the credentials cannot be told from the
/// host for that reason, nothing after the scheme is shown.
pub fn shown_url(database_url: &str) -> std::borrow::Cow<'_, str> {
    if sqlite::path_from_url(database_url).is_some() {
        return database_url.into();
    }
    let Some((scheme, rest)) = database_url.split_once("://") else {
        return "(a database_url that is not a URL)".into();
    };
    let address = match rest.split_once('@') {
        None => rest,
        Some((credentials, address))
            if !credentials.contains(['/', '?', '#']) && !address.contains('@') =>
        {
            address
        }
        Some(_) => return format!("{scheme}://(address hidden: it may hold a password)").into(),
    };
    let address = address.split(['?', '#']).next().unwrap_or_default();
    format!("{scheme}://{address}").into()
}

#[cfg(test)]
mod url_tests {
    use super::unsupported_url;

    #[test]
    fn an_unsupported_url_is_named_by_its_scheme_only() {
        let postgres = unsupported_url("postgres://app:hunter2@db.internal/endusers");
        assert!(
            postgres.contains("PostgreSQL backend is not built yet"),
            "{postgres}"
        );
        let other = unsupported_url("mysql://app:hunter2@db/endusers");
        assert!(other.contains("\"mysql\""), "{other}");
        let bare = unsupported_url("hunter2");
        assert!(bare.contains("no scheme"), "{bare}");
        for message in [postgres, other, bare] {
            assert!(!message.contains("hunter2"), "{message}");
        }
    }

    #[test]
    fn a_shown_url_keeps_paths_and_hosts_and_drops_credentials() {
        use super::shown_url;
        assert_eq!(shown_url("sqlite://./data/x.db"), "sqlite://./data/x.db");
        assert_eq!(
            shown_url(
                "postgres://app:hunter2@db.internal:5432/endusers?sslmode=require&password=hunter2"
            ),
            "postgres://db.internal:5432/endusers"
        );
        assert_eq!(
            shown_url("postgres://db.internal"),
            "postgres://db.internal"
        );
        assert_eq!(
            shown_url("postgres://db.internal/endusers?password=hunter2"),
            "postgres://db.internal/endusers"
        );
        assert!(!shown_url("hunter2").contains("hunter2"));
        // Passwords typed without percent-encoding may hold the characters
        // that end a URL's authority, or an `@`: where the credentials
        // cannot be told from the host, nothing after the scheme is shown.
        for url in [
            "postgres://app:hunt/er2@db.internal/endusers",
            "postgres://app:hunt?er2@db.internal/endusers",
            "postgres://app:hunt#er2@db.internal/endusers",
            "postgres://app:hunt@er2@db.internal/endusers",
            "postgres://db.internal/endusers?user=app@corp&password=hunter2",
        ] {
            let shown = shown_url(url);
            assert!(!shown.contains("hunt"), "{url} shown as {shown}");
            assert!(shown.starts_with("postgres://"), "{shown}");
        }
    }
}
