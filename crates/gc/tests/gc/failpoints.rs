//! Failpoint race tests (gc.md, "Tests that would prove it", item 2): for
//! every pair of a writer failpoint (W1, W2, M1) and a collector failpoint
//! (G1, G2, G3), in both orders, against the real registry binary and real
//! Postgres with G = 0. One side is paused inside its transaction, the other
//! runs into it, then both are let go. Allowed outcomes: the collector skips
//! the blob, or the writer waits and re-creates it, or the manifest PUT is
//! refused with MANIFEST_BLOB_UNKNOWN. Never allowed: a 201 manifest whose
//! blobs do not all pull with the right digest, a live row without its file,
//! or a row left `deleting`.

use std::time::Duration;

use reqwest::StatusCode;
use tokio::task::JoinHandle;
use wharf_gc::Params;

use crate::support::*;

const REPO: &str = "fp/app";
/// How long a side that did not reach its failpoint, did not finish and is
/// not seen waiting on a row lock may run before the test decides it is
/// waiting anyway (in its backoff) and lets the other side go.
const SETTLE: Duration = Duration::from_millis(1500);
/// Far above any pause here, far below the writers' 10 s wait for the collector.
const MUST_HIT: Duration = Duration::from_secs(8);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writer {
    /// Upload finish after the blob INSERT, before the rename.
    W1,
    /// Upload finish after the rename (or the live row's KEY SHARE), before commit.
    W2,
    /// Manifest PUT holding KEY SHARE on its blobs, before commit.
    M1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gc {
    /// After step A commits (the rows are `deleting`).
    G1,
    /// After an unlink of step B, before it commits.
    G2,
    /// After step B commits (rows and files gone).
    G3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    /// The writer pauses first; the collector runs into it.
    WriterFirst,
    /// The collector pauses first; the writer runs into it.
    GcFirst,
}

fn name<T: std::fmt::Debug>(t: T) -> String {
    format!("{t:?}")
}

/// What the writer got.
#[derive(Debug, Default)]
struct Outcome {
    uploads: Vec<(String, StatusCode, String)>,
    manifest: Option<(StatusCode, String)>,
}

/// A layer and a config the collector wants (live, unreferenced, queued),
/// and the manifest naming them.
struct Content {
    layer: Layer,
    config: Vec<u8>,
    manifest: Vec<u8>,
}

impl Content {
    fn new() -> Content {
        let layer = Layer::random(2000);
        let (config, manifest) = image_of(&[&layer]);
        Content {
            layer,
            config,
            manifest,
        }
    }

    fn blobs(&self) -> Vec<String> {
        vec![self.layer.digest.clone(), sha256(&self.config)]
    }
}

fn spawn_writer(site: &std::sync::Arc<Site>, w: Writer, c: &Content) -> JoinHandle<Outcome> {
    let site = site.clone();
    let (layer, config, manifest) = (c.layer.gz.clone(), c.config.clone(), c.manifest.clone());
    tokio::spawn(async move {
        let mut out = Outcome::default();
        if w != Writer::M1 {
            // The re-push a client makes after HEAD said the blob was there
            // (or not): the layer, then the config, then the manifest.
            for b in [&layer, &config] {
                let (s, body) = site.upload(REPO, b).await;
                out.uploads.push((sha256(b), s, body));
            }
        }
        out.manifest = Some(site.put_manifest(REPO, "v1", &manifest).await);
        out
    })
}

fn spawn_gc(site: &std::sync::Arc<Site>) -> JoinHandle<wharf_gc::Result<wharf_gc::Report>> {
    let c = site.collector();
    tokio::spawn(async move { c.run(&eager_params(), None).await })
}

/// Waits until the running side pauses at `failpoint`, finishes, or blocks
/// on a row lock the paused side holds (or, failing all three, `SETTLE`).
async fn settle(site: &Site, failpoint: &str, done: impl Fn() -> bool) {
    let end = std::time::Instant::now() + SETTLE;
    while std::time::Instant::now() < end {
        if site.fp.was_hit(failpoint) || done() || site.lock_waiters().await > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn race(w: Writer, g: Gc, order: Order) {
    let site = std::sync::Arc::new(Site::start().await);
    let c = Content::new();
    let (wn, gn) = (name(w), name(g));
    site.push_blob(REPO, &c.layer.gz).await;
    site.push_blob(REPO, &c.config).await;

    let writer_inserts = w == Writer::W1 && order == Order::WriterFirst;
    if writer_inserts {
        // W1 is reached only by a writer that creates the row. Let the
        // collector take the blobs first, then leave the layer's file behind
        // as a crashed writer would (renamed, never committed): the reconcile
        // then races the writer for the same path.
        site.collector().run(&eager_params(), None).await.unwrap();
        for d in c.blobs() {
            site.assert_gone(&d).await;
        }
        let path = site.blob_file(&c.layer.digest);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &c.layer.gz).unwrap();
    }

    site.fp.arm(&wn);
    site.fp.arm(&gn);
    let (writer, gc, writer_hit_while_gc_paused);
    match order {
        Order::WriterFirst => {
            writer = spawn_writer(&site, w, &c);
            assert!(
                site.fp
                    .wait_hit_or(&wn, MUST_HIT, || writer.is_finished())
                    .await
                    && site.fp.was_hit(&wn),
                "the writer did not pause at {wn}"
            );
            gc = spawn_gc(&site);
            settle(&site, &gn, || gc.is_finished()).await;
            writer_hit_while_gc_paused = true;
            site.fp.release(&wn);
            wait_until(Duration::from_millis(300), || writer.is_finished()).await;
            site.fp.release(&gn);
        }
        Order::GcFirst => {
            gc = spawn_gc(&site);
            assert!(
                site.fp
                    .wait_hit_or(&gn, MUST_HIT, || gc.is_finished())
                    .await
                    && site.fp.was_hit(&gn),
                "the collector did not pause at {gn}: {:?}",
                gc.await
            );
            writer = spawn_writer(&site, w, &c);
            settle(&site, &wn, || writer.is_finished()).await;
            writer_hit_while_gc_paused = site.fp.was_hit(&wn);
            site.fp.release(&gn);
            wait_until(Duration::from_millis(300), || gc.is_finished()).await;
            site.fp.release(&wn);
        }
    }
    let report = tokio::time::timeout(Duration::from_secs(60), gc)
        .await
        .expect("the collector finished")
        .unwrap()
        .expect("the collector run");
    let out = tokio::time::timeout(Duration::from_secs(60), writer)
        .await
        .expect("the writer finished")
        .unwrap();
    let (mstatus, mbody) = out.manifest.clone().unwrap();
    let label = format!("{wn}/{gn} {order:?}");
    eprintln!(
        "{label}: writer {}; uploads {:?}; manifest {mstatus}; gc purged {} blobs",
        if writer_hit_while_gc_paused {
            "reached its failpoint"
        } else {
            "waited"
        },
        out.uploads.iter().map(|u| u.1.as_u16()).collect::<Vec<_>>(),
        report.purged_blobs
    );

    // Uploads always succeed: the writer waits for the collector and re-creates.
    for (d, s, body) in &out.uploads {
        assert_eq!(*s, 201, "{label}: upload of {d}: {body}");
    }
    let accepted = mstatus == 201;
    assert!(
        accepted || is_blob_unknown(mstatus, &mbody),
        "{label}: manifest PUT answered {mstatus}: {mbody}"
    );
    if accepted {
        site.pull_verified(REPO, "v1")
            .await
            .unwrap_or_else(|e| panic!("{label}: 201 manifest with a broken blob: {e}"));
    }

    // What each interleaving must do, beyond "never broken".
    match (w, order) {
        // The manifest held KEY SHARE: the collector skipped its blobs.
        (Writer::M1, Order::WriterFirst) => {
            assert!(accepted, "{label}: {mbody}");
            assert_eq!(report.purged_blobs, 0, "{label}: {report:?}");
        }
        // The blobs were `deleting` or gone before the manifest came.
        (Writer::M1, Order::GcFirst) => {
            assert!(
                !accepted,
                "{label}: a manifest on deleted blobs was accepted"
            );
        }
        // While the row is `deleting` (G1, G2) the writer waits and does not
        // get near the rename; once it is gone (G3) the writer re-creates it.
        (_, Order::GcFirst) => match (g, w) {
            (Gc::G1 | Gc::G2, _) => assert!(
                !writer_hit_while_gc_paused,
                "{label}: the writer passed {wn} while the row was `deleting`"
            ),
            (Gc::G3, _) => assert!(
                writer_hit_while_gc_paused,
                "{label}: the writer should re-create the row at once"
            ),
        },
        // The reconcile met the writer's uncommitted row and left the file.
        (Writer::W1, Order::WriterFirst) => {
            assert!(accepted, "{label}: {mbody}");
        }
        _ => {}
    }

    // A final quiet run: the 201 image still pulls, nothing else is left.
    let last = site.collector().run(&eager_params(), None).await.unwrap();
    assert_eq!(last.errors, 0, "{label}: {last:?}");
    site.assert_index_consistent().await;
    let mut expect = std::collections::BTreeSet::new();
    if accepted {
        site.pull_verified(REPO, "v1")
            .await
            .unwrap_or_else(|e| panic!("{label}: after the last run: {e}"));
        expect.extend(c.blobs());
        expect.insert(sha256(&c.manifest));
    } else {
        for d in c.blobs() {
            assert_eq!(site.get_blob(REPO, &d).await, None, "{label}: {d}");
        }
    }
    assert_eq!(
        site.blob_files(),
        expect,
        "{label}: storage after the last run"
    );
}

macro_rules! races {
    ($($name:ident: $w:ident $g:ident $o:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            race(Writer::$w, Gc::$g, Order::$o).await;
        }
    )*};
}

races! {
    w1_g1_writer_first: W1 G1 WriterFirst;
    w1_g1_gc_first: W1 G1 GcFirst;
    w1_g2_writer_first: W1 G2 WriterFirst;
    w1_g2_gc_first: W1 G2 GcFirst;
    w1_g3_writer_first: W1 G3 WriterFirst;
    w1_g3_gc_first: W1 G3 GcFirst;
    w2_g1_writer_first: W2 G1 WriterFirst;
    w2_g1_gc_first: W2 G1 GcFirst;
    w2_g2_writer_first: W2 G2 WriterFirst;
    w2_g2_gc_first: W2 G2 GcFirst;
    w2_g3_writer_first: W2 G3 WriterFirst;
    w2_g3_gc_first: W2 G3 GcFirst;
    m1_g1_writer_first: M1 G1 WriterFirst;
    m1_g1_gc_first: M1 G1 GcFirst;
    m1_g2_writer_first: M1 G2 WriterFirst;
    m1_g2_gc_first: M1 G2 GcFirst;
    m1_g3_writer_first: M1 G3 WriterFirst;
    m1_g3_gc_first: M1 G3 GcFirst;
}

/// HEAD → GC → manifest PUT: the blobs HEAD saw may be gone by the PUT. A
/// refusal is allowed (and at G = 0 expected); a broken 201 is not. The
/// client's retry (push again, PUT again) then succeeds. Covered with the
/// collector finished, and paused at each of its failpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_then_gc_then_manifest_put() {
    for paused in [None, Some(Gc::G1), Some(Gc::G2), Some(Gc::G3)] {
        let site = std::sync::Arc::new(Site::start().await);
        let c = Content::new();
        site.push_blob(REPO, &c.layer.gz).await;
        site.push_blob(REPO, &c.config).await;
        for d in c.blobs() {
            assert_eq!(site.head_blob(REPO, &d).await, 200);
        }
        let gc = match paused {
            None => {
                site.collector().run(&eager_params(), None).await.unwrap();
                None
            }
            Some(g) => {
                site.fp.arm(&name(g));
                let gc = spawn_gc(&site);
                assert!(
                    site.fp.wait_hit_or(&name(g), MUST_HIT, || false).await,
                    "{g:?} not reached"
                );
                Some((g, gc))
            }
        };
        let (s, body) = site.put_manifest(REPO, "v1", &c.manifest).await;
        let label = format!("HEAD, GC paused at {paused:?}, PUT");
        if s == 201 {
            site.pull_verified(REPO, "v1")
                .await
                .unwrap_or_else(|e| panic!("{label}: broken 201: {e}"));
        } else {
            assert!(is_blob_unknown(s, &body), "{label}: {s} {body}");
        }
        assert_ne!(s, 201, "{label}: G = 0 and the blobs were collected");
        if let Some((g, gc)) = gc {
            site.fp.release(&name(g));
            gc.await.unwrap().unwrap();
        }
        // The client's retry: push the blobs again, then the manifest.
        site.push_blob(REPO, &c.layer.gz).await;
        site.push_blob(REPO, &c.config).await;
        let (s, body) = site.put_manifest(REPO, "v1", &c.manifest).await;
        assert_eq!(s, 201, "{label}: the retry: {body}");
        site.pull_verified(REPO, "v1").await.unwrap();
        site.collector().run(&eager_params(), None).await.unwrap();
        site.pull_verified(REPO, "v1").await.unwrap();
        site.assert_index_consistent().await;
    }
}

