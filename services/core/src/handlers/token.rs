//! `/service/token`: the Docker registry token protocol. Basic credentials
//! of a user or robot (or none) → each requested scope answered with what
//! was asked intersected with what RBAC allows → an RS256 JWT the registry
//! verifies itself.

use axum::extract::{RawQuery, State};
use axum::routing::get;
use axum::Router;
use wharf_catalog::projects;
use wharf_token::{Access, TokenResponse};

use crate::auth::Principal;
use crate::error::{ApiError, Result};
use crate::extract::Json;
use crate::rbac;
use crate::{App, AppState};

pub fn routes() -> Router<AppState> {
    Router::new().route("/service/token", get(token))
}

/// `scope` may repeat, and one value may hold several scopes separated by spaces.
fn parse_query(raw: Option<&str>) -> (Option<String>, Vec<String>) {
    let mut service = None;
    let mut scopes = Vec::new();
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "service" => service = Some(v.into_owned()),
            "scope" => scopes.extend(v.split(' ').filter(|s| !s.is_empty()).map(str::to_owned)),
            _ => {}
        }
    }
    (service, scopes)
}

/// The actions to grant: those asked for that are allowed. `*` asked for
/// is granted as `*` when everything is allowed, and otherwise as the
/// allowed actions (each of which `*` asked for). Never more than asked.
pub fn grant(asked: &[String], allowed: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |a: &str| {
        if !out.iter().any(|o| o == a) {
            out.push(a.to_owned());
        }
    };
    for a in asked {
        if allowed.contains(&a.as_str()) {
            add(a);
        } else if a == "*" {
            for x in allowed {
                add(x);
            }
        }
    }
    out
}

/// What `who` may do to the repository `name` (`<project>/<path>`).
async fn repository_actions(app: &App, who: &Principal, name: &str) -> Result<Vec<&'static str>> {
    // A system administrator may do anything, also where there is no such
    // project (yet): the registry's own policy then refuses the push with a
    // message that names the project. Anyone else learns nothing about
    // which names exist.
    if who.is_sysadmin() {
        return Ok(vec!["pull", "push", "delete", "*"]);
    }
    let Some((project_name, rest)) = name.split_once('/') else {
        return Ok(vec![]);
    };
    if rest.is_empty() {
        return Ok(vec![]);
    }
    let Some(project) = projects::by_name(&app.db, project_name).await? else {
        return Ok(vec![]);
    };
    let metadata = projects::metadata_of(&app.db, project.project_id).await?;
    let access = rbac::access(app, who, &project, rbac::is_public(&metadata)).await?;
    Ok(access.repository_actions())
}

async fn token(
    State(app): State<AppState>,
    who: Principal,
    RawQuery(raw): RawQuery,
) -> Result<Json<TokenResponse>> {
    let (service, scopes) = parse_query(raw.as_deref());
    let expected = &app.config.token.service;
    if let Some(s) = service.as_deref().filter(|s| !s.is_empty()) {
        if s != expected {
            return Err(ApiError::BadRequest(format!(
                "unknown service {s:?}; this token service issues tokens for {expected:?}"
            )));
        }
    }
    // `docker login` asks for no scope: only real credentials earn a token then.
    if matches!(who, Principal::Anonymous) && scopes.is_empty() {
        return Err(ApiError::Unauthorized(
            "authentication required: send basic credentials".into(),
        ));
    }
    let mut access = Vec::with_capacity(scopes.len());
    for scope in &scopes {
        let asked = Access::parse_scope(scope).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let allowed: Vec<&str> = match asked.kind.as_str() {
            "repository" => repository_actions(&app, &who, &asked.name).await?,
            "registry" if asked.name == "catalog" && who.is_sysadmin() => vec!["*"],
            _ => vec![],
        };
        access.push(Access {
            actions: grant(&asked.actions, &allowed),
            ..asked
        });
    }
    let subject = match &who {
        Principal::Anonymous => "",
        other => other.username(),
    };
    let resp = app
        .signer
        .issue(subject, expected, access)
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(Json(resp))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn grants_never_exceed_the_request() {
        assert_eq!(grant(&s(&["pull", "push"]), &["pull"]), ["pull"]);
        assert_eq!(
            grant(&s(&["pull"]), &["pull", "push", "delete", "*"]),
            ["pull"]
        );
        assert_eq!(grant(&s(&["*"]), &["pull", "push", "delete", "*"]), ["*"]);
        assert_eq!(grant(&s(&["*"]), &["pull", "push"]), ["pull", "push"]);
        assert!(grant(&s(&["push", "delete"]), &["pull"]).is_empty());
        assert!(grant(&s(&["pull"]), &[]).is_empty());
        assert_eq!(grant(&s(&["pull", "pull"]), &["pull"]), ["pull"]);
    }

    #[test]
    fn scopes_repeat_and_split_on_spaces() {
        let (service, scopes) = parse_query(Some(
            "service=harbor-registry&scope=repository%3Aa%2Fb%3Apull+repository%3Ac%2Fd%3Apush&scope=registry%3Acatalog%3A*",
        ));
        assert_eq!(service.as_deref(), Some("harbor-registry"));
        assert_eq!(
            scopes,
            [
                "repository:a/b:pull",
                "repository:c/d:push",
                "registry:catalog:*"
            ]
        );
    }
}
