//! Garbage collection as Harbor's API has it: `/system/gc` (history),
//! `/system/gc/{id}` (get, and PUT to stop), `/system/gc/{id}/log` and
//! `/system/gc/schedule`. Core only records and enqueues; jobservice runs
//! the collector and the registry unlinks.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::Utc;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use wharf_catalog::gc::RunRow;
use wharf_catalog::jobs::{self, Execution};
use wharf_jobs::cron::Cron;
use wharf_jobs::GARBAGE_COLLECTION;

use crate::auth::Principal;
use crate::error::{ApiError, Result};
use crate::extract::{Json, Path, Query};
use crate::handlers::users::{api_uri, created, timestamp};
use crate::paging::{paged, Filter, ListQuery};
use crate::{App, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/system/gc", get(list_gc_history))
        .route(
            "/system/gc/schedule",
            get(get_gc_schedule)
                .post(create_gc_schedule)
                .put(update_gc_schedule),
        )
        .route("/system/gc/{id}", get(get_gc).put(stop_gc))
        .route("/system/gc/{id}/log", get(get_gc_log))
}

const RESOURCE: &str = "garbage-collection";

/// System administrators, and system robots granted `garbage-collection`.
fn require(who: &Principal, action: &str) -> Result<()> {
    who.require_auth()?;
    let allowed = match who {
        Principal::User(u) => u.sysadmin,
        Principal::Robot(r) => r.permissions.iter().any(|p| {
            p.kind == "system"
                && (p.resource == RESOURCE || p.resource == "*")
                && (p.action == action || p.action == "*")
        }),
        Principal::Anonymous => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "{action} on garbage collection needs a system administrator"
        )))
    }
}

fn parse_id(raw: &str) -> Result<i64> {
    raw.parse()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::BadRequest(format!("gc id {raw:?} is not a number")))
}

/// Harbor's `GCHistory`, plus `progress` from its latest run.
fn history_json(e: &Execution, run: Option<&RunRow>) -> Value {
    let kind = e.trigger.clone();
    let mut v = json!({
        "id": e.id,
        "job_name": GARBAGE_COLLECTION,
        "job_kind": kind,
        "job_parameters": e.extra_attrs.to_string(),
        "schedule": {"type": schedule_type_of_trigger(&e.trigger), "cron": ""},
        "job_status": e.status,
        "deleted": false,
        "creation_time": timestamp(e.start_time),
        "update_time": timestamp(e.end_time.unwrap_or(e.update_time)),
    });
    if let Some(msg) = &e.status_message {
        v["status_message"] = json!(msg);
    }
    if let Some(r) = run {
        v["progress"] = json!({
            "phase": r.phase,
            "examined": r.examined,
            "purged_blobs": r.deleted,
            "purged_manifests": r.manifests_deleted,
            "freed_space": r.bytes_freed,
            "kept": r.kept,
            "errors": r.errors,
            "dry_run": r.dry_run,
        });
    }
    v
}

fn schedule_type_of_trigger(trigger: &str) -> &'static str {
    if trigger == wharf_jobs::TRIGGER_SCHEDULE {
        "Schedule"
    } else {
        "Manual"
    }
}

async fn list_gc_history(
    State(app): State<AppState>,
    who: Principal,
    uri: http::Uri,
    Query(lq): Query<ListQuery>,
) -> Result<Response> {
    require(&who, "list")?;
    let page = lq.page()?;
    let mut status = None;
    for (k, f) in lq.filters()? {
        match (k.as_str(), f) {
            ("job_status" | "status", Filter::Exact(s)) => status = Some(s),
            (other, _) => {
                return Err(ApiError::BadRequest(format!(
                    "cannot filter GC history by {other:?}; use job_status=<status>"
                )))
            }
        }
    }
    let mut oldest_first = false;
    for (k, desc) in lq.sort(&["creation_time", "id", "update_time"])? {
        if k == "creation_time" || k == "id" {
            oldest_first = !desc;
        }
    }
    let (execs, total) = jobs::list_executions(
        &app.db,
        GARBAGE_COLLECTION,
        status.as_deref(),
        oldest_first,
        page.limit(),
        page.offset(),
    )
    .await?;
    let ids: Vec<i64> = execs.iter().map(|e| e.id).collect();
    let runs = wharf_catalog::gc::runs_by_executions(&app.db, &ids).await?;
    let items: Vec<Value> = execs
        .iter()
        .map(|e| history_json(e, runs.iter().find(|r| r.execution_id == Some(e.id))))
        .collect();
    Ok(paged(items, total, page, &api_uri(&uri)))
}

