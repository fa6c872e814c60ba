//! Manifest bytes by digest, kept in memory for pulls. Content is addressed
//! by digest and never changes, so an entry can never be stale; whether a
//! repository may serve it is still decided by its link files on every
//! request, so a deleted manifest stops being served at once.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use wharf_oci::Digest;

use crate::handlers::manifests::sniff_media_type;

pub struct Cached {
    pub bytes: Bytes,
    pub media_type: String,
}

pub struct ManifestCache {
    max_bytes: usize,
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Digest, Arc<Cached>>,
    bytes: usize,
}

impl ManifestCache {
    /// A cache holding at most `max_bytes` of manifests.
    pub fn new(max_bytes: usize) -> ManifestCache {
        ManifestCache {
            max_bytes,
            inner: RwLock::new(Inner::default()),
        }
    }

    pub fn get(&self, d: &Digest) -> Option<Arc<Cached>> {
        self.inner
            .read()
            .expect("manifest cache lock")
            .entries
            .get(d)
            .cloned()
    }

    pub fn insert(&self, d: Digest, bytes: Bytes) -> Arc<Cached> {
        let entry = Arc::new(Cached {
            media_type: sniff_media_type(&bytes),
            bytes,
        });
        let size = entry.bytes.len();
        if size > self.max_bytes / 16 {
            return entry; // too large to be worth a slot
        }
        let mut inner = self.inner.write().expect("manifest cache lock");
        if inner.bytes + size > self.max_bytes {
            // Crude but bounded: start over rather than track recency on every hit.
            inner.entries.clear();
            inner.bytes = 0;
        }
        if inner.entries.insert(d, entry.clone()).is_none() {
            inner.bytes += size;
        }
        entry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_typed() {
        let c = ManifestCache::new(1600);
        let m = br#"{"schemaVersion":2,"manifests":[]}"#;
        let d = Digest::sha256_of(m);
        assert_eq!(
            c.insert(d.clone(), Bytes::from_static(m)).media_type,
            wharf_oci::media::OCI_INDEX
        );
        assert!(c.get(&d).is_some());
        for i in 0..100u32 {
            let b = Bytes::from(format!("{{\"schemaVersion\":2,\"i\":{i}}}").into_bytes());
            c.insert(Digest::sha256_of(&b), b);
        }
        assert!(c.inner.read().unwrap().bytes <= 1600);
    }
}
