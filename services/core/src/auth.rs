//! Who is calling: basic credentials of a user or robot, the portal's session
//! cookie (with its CSRF token on state-changing calls), or nobody.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use base64::Engine;
use http::request::Parts;
use http::Method;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wharf_catalog::robots::Permission;

use crate::error::{ApiError, Result};
use crate::AppState;

pub const SESSION_COOKIE: &str = "sid";
pub const CSRF_HEADER: &str = "x-harbor-csrf-token";

#[derive(Debug, Clone)]
pub struct UserCtx {
    pub id: i64,
    pub username: String,
    pub sysadmin: bool,
}

#[derive(Debug, Clone)]
pub struct RobotCtx {
    pub id: i64,
    pub name: String,
    pub level: String,
    pub project_id: Option<i64>,
    pub permissions: Vec<Permission>,
}

#[derive(Debug, Clone)]
pub enum Principal {
    Anonymous,
    User(UserCtx),
    Robot(RobotCtx),
}

impl Principal {
    pub fn is_sysadmin(&self) -> bool {
        matches!(self, Principal::User(u) if u.sysadmin)
    }

    pub fn username(&self) -> &str {
        match self {
            Principal::Anonymous => "anonymous",
            Principal::User(u) => &u.username,
            Principal::Robot(r) => &r.name,
        }
    }

    pub fn user(&self) -> Option<&UserCtx> {
        match self {
            Principal::User(u) => Some(u),
            _ => None,
        }
    }

    /// Refuses anonymous callers with 401.
    pub fn require_auth(&self) -> Result<()> {
        match self {
            Principal::Anonymous => {
                Err(ApiError::Unauthorized("authentication is required".into()))
            }
            _ => Ok(()),
        }
    }

    pub fn require_sysadmin(&self) -> Result<()> {
        self.require_auth()?;
        if self.is_sysadmin() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "only system administrators may do this".into(),
            ))
        }
    }
}

/// What a browser session holds in Redis.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub user_id: i64,
    pub csrf: String,
}

/// A short-lived memo of verified basic credentials, so an API client that
/// sends basic auth on every call does not pay for argon2 every time. Keys
/// are salted hashes of the credentials; the salt never leaves the process.
pub struct CredentialCache {
    salt: [u8; 32],
    entries: Mutex<HashMap<[u8; 32], (i64, bool, Instant)>>,
}

const CREDENTIAL_TTL: Duration = Duration::from_secs(60);