async fn execution(app: &App, raw: &str) -> Result<Execution> {
    let id = parse_id(raw)?;
    jobs::get_execution(&app.db, id)
        .await?
        .filter(|e| e.vendor_type == GARBAGE_COLLECTION)
        .ok_or_else(|| ApiError::NotFound(format!("garbage collection {id} not found")))
}

async fn get_gc(
    State(app): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    require(&who, "read")?;
    let e = execution(&app, &id).await?;
    let run = wharf_catalog::gc::run_by_execution(&app.db, e.id).await?;
    Ok(Json(history_json(&e, run.as_ref())))
}

/// Harbor's `StopGC`: the run stops after the chunk in hand, with nothing
/// left half-deleted (what is `deleting` is finished by the next run).
async fn stop_gc(
    State(app): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    require(&who, "update")?;
    let e = execution(&app, &id).await?;
    let mut tx = app.db.begin().await?;
    let stopping = jobs::request_stop(&mut tx, e.id).await?;
    if let Some(run) = wharf_catalog::gc::run_by_execution(&mut *tx, e.id).await? {
        // Seen by the collector between chunks, sooner than the worker's heartbeat.
        wharf_catalog::gc::request_stop(&mut *tx, run.id).await?;
    }
    tx.commit().await?;
    if !stopping {
        return Err(ApiError::Precondition(format!(
            "garbage collection {} has already finished ({})",
            e.id, e.status
        )));
    }
    Ok(StatusCode::OK)
}

