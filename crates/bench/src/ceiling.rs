//! The ceiling: the least a server can do for the same GET (route the path,
//! answer fixed bytes of the size of an end user). It runs as a process of
//! its own (`endusers-bench ceiling-serve`), like the server under test, so
//! both pay the same for crossing processes and sharing the cores. It
//! answers without authentication, database or rate-limit headers: the
//! difference is what the server spends on its own work.

use std::net::SocketAddr;

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;

use crate::Result;

/// An end user as `GET /api/v2/end-users/{id}` answers it (same fields,
/// a few more of them filled in), 430 bytes.
pub const BODY: &str = concat!(
    r#"{"end_user_id":"01a201e46e758e900110d720","external_id":"crm-4242","#,
    r#""profile":{"first_name":"User 4242","last_name":"Santos","display_name":null,"#,
    r#""avatar":null,"email":"user4242@example.com","language":"pt-BR","#,
    r#""metadata":{"n":1234567,"plan":"pro","seats":4242},"#,
    r#""system_properties":{"sunshine_user_id":null,"last_conversation_at":null}},"#,
    r#""created_at":"2026-11-22T06:14:37.429703+00:00","#,
    r#""updated_at":"2026-11-22T06:14:37.897563+00:00"}"#
);

/// Serves [`BODY`] on `GET /api/v2/end-users/{id}` until killed.
pub async fn serve(listen: SocketAddr) -> Result<()> {
    let app = Router::new().route(
        "/api/v2/end-users/{id}",
        get(|| async { ([(CONTENT_TYPE, "application/json")], BODY) }),
    );
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!("ceiling: listening on {}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(terminated())
        .await?;
    Ok(())
}

/// The first SIGTERM or SIGINT.
async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut terminate) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_body_is_json_of_an_end_users_size() {
        assert_eq!(super::BODY.len(), 430);
        assert!(serde_json::from_str::<serde_json::Value>(super::BODY).is_ok());
    }
}