impl Default for CredentialCache {
    fn default() -> Self {
        CredentialCache {
            salt: rand::random(),
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl CredentialCache {
    fn key(&self, user: &str, secret: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.salt);
        h.update(user.as_bytes());
        h.update([0]);
        h.update(secret.as_bytes());
        h.finalize().into()
    }

    /// (id, is_robot) of credentials verified less than a minute ago.
    fn get(&self, user: &str, secret: &str) -> Option<(i64, bool)> {
        let k = self.key(user, secret);
        let map = self.entries.lock().expect("credential cache");
        map.get(&k)
            .filter(|(_, _, at)| at.elapsed() < CREDENTIAL_TTL)
            .map(|(id, robot, _)| (*id, *robot))
    }

    fn put(&self, user: &str, secret: &str, id: i64, robot: bool) {
        let k = self.key(user, secret);
        let mut map = self.entries.lock().expect("credential cache");
        if map.len() > 10_000 {
            map.retain(|_, (_, _, at)| at.elapsed() < CREDENTIAL_TTL);
        }
        map.insert(k, (id, robot, Instant::now()));
    }

    /// Forgets everything: called when any password or secret changes.
    pub fn clear(&self) {
        self.entries.lock().expect("credential cache").clear();
    }
}

fn basic_credentials(parts: &Parts) -> Option<(String, String)> {
    let v = parts
        .headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let s = String::from_utf8(decoded).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Checks a user's or robot's basic credentials. `Ok(None)` means wrong credentials.
pub async fn authenticate(
    app: &AppState,
    username: &str,
    secret: &str,
) -> Result<Option<Principal>> {
    if let Some((id, robot)) = app.credentials.get(username, secret) {
        let p = if robot {
            load_robot(app, id, username).await?
        } else {
            load_user(app, id).await?
        };
        if p.is_some() {
            return Ok(p);
        }
    }
    if username.starts_with(&app.config.robot_name_prefix) {
        let robot = wharf_catalog::robots::by_full_name(&app.db, username).await?;
        let ok =
            crate::password::verify(robot.as_ref().map(|r| r.secret_hash.clone()), secret).await;
        let Some(robot) = robot.filter(|_| ok) else {
            return Ok(None);
        };
        app.credentials.put(username, secret, robot.id, true);
        return load_robot(app, robot.id, username).await;
    }
    let user = wharf_catalog::users::by_name(&app.db, username).await?;
    let ok = crate::password::verify(user.as_ref().map(|u| u.password_hash.clone()), secret).await;
    let Some(user) = user.filter(|_| ok) else {
        return Ok(None);
    };
    app.credentials.put(username, secret, user.user_id, false);
    Ok(Some(Principal::User(UserCtx {
        id: user.user_id,
        username: user.username,
        sysadmin: user.sysadmin_flag,
    })))
}

async fn load_user(app: &AppState, id: i64) -> Result<Option<Principal>> {
    Ok(wharf_catalog::users::by_id(&app.db, id).await?.map(|u| {
        Principal::User(UserCtx {
            id: u.user_id,
            username: u.username,
            sysadmin: u.sysadmin_flag,
        })
    }))
}

/// A robot that is disabled or expired authenticates as nobody.
async fn load_robot(app: &AppState, id: i64, name: &str) -> Result<Option<Principal>> {
    let Some(r) = wharf_catalog::robots::by_full_name(&app.db, name)
        .await?
        .filter(|r| r.id == id)
    else {
        return Ok(None);
    };
    let now = chrono::Utc::now().timestamp();
    if r.disabled || (r.expires_at > 0 && r.expires_at <= now) {
        return Ok(None);
    }
    let permissions = wharf_catalog::robots::permissions(&app.db, r.id).await?;
    Ok(Some(Principal::Robot(RobotCtx {
        id: r.id,
        name: r.name,
        level: r.level,
        project_id: r.project_id,
        permissions,
    })))
}

pub fn session_key(app: &AppState, sid: &str) -> String {
    format!("{}session:{sid}", app.config.redis.prefix)
}

async fn from_session(app: &AppState, parts: &Parts, sid: &str) -> Result<Option<Principal>> {
    let mut redis = app.redis.clone();
    let key = session_key(app, sid);
    let raw: Option<String> = redis.get(&key).await?;
    let Some(session) = raw.and_then(|r| serde_json::from_str::<Session>(&r).ok()) else {
        return Ok(None);
    };
    let unsafe_method = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
    if unsafe_method {
        let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        if sent != Some(session.csrf.as_str()) {
            return Err(ApiError::Forbidden(
                "CSRF token is missing or invalid; send the X-Harbor-CSRF-Token header".into(),
            ));
        }
    }
    // Sliding expiry: an active session stays alive.
    let _: () = redis
        .expire(&key, app.config.session_timeout_secs as i64)
        .await?;
    load_user(app, session.user_id).await
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Principal> {
        if let Some(p) = parts.extensions.get::<Principal>() {
            return Ok(p.clone());
        }
        let principal = if let Some((user, secret)) = basic_credentials(parts) {
            authenticate(app, &user, &secret)
                .await?
                .ok_or_else(|| ApiError::Unauthorized("invalid username or password".into()))?
        } else if let Some(sid) = cookie(parts, SESSION_COOKIE) {
            from_session(app, parts, sid)
                .await?
                .unwrap_or(Principal::Anonymous)
        } else {
            Principal::Anonymous
        };
        parts.extensions.insert(principal.clone());
        Ok(principal)
    }
}
