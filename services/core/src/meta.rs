//! What the catalogue learns from an artifact's bytes: an image's platform,
//! author and creation time from its config (Harbor's `extra_attrs`), the
//! manifest's annotations, and the platforms of an index's children. Read
//! once per digest through the registry and kept in `artifact_meta`: content
//! is addressed by digest, so an entry never goes stale.

use serde_json::{json, Map, Value};
use wharf_catalog::artifacts;
use wharf_oci::Digest;

use crate::error::Result;
use crate::App;

/// Image configs larger than this are not read for `extra_attrs`.
const MAX_CONFIG: usize = 1 << 20;

const IMAGE_CONFIGS: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

/// What a manifest's own bytes say.
#[derive(Debug, Default, PartialEq)]
pub struct FromManifest {
    pub annotations: Option<Value>,
    /// An index's children in order: `{digest, platform?, annotations?}`.
    pub platforms: Option<Value>,
    /// An image's config, to read `extra_attrs` from.
    pub config: Option<String>,
}

pub fn parse_manifest(bytes: &[u8]) -> FromManifest {
    let Ok(v) = serde_json::from_slice::<Value>(bytes) else {
        return FromManifest::default();
    };
    let annotations = v
        .get("annotations")
        .filter(|a| a.as_object().is_some_and(|o| !o.is_empty()))
        .cloned();
    let platforms = v.get("manifests").and_then(Value::as_array).map(|ms| {
        Value::Array(
            ms.iter()
                .filter_map(|m| {
                    let mut o = Map::new();
                    o.insert("digest".into(), m.get("digest")?.clone());
                    for k in ["platform", "annotations", "urls"] {
                        if let Some(x) = m.get(k).filter(|x| !x.is_null()) {
                            o.insert(k.into(), x.clone());
                        }
                    }
                    Some(Value::Object(o))
                })
                .collect(),
        )
    });
    let config = v
        .get("config")
        .filter(|c| {
            c.get("mediaType")
                .and_then(Value::as_str)
                .is_some_and(|t| IMAGE_CONFIGS.contains(&t))
        })
        .and_then(|c| c.get("digest"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    FromManifest {
        annotations,
        platforms,
        config,
    }
}

/// Harbor's `extra_attrs` of an image, from its config.
pub fn extra_attrs(config: &[u8]) -> Option<Value> {
    let v: Value = serde_json::from_slice(config).ok()?;
    let mut o = Map::new();
    for k in [
        "architecture",
        "os",
        "variant",
        "os.version",
        "author",
        "created",
    ] {
        if let Some(x) = v.get(k).filter(|x| !x.is_null()) {
            o.insert(k.into(), x.clone());
        }
    }
    o.insert(
        "config".into(),
        v.get("config").cloned().unwrap_or_else(|| json!({})),
    );
    Some(Value::Object(o))
}

/// Reads and stores the metadata of `digest` of `repository` unless known.
/// `Ok(false)` when the registry does not have the manifest.
pub async fn ensure(app: &App, repository: &str, digest: &Digest) -> Result<bool> {
    let key = digest.as_bytes().to_vec();
    if !artifacts::meta_known(&app.db, std::slice::from_ref(&key))
        .await?
        .is_empty()
    {
        return Ok(true);
    }
    let Some(bytes) = crate::registry::manifest(app, repository, &digest.to_string()).await? else {
        return Ok(false);
    };
    let m = parse_manifest(&bytes);
    let extra = match &m.config {
        Some(c) => crate::registry::blob(app, repository, c, MAX_CONFIG)
            .await?
            .and_then(|b| extra_attrs(&b)),
        None => None,
    };
    let text = |v: &Option<Value>| v.as_ref().map(Value::to_string);
    artifacts::put_meta(
        &app.db,
        &key,
        text(&extra).as_deref(),
        text(&m.annotations).as_deref(),
        text(&m.platforms).as_deref(),
    )
    .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_platforms_in_order() {
        let idx = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:bb","size":1,"platform":{"architecture":"arm64","os":"linux","variant":"v8"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aa","size":1,"platform":{"architecture":"amd64","os":"linux"}}],
            "annotations":{"a":"b"}}"#;
        let m = parse_manifest(idx);
        let p = m.platforms.unwrap();
        assert_eq!(p[0]["digest"], "sha256:bb");
        assert_eq!(p[0]["platform"]["variant"], "v8");
        assert_eq!(p[1]["platform"]["architecture"], "amd64");
        assert_eq!(m.annotations.unwrap()["a"], "b");
        assert_eq!(m.config, None);
    }

    #[test]
    fn image_config_gives_extra_attrs() {
        let img = br#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:cc","size":2},"layers":[]}"#;
        let m = parse_manifest(img);
        assert_eq!(m.config.as_deref(), Some("sha256:cc"));
        assert_eq!(m.platforms, None);
        let x = extra_attrs(br#"{"architecture":"amd64","os":"linux","created":"2024-01-01T00:00:00Z","config":{"Env":["A=1"]},"rootfs":{}}"#).unwrap();
        assert_eq!(x["architecture"], "amd64");
        assert_eq!(x["config"]["Env"][0], "A=1");
        assert!(x.get("rootfs").is_none());
        // Other artifacts' configs are not read.
        let art = br#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.example+json","digest":"sha256:cc","size":2}}"#;
        assert_eq!(parse_manifest(art).config, None);
        assert_eq!(parse_manifest(b"not json"), FromManifest::default());
    }
}
