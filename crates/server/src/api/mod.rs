//! The HTTP surface: every route, its OpenAPI description, and Swagger UI.
//! Routes and their documentation come from the same annotated handlers,
//! so the published document cannot drift from what is served.

pub mod channels;
pub mod conversations;
pub mod end_users;
pub mod health;
pub mod part;
pub mod webhooks;

use axum::Router;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use endusers_core::EndUserId;

use crate::AppState;
use crate::error::ApiError;

/// An id (in a path or a body) that cannot have been made here names
/// nothing: 404, the same as an unknown one.
pub(crate) fn known_id(raw: &str, not_found: &'static str) -> Result<EndUserId, ApiError> {
    EndUserId::parse(raw).ok_or(ApiError::NotFound(not_found))
}

/// The longest `description` a channel or webhook endpoint may have.
const MAX_DESCRIPTION_CHARS: usize = 1024;

/// A channel's or webhook endpoint's `description`: at most
/// [`MAX_DESCRIPTION_CHARS`] characters.
pub(crate) fn check_description(description: String) -> Result<String, ApiError> {
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(ApiError::Invalid(format!(
            "description: must be at most {MAX_DESCRIPTION_CHARS} characters"
        )));
    }
    Ok(description)
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "endusers",
        description = "End-user profiles for a customer-support AI agent, wire-compatible with Ada's End Users API v2.",
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "end-users", description = "End-user profiles"),
        (name = "webhooks", description = "Signed event deliveries to your endpoints"),
        (name = "channels", description = "Custom channels"),
        (name = "conversations", description = "Conversations, which keep their end users alive"),
        (name = "operations", description = "Health and readiness"),
    ),
    components(schemas(crate::error::ErrorEnvelope))
)]
struct ApiDoc;

/// Declares the `bearerAuth` scheme, so Swagger UI's "Authorize" takes a key.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearerAuth",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

fn documented_routes() -> OpenApiRouter<AppState> {
    let api = OpenApiRouter::new()
        .routes(routes!(end_users::create, end_users::list))
        .routes(routes!(
            end_users::get,
            end_users::update,
            end_users::delete
        ))
        .routes(routes!(webhooks::create, webhooks::list))
        .routes(routes!(webhooks::event_types))
        .routes(routes!(webhooks::get, webhooks::update, webhooks::delete))
        .routes(routes!(webhooks::secret))
        .routes(routes!(webhooks::rotate_secret))
        .routes(routes!(webhooks::attempts))
        .routes(routes!(webhooks::recover))
        .routes(routes!(channels::create, channels::list))
        .routes(routes!(channels::get))
        .routes(routes!(conversations::create))
        .routes(routes!(conversations::get, conversations::update))
        .routes(routes!(conversations::end));
    // The paths carry their `/api` prefix themselves rather than through
    // `nest`, which would strip and rebuild every request's URI.
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(api)
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
}

/// The OpenAPI document the server publishes at `/api/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    documented_routes().split_for_parts().1
}

/// Every route, plus `/api/openapi.json` and Swagger UI at `/api/docs`.
pub fn router() -> Router<AppState> {
    let (router, openapi) = documented_routes().split_for_parts();
    router.merge(SwaggerUi::new("/api/docs").url("/api/openapi.json", openapi))
}
