//! Liveness and readiness for orchestrators and load balancers.

use std::sync::Arc;

use axum::extract::State;
use endusers_store::Maintenance;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::answer::Json;
use crate::api::part::{Part, PartOf};
use crate::error::{ApiError, ErrorEnvelope};

/// What the readiness check uses.
pub struct Readiness {
    pub store: Arc<dyn Maintenance>,
}

/// The handler's [`Readiness`].
pub type HealthApi = Part<Readiness>;

impl PartOf for Readiness {
    fn of(state: &AppState) -> &Part<Self> {
        &state.health
    }
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "operations", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The process can serve: its database answers.
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "operations", responses(
    (status = 200, body = Health),
    (status = 503, description = "The database does not answer", body = ErrorEnvelope),
))]
pub async fn readyz(State(state): State<HealthApi>) -> Result<Json<Health>, ApiError> {
    match state.store.ping().await {
        Ok(()) => Ok(Json(Health { status: "ready" })),
        Err(err) => {
            tracing::warn!(error = %err, "readiness check failed");
            Err(ApiError::Unavailable("the database is not reachable"))
        }
    }
}
