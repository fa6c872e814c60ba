//! Core's calls to the registry: its internal API, which changes content
//! (authenticated with the shared internal secret), and reads of manifests
//! and blobs through `/v2/` with a pull token core signs for itself. Only the
//! registry touches storage.

use std::time::Duration;

use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use crate::error::{ApiError, Result};
use crate::App;

const ACTOR_HEADER: &str = "x-wharf-actor";
const SECRET_HEADER: &str = "x-wharf-internal-secret";
/// The subject of the tokens core signs for its own reads.
const CORE_SUBJECT: &str = "wharf-core";

const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

#[derive(Deserialize)]
struct OciErrors {
    errors: Vec<OciError>,
}

#[derive(Deserialize)]
struct OciError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

fn url(app: &App, path: &str) -> Result<url::Url> {
    let base = app.config.registry.url.trim_end_matches('/');
    url::Url::parse(&format!("{base}{path}"))
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("registry.url is not usable: {e}")))
}

fn unreachable(e: reqwest::Error) -> ApiError {
    ApiError::Unavailable(format!("the registry is not reachable: {e}"))
}

/// Turns a refusal of the registry into core's error, keeping its message
/// (a policy refusal names the rule or the quota).
async fn refusal(resp: reqwest::Response) -> ApiError {
    let status = resp.status();
    let body = resp.bytes().await.unwrap_or_default();
    let (code, message) = serde_json::from_slice::<OciErrors>(&body)
        .ok()
        .and_then(|e| e.errors.into_iter().next())
        .map(|e| (e.code, e.message))
        .unwrap_or_default();
    let message = if message.is_empty() {
        format!("the registry answered {status}")
    } else {
        message
    };
    match status {
        StatusCode::NOT_FOUND => ApiError::NotFound(message),
        StatusCode::FORBIDDEN => ApiError::Forbidden(message),
        StatusCode::CONFLICT => ApiError::Conflict(message),
        StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => ApiError::BadRequest(message),
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::INSUFFICIENT_STORAGE => {
            ApiError::Unavailable(message)
        }
        StatusCode::UNAUTHORIZED => ApiError::Internal(anyhow::anyhow!(
            "the registry refused core's internal secret ({code}: {message}); check registry.internal_secret on both sides"
        )),
        _ => ApiError::Internal(anyhow::anyhow!(
            "the registry answered {status} ({code}: {message})"
        )),
    }
}

fn internal(
    app: &App,
    method: reqwest::Method,
    url: url::Url,
    actor: &str,
) -> reqwest::RequestBuilder {
    app.http
        .request(method, url)
        .header(SECRET_HEADER, &app.config.registry.internal_secret.0)
        .header(ACTOR_HEADER, actor)
}

async fn send(req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
    let resp = req.send().await.map_err(unreachable)?;
    if resp.status().is_success() {
        Ok(resp)
    } else {
        Err(refusal(resp).await)
    }
}

/// Deletes a manifest and its tags (`actor` is recorded in the outbox).
pub async fn delete_artifact(app: &App, repository: &str, digest: &str, actor: &str) -> Result<()> {
    let mut u = url(app, "/api/internal/artifacts")?;
    u.query_pairs_mut()
        .append_pair("repository", repository)
        .append_pair("digest", digest);
    send(internal(app, reqwest::Method::DELETE, u, actor)).await?;
    Ok(())
}

pub async fn delete_tag(app: &App, repository: &str, tag: &str, actor: &str) -> Result<()> {
    let mut u = url(app, "/api/internal/tags")?;
    u.query_pairs_mut()
        .append_pair("repository", repository)
        .append_pair("tag", tag);
    send(internal(app, reqwest::Method::DELETE, u, actor)).await?;
    Ok(())
}

/// Points `tag` at the manifest `digest` of the repository (a manifest PUT by tag).
pub async fn put_tag(
    app: &App,
    repository: &str,
    tag: &str,
    digest: &str,
    actor: &str,
) -> Result<()> {
    let u = url(app, "/api/internal/tags")?;
    let body = json!({"repository": repository, "tag": tag, "digest": digest});
    send(internal(app, reqwest::Method::PUT, u, actor).json(&body)).await?;
    Ok(())
}

/// Copies `from@reference` (and an index's children) into `to`, then tags it there.
pub async fn copy(
    app: &App,
    from: &str,
    reference: &str,
    to: &str,
    tags: &[String],
    actor: &str,
) -> Result<()> {
    let u = url(app, "/api/internal/copy")?;
    let body = json!({"from": from, "reference": reference, "to": to, "tags": tags});
    send(internal(app, reqwest::Method::POST, u, actor).json(&body)).await?;
    Ok(())
}

fn pull_token(app: &App, repository: &str) -> Result<String> {
    let access = vec![wharf_token::Access {
        kind: "repository".into(),
        name: repository.into(),
        actions: vec!["pull".into()],
    }];
    app.signer
        .issue(CORE_SUBJECT, &app.config.token.service, access)
        .map(|t| t.token)
        .map_err(|e| ApiError::Internal(e.into()))
}

/// Reads through `/v2/`; `None` when the registry does not have it.
async fn read(
    app: &App,
    repository: &str,
    path: &str,
    accept: Option<&str>,
    max: usize,
) -> Result<Option<Vec<u8>>> {
    let u = url(app, &format!("/v2/{repository}/{path}"))?;
    let mut req = app
        .http
        .get(u)
        .bearer_auth(pull_token(app, repository)?)
        .timeout(Duration::from_secs(5));
    if let Some(a) = accept {
        req = req.header(http::header::ACCEPT, a);
    }
    let resp = req.send().await.map_err(unreachable)?;
    if resp.status() == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !resp.status().is_success() {
        return Err(refusal(resp).await);
    }
    if resp.content_length().is_some_and(|n| n as usize > max) {
        return Ok(None);
    }
    let bytes = resp.bytes().await.map_err(unreachable)?;
    Ok((bytes.len() <= max).then(|| bytes.to_vec()))
}

/// A manifest's bytes as stored.
pub async fn manifest(app: &App, repository: &str, digest: &str) -> Result<Option<Vec<u8>>> {
    read(
        app,
        repository,
        &format!("manifests/{digest}"),
        Some(MANIFEST_TYPES),
        4 << 20,
    )
    .await
}

/// A small blob's bytes (an image config); `None` when missing or larger than `max`.
pub async fn blob(
    app: &App,
    repository: &str,
    digest: &str,
    max: usize,
) -> Result<Option<Vec<u8>>> {
    read(app, repository, &format!("blobs/{digest}"), None, max).await
}

/// The registry's own health check.
pub async fn health(app: &App) -> std::result::Result<(), String> {
    let u = url(app, "/health").map_err(|e| e.to_string())?;
    let resp = app
        .http
        .get(u)
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .map_err(|e| format!("the registry is not reachable: {e}"))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("the registry reports {}", resp.status()))
    }
}