/// A chunk that finds a blob busy (a manifest PUT holds it, paused at M1)
/// puts it back in the queue a minute on. When that manifest is later
/// untagged, one run with G = 0 must still reclaim the manifest and its
/// blobs (I4), not leave them for a run a minute later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_found_busy_is_reclaimed_when_its_manifest_goes() {
    let site = std::sync::Arc::new(Site::start().await);
    let c = Content::new();
    site.push_blob(REPO, &c.layer.gz).await;
    site.push_blob(REPO, &c.config).await;
    site.fp.arm("M1");
    let writer = spawn_writer(&site, Writer::M1, &c);
    assert!(site.fp.wait_hit_or("M1", MUST_HIT, || false).await);
    let no_reconcile = Params {
        reconcile: false,
        ..eager_params()
    };
    let busy = site.collector().run(&no_reconcile, None).await.unwrap();
    assert_eq!(busy.purged_blobs, 0, "{busy:?}");
    site.fp.release("M1");
    let (s, body) = writer.await.unwrap().manifest.unwrap();
    assert_eq!(s, 201, "{body}");
    assert_eq!(site.delete_reference(REPO, "v1").await, 202);

    let report = site.collector().run(&eager_params(), None).await.unwrap();
    assert_eq!(report.purged_manifests, 1, "{report:?}");
    let mut left = Vec::new();
    for d in site.blob_files() {
        left.push(site.explain_blob(&d).await);
    }
    assert!(left.is_empty(), "one run leaves {left:#?}");
    site.assert_index_consistent().await;
}
