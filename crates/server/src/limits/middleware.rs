//! The layer in front of every API route: authenticate, decide, answer
//! 429 or pass the request on with the agent attached, and put the
//! rate-limit headers on the answer.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use endusers_core::{Decision, RatePolicy};

use super::Family;
use crate::AppState;
use crate::auth::{self, Caller};
use crate::error::ApiError;

const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

fn policy_for<'a>(
    state: &'a AppState,
    family: Family,
    overrides: &'a endusers_store::AgentLimits,
) -> &'a RatePolicy {
    let settings = &state.config.rate_limits;
    let (agents_own, default) = match family {
        Family::EndUser => (overrides.end_user.as_ref(), &settings.end_user),
        Family::Global => (overrides.global.as_ref(), &settings.global),
        Family::FailedAuth => (None, &settings.failed_auth),
    };
    agents_own.unwrap_or(default)
}

fn with_headers(mut response: Response, policy: &RatePolicy, decision: &Decision) -> Response {
    if policy.is_off() {
        return response;
    }
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&policy.header()) {
        headers.insert(RATELIMIT_POLICY, value);
    }
    if let Some(value) = decision
        .header(policy)
        .and_then(|v| HeaderValue::from_str(&v).ok())
    {
        headers.insert(RATELIMIT, value);
    }
    if let Some(seconds) = decision.retry_after_secs() {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

fn refused(policy: &RatePolicy, decision: &Decision) -> Response {
    let seconds = decision.retry_after_secs().unwrap_or(1);
    let error = ApiError::RateLimited(Some(seconds));
    with_headers(error.into_response(), policy, decision)
}

pub async fn enforce(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let Some(family) = Family::of_path(request.uri().path()) else {
        return next.run(request).await;
    };
    // Read only where a limit is on: with every limit off, no request
    // needs the time here.
    let now = || state.clock.now();
    // Refused keys are limited per client address: an address that has
    // used up that budget is turned away before its key is looked up.
    let guard = &state.config.rate_limits.failed_auth;
    let address = if guard.is_off() {
        String::new()
    } else {
        request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string())
    };
    if !guard.is_off()
        && let Some(decision) = state.limiter.failed_auth_refusal(&address, guard, now())
    {
        return refused(guard, &decision);
    }
    let key = match auth::authenticate(&state, request.headers()).await {
        Ok(key) => key,
        Err(ApiError::Unauthorized(reason)) => {
            // The route answers: its `Caller` turns this into the 401, while
            // a wrong method still gets its 405 and no lookup happens twice.
            request.extensions_mut().insert(auth::Refused(reason));
            if guard.is_off() {
                return next.run(request).await;
            }
            let decision = state.limiter.failed_auth(&address, guard, now());
            return with_headers(next.run(request).await, guard, &decision);
        }
        Err(error) => return error.into_response(),
    };
    let policy = policy_for(&state, family, key.limits());
    if policy.is_off() {
        request
            .extensions_mut()
            .insert(Caller { agent: key.agent() });
        return next.run(request).await;
    }
    let decision = state
        .limiter
        .check(family, key.agent(), policy, now())
        .await;
    if !decision.allowed {
        return refused(policy, &decision);
    }
    request
        .extensions_mut()
        .insert(Caller { agent: key.agent() });
    with_headers(next.run(request).await, policy, &decision)
}
