//! Collector runs against real Postgres and the real registry, with G = 0.

use wharf_gc::Params;

use crate::support::*;

fn params() -> Params {
    Params {
        grace_secs: 0,
        recover_after_secs: 0,
        workers: 3,
        chunk: 2, // several chunks even on a small store
        ..Params::default()
    }
}

/// Two images sharing a layer, one deleted, and a blob no manifest names.
struct Store {
    kept: Image,
    deleted: Image,
    lone: String,
    lone_bytes: Vec<u8>,
}

async fn store(site: &Site) -> Store {
    let shared = random_bytes(3000);
    let kept = site
        .push_image("lib/app", "keep", &[shared.clone(), random_bytes(2000)])
        .await;
    let deleted = site
        .push_image(
            "lib/app",
            "old",
            &[shared, random_bytes(1000), random_bytes(500)],
        )
        .await;
    let lone_bytes = random_bytes(700);
    let lone = site.push_blob("lib/other", &lone_bytes).await;
    site.delete_manifest("lib/app", &deleted.manifest).await;
    Store {
        kept,
        deleted,
        lone,
        lone_bytes,
    }
}

fn doomed(s: &Store) -> Vec<String> {
    let mut v = vec![
        s.deleted.manifest.clone(),
        s.deleted.config.clone(),
        s.lone.clone(),
    ];
    v.extend(s.deleted.layers[1..].iter().cloned());
    v
}

#[tokio::test]
async fn gc_deletes_exactly_the_unreferenced_and_docker_registry_still_serves() {
    let site = Site::start().await;
    let s = store(&site).await;
    let expect_bytes: u64 = doomed(&s)
        .iter()
        .map(|d| std::fs::metadata(site.blob_file(d)).unwrap().len())
        .sum();

    let report = site.collector().run(&params(), None).await.unwrap();

    assert_eq!(report.purged_blobs, doomed(&s).len() as i64, "{report:?}");
    assert_eq!(report.freed_space as u64, expect_bytes);
    assert!(!report.stopped && report.errors == 0, "{report:?}");
    for d in doomed(&s) {
        site.assert_gone(&d).await;
    }
    for d in s.kept.all() {
        site.assert_live(&d).await;
    }
    // The shared layer survives with its link; the deleted ones' links are gone.
    assert!(site.layer_link("lib/app", &s.kept.layers[0]).exists());
    assert!(!site.layer_link("lib/app", &s.deleted.layers[1]).exists());
    assert!(!site.layer_link("lib/other", &s.lone).exists());
    let left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM gc_queue WHERE kind = 'blob' AND review_after <= now()",
    )
    .fetch_one(&site.pool)
    .await
    .unwrap();
    assert_eq!(left, 0, "the queue is drained");
    let run = wharf_catalog::gc::get_run(&site.pool, report.run)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.status, "success");
    assert_eq!(run.deleted, report.purged_blobs);
    assert_eq!(run.bytes_freed, report.freed_space);

    // A second run finds nothing.
    let again = site.collector().run(&params(), None).await.unwrap();
    assert_eq!((again.purged_blobs, again.freed_space), (0, 0));

    // Debian's docker-registry serves the remaining tag from the same volume.
    let dr = DockerRegistry::start(site.data.path()).await;
    let out = tempfile::tempdir().unwrap();
    let dest = format!("oci:{}:keep", out.path().display());
    let src = format!("docker://{}/lib/app:keep", dr.addr);
    let (ok, log) = skopeo(&["copy", "--src-tls-verify=false", &src, &dest]).await;
    assert!(ok, "skopeo copy from docker-registry: {log}\n{}", dr.log());
    let (ok, _) = skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{}/lib/app:old", dr.addr),
    ])
    .await;
    assert!(!ok, "the deleted tag is gone");
}

#[tokio::test]
async fn dry_run_reports_and_deletes_nothing() {
    let site = Site::start().await;
    let s = store(&site).await;
    let p = Params {
        dry_run: true,
        ..params()
    };
    let report = site.collector().run(&p, None).await.unwrap();
    assert!(report.dry_run);
    assert_eq!(report.purged_blobs, doomed(&s).len() as i64, "{report:?}");
    assert!(report.freed_space > 0);
    for d in doomed(&s).iter().chain(s.kept.all().iter()) {
        site.assert_live(d).await;
    }
    let deleting: i64 = sqlx::query_scalar("SELECT count(*) FROM blob WHERE state = 'deleting'")
        .fetch_one(&site.pool)
        .await
        .unwrap();
    assert_eq!(deleting, 0);
    // The real run then deletes what the dry run announced.
    let real = site.collector().run(&params(), None).await.unwrap();
    assert_eq!(real.purged_blobs, report.purged_blobs);
    assert_eq!(real.freed_space, report.freed_space);
}

