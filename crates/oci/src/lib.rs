//! OCI types shared by every Wharf service: digests, names, tags, references,
//! media types and manifest parsing, each validated once at the edge.

pub mod digest;
pub mod manifest;
pub mod media;
pub mod name;

pub use digest::{Algorithm, Digest, Hasher};
pub use manifest::{Descriptor, Manifest, RefKind};
pub use name::{Reference, RepositoryName, Tag};

/// Why a piece of client input is not a valid OCI value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("invalid digest {0:?}: expected sha256:<64 hex> or sha512:<128 hex>")]
    Digest(String),
    #[error("unsupported digest algorithm {0:?}: sha256 and sha512 are supported")]
    DigestAlgorithm(String),
    #[error("invalid repository name {0:?}: lower-case path components separated by '/', see the OCI distribution spec")]
    Name(String),
    #[error(
        "invalid tag {0:?}: up to 128 characters of [A-Za-z0-9_.-], not starting with '.' or '-'"
    )]
    Tag(String),
    #[error("invalid manifest: {0}")]
    Manifest(String),
    #[error("unsupported manifest: {0}")]
    ManifestUnsupported(String),
}
