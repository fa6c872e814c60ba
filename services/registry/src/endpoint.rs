//! Parses a `/v2/` request into an [`Endpoint`]. Repository names contain
//! `/`, so path patterns cannot route them; the path is read from its end.

use http::Method;
use uuid::Uuid;
use wharf_oci::{Digest, Reference, RepositoryName};

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Base,
    Catalog,
    GetManifest {
        name: RepositoryName,
        reference: Reference,
        head: bool,
    },
    PutManifest {
        name: RepositoryName,
        reference: Reference,
    },
    DeleteManifest {
        name: RepositoryName,
        reference: Reference,
    },
    GetBlob {
        name: RepositoryName,
        digest: Digest,
        head: bool,
    },
    DeleteBlob {
        name: RepositoryName,
        digest: Digest,
    },
    StartUpload {
        name: RepositoryName,
    },
    UploadStatus {
        name: RepositoryName,
        id: Uuid,
    },
    PatchUpload {
        name: RepositoryName,
        id: Uuid,
    },
    PutUpload {
        name: RepositoryName,
        id: Uuid,
    },
    CancelUpload {
        name: RepositoryName,
        id: Uuid,
    },
    ListTags {
        name: RepositoryName,
    },
    Referrers {
        name: RepositoryName,
        digest: Digest,
    },
}

impl Endpoint {
    /// The repository the request is about, if any.
    pub fn repository(&self) -> Option<&RepositoryName> {
        use Endpoint::*;
        match self {
            Base | Catalog => None,
            GetManifest { name, .. }
            | PutManifest { name, .. }
            | DeleteManifest { name, .. }
            | GetBlob { name, .. }
            | DeleteBlob { name, .. }
            | StartUpload { name }
            | UploadStatus { name, .. }
            | PatchUpload { name, .. }
            | PutUpload { name, .. }
            | CancelUpload { name, .. }
            | ListTags { name }
            | Referrers { name, .. } => Some(name),
        }
    }

    pub fn route(&self) -> &'static str {
        use Endpoint::*;
        match self {
            Base => "/v2/",
            Catalog => "/v2/_catalog",
            GetManifest { .. } | PutManifest { .. } | DeleteManifest { .. } => {
                "/v2/{name}/manifests/{reference}"
            }
            GetBlob { .. } | DeleteBlob { .. } => "/v2/{name}/blobs/{digest}",
            StartUpload { .. } => "/v2/{name}/blobs/uploads/",
            UploadStatus { .. } | PatchUpload { .. } | PutUpload { .. } | CancelUpload { .. } => {
                "/v2/{name}/blobs/uploads/{id}"
            }
            ListTags { .. } => "/v2/{name}/tags/list",
            Referrers { .. } => "/v2/{name}/referrers/{digest}",
        }
    }
}

/// Parses method and path (already percent-decoded is not assumed: names and
/// references never need escaping, so an escaped path is simply invalid).
pub fn parse(method: &Method, path: &str) -> Result<Endpoint> {
    let rest = path.strip_prefix("/v2").ok_or(Error::NotFound)?;
    if rest.is_empty() || rest == "/" {
        return only(method, &[Method::GET, Method::HEAD], Endpoint::Base);
    }
    let rest = rest.strip_prefix('/').ok_or(Error::NotFound)?;
    if rest == "_catalog" {
        return only(method, &[Method::GET, Method::HEAD], Endpoint::Catalog);
    }
    let segs: Vec<&str> = rest.split('/').collect();
    let n = segs.len();
    let name_of = |k: usize| -> Result<RepositoryName> {
        if k == 0 {
            return Err(Error::NotFound);
        }
        Ok(RepositoryName::parse(&segs[..k].join("/"))?)
    };
    let id_of = |s: &str| Uuid::parse_str(s).map_err(|_| Error::BlobUploadUnknown);
    if n >= 3 && segs[n - 2] == "tags" && segs[n - 1] == "list" {
        let name = name_of(n - 2)?;
        return only(
            method,
            &[Method::GET, Method::HEAD],
            Endpoint::ListTags { name },
        );
    }
    if n >= 3 && segs[n - 3] == "blobs" && segs[n - 2] == "uploads" {
        let name = name_of(n - 3)?;
        if segs[n - 1].is_empty() {
            return only(method, &[Method::POST], Endpoint::StartUpload { name });
        }
        let id = id_of(segs[n - 1])?;
        return Ok(match *method {
            Method::GET | Method::HEAD => Endpoint::UploadStatus { name, id },
            Method::PATCH => Endpoint::PatchUpload { name, id },
            Method::PUT => Endpoint::PutUpload { name, id },
            Method::DELETE => Endpoint::CancelUpload { name, id },
            _ => return Err(Error::MethodNotAllowed),
        });
    }
    if n >= 3 && segs[n - 2] == "blobs" && segs[n - 1] == "uploads" {
        let name = name_of(n - 2)?;
        return only(method, &[Method::POST], Endpoint::StartUpload { name });
    }
    if n >= 2 && segs[n - 2] == "manifests" {
        let name = name_of(n - 2)?;
        let reference = match Reference::parse(segs[n - 1]) {
            Ok(r) => r,
            // No manifest can have a tag that is not a valid tag: a pull of one is a
            // 404, as the conformance suite's `.INVALID_MANIFEST_NAME` expects.
            Err(wharf_oci::Error::Tag(t)) if matches!(*method, Method::GET | Method::HEAD) => {
                return Err(Error::ManifestUnknown(format!(
                    "manifest {t:?} is unknown: it is not a valid tag"
                )))
            }
            Err(e) => return Err(e.into()),
        };
        return Ok(match *method {
            Method::GET => Endpoint::GetManifest {
                name,
                reference,
                head: false,
            },
            Method::HEAD => Endpoint::GetManifest {
                name,
                reference,
                head: true,
            },
            Method::PUT => Endpoint::PutManifest { name, reference },
            Method::DELETE => Endpoint::DeleteManifest { name, reference },
            _ => return Err(Error::MethodNotAllowed),
        });
    }
    if n >= 2 && segs[n - 2] == "blobs" {
        let name = name_of(n - 2)?;
        let digest = Digest::parse(segs[n - 1])?;
        return Ok(match *method {
            Method::GET => Endpoint::GetBlob {
                name,
                digest,
                head: false,
            },
            Method::HEAD => Endpoint::GetBlob {
                name,
                digest,
                head: true,
            },
            Method::DELETE => Endpoint::DeleteBlob { name, digest },
            _ => return Err(Error::MethodNotAllowed),
        });
    }
    if n >= 2 && segs[n - 2] == "referrers" {
        let name = name_of(n - 2)?;
        let digest = Digest::parse(segs[n - 1])?;
        return only(
            method,
            &[Method::GET, Method::HEAD],
            Endpoint::Referrers { name, digest },
        );
    }
    Err(Error::NotFound)
}