async fn get_gc_log(
    State(app): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Response> {
    require(&who, "read")?;
    let e = execution(&app, &id).await?;
    let log = jobs::execution_log(&app.db, e.id).await?;
    Ok((
        [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        log,
    )
        .into_response())
}

/// Harbor's schedule body: `{"schedule": {"type", "cron"}, "parameters": {…}}`.
#[derive(Debug, Deserialize)]
struct ScheduleBody {
    schedule: Option<ScheduleObj>,
    #[serde(default)]
    parameters: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
struct ScheduleObj {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    cron: Option<String>,
}

/// Checks the parameters a GC takes, keeping what Harbor clients send.
fn check_parameters(p: &Map<String, Value>) -> Result<Value> {
    for key in ["delete_untagged", "dry_run"] {
        if let Some(v) = p.get(key) {
            if !v.is_boolean() {
                return Err(ApiError::BadRequest(format!(
                    "parameters.{key} must be true or false"
                )));
            }
        }
    }
    if let Some(w) = p.get("workers") {
        match w.as_u64() {
            Some(1..=16) => {}
            _ => {
                return Err(ApiError::BadRequest(
                    "parameters.workers must be a number from 1 to 16".into(),
                ))
            }
        }
    }
    Ok(Value::Object(p.clone()))
}

async fn create_gc_schedule(
    State(app): State<AppState>,
    who: Principal,
    uri: http::Uri,
    Json(body): Json<ScheduleBody>,
) -> Result<Response> {
    require(&who, "create")?;
    match kick(&app, &body).await? {
        Some(id) => {
            let path = api_uri(&uri)
                .path()
                .trim_end_matches("/schedule")
                .to_owned();
            Ok(created(format!("{path}/{id}")))
        }
        None => Ok(StatusCode::CREATED.into_response()),
    }
}

async fn update_gc_schedule(
    State(app): State<AppState>,
    who: Principal,
    Json(body): Json<ScheduleBody>,
) -> Result<StatusCode> {
    require(&who, "update")?;
    kick(&app, &body).await?;
    Ok(StatusCode::OK)
}

/// Runs now (`Manual`, returning the execution id), removes the schedule
/// (`None`), or sets the cron schedule (`Hourly`, `Daily`, `Weekly`, `Custom`).
async fn kick(app: &App, body: &ScheduleBody) -> Result<Option<i64>> {
    let Some(s) = &body.schedule else {
        return Err(ApiError::BadRequest(
            "schedule is required: {\"schedule\":{\"type\":\"Manual\"}}".into(),
        ));
    };
    let params = check_parameters(&body.parameters)?;
    let cron = match s.kind.as_str() {
        "Manual" => return start_now(app, &params).await.map(Some),
        "None" => {
            jobs::delete_schedule(&app.db, GARBAGE_COLLECTION, 0).await?;
            return Ok(None);
        }
        "Hourly" => "0 0 * * * *".to_owned(),
        "Daily" => "0 0 0 * * *".to_owned(),
        "Weekly" => "0 0 0 * * 0".to_owned(),
        "Custom" => match s.cron.as_deref().map(str::trim) {
            Some(c) if !c.is_empty() => c.to_owned(),
            _ => {
                return Err(ApiError::BadRequest(
                    "empty cron string for gc schedule".into(),
                ))
            }
        },
        other => {
            return Err(ApiError::BadRequest(format!(
                "schedule.type {other:?} is not one of Manual, None, Hourly, Daily, Weekly, Custom"
            )))
        }
    };
    let parsed = Cron::parse(&cron).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let next = parsed
        .next_after(Utc::now())
        .ok_or_else(|| ApiError::BadRequest(format!("cron {cron:?} never fires")))?;
    jobs::upsert_schedule(
        &app.db,
        &jobs::NewSchedule {
            vendor_type: GARBAGE_COLLECTION,
            vendor_id: 0,
            kind: &s.kind,
            cron: &cron,
            job_name: GARBAGE_COLLECTION,
            payload: &params,
            next_run: next,
        },
    )
    .await?;
    Ok(None)
}

async fn start_now(app: &App, params: &Value) -> Result<i64> {
    if let Some(e) = jobs::open_execution(&app.db, GARBAGE_COLLECTION).await? {
        return Err(ApiError::Conflict(format!(
            "garbage collection {} is already {}; wait for it or stop it first",
            e.id,
            e.status.to_lowercase()
        )));
    }
    wharf_jobs::enqueue(
        &app.db,
        &app.queue,
        &wharf_jobs::Submit {
            job_name: GARBAGE_COLLECTION,
            trigger: wharf_jobs::TRIGGER_MANUAL,
            params,
            max_attempts: 3,
            deadline_secs: 6 * 3600,
        },
    )
    .await
    .map_err(|e| ApiError::Internal(e.into()))
}

async fn get_gc_schedule(State(app): State<AppState>, who: Principal) -> Result<Json<Value>> {
    require(&who, "read")?;
    let Some(s) = jobs::get_schedule(&app.db, GARBAGE_COLLECTION, 0).await? else {
        return Ok(Json(json!({
            "schedule": {"type": "None", "cron": ""},
            "job_parameters": "{}",
        })));
    };
    Ok(Json(json!({
        "id": s.id,
        "job_name": GARBAGE_COLLECTION,
        "job_kind": s.cron,
        "job_parameters": s.payload.to_string(),
        "parameters": s.payload,
        "schedule": {
            "type": s.kind,
            "cron": s.cron,
            "next_scheduled_time": s.next_run.map(timestamp),
        },
        "deleted": false,
        "creation_time": timestamp(s.creation_time),
        "update_time": timestamp(s.update_time),
    })))
}
