//! Every URL core serves, grouped by resource; layers applied once.

use std::time::Instant;

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use http::HeaderValue;
use tracing::Instrument;

use crate::handlers;
use crate::AppState;

pub fn router(app: AppState) -> Router {
    let api = Router::new()
        .merge(handlers::system::routes())
        .merge(handlers::users::routes())
        .merge(handlers::robots::routes())
        .merge(handlers::projects::routes())
        .merge(handlers::members::routes())
        .merge(handlers::immutable::routes())
        .merge(handlers::quotas::routes())
        .merge(handlers::repositories::routes())
        .merge(handlers::artifacts::routes())
        .merge(handlers::tags::routes())
        .merge(handlers::audit::routes())
        .merge(handlers::gc::routes())
        .merge(handlers::health::routes());
    Router::new()
        .nest("/api/v2.0", api)
        .merge(handlers::session::routes())
        .merge(handlers::token::routes())
        .layer(middleware::from_fn_with_state(
            app.clone(),
            handlers::session::expose_csrf,
        ))
        .layer(middleware::from_fn(request_span))
        .with_state(app)
}

/// One span per request with the request id that crosses services in
/// `X-Request-Id`, echoed on the response, and one access log line.
async fn request_span(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let span = tracing::info_span!("request", request_id = %id, http.method = %req.method(), http.path = %req.uri().path());
    let started = Instant::now();
    async move {
        let mut resp = next.run(req).await;
        tracing::info!(
            status = resp.status().as_u16(),
            duration_ms = started.elapsed().as_millis() as u64,
            "request"
        );
        if let Ok(v) = HeaderValue::from_str(&id) {
            resp.headers_mut().insert("x-request-id", v);
        }
        resp
    }
    .instrument(span)
    .await
}
