//! Manifest and index parsing: just enough structure to learn what a manifest
//! references, its subject and its artifact type. The bytes themselves are
//! always stored and served unchanged.

use serde::Deserialize;
use serde_json::Value;

use crate::{media, Digest, Error};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: i64,
    pub artifact_type: Option<String>,
    /// Non-empty for foreign layers, which live elsewhere and are not stored.
    pub urls: Vec<String>,
    pub annotations: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefKind {
    Config,
    Layer,
    Manifest,
}

impl RefKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RefKind::Config => "config",
            RefKind::Layer => "layer",
            RefKind::Manifest => "manifest",
        }
    }
}

/// A parsed image manifest or index.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub config: Option<Descriptor>,
    pub layers: Vec<Descriptor>,
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    pub annotations: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: Option<String>,
    digest: Option<String>,
    size: Option<i64>,
    artifact_type: Option<String>,
    #[serde(default)]
    urls: Vec<String>,
    annotations: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<RawDescriptor>,
    layers: Option<Vec<RawDescriptor>>,
    manifests: Option<Vec<RawDescriptor>>,
    subject: Option<RawDescriptor>,
    annotations: Option<Value>,
}

/// Media and artifact types are RFC 6838 names: control characters (which the
/// catalogue could not even store, in the case of NUL) are refused.
fn check_type(value: &str, what: &str) -> Result<(), Error> {
    if value.chars().any(char::is_control) {
        return Err(Error::Manifest(format!(
            "{what} {value:?} contains control characters"
        )));
    }
    Ok(())
}

fn descriptor(raw: RawDescriptor, what: &str) -> Result<Descriptor, Error> {
    let digest = raw
        .digest
        .ok_or_else(|| Error::Manifest(format!("{what} has no digest")))?;
    let digest = Digest::parse(&digest).map_err(|e| Error::Manifest(format!("{what}: {e}")))?;
    let media_type = raw
        .media_type
        .ok_or_else(|| Error::Manifest(format!("{what} has no mediaType")))?;
    let size = raw
        .size
        .ok_or_else(|| Error::Manifest(format!("{what} has no size")))?;
    if size < 0 {
        return Err(Error::Manifest(format!("{what} has a negative size")));
    }
    check_type(&media_type, &format!("{what}.mediaType"))?;
    if let Some(t) = &raw.artifact_type {
        check_type(t, &format!("{what}.artifactType"))?;
    }
    Ok(Descriptor {
        media_type,
        digest,
        size,
        artifact_type: raw.artifact_type,
        urls: raw.urls,
        annotations: raw.annotations,
    })
}

/// Content types that say nothing about which manifest format a body is in.
fn is_generic(content_type: &str) -> bool {
    content_type.is_empty()
        || content_type == "application/json"
        || content_type == "application/octet-stream"
}

impl Manifest {
    /// Parses `body` as sent with `content_type` (the request's Content-Type, without parameters).
    pub fn parse(body: &[u8], content_type: &str) -> Result<Manifest, Error> {
        if content_type == media::DOCKER_SCHEMA1 || content_type == media::DOCKER_SCHEMA1_SIGNED {
            return Err(schema1());
        }
        let raw: RawManifest = serde_json::from_slice(body)
            .map_err(|e| Error::Manifest(format!("not a JSON manifest: {e}")))?;
        match raw.schema_version {
            Some(2) => {}
            Some(1) => return Err(schema1()),
            Some(v) => {
                return Err(Error::Manifest(format!(
                    "schemaVersion {v} is not supported, expected 2"
                )))
            }
            None => return Err(Error::Manifest("schemaVersion is missing".into())),
        }
        let media_type = match (&raw.media_type, content_type) {
            (Some(body_type), ct) if !is_generic(ct) && body_type != ct => {
                return Err(Error::Manifest(format!(
                    "mediaType {body_type:?} does not match Content-Type {ct:?}"
                )))
            }
            (Some(body_type), _) => body_type.clone(),
            (None, ct) if !is_generic(ct) => ct.to_owned(),
            (None, _) if raw.manifests.is_some() => media::OCI_INDEX.to_owned(),
            (None, _) => media::OCI_MANIFEST.to_owned(),
        };
        if media_type == media::DOCKER_SCHEMA1 || media_type == media::DOCKER_SCHEMA1_SIGNED {
            return Err(schema1());
        }
        if !media::is_manifest_type(&media_type) {
            return Err(Error::ManifestUnsupported(format!(
                "media type {media_type:?} is not a manifest type this registry stores"
            )));
        }
        if let Some(t) = &raw.artifact_type {
            check_type(t, "artifactType")?;
        }
        let subject = raw.subject.map(|s| descriptor(s, "subject")).transpose()?;
        if media::is_index(&media_type) {
            if raw.config.is_some() || raw.layers.is_some() {
                return Err(Error::Manifest(
                    "an index has manifests, not config or layers".into(),
                ));
            }
            let manifests = raw
                .manifests
                .ok_or_else(|| Error::Manifest("index has no manifests array".into()))?
                .into_iter()
                .enumerate()
                .map(|(i, d)| descriptor(d, &format!("manifests[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Manifest {
                media_type,
                artifact_type: raw.artifact_type,
                config: None,
                layers: vec![],
                manifests,
                subject,
                annotations: raw.annotations,
            });
        }
        if raw.manifests.is_some() {
            return Err(Error::Manifest(format!(
                "{media_type} cannot have a manifests array"
            )));
        }
        let config = descriptor(
            raw.config
                .ok_or_else(|| Error::Manifest("manifest has no config".into()))?,
            "config",
        )?;
        let layers = raw
            .layers
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, d)| descriptor(d, &format!("layers[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Manifest {
            media_type,
            artifact_type: raw.artifact_type,
            config: Some(config),
            layers,
            manifests: vec![],
            subject,
            annotations: raw.annotations,
        })
    }

