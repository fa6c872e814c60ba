use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, StatusCode};
use http_body_util::{BodyExt, Limited};
use wharf_oci::{media, Digest, Reference, RepositoryName};

use super::blocking;
use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::{write, App};

/// The manifest's media type as stored in its bytes; manifests without a
/// `mediaType` field are OCI, an image or an index by their shape.
pub(crate) fn sniff_media_type(bytes: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Sniff {
        media_type: Option<String>,
        manifests: Option<serde::de::IgnoredAny>,
    }
    match serde_json::from_slice::<Sniff>(bytes) {
        Ok(Sniff {
            media_type: Some(m),
            ..
        }) => m,
        Ok(Sniff {
            manifests: Some(_), ..
        }) => media::OCI_INDEX.to_owned(),
        _ => media::OCI_MANIFEST.to_owned(),
    }
}

/// Whether the request's `Accept` headers admit `media_type`: they do when
/// absent, when they list it, or through `*/*` or `application/*` (`q`
/// weights are not compared).
fn acceptable(headers: &HeaderMap, media_type: &str) -> bool {
    let mut listed = false;
    for value in headers.get_all(header::ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let t = item.split(';').next().unwrap_or("").trim();
            if t.is_empty() {
                continue;
            }
            listed = true;
            if t == "*/*" || t == "application/*" || t.eq_ignore_ascii_case(media_type) {
                return true;
            }
        }
    }
    !listed
}

pub async fn get(
    app: &App,
    repo: &RepositoryName,
    reference: &Reference,
    head: bool,
    headers: &HeaderMap,
) -> Result<Response> {
    let unknown =
        || Error::ManifestUnknown(format!("manifest {reference} is not in repository {repo}"));
    // The link files are a few bytes each and hot in the page cache: reading
    // them inline costs less than a hop to the blocking pool, which matters
    // on the busiest path a registry has.
    let Some(digest) = resolve(&app.store, repo, reference)? else {
        return Err(unknown());
    };
    let cached = match app.manifests.get(&digest) {
        Some(c) => c,
        None => {
            let (store, d) = (app.store.clone(), digest.clone());
            let Some(bytes) = blocking(move || Ok(store.read_blob(&d)?)).await? else {
                return Err(unknown());
            };
            app.manifests.insert(digest.clone(), bytes.into())
        }
    };
    let (bytes, media_type) = (cached.bytes.clone(), cached.media_type.as_str());
    // As distribution does: a client that cannot take this type is told there is no such manifest.
    if !acceptable(headers, media_type) {
        return Err(Error::ManifestUnknown(format!(
            "manifest {reference} is {media_type}, which the request's Accept header does not list"
        )));
    }
    if !head {
        app.pulls.record(repo.as_str(), &digest);
    }
    let resp = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, media_type)
        .header(header::CONTENT_LENGTH, bytes.len())
        .header(header::ETAG, format!("\"{digest}\""))
        .header("docker-content-digest", digest.to_string());
    let body = if head {
        Body::empty()
    } else {
        Body::from(bytes)
    };
    resp.body(body).map_err(|e| Error::Internal(e.into()))
}

/// Reads a manifest from files only: a pull never waits on Postgres.
/// The digest `reference` names in `repo`, if the repository holds it.
fn resolve(
    store: &wharf_storage::Store,
    repo: &RepositoryName,
    reference: &Reference,
) -> Result<Option<Digest>> {
    Ok(match reference {
        Reference::Tag(t) => store.read_link(&store.layout.tag_current_link(repo, t))?,
        Reference::Digest(d) => store
            .read_link(&store.layout.revision_link(repo, d))?
            .map(|_| d.clone()),
    })
}

pub(crate) fn read_manifest_from(
    store: &wharf_storage::Store,
    repo: &RepositoryName,
    reference: &Reference,
) -> Result<Option<(Digest, Vec<u8>)>> {
    let Some(digest) = resolve(store, repo, reference)? else {
        return Ok(None);
    };
    Ok(store.read_blob(&digest)?.map(|b| (digest, b)))
}

pub async fn put(
    app: &App,
    caller: &Caller,
    repo: &RepositoryName,
    reference: &Reference,
    req: Request,
) -> Result<Response> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_owned())
        .unwrap_or_default();
    let body = Limited::new(req.into_body(), write::MAX_MANIFEST)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                Error::PayloadTooLarge(format!(
                    "manifests are limited to {} bytes",
                    write::MAX_MANIFEST
                ))
            } else {
                Error::ManifestInvalid(format!("reading the manifest failed: {e}"))
            }
        })?
        .to_bytes();
    let done =
        write::put_manifest(app, repo, reference, body, &content_type, caller.name()).await?;
    let mut resp = Response::builder()
        .status(StatusCode::CREATED)
        .header(
            header::LOCATION,
            format!("/v2/{repo}/manifests/{}", done.digest),
        )
        .header(header::CONTENT_LENGTH, 0)
        .header("docker-content-digest", done.digest.to_string());
    if let Some(s) = &done.subject {
        resp = resp.header("oci-subject", s.to_string());
    }
    resp.body(Body::empty())
        .map_err(|e| Error::Internal(e.into()))
}

pub async fn delete(
    app: &App,
    caller: &Caller,
    repo: &RepositoryName,
    reference: &Reference,
) -> Result<Response> {
    match reference {
        Reference::Digest(d) => write::delete_manifest(app, repo, d, caller.name()).await?,
        Reference::Tag(t) => write::delete_tag(app, repo, t, caller.name()).await?,
    }
    Ok((StatusCode::ACCEPTED, [(header::CONTENT_LENGTH, "0")]).into_response())
}