#[tokio::test]
async fn a_crashed_runs_deleting_rows_are_recovered() {
    let site = Site::start().await;
    let s = store(&site).await;
    // A run that died after step A: its rows are `deleting`, its heartbeat old.
    let dead: i64 = sqlx::query_scalar(
        "INSERT INTO gc_run (phase, heartbeat_at) VALUES ('sweep', now() - interval '10 minutes') RETURNING id",
    )
    .fetch_one(&site.pool)
    .await
    .unwrap();
    let keys: Vec<Vec<u8>> = [&s.lone, &s.deleted.layers[1]]
        .iter()
        .map(|d| hex_decode(&d[7..]))
        .collect();
    sqlx::query("UPDATE blob SET state = 'deleting', gc_run = $2, deleting_since = now() - interval '10 minutes' WHERE digest = ANY($1)")
        .bind(&keys)
        .bind(dead)
        .execute(&site.pool)
        .await
        .unwrap();
    let p = Params {
        recover_after_secs: 60,
        ..params()
    };
    let report = site.collector().run(&p, None).await.unwrap();
    assert_eq!(report.recovered, 2, "{report:?}");
    site.assert_gone(&s.lone).await;
    site.assert_gone(&s.deleted.layers[1]).await;
    let deleting: i64 = sqlx::query_scalar("SELECT count(*) FROM blob WHERE state = 'deleting'")
        .fetch_one(&site.pool)
        .await
        .unwrap();
    assert_eq!(deleting, 0);
    for d in s.kept.all() {
        site.assert_live(&d).await;
    }
    // The digest can be pushed again.
    let again = site.push_blob("lib/other", &s.lone_bytes).await;
    assert_eq!(again, s.lone);
    site.assert_live(&again).await;
}

#[tokio::test]
async fn untagged_manifests_go_with_delete_untagged_only() {
    let site = Site::start().await;
    let first = site.push_image("lib/app", "v1", &[random_bytes(900)]).await;
    let second = site.push_image("lib/app", "v1", &[random_bytes(800)]).await; // moves the tag
    let plain = site.collector().run(&params(), None).await.unwrap();
    assert_eq!(plain.purged_manifests, 0);
    for d in first.all() {
        site.assert_live(&d).await;
    }
    let p = Params {
        delete_untagged: true,
        ..params()
    };
    let report = site.collector().run(&p, None).await.unwrap();
    assert_eq!(report.purged_manifests, 1, "{report:?}");
    assert_eq!(report.purged_blobs, 3, "{report:?}");
    for d in first.all() {
        site.assert_gone(&d).await;
    }
    for d in second.all() {
        site.assert_live(&d).await;
    }
    let revision = site.v2().join(format!(
        "repositories/lib/app/_manifests/revisions/sha256/{}/link",
        &first.manifest[7..]
    ));
    assert!(!revision.exists(), "the revision link is gone");
}

#[tokio::test]
async fn reconcile_claims_files_no_row_knows() {
    let site = Site::start().await;
    let img = site.push_image("lib/app", "v1", &[random_bytes(600)]).await;
    let orphan = random_bytes(4321);
    let d = sha256(&orphan);
    let path = site.blob_file(&d);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &orphan).unwrap();
    let dry = site
        .collector()
        .run(
            &Params {
                reconcile: true,
                dry_run: true,
                ..params()
            },
            None,
        )
        .await
        .unwrap();
    assert!(dry.dry_run);
    assert!(path.exists());
    let report = site
        .collector()
        .run(
            &Params {
                reconcile: true,
                ..params()
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(report.purged_blobs, 1, "{report:?}");
    assert_eq!(report.freed_space, 4321);
    site.assert_gone(&d).await;
    for d in img.all() {
        site.assert_live(&d).await;
    }
}

#[tokio::test]
async fn one_run_at_a_time() {
    let site = Site::start().await;
    let mut holder = site.pool.acquire().await.unwrap();
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(wharf_catalog::gc::RUN_LOCK)
        .fetch_one(&mut *holder)
        .await
        .unwrap();
    assert!(got);
    let err = site.collector().run(&params(), None).await.unwrap_err();
    assert!(matches!(err, wharf_gc::Error::AlreadyRunning), "{err}");
    let _: bool = sqlx::query_scalar("SELECT pg_advisory_unlock($1)")
        .bind(wharf_catalog::gc::RUN_LOCK)
        .fetch_one(&mut *holder)
        .await
        .unwrap();
}

#[tokio::test]
async fn stop_requested_ends_the_sweep_between_chunks() {
    let site = Site::start().await;
    for _ in 0..6 {
        site.push_blob("lib/junk", &random_bytes(100)).await;
    }
    let c = site.collector();
    let p = Params {
        workers: 1,
        chunk: 1,
        ..params()
    };
    let run = c.create_run(&p, None).await.unwrap();
    wharf_catalog::gc::request_stop(&site.pool, run)
        .await
        .unwrap();
    let report = c.run(&p, Some(run)).await.unwrap();
    assert!(report.stopped, "{report:?}");
    assert_eq!(report.purged_blobs, 1, "one chunk, then the stop is seen");
    let row = wharf_catalog::gc::get_run(&site.pool, run)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status, "stopped");
}