    pub fn is_index(&self) -> bool {
        media::is_index(&self.media_type)
    }

    /// The artifact type as the referrers API reports it: `artifactType`, else
    /// (when missing or empty) the config's media type.
    pub fn effective_artifact_type(&self) -> Option<String> {
        self.artifact_type
            .clone()
            .filter(|t| !t.is_empty())
            .or_else(|| self.config.as_ref().map(|c| c.media_type.clone()))
    }

    /// Every digest this manifest needs stored: config, local layers and child manifests.
    /// Foreign layers (with `urls`) live elsewhere and are not references.
    pub fn references(&self) -> Vec<(Digest, RefKind)> {
        let mut refs = Vec::with_capacity(1 + self.layers.len() + self.manifests.len());
        if let Some(c) = &self.config {
            refs.push((c.digest.clone(), RefKind::Config));
        }
        refs.extend(
            self.layers
                .iter()
                .filter(|l| l.urls.is_empty())
                .map(|l| (l.digest.clone(), RefKind::Layer)),
        );
        refs.extend(
            self.manifests
                .iter()
                .map(|m| (m.digest.clone(), RefKind::Manifest)),
        );
        refs
    }
}

fn schema1() -> Error {
    Error::ManifestUnsupported(
        "Docker schema 1 manifests are obsolete and not accepted; push with a current client (schema 2 or OCI)".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(x: &str) -> String {
        Digest::sha256_of(x.as_bytes()).to_string()
    }

    #[test]
    fn image_manifest() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},
            "layers":[{{"mediaType":"l","digest":"{}","size":3}},{{"mediaType":"f","digest":"{}","size":3,"urls":["http://x"]}}],
            "subject":{{"mediaType":"{}","digest":"{}","size":5}}}}"#,
            media::OCI_MANIFEST,
            d("c"),
            d("l"),
            d("f"),
            media::OCI_MANIFEST,
            d("s")
        );
        let m = Manifest::parse(body.as_bytes(), media::OCI_MANIFEST).unwrap();
        assert_eq!(m.references().len(), 2);
        assert_eq!(m.subject.as_ref().unwrap().digest.to_string(), d("s"));
        assert_eq!(
            m.effective_artifact_type().as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
    }

    #[test]
    fn empty_artifact_type_falls_back_to_the_config() {
        let body = format!(
            r#"{{"schemaVersion":2,"artifactType":"","config":{{"mediaType":"application/x.c","digest":"{}","size":2}}}}"#,
            d("c")
        );
        let m = Manifest::parse(body.as_bytes(), media::OCI_MANIFEST).unwrap();
        assert_eq!(
            m.effective_artifact_type().as_deref(),
            Some("application/x.c")
        );
        let index = r#"{"schemaVersion":2,"artifactType":"","manifests":[]}"#;
        let m = Manifest::parse(index.as_bytes(), media::OCI_INDEX).unwrap();
        assert_eq!(m.effective_artifact_type(), None);
    }

    #[test]
    fn index() {
        let body = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{}","size":7}}]}}"#,
            media::OCI_MANIFEST,
            d("m")
        );
        let m = Manifest::parse(body.as_bytes(), media::OCI_INDEX).unwrap();
        assert!(m.is_index());
        assert_eq!(
            m.references(),
            vec![(Digest::parse(&d("m")).unwrap(), RefKind::Manifest)]
        );
    }

    #[test]
    fn refusals() {
        assert!(matches!(
            Manifest::parse(b"{\"schemaVersion\":1}", ""),
            Err(Error::ManifestUnsupported(_))
        ));
        assert!(matches!(
            Manifest::parse(b"{}", media::DOCKER_SCHEMA1_SIGNED),
            Err(Error::ManifestUnsupported(_))
        ));
        assert!(Manifest::parse(b"not json", media::OCI_MANIFEST).is_err());
        assert!(Manifest::parse(b"{\"schemaVersion\":2}", media::OCI_MANIFEST).is_err());
        let mismatch = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[]}}"#,
            media::OCI_INDEX
        );
        assert!(Manifest::parse(mismatch.as_bytes(), media::OCI_MANIFEST).is_err());
        let nul_type = format!(
            r#"{{"schemaVersion":2,"artifactType":"a/\u0000","config":{{"mediaType":"x","digest":"{}","size":1}}}}"#,
            d("c")
        );
        assert!(Manifest::parse(nul_type.as_bytes(), media::OCI_MANIFEST).is_err());
        let bad_digest =
            r#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:00","size":1}}"#;
        assert!(Manifest::parse(bad_digest.as_bytes(), media::OCI_MANIFEST).is_err());
    }
}
