use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http::{header, HeaderMap, StatusCode};
use uuid::Uuid;
use wharf_oci::{Digest, RepositoryName};

use super::{query_get, query_pairs};
use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::{write, App};

fn location(repo: &RepositoryName, id: Uuid) -> String {
    format!("/v2/{repo}/blobs/uploads/{id}")
}

fn range(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

fn in_progress(
    status: StatusCode,
    repo: &RepositoryName,
    id: Uuid,
    offset: u64,
) -> Result<Response> {
    Response::builder()
        .status(status)
        .header(header::LOCATION, location(repo, id))
        .header(header::RANGE, range(offset))
        .header(header::CONTENT_LENGTH, 0)
        .header("docker-upload-uuid", id.to_string())
        .header("oci-chunk-min-length", 0)
        .body(Body::empty())
        .map_err(|e| Error::Internal(e.into()))
}

fn created(repo: &RepositoryName, digest: &Digest) -> Result<Response> {
    Response::builder()
        .status(StatusCode::CREATED)
        .header(header::LOCATION, format!("/v2/{repo}/blobs/{digest}"))
        .header(header::CONTENT_LENGTH, 0)
        .header("docker-content-digest", digest.to_string())
        .body(Body::empty())
        .map_err(|e| Error::Internal(e.into()))
}

fn digest_param(pairs: &[(String, String)]) -> Result<Option<Digest>> {
    query_get(pairs, "digest")
        .map(|d| Digest::parse(d).map_err(Error::from))
        .transpose()
}

/// `POST /v2/<name>/blobs/uploads/`: a session, a monolithic push, or a mount.
pub async fn start(
    app: &App,
    caller: &Caller,
    repo: &RepositoryName,
    req: Request,
) -> Result<Response> {
    let pairs = query_pairs(req.uri().query());
    if let Some(mount) = query_get(&pairs, "mount") {
        let digest = Digest::parse(mount)?;
        if let Some(from) = query_get(&pairs, "from") {
            let from = RepositoryName::parse(from)?;
            // Without pull rights on the source the mount quietly becomes an upload, as in distribution.
            if caller.can("repository", from.as_str(), "pull")
                && write::mount_blob(app, repo, &from, &digest, caller.name()).await?
            {
                return created(repo, &digest);
            }
        }
        let id = app.uploads.start(repo).await?;
        return in_progress(StatusCode::ACCEPTED, repo, id, 0);
    }
    let digest = digest_param(&pairs)?;
    let id = app.uploads.start(repo).await?;
    let Some(digest) = digest else {
        return in_progress(StatusCode::ACCEPTED, repo, id, 0);
    };
    let mut session = app.uploads.lock(repo, id).await?;
    let body = req.into_body().into_data_stream();
    let res = async {
        app.uploads.append(&mut session, None, body).await?;
        let done = app.uploads.finish(&mut session, &digest).await?;
        write::commit_blob(app, repo, done, caller.name()).await
    }
    .await;
    if res.is_err() {
        let _ = app.uploads.cancel(&mut session).await;
    } else {
        app.uploads.forget(id);
    }
    res?;
    created(repo, &digest)
}

pub async fn status(app: &App, repo: &RepositoryName, id: Uuid) -> Result<Response> {
    let session = app.uploads.lock(repo, id).await?;
    in_progress(StatusCode::NO_CONTENT, repo, id, session.offset)
}

/// Reads `Content-Range: <start>-<end>` (with or without a `bytes` prefix).
fn content_range(headers: &HeaderMap) -> Result<Option<(u64, u64)>> {
    let Some(v) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let bad = || Error::BlobUploadInvalid("Content-Range must be <start>-<end>".into());
    let s = v.to_str().map_err(|_| bad())?.trim();
    let s = s
        .strip_prefix("bytes")
        .map(|s| s.trim_start_matches([' ', '=']))
        .unwrap_or(s);
    let s = s.split('/').next().unwrap_or(s);
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let (a, b): (u64, u64) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if b < a {
        return Err(bad());
    }
    Ok(Some((a, b)))
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

async fn append(
    app: &App,
    session: &mut wharf_storage::Session,
    repo: &RepositoryName,
    req: Request,
) -> Result<()> {
    let headers = req.headers().clone();
    let cr = content_range(&headers)?;
    if let Some((start, end)) = cr {
        if start != session.offset {
            return Err(Error::ChunkOutOfOrder {
                location: location(repo, session.id),
                offset: session.offset,
            });
        }
        if let Some(len) = content_length(&headers) {
            // `end - start + 1` overflows for `0-18446744073709551615`.
            if len.checked_sub(1) != Some(end - start) {
                return Err(Error::ChunkOutOfOrder {
                    location: location(repo, session.id),
                    offset: session.offset,
                });
            }
        }
    }
    let before = session.offset;
    let res = app
        .uploads
        .append(
            session,
            cr.map(|(s, _)| s),
            req.into_body().into_data_stream(),
        )
        .await;
    match res {
        Err(wharf_storage::Error::OutOfOrder { .. }) => Err(Error::ChunkOutOfOrder {
            location: location(repo, session.id),
            offset: session.offset,
        }),
        Err(e) => Err(e.into()),
        Ok(offset) => {
            if let Some(len) = content_length(&headers) {
                if offset - before != len {
                    return Err(Error::SizeInvalid(format!(
                        "received {} bytes, Content-Length said {len}",
                        offset - before
                    )));
                }
            }
            Ok(())
        }
    }
}

pub async fn patch(app: &App, repo: &RepositoryName, id: Uuid, req: Request) -> Result<Response> {
    let mut session = app.uploads.lock(repo, id).await?;
    append(app, &mut session, repo, req).await?;
    in_progress(StatusCode::ACCEPTED, repo, id, session.offset)
}

pub async fn put(
    app: &App,
    caller: &Caller,
    repo: &RepositoryName,
    id: Uuid,
    req: Request,
) -> Result<Response> {
    let pairs = query_pairs(req.uri().query());
    let digest = digest_param(&pairs)?.ok_or_else(|| {
        Error::DigestInvalid("the digest query parameter is required to finish an upload".into())
    })?;
    let mut session = app.uploads.lock(repo, id).await?;
    append(app, &mut session, repo, req).await?;
    let done = app.uploads.finish(&mut session, &digest).await?;
    write::commit_blob(app, repo, done, caller.name()).await?;
    app.uploads.forget(id);
    created(repo, &digest)
}

pub async fn cancel(app: &App, repo: &RepositoryName, id: Uuid) -> Result<Response> {
    let mut session = app.uploads.lock(repo, id).await?;
    app.uploads.cancel(&mut session).await?;
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())
        .map_err(|e| Error::Internal(e.into()))
}
