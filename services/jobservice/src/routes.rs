//! Jobservice's HTTP surface: its health (with queue depths) for core's
//! `/api/v2.0/health` and for operators.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::AppState;

pub fn router(app: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/api/v1/stats", get(health))
        .with_state(app)
}

/// 200 with the queue's depth and the open tasks per job when Postgres and
/// Redis answer; 503 naming what does not.
async fn health(State(app): State<AppState>) -> (StatusCode, Json<Value>) {
    let depth = app.queue.depth().await;
    let open = wharf_catalog::jobs::open_counts(&app.db).await;
    let mut errors = Vec::new();
    if let Err(e) = &depth {
        errors.push(format!("redis: {e}"));
    }
    if let Err(e) = &open {
        errors.push(format!("database: {e}"));
    }
    let tasks: Vec<Value> = open
        .unwrap_or_default()
        .into_iter()
        .map(|(job, status, count)| json!({"job_name": job, "status": status, "count": count}))
        .collect();
    let body = json!({
        "status": if errors.is_empty() { "healthy" } else { "unhealthy" },
        "errors": errors,
        "worker_id": app.worker_id,
        "workers": app.config.max_job_workers,
        "busy_workers": app.busy.load(Ordering::Relaxed),
        "queue": {"key": app.queue.key(), "depth": depth.unwrap_or(-1)},
        "tasks": tasks,
    });
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}
