//! Soak (gc.md, "Tests that would prove it", item 4, scaled down to run on
//! every submission): concurrent clients over a small shared pool of layers
//! push (monolithic and chunked), mount across repositories, tag, retag and
//! delete by digest and by tag, while the collector runs again and again with
//! G = 0, `delete_untagged` and 4 workers. Afterwards one last run; then every
//! tag whose PUT got 201 and was not deleted must pull completely with
//! verified digests, and storage must hold exactly those images' blobs.
//!
//! `SOAK_SECS` sets the busy phase (default 45 s); `SOAK_SEED` replays a run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use wharf_gc::Params;

use crate::support::*;

const CLIENTS: usize = 6;
const LAYERS: usize = 8;
const REPOS: [&str; 3] = ["soak/a", "soak/b", "soak/c"];
const TAGS_PER_CLIENT: usize = 3;

fn soak_secs() -> u64 {
    std::env::var("SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(45)
}

/// What the clients saw; refusals are the client retries gc.md counts.
#[derive(Default)]
struct Stats {
    pushes: AtomicU64,
    refused: AtomicU64,
    busy: AtomicU64,
    mounts: AtomicU64,
    mount_fallbacks: AtomicU64,
    retags: AtomicU64,
    tag_deletes: AtomicU64,
    digest_deletes: AtomicU64,
    gc_runs: AtomicU64,
    purged_blobs: AtomicU64,
    purged_manifests: AtomicU64,
    /// Anything a correct registry must never answer.
    failures: Mutex<Vec<String>>,
    /// Every blob digest any client pushed (or tried to).
    pushed: Mutex<BTreeSet<String>>,
}

impl Stats {
    fn fail(&self, what: String) {
        eprintln!("soak failure: {what}");
        self.failures.lock().unwrap().push(what);
    }
}

/// One client's tags, which only it changes, so its ledger is exact:
/// (repo, tag) → manifest bytes.
type Ledger = BTreeMap<(String, String), Vec<u8>>;

struct Client {
    id: usize,
    site: Arc<Site>,
    pool: Arc<Vec<Layer>>,
    stats: Arc<Stats>,
    rng: StdRng,
    ledger: Ledger,
}

impl Client {
    fn tag(&mut self) -> (String, String) {
        let repo = REPOS[self.rng.gen_range(0..REPOS.len())].to_owned();
        let tag = format!("c{}-t{}", self.id, self.rng.gen_range(0..TAGS_PER_CLIENT));
        (repo, tag)
    }

    async fn run(mut self, until: Instant) -> Ledger {
        while Instant::now() < until {
            match self.rng.gen_range(0..10) {
                0..=4 => self.push_image().await,
                5 | 6 => self.retag().await,
                7 => self.delete_tag().await,
                _ => self.delete_digest().await,
            }
        }
        self.ledger
    }

    /// Puts one blob into `repo`: a mount from another repository, or a
    /// monolithic or chunked upload. Returns false if the registry refused.
    async fn put_blob(&mut self, repo: &str, data: &[u8]) -> bool {
        let d = sha256(data);
        self.stats.pushed.lock().unwrap().insert(d.clone());
        let site = self.site.clone();
        match self.rng.gen_range(0..3) {
            0 => {
                let from = REPOS[self.rng.gen_range(0..REPOS.len())];
                if from != repo {
                    self.stats.mounts.fetch_add(1, Ordering::Relaxed);
                    match site.mount(repo, from, &d).await.as_u16() {
                        201 => return true,
                        202 => {
                            self.stats.mount_fallbacks.fetch_add(1, Ordering::Relaxed);
                        }
                        s => self.stats.fail(format!("mount {d} {from} -> {repo}: {s}")),
                    }
                }
                self.check_upload(&d, site.upload(repo, data).await)
            }
            1 => {
                let chunk = data.len() / 3 + 1;
                self.check_upload(&d, site.upload_chunked(repo, data, chunk).await)
            }
            _ => self.check_upload(&d, site.upload(repo, data).await),
        }
    }

    fn check_upload(&self, d: &str, (s, body): (reqwest::StatusCode, String)) -> bool {
        match s.as_u16() {
            201 => true,
            503 => {
                self.stats.busy.fetch_add(1, Ordering::Relaxed);
                false
            }
            _ => {
                self.stats.fail(format!("upload {d}: {s} {body}"));
                false
            }
        }
    }

    async fn push_image(&mut self) {
        let n = self.rng.gen_range(1..=3);
        let mut picked: Vec<usize> = (0..n).map(|_| self.rng.gen_range(0..LAYERS)).collect();
        picked.sort();
        picked.dedup();
        let pool = self.pool.clone();
        let layers: Vec<&Layer> = picked.iter().map(|&i| &pool[i]).collect();
        let (config, manifest) = image_of(&layers);
        let (repo, tag) = self.tag();
        for l in &layers {
            if !self.put_blob(&repo, &l.gz).await {
                return;
            }
        }
        if !self.put_blob(&repo, &config).await {
            return;
        }
        self.put_manifest(&repo, &tag, manifest).await;
    }

    async fn put_manifest(&mut self, repo: &str, tag: &str, manifest: Vec<u8>) {
        let (s, body) = self.site.put_manifest(repo, tag, &manifest).await;
        if s == 201 {
            self.stats.pushes.fetch_add(1, Ordering::Relaxed);
            self.ledger
                .insert((repo.to_owned(), tag.to_owned()), manifest);
        } else if is_blob_unknown(s, &body) {
            // G = 0: a blob pushed a moment ago was collected before the
            // manifest named it. The tag keeps what it had.
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
        } else if s == 503 {
            self.stats.busy.fetch_add(1, Ordering::Relaxed);
        } else {
            self.stats
                .fail(format!("PUT manifest {repo}:{tag}: {s} {body}"));
        }
    }

    /// Points another of this client's tags in the same repository at one
    /// of its images (a new tag, or a tag moved off its old image).
    async fn retag(&mut self) {
        let Some(((repo, _), m)) = self.pick() else {
            return self.push_image().await;
        };
        let tag = format!("c{}-t{}", self.id, self.rng.gen_range(0..TAGS_PER_CLIENT));
        self.stats.retags.fetch_add(1, Ordering::Relaxed);
        self.put_manifest(&repo, &tag, m).await;
    }

    async fn delete_tag(&mut self) {
        let Some(((repo, tag), _)) = self.pick() else {
            return;
        };
        let s = self.site.delete_reference(&repo, &tag).await;
        if s == 202 {
            self.stats.tag_deletes.fetch_add(1, Ordering::Relaxed);
            self.ledger.remove(&(repo, tag));
        } else {
            self.stats.fail(format!("DELETE tag {repo}:{tag}: {s}"));
        }
    }

    /// Deletes an image by digest: every tag on it goes with it.
    async fn delete_digest(&mut self) {
        let Some(((repo, _), m)) = self.pick() else {
            return;
        };
        let d = sha256(&m);
        let s = self.site.delete_reference(&repo, &d).await;
        if s == 202 {
            self.stats.digest_deletes.fetch_add(1, Ordering::Relaxed);
            self.ledger
                .retain(|(r, _), v| !(r == &repo && sha256(v) == d));
        } else {
            self.stats.fail(format!("DELETE manifest {repo}@{d}: {s}"));
        }
    }

    fn pick(&mut self) -> Option<((String, String), Vec<u8>)> {
        if self.ledger.is_empty() {
            return None;
        }
        let i = self.rng.gen_range(0..self.ledger.len());
        self.ledger
            .iter()
            .nth(i)
            .map(|(k, v)| (k.clone(), v.clone()))
    }
}

fn gc_params() -> Params {
    Params {
        grace_secs: 0,
        delete_untagged: true,
        workers: 4,
        chunk: 4, // several chunks per run even on this small store
        ..Params::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn soak_push_tag_mount_delete_under_continuous_gc() {
    let seed: u64 = std::env::var("SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!(
        "soak: seed {seed} (SOAK_SEED replays the clients' choices), {} s",
        soak_secs()
    );
    let started = Instant::now();
    let site = Arc::new(Site::start().await);
    let pool = Arc::new(
        (0..LAYERS)
            .map(|i| Layer::random(500 + 700 * i))
            .collect::<Vec<_>>(),
    );
    let stats = Arc::new(Stats::default());
    let until = Instant::now() + Duration::from_secs(soak_secs());

    let stop = Arc::new(AtomicBool::new(false));
    let gc = {
        let (c, stop, stats) = (site.collector(), stop.clone(), stats.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match c.run(&gc_params(), None).await {
                    Ok(r) => {
                        stats.gc_runs.fetch_add(1, Ordering::Relaxed);
                        stats
                            .purged_blobs
                            .fetch_add(r.purged_blobs as u64, Ordering::Relaxed);
                        stats
                            .purged_manifests
                            .fetch_add(r.purged_manifests as u64, Ordering::Relaxed);
                        if r.errors != 0 {
                            stats.fail(format!("gc run with errors: {r:?}"));
                        }
                    }
                    Err(e) => stats.fail(format!("gc run: {e}")),
                }
                // Back to back, but leaving the clients some CPU.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let c = Client {
                id,
                site: site.clone(),
                pool: pool.clone(),
                stats: stats.clone(),
                rng: StdRng::seed_from_u64(seed ^ (id as u64).wrapping_mul(0x9e37_79b9)),
                ledger: Ledger::new(),
            };
            tokio::spawn(c.run(until))
        })
        .collect();
    let mut tags = Ledger::new();
    for c in clients {
        tags.extend(c.await.unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    gc.await.unwrap();

    // One last run, with the reconcile: storage must then hold exactly the
    // blobs of the surviving tags.
    let last = site
        .collector()
        .run(
            &Params {
                reconcile: true,
                recover_after_secs: 0,
                ..gc_params()
            },
            None,
        )
        .await
        .unwrap();
    let failures = stats.failures.lock().unwrap().clone();
    let s = |a: &AtomicU64| a.load(Ordering::Relaxed);
    eprintln!(
        "soak: {} manifest 201s, {} refused (MANIFEST_BLOB_UNKNOWN), {} busy (503), {} mounts ({} fell back to upload), \
         {} retags, {} tag deletes, {} digest deletes; {} gc runs purged {} manifests and {} blobs; {} tags survive; last run {last:?}",
        s(&stats.pushes), s(&stats.refused), s(&stats.busy), s(&stats.mounts), s(&stats.mount_fallbacks),
        s(&stats.retags), s(&stats.tag_deletes), s(&stats.digest_deletes), s(&stats.gc_runs),
        s(&stats.purged_manifests), s(&stats.purged_blobs), tags.len()
    );
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(s(&stats.gc_runs) >= 2, "the collector ran again and again");
    // A writer waits for the collector only while one step B holds its
    // digest; 503 means it waited 10 s (a row left `deleting`).
    assert_eq!(
        s(&stats.busy),
        0,
        "writers gave up waiting for the collector"
    );
    assert!(s(&stats.pushes) > 20, "the clients got work done");
    assert_eq!(last.errors, 0, "{last:?}");

    let mut expect = BTreeSet::new();
    for ((repo, tag), m) in &tags {
        site.pull_verified(repo, tag)
            .await
            .unwrap_or_else(|e| panic!("I1 broken for {repo}:{tag}: {e}"));
        let got = site.get_manifest(repo, tag).await.unwrap();
        assert_eq!(
            sha256(&got),
            sha256(m),
            "{repo}:{tag} points at its last 201"
        );
        expect.insert(sha256(m));
        expect.extend(manifest_blobs(m));
    }
    site.assert_index_consistent().await;
    let files = site.blob_files();
    let mut stray = Vec::new();
    for d in files.difference(&expect) {
        stray.push(site.explain_blob(d).await);
    }
    assert!(
        stray.is_empty(),
        "blobs no surviving image needs: {stray:#?}"
    );
    let missing: Vec<_> = expect.difference(&files).collect();
    assert!(
        missing.is_empty(),
        "blobs surviving images need: {missing:?}"
    );
    let pushed = stats.pushed.lock().unwrap().clone();
    let mut gone = 0;
    for d in pushed.difference(&expect) {
        for repo in REPOS {
            assert_eq!(site.get_blob(repo, d).await, None, "{repo}@{d} is gone");
        }
        gone += 1;
    }
    assert!(gone > 0, "deleted images left blobs to collect");
    eprintln!(
        "soak: verified {} tags, {} blobs kept, {gone} collected, {:.1} s in all",
        tags.len(),
        expect.len(),
        started.elapsed().as_secs_f64()
    );
}
