//! OCI image layouts on disk for tests to push with skopeo: real tar+gzip
//! layers of random content, a config with the layers' diff ids, and an
//! `index.json` that names each image by tag.

use std::io::Write as _;
use std::path::Path;

use sha2::Digest as _;

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex(&sha2::Sha256::digest(data)))
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|_| rand::random::<u8>()).collect()
}

/// One image of `layers` layers of `layer_size` random bytes, tagged `tag`;
/// returns its manifest digest.
pub fn write_image(dir: &Path, tag: &str, layers: usize, layer_size: usize) -> String {
    write_images(dir, &[(tag, "amd64")], layers, layer_size).remove(0)
}

/// One image per (tag, architecture) in one layout; returns their manifest digests.
pub fn write_images(
    dir: &Path,
    images: &[(&str, &str)],
    layers: usize,
    layer_size: usize,
) -> Vec<String> {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    let put = |b: &[u8]| -> (String, usize) {
        let d = sha256(b);
        std::fs::write(dir.join("blobs/sha256").join(&d[7..]), b).unwrap();
        (d, b.len())
    };
    let mut index = vec![];
    let mut digests = vec![];
    for (tag, arch) in images {
        let mut ls = vec![];
        let mut diff_ids = vec![];
        for i in 0..layers {
            let mut tarball = tar::Builder::new(Vec::new());
            let content = random_bytes(layer_size);
            let mut h = tar::Header::new_gnu();
            h.set_size(content.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tarball
                .append_data(&mut h, format!("layer{i}.bin"), &content[..])
                .unwrap();
            let raw = tarball.into_inner().unwrap();
            diff_ids.push(sha256(&raw));
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&raw).unwrap();
            let (d, n) = put(&gz.finish().unwrap());
            ls.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": n}));
        }
        let config = serde_json::to_vec(&serde_json::json!({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}, "config": {}})).unwrap();
        let (cd, cn) = put(&config);
        let m = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn}, "layers": ls})).unwrap();
        let (md, mn) = put(&m);
        index.push(serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": mn,
            "platform": {"architecture": arch, "os": "linux"}, "annotations": {"org.opencontainers.image.ref.name": tag}}));
        digests.push(md);
    }
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": index})).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    digests
}
