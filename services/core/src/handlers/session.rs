//! Browser sessions: `POST /c/login` and `GET /c/log_out`, and the layer that
//! tells a cookie-authenticated client its CSRF token.
//!
//! A session is `{user_id, csrf}` in Redis under `{prefix}session:{sid}` and
//! lives `session_timeout_secs` after its last use; the browser holds only the
//! random `sid` in an HttpOnly cookie. State-changing calls made with the
//! cookie must echo the CSRF token in `X-Harbor-CSRF-Token` (checked in
//! `auth.rs`).

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use http::{HeaderMap, HeaderValue, StatusCode};
use redis::AsyncCommands;
use serde::Deserialize;

use crate::auth::{session_key, Session, CSRF_HEADER, SESSION_COOKIE};
use crate::error::{ApiError, Result};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/c/login", post(login))
        .route("/c/log_out", get(log_out))
}

/// 256 random bits, URL-safe.
fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The session id the browser sent, if any.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, v)| *k == SESSION_COOKIE && !v.is_empty())
        .map(|(_, v)| v)
}

fn cookie_attributes(app: &AppState) -> &'static str {
    if app.config.external_url.starts_with("https://") {
        "; HttpOnly; Path=/; SameSite=Lax; Secure"
    } else {
        "; HttpOnly; Path=/; SameSite=Lax"
    }
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    principal: Option<String>,
    password: Option<String>,
}

/// Signs a user in with their username (or email) and password. Robot
/// accounts have no browser sessions.
async fn login(
    State(app): State<AppState>,
    headers: HeaderMap,
    form: std::result::Result<Form<LoginForm>, FormRejection>,
) -> Result<Response> {
    let Form(form) = form.map_err(|e| ApiError::bad_input("login form", e.body_text()))?;
    let principal = form.principal.unwrap_or_default();
    let password = form.password.unwrap_or_default();
    if principal.is_empty() || password.is_empty() {
        return Err(ApiError::BadRequest(
            "the login form needs the fields principal and password".into(),
        ));
    }
    let user = wharf_catalog::users::by_principal(&app.db, &principal).await?;
    let ok =
        crate::password::verify(user.as_ref().map(|u| u.password_hash.clone()), &password).await;
    let Some(user) = user.filter(|_| ok) else {
        return Err(ApiError::Unauthorized(
            "invalid username or password".into(),
        ));
    };

    let mut redis = app.redis.clone();
    // A new sign-in always gets a new session id (no session fixation).
    if let Some(old) = session_cookie(&headers) {
        let _: () = redis.del(session_key(&app, old)).await?;
    }
    let sid = random_token();
    let session = Session {
        user_id: user.user_id,
        csrf: random_token(),
    };
    let body = serde_json::to_string(&session).map_err(|e| ApiError::Internal(e.into()))?;
    let _: () = redis
        .set_ex(
            session_key(&app, &sid),
            body,
            app.config.session_timeout_secs.max(1),
        )
        .await?;
    tracing::info!(user.name = %user.username, "signed in");

    let mut resp = StatusCode::OK.into_response();
    let h = resp.headers_mut();
    let cookie = format!("{SESSION_COOKIE}={sid}{}", cookie_attributes(&app));
    h.insert(
        http::header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|e| ApiError::Internal(e.into()))?,
    );
    h.insert(
        CSRF_HEADER,
        HeaderValue::from_str(&session.csrf).map_err(|e| ApiError::Internal(e.into()))?,
    );
    Ok(resp)
}

/// Ends the session and clears the cookie; harmless without one.
async fn log_out(State(app): State<AppState>, headers: HeaderMap) -> Result<Response> {
    if let Some(sid) = session_cookie(&headers) {
        let mut redis = app.redis.clone();
        let _: () = redis.del(session_key(&app, sid)).await?;
    }
    let mut resp = StatusCode::OK.into_response();
    let cookie = format!("{SESSION_COOKIE}=; Max-Age=0{}", cookie_attributes(&app));
    resp.headers_mut().insert(
        http::header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|e| ApiError::Internal(e.into()))?,
    );
    Ok(resp)
}

/// Adds `X-Harbor-CSRF-Token` to every response to a request that carries a
/// live session cookie (and no basic credentials, which would take
/// precedence), so a client can learn the token it must send on
/// state-changing calls. Other sites cannot read response headers, so this
/// does not hand the token to a forger.
pub async fn expose_csrf(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let sid = if req.headers().contains_key(http::header::AUTHORIZATION) {
        None
    } else {
        session_cookie(req.headers()).map(str::to_owned)
    };
    let mut resp = next.run(req).await;
    let Some(sid) = sid else {
        return resp;
    };
    if resp.headers().contains_key(CSRF_HEADER) {
        return resp;
    }
    // Read after the handler ran, so a session it just ended shows nothing.
    let mut redis = app.redis.clone();
    let raw: Option<String> = match redis.get(session_key(&app, &sid)).await {
        Ok(raw) => raw,
        Err(e) => {
            tracing::warn!(error = %e, "reading the session for its CSRF token");
            None
        }
    };
    if let Some(session) = raw.and_then(|r| serde_json::from_str::<Session>(&r).ok()) {
        if let Ok(v) = HeaderValue::from_str(&session.csrf) {
            resp.headers_mut().insert(CSRF_HEADER, v);
        }
    }
    resp
}