fn only(method: &Method, allowed: &[Method], e: Endpoint) -> Result<Endpoint> {
    if allowed.contains(method) {
        Ok(e)
    } else {
        Err(Error::MethodNotAllowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(m: Method, path: &str) -> Result<Endpoint> {
        parse(&m, path)
    }

    #[test]
    fn routes() {
        let d = Digest::sha256_of(b"x");
        assert_eq!(p(Method::GET, "/v2/").unwrap(), Endpoint::Base);
        assert_eq!(p(Method::GET, "/v2").unwrap(), Endpoint::Base);
        assert_eq!(p(Method::GET, "/v2/_catalog").unwrap(), Endpoint::Catalog);
        assert!(
            matches!(p(Method::GET, "/v2/a/b/manifests/latest").unwrap(), Endpoint::GetManifest { ref name, head: false, .. } if name.as_str() == "a/b")
        );
        assert!(matches!(
            p(Method::HEAD, &format!("/v2/a/blobs/{d}")).unwrap(),
            Endpoint::GetBlob { head: true, .. }
        ));
        assert!(
            matches!(p(Method::POST, "/v2/a/b/c/blobs/uploads/").unwrap(), Endpoint::StartUpload { ref name } if name.as_str() == "a/b/c")
        );
        assert!(matches!(
            p(Method::POST, "/v2/a/blobs/uploads").unwrap(),
            Endpoint::StartUpload { .. }
        ));
        let id = Uuid::new_v4();
        assert!(matches!(
            p(Method::PATCH, &format!("/v2/a/blobs/uploads/{id}")).unwrap(),
            Endpoint::PatchUpload { .. }
        ));
        assert!(matches!(
            p(Method::GET, "/v2/x/tags/list").unwrap(),
            Endpoint::ListTags { .. }
        ));
        assert!(matches!(
            p(Method::GET, &format!("/v2/x/referrers/{d}")).unwrap(),
            Endpoint::Referrers { .. }
        ));
        // A repository may itself be called "manifests" or "blobs".
        assert!(
            matches!(p(Method::GET, "/v2/blobs/manifests/v1").unwrap(), Endpoint::GetManifest { ref name, .. } if name.as_str() == "blobs")
        );
    }

    #[test]
    fn errors() {
        assert!(matches!(
            p(Method::GET, "/v2/A/manifests/x"),
            Err(Error::NameInvalid(_))
        ));
        assert!(matches!(
            p(Method::GET, "/v2/a/blobs/sha256:zz"),
            Err(Error::DigestInvalid(_))
        ));
        assert!(matches!(
            p(Method::PUT, "/v2/a/manifests/-bad"),
            Err(Error::ManifestInvalid(_))
        ));
        // No manifest has an invalid tag: pulling one is a 404.
        for m in [Method::GET, Method::HEAD] {
            assert!(matches!(
                p(m, "/v2/a/manifests/.INVALID_MANIFEST_NAME"),
                Err(Error::ManifestUnknown(_))
            ));
        }
        assert!(matches!(
            p(Method::GET, "/v2/a/manifests/sha256:zz"),
            Err(Error::DigestInvalid(_))
        ));
        assert!(matches!(
            p(Method::POST, "/v2/a/manifests/x"),
            Err(Error::MethodNotAllowed)
        ));
        assert!(matches!(
            p(Method::GET, "/v2/a/blobs/uploads/not-a-uuid"),
            Err(Error::BlobUploadUnknown)
        ));
        assert!(matches!(
            p(Method::GET, "/v2/manifests/x"),
            Err(Error::NotFound)
        ));
        assert!(matches!(p(Method::GET, "/v3/"), Err(Error::NotFound)));
    }
}
