use std::fs::File;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, StatusCode};
use wharf_oci::{Digest, RepositoryName};
use wharf_storage::offload::{self, Offload};

use super::blocking;
use crate::error::{Error, Result};
use crate::{write, App};

pub async fn get(
    app: &App,
    repo: &RepositoryName,
    digest: &Digest,
    head: bool,
    headers: &HeaderMap,
) -> Result<Response> {
    let store = app.store.clone();
    let (r, d) = (repo.clone(), digest.clone());
    // Repository-scoped: a token for one repository cannot read another's blobs by digest.
    let opened = blocking(move || {
        if store.read_link(&store.layout.layer_link(&r, &d))?.is_none() {
            return Ok(None);
        }
        Ok(store.open_blob(&d)?)
    })
    .await?;
    let Some((file, size)) = opened else {
        return Err(Error::BlobUnknown(format!(
            "blob {digest} is not in repository {repo}"
        )));
    };
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(r) => Some(parse_range(r, size).ok_or(Error::RangeNotSatisfiable { size })?),
        None => None,
    };
    let (start, len, status) = match range {
        Some((s, e)) => (s, e - s + 1, StatusCode::PARTIAL_CONTENT),
        None => (0, size, StatusCode::OK),
    };
    let mut resp = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, format!("\"{digest}\""))
        .header(header::CACHE_CONTROL, "max-age=31536000")
        .header("docker-content-digest", digest.to_string());
    if status == StatusCode::PARTIAL_CONTENT {
        resp = resp.header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{size}", start + len - 1),
        );
    }
    let offloaded = !head && len > 0 && headers.contains_key(offload::HEADER);
    // An offloaded answer has no body of its own: the proxy sets the length.
    resp = resp.header(header::CONTENT_LENGTH, if offloaded { 0 } else { len });
    let body = if head || len == 0 {
        Body::empty()
    } else if offloaded {
        // The proxy in front reads the same volume: it gets the approved
        // range instead of the bytes (see wharf_storage::offload).
        drop(file);
        let o = Offload {
            digest: digest.clone(),
            offset: start,
            length: len,
        };
        resp = resp.header(offload::HEADER, o.header_value());
        Body::empty()
    } else {
        file_body(file, start, len)
    };
    resp.body(body).map_err(|e| Error::Internal(e.into()))
}

fn file_body(file: File, start: u64, len: u64) -> Body {
    Body::from_stream(offload::file_stream(file, start, len))
}

/// A single `bytes=` range, as inclusive offsets within `size`.
fn parse_range(value: &str, size: u64) -> Option<(u64, u64)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || size == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let suffix: u64 = b.parse().ok()?;
        if suffix == 0 {
            return None;
        }
        return Some((size.saturating_sub(suffix), size - 1));
    }
    let start: u64 = a.parse().ok()?;
    let end: u64 = if b.is_empty() {
        size - 1
    } else {
        b.parse::<u64>().ok()?.min(size - 1)
    };
    if start > end || start >= size {
        return None;
    }
    Some((start, end))
}

pub async fn delete(app: &App, repo: &RepositoryName, digest: &Digest) -> Result<Response> {
    write::delete_blob_link(app, repo, digest).await?;
    Ok((StatusCode::ACCEPTED, [(header::CONTENT_LENGTH, "0")]).into_response())
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=50-500", 100), Some((50, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=5-1", 100), None);
        assert_eq!(parse_range("bytes=0-1,3-4", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
        assert_eq!(parse_range("bytes=x-1", 100), None);
    }
}
