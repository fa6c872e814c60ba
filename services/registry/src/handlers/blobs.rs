use std::fs::File;
use std::io;
use std::io::{Read, Seek, SeekFrom};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{header, HeaderMap, StatusCode};
use tokio::sync::mpsc;
use wharf_oci::{Digest, RepositoryName};

use super::blocking;
use crate::error::{Error, Result};
use crate::{write, App};

/// Size of each read when streaming a blob: large enough that per-chunk
/// overhead vanishes, small enough that memory stays flat.
const CHUNK: usize = 1 << 20;

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
        .header(header::CONTENT_LENGTH, len)
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
    let body = if head || len == 0 {
        Body::empty()
    } else {
        file_body(file, start, len)
    };
    resp.body(body).map_err(|e| Error::Internal(e.into()))
}

/// Streams `len` bytes of `file` from `start`, read ahead on a blocking thread.
/// Each chunk is read into fresh, uninitialised capacity (no zeroing pass) and
/// handed to the socket writer without a further copy.
pub(crate) fn file_body(mut file: File, start: u64, len: u64) -> Body {
    let (tx, mut rx) = mpsc::channel::<io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = file.seek(SeekFrom::Start(start)) {
            let _ = tx.blocking_send(Err(e));
            return;
        }
        let mut remaining = len;
        while remaining > 0 {
            let n = remaining.min(CHUNK as u64);
            let mut buf = Vec::with_capacity(n as usize);
            match (&mut file).take(n).read_to_end(&mut buf) {
                Ok(got) if got as u64 == n => {}
                Ok(_) => {
                    let _ = tx.blocking_send(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "blob shorter than its size",
                    )));
                    return;
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
            remaining -= n;
            if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                return; // the client went away
            }
        }
    });
    Body::from_stream(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
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
