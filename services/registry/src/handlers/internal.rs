//! The internal API under `/api/internal/` that core and jobservice call to
//! change content, so that only the registry touches storage. Every
//! operation runs the same write protocol (policy, storage index, outbox) as
//! the matching `/v2/` request would.
//!
//! Authenticated by the shared internal secret, sent as
//! `Authorization: Bearer <secret>` or `X-Wharf-Internal-Secret: <secret>`;
//! answered 404 when no secret is configured. `X-Wharf-Actor` names the user
//! the change is made for (the outbox and audit log record it).

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::Router;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use tracing::Instrument;
use wharf_oci::{Algorithm, Digest, Manifest, RefKind, Reference, RepositoryName, Tag};

use super::manifests::{read_manifest_from, sniff_media_type};
use super::{blocking, query_get, query_pairs};
use crate::error::{Error, Result};
use crate::{write, App, AppState};

pub const SECRET_HEADER: &str = "x-wharf-internal-secret";
pub const ACTOR_HEADER: &str = "x-wharf-actor";

/// Deepest index nesting a copy follows.
const MAX_DEPTH: usize = 4;

pub fn routes(app: AppState) -> Router<AppState> {
    Router::new()
        .route("/artifacts", delete(delete_artifact))
        .route("/tags", delete(delete_tag).put(put_tag))
        .route("/copy", post(copy))
        .nest("/gc", super::gc::routes())
        .layer(middleware::from_fn_with_state(app, require_secret))
}

/// Compares in time that depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn presented_secret(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(SECRET_HEADER).and_then(|v| v.to_str().ok()) {
        return Some(v.trim());
    }
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(rest.trim())
}

async fn require_secret(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let Some(secret) = app
        .config
        .internal_secret
        .as_ref()
        .filter(|s| !s.0.is_empty())
    else {
        return Error::NotFound.into_response();
    };
    match presented_secret(req.headers()) {
        Some(s) if constant_time_eq(s.as_bytes(), secret.0.as_bytes()) => next.run(req).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({"errors": [{"code": "UNAUTHORIZED", "message": "the internal API needs the shared internal secret", "detail": null}]})),
        )
            .into_response(),
    }
}

fn actor(headers: &HeaderMap) -> Option<String> {
    headers
        .get(ACTOR_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 255)
        .map(str::to_owned)
}

/// Runs a write to completion even when the caller goes away, as `/v2/` writes do.
async fn detached<F>(f: F) -> Response
where
    F: std::future::Future<Output = Result<Response>> + Send + 'static,
{
    match tokio::spawn(f.in_current_span()).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => e.into_response(),
        Err(e) => Error::Internal(e.into()).into_response(),
    }
}

fn required<'a>(pairs: &'a [(String, String)], key: &str) -> Result<&'a str> {
    query_get(pairs, key)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Error::Unsupported(format!("the query parameter {key:?} is required")))
}

fn digest_body(digest: &Digest) -> Response {
    axum::Json(serde_json::json!({"digest": digest.to_string()})).into_response()
}

