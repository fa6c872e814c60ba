//! Content storage on the distribution registry's on-disk layout: blobs,
//! link files and crash-safe upload sessions. Nothing here talks to the
//! catalogue; the registry decides when a placed file becomes visible.

pub mod failpoint;
mod layout;
pub mod offload;
mod uploads;

pub use layout::{Layout, Store, TempFile};
pub use uploads::{FinishedUpload, Session, Uploads};

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("storage I/O failed: {0}")]
    Io(#[from] io::Error),
    #[error("the storage volume is full")]
    Full,
    #[error("upload session not found")]
    UploadUnknown,
    #[error("chunk starts at byte {got}, but the upload holds {expected} bytes")]
    OutOfOrder { expected: u64, got: u64 },
    #[error("the uploaded content has digest {actual}, not {expected}")]
    DigestMismatch { expected: String, actual: String },
    #[error("the upload holds {actual} bytes, not the {expected} announced")]
    SizeMismatch { expected: u64, actual: u64 },
    #[error("the request body ended early: {0}")]
    Body(String),
}

impl Error {
    pub(crate) fn io(e: io::Error) -> Error {
        // ENOSPC and EDQUOT: the operator must act, the client should retry later.
        match e.raw_os_error() {
            Some(28) | Some(122) => Error::Full,
            _ => Error::Io(e),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
