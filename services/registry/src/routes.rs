//! Every URL the registry serves, on one screen. `/v2/` is dispatched by
//! [`crate::endpoint::parse`] because repository names contain `/`.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use http::{HeaderValue, Method, StatusCode};
use tracing::Instrument;

use crate::auth::Caller;
use crate::endpoint::{self, Endpoint};
use crate::error::{Error, Result};
use crate::handlers;
use crate::handlers::{blobs, listing, manifests, uploads};
use crate::AppState;

pub fn router(app: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/v2", any(v2))
        .route("/v2/", any(v2))
        .route("/v2/{*rest}", any(v2))
        .nest("/api/internal", handlers::internal::routes(app.clone()))
        .layer(middleware::from_fn(request_span))
        .with_state(app)
}

async fn health(State(app): State<AppState>) -> Response {
    let db = sqlx::query("SELECT 1").execute(&app.db).await.is_ok();
    let storage = app.store.layout.root().is_dir();
    let status = if db && storage {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if status == StatusCode::OK { "healthy" } else { "unhealthy" },
        "components": [
            {"name": "database", "status": if db { "healthy" } else { "unhealthy" }},
            {"name": "storage", "status": if storage { "healthy" } else { "unhealthy" }},
        ]
    });
    (status, axum::Json(body)).into_response()
}

/// One span per request carrying the request id that crosses services in
/// `X-Request-Id`, and one access log line when it ends.
async fn request_span(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(|| {
            uuid::Builder::from_random_bytes(rand::random())
                .into_uuid()
                .to_string()
        });
    let span = tracing::info_span!("request", request_id = %id, http.method = %req.method(), http.path = %req.uri().path(), repository.name = tracing::field::Empty);
    let started = Instant::now();
    async move {
        let mut resp = next.run(req).await;
        let status = resp.status().as_u16();
        tracing::info!(
            status,
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

async fn v2(State(app): State<AppState>, req: Request<Body>) -> Response {
    // A write runs to completion even when its client goes away (an HTTP/2
    // reset drops the handler): cut short, an upload chunk would stay on disk
    // past the session's offset, or files would be placed without their commit.
    let res = if matches!(*req.method(), Method::GET | Method::HEAD) {
        dispatch(app, req).await
    } else {
        tokio::spawn(dispatch(app, req).in_current_span())
            .await
            .unwrap_or_else(|e| Err(Error::Internal(e.into())))
    };
    let mut resp = match res {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    resp.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    resp
}

async fn dispatch(app: AppState, req: Request<Body>) -> Result<Response> {
    let endpoint = endpoint::parse(req.method(), req.uri().path())?;
    let caller = match &app.verifier {
        Some(v) => v.authorize(req.headers(), &endpoint)?,
        None => Caller::Open,
    };
    if let Some(name) = endpoint.repository() {
        tracing::Span::current().record("repository.name", name.as_str());
    }
    use Endpoint::*;
    match endpoint {
        Base => Ok((StatusCode::OK, axum::Json(serde_json::json!({}))).into_response()),
        Catalog => listing::catalog(&app, req.uri().query()).await,
        GetManifest {
            name,
            reference,
            head,
        } => manifests::get(&app, &name, &reference, head, req.headers()).await,
        PutManifest { name, reference } => {
            manifests::put(&app, &caller, &name, &reference, req).await
        }
        DeleteManifest { name, reference } => {
            manifests::delete(&app, &caller, &name, &reference).await
        }
        GetBlob { name, digest, head } => {
            blobs::get(&app, &name, &digest, head, req.headers()).await
        }
        DeleteBlob { name, digest } => blobs::delete(&app, &name, &digest).await,
        StartUpload { name } => uploads::start(&app, &caller, &name, req).await,
        UploadStatus { name, id } => uploads::status(&app, &name, id).await,
        PatchUpload { name, id } => uploads::patch(&app, &name, id, req).await,
        PutUpload { name, id } => uploads::put(&app, &caller, &name, id, req).await,
        CancelUpload { name, id } => uploads::cancel(&app, &name, id).await,
        ListTags { name } => listing::tags(&app, &name, req.uri().query()).await,
        Referrers { name, digest } => {
            listing::referrers(&app, &name, &digest, req.uri().query()).await
        }
    }
}
