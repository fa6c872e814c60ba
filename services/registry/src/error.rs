//! The registry's error type and its one mapping to OCI error responses.

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BlobUnknown(String),
    #[error("{0}")]
    BlobUploadInvalid(String),
    #[error("upload session not found; start a new upload")]
    BlobUploadUnknown,
    #[error("{0}")]
    DigestInvalid(String),
    #[error("{0}")]
    ManifestBlobUnknown(String),
    #[error("{0}")]
    ManifestInvalid(String),
    #[error("{0}")]
    ManifestUnknown(String),
    #[error("{0}")]
    NameInvalid(String),
    #[error("{0}")]
    NameUnknown(String),
    #[error("{0}")]
    SizeInvalid(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Denied(String),
    #[error("requested range not satisfiable")]
    RangeNotSatisfiable { size: u64 },
    /// A chunk out of order: the client is told where the upload stands.
    #[error("chunk out of order: the upload holds {offset} bytes")]
    ChunkOutOfOrder { location: String, offset: u64 },
    #[error("authentication required")]
    Unauthorized {
        challenge: String,
        message: &'static str,
    },
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    Busy(String),
    #[error("storage is full; try again when an administrator has made room")]
    StorageFull,
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<wharf_storage::Error> for Error {
    fn from(e: wharf_storage::Error) -> Error {
        use wharf_storage::Error as S;
        match e {
            S::UploadUnknown => Error::BlobUploadUnknown,
            S::Full => Error::StorageFull,
            S::DigestMismatch { .. } => Error::DigestInvalid(e.to_string()),
            S::SizeMismatch { .. } => Error::SizeInvalid(e.to_string()),
            S::Body(_) => Error::BlobUploadInvalid(e.to_string()),
            S::OutOfOrder { .. } => Error::BlobUploadInvalid(e.to_string()),
            S::Io(io) => Error::Internal(io.into()),
        }
    }
}

impl From<wharf_catalog::Error> for Error {
    fn from(e: wharf_catalog::Error) -> Error {
        match e {
            wharf_catalog::Error::Denied(m) => Error::Denied(m),
            other => Error::Internal(other.into()),
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Error {
        Error::Internal(e.into())
    }
}

impl Error {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            Error::BlobUnknown(_) => (StatusCode::NOT_FOUND, "BLOB_UNKNOWN"),
            Error::BlobUploadInvalid(_) => (StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID"),
            Error::BlobUploadUnknown => (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"),
            Error::DigestInvalid(_) => (StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
            Error::ManifestBlobUnknown(_) => (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN"),
            Error::ManifestInvalid(_) => (StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
            Error::ManifestUnknown(_) => (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
            Error::NameInvalid(_) => (StatusCode::BAD_REQUEST, "NAME_INVALID"),
            Error::NameUnknown(_) => (StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
            Error::SizeInvalid(_) => (StatusCode::BAD_REQUEST, "SIZE_INVALID"),
            Error::Unsupported(_) => (StatusCode::BAD_REQUEST, "UNSUPPORTED"),
            Error::Denied(_) => (StatusCode::FORBIDDEN, "DENIED"),
            Error::RangeNotSatisfiable { .. } => {
                (StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID")
            }
            Error::ChunkOutOfOrder { .. } => {
                (StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID")
            }
            Error::Unauthorized { .. } => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
            Error::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID"),
            Error::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, "TOOMANYREQUESTS"),
            Error::StorageFull => (StatusCode::INSUFFICIENT_STORAGE, "UNKNOWN"),
            Error::NotFound => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            Error::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED"),
            Error::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN"),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let message = match &self {
            Error::Internal(e) => {
                // Logged once, here, where it becomes a 500; the client gets no internals.
                tracing::error!(error = %format!("{e:#}"), "internal error");
                "internal server error".to_owned()
            }
            Error::Unauthorized { message, .. } => (*message).to_owned(),
            other => other.to_string(),
        };
        let body = json!({"errors": [{"code": code, "message": message, "detail": null}]});
        let mut resp = (status, axum::Json(body)).into_response();
        let h = resp.headers_mut();
        match &self {
            Error::Unauthorized { challenge, .. } => {
                if let Ok(v) = HeaderValue::from_str(challenge) {
                    h.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            Error::RangeNotSatisfiable { size } => {
                h.insert(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&format!("bytes */{size}")).expect("ascii"),
                );
            }
            Error::ChunkOutOfOrder { location, offset } => {
                if let Ok(v) = HeaderValue::from_str(location) {
                    h.insert(header::LOCATION, v);
                }
                let range = format!("0-{}", offset.saturating_sub(1));
                h.insert(header::RANGE, HeaderValue::from_str(&range).expect("ascii"));
            }
            Error::Busy(_) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        resp
    }
}

impl From<wharf_oci::Error> for Error {
    fn from(e: wharf_oci::Error) -> Error {
        use wharf_oci::Error as O;
        match e {
            O::Digest(_) | O::DigestAlgorithm(_) => Error::DigestInvalid(e.to_string()),
            O::Name(_) => Error::NameInvalid(e.to_string()),
            O::Tag(_) | O::Manifest(_) | O::ManifestUnsupported(_) => {
                Error::ManifestInvalid(e.to_string())
            }
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