/// `DELETE /api/internal/artifacts?repository=<name>&digest=<digest>`: the
/// manifest and every tag on it, as `DELETE /v2/<name>/manifests/<digest>`.
async fn delete_artifact(State(app): State<AppState>, req: Request) -> Response {
    let pairs = query_pairs(req.uri().query());
    let actor = actor(req.headers());
    detached(async move {
        let repo = RepositoryName::parse(required(&pairs, "repository")?)?;
        let digest = Digest::parse(required(&pairs, "digest")?)?;
        write::delete_manifest(&app, &repo, &digest, actor.as_deref()).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

/// `DELETE /api/internal/tags?repository=<name>&tag=<tag>`.
async fn delete_tag(State(app): State<AppState>, req: Request) -> Response {
    let pairs = query_pairs(req.uri().query());
    let actor = actor(req.headers());
    detached(async move {
        let repo = RepositoryName::parse(required(&pairs, "repository")?)?;
        let tag = Tag::parse(required(&pairs, "tag")?)?;
        write::delete_tag(&app, &repo, &tag, actor.as_deref()).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

#[derive(Deserialize)]
struct PutTag {
    repository: String,
    tag: String,
    digest: String,
}

fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T> {
    serde_json::from_slice(body)
        .map_err(|e| Error::Unsupported(format!("invalid request body: {e}")))
}

async fn read_body(req: Request) -> Result<Bytes> {
    use http_body_util::BodyExt;
    http_body_util::Limited::new(req.into_body(), 64 << 10)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| Error::Unsupported(format!("reading the request body failed: {e}")))
}

/// The stored bytes and media type of a manifest of `repo`.
async fn stored_manifest(
    app: &App,
    repo: &RepositoryName,
    digest: &Digest,
) -> Result<(Bytes, String)> {
    let store = app.store.clone();
    let (r, d) = (repo.clone(), Reference::Digest(digest.clone()));
    let found = blocking(move || read_manifest_from(&store, &r, &d)).await?;
    let Some((_, bytes)) = found else {
        return Err(Error::ManifestUnknown(format!(
            "manifest {digest} is not in repository {repo}"
        )));
    };
    let media_type = sniff_media_type(&bytes);
    Ok((Bytes::from(bytes), media_type))
}

/// Points `tag` at the stored manifest: a manifest PUT by tag with the same
/// bytes, so policy (immutability, quotas) and the outbox apply as to a push.
async fn tag_manifest(
    app: &App,
    repo: &RepositoryName,
    tag: &Tag,
    digest: &Digest,
    actor: Option<&str>,
) -> Result<()> {
    if digest.algorithm() != Algorithm::Sha256 {
        // A PUT by tag names the manifest by its sha256 digest.
        return Err(Error::Unsupported(format!(
            "only sha256 manifests can be tagged through this API, not {digest}"
        )));
    }
    let (bytes, media_type) = stored_manifest(app, repo, digest).await?;
    write::put_manifest(
        app,
        repo,
        &Reference::Tag(tag.clone()),
        bytes,
        &media_type,
        actor,
    )
    .await?;
    Ok(())
}

/// `PUT /api/internal/tags` with `{"repository", "tag", "digest"}`: points
/// the tag at that manifest of the repository (creating or moving it).
async fn put_tag(State(app): State<AppState>, req: Request) -> Response {
    let actor = actor(req.headers());
    detached(async move {
        let body: PutTag = json_body(&read_body(req).await?)?;
        let repo = RepositoryName::parse(&body.repository)?;
        let tag = Tag::parse(&body.tag)?;
        let digest = Digest::parse(&body.digest)?;
        tag_manifest(&app, &repo, &tag, &digest, actor.as_deref()).await?;
        Ok((StatusCode::CREATED, digest_body(&digest)).into_response())
    })
    .await
}

#[derive(Deserialize)]
struct Copy {
    /// Source repository.
    from: String,
    /// Source manifest: a digest or a tag.
    reference: String,
    /// Target repository.
    to: String,
    /// Tags to put on the copy in the target.
    #[serde(default)]
    tags: Vec<String>,
}

/// `POST /api/internal/copy` with `{"from", "reference", "to", "tags"}`:
/// links the manifest's blobs into the target repository (a mount each) and
/// puts the manifest there by digest, an index's children first; then tags it.
async fn copy(State(app): State<AppState>, req: Request) -> Response {
    let actor = actor(req.headers());
    detached(async move {
        let body: Copy = json_body(&read_body(req).await?)?;
        let from = RepositoryName::parse(&body.from)?;
        let to = RepositoryName::parse(&body.to)?;
        let tags = body
            .tags
            .iter()
            .map(|t| Tag::parse(t))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let digest = match Reference::parse(&body.reference)? {
            Reference::Digest(d) => d,
            Reference::Tag(t) => {
                let store = app.store.clone();
                let (r, rf) = (from.clone(), Reference::Tag(t.clone()));
                blocking(move || read_manifest_from(&store, &r, &rf))
                    .await?
                    .map(|(d, _)| d)
                    .ok_or_else(|| {
                        Error::ManifestUnknown(format!("tag {t} is not in repository {from}"))
                    })?
            }
        };
        copy_manifest(&app, &from, &to, &digest, actor.as_deref(), 0).await?;
        for t in &tags {
            tag_manifest(&app, &to, t, &digest, actor.as_deref()).await?;
        }
        Ok((StatusCode::CREATED, digest_body(&digest)).into_response())
    })
    .await
}

fn copy_manifest<'a>(
    app: &'a App,
    from: &'a RepositoryName,
    to: &'a RepositoryName,
    digest: &'a Digest,
    actor: Option<&'a str>,
    depth: usize,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send + 'a>> {
    Box::pin(async move {
        if depth > MAX_DEPTH {
            return Err(Error::Unsupported(format!(
                "indexes nested deeper than {MAX_DEPTH} levels cannot be copied"
            )));
        }
        let (bytes, media_type) = stored_manifest(app, from, digest).await?;
        if from != to {
            let manifest = Manifest::parse(&bytes, &media_type)?;
            for (child, kind) in manifest.references() {
                if kind == RefKind::Manifest {
                    copy_manifest(app, from, to, &child, actor, depth + 1).await?;
                } else if !write::mount_blob(app, to, from, &child, actor).await? {
                    return Err(Error::BlobUnknown(format!(
                        "blob {child} of manifest {digest} is not in repository {from}"
                    )));
                }
            }
        }
        write::put_manifest(
            app,
            to,
            &Reference::Digest(digest.clone()),
            bytes,
            &media_type,
            actor,
        )
        .await?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer s3cret".parse().unwrap());
        assert_eq!(presented_secret(&h), Some("s3cret"));
        h.insert(SECRET_HEADER, "other".parse().unwrap());
        assert_eq!(presented_secret(&h), Some("other"));
        let mut basic = HeaderMap::new();
        basic.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(presented_secret(&basic), None);
    }
}
