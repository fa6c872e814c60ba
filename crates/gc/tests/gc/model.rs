//! A pure-Rust model of gc.md's state machine, explored exhaustively.
//!
//! Rows, files and Postgres row locks are modelled; each transaction is a
//! process whose steps take locks (KEY SHARE for writers, FOR UPDATE for the
//! collector, SKIP LOCKED where the collector uses it) and whose row changes
//! become visible at commit. Every reachable state is visited (breadth-first,
//! deduplicated) and I1–I3 are asserted after every step, with G = 0 so pins
//! never protect anything.

use std::collections::{HashSet, VecDeque};

const D: usize = 3; // digests
const NONE: u8 = u8::MAX;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Row {
    Absent,
    Live,
    Deleting,
}

/// A manifest of the model: its references, fixed.
#[derive(Clone, Copy)]
struct ManifestDef {
    refs: &'static [usize],
}

const MANIFESTS: [ManifestDef; 2] = [ManifestDef { refs: &[0, 1] }, ManifestDef { refs: &[1, 2] }];

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum MRow {
    Absent,
    Live,
    Deleting,
}

/// Program counters of the processes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Pc {
    Start,
    /// Upload: inserted the row (not yet committed) and holds the insert lock.
    Inserted,
    /// Upload: inserted and placed the file (W2).
    Placed,
    /// Upload: found the row live and holds KEY SHARE.
    Shared,
    /// Manifest PUT: holds KEY SHARE on every reference (M1).
    Locked,
    /// Manifest delete: committed `deleting` (step 1), step 2 pending.
    Marked,
    Done,
}

/// The collector's program counter.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Gc {
    Idle,
    /// Step B: holds FOR UPDATE on `d`.
    BLocked(u8),
    /// Step B: unlinked the file of `d` (G2), not committed.
    BUnlinked(u8),
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct State {
    rows: [Row; D],
    files: [bool; D],
    pins: [bool; D],
    /// Exclusive row lock (insert or FOR UPDATE) by process id.
    xlock: [u8; D],
    /// KEY SHARE holders, a bit per process.
    share: [u16; D],
    manifests: [MRow; 2],
    /// Manifests whose PUT answered 201 and that no delete has begun on.
    acked: [bool; 2],
    uploads: Vec<Pc>,
    puts: [Pc; 2],
    delete: Pc,
    gcs: Vec<Gc>,
    crashes: u8,
}

/// Process ids: uploads 0.., puts, the delete, collectors.
struct Shape {
    upload_digests: Vec<usize>,
    collectors: usize,
    max_crashes: u8,
    /// A broken collector that skips the locks, to show the model has teeth.
    broken: bool,
}

impl Shape {
    fn put_pid(&self, m: usize) -> u8 {
        (self.upload_digests.len() + m) as u8
    }
    fn gc_pid(&self, g: usize) -> u8 {
        (self.upload_digests.len() + 3 + g) as u8
    }
}

fn initial(shape: &Shape) -> State {
    State {
        rows: [Row::Absent; D],
        files: [false; D],
        pins: [false; D],
        xlock: [NONE; D],
        share: [0; D],
        manifests: [MRow::Absent; 2],
        acked: [false; 2],
        uploads: vec![Pc::Start; shape.upload_digests.len()],
        puts: [Pc::Start; 2],
        delete: Pc::Start,
        gcs: vec![Gc::Idle; shape.collectors],
        crashes: 0,
    }
}

fn referenced(s: &State, d: usize) -> bool {
    (0..2).any(|m| s.manifests[m] != MRow::Absent && MANIFESTS[m].refs.contains(&d))
}

fn release(s: &mut State, pid: u8) {
    for d in 0..D {
        if s.xlock[d] == pid {
            s.xlock[d] = NONE;
        }
        s.share[d] &= !(1 << pid);
    }
}

/// Every state reachable in one step, labelled.
fn successors(shape: &Shape, s: &State) -> Vec<(String, State)> {
    let mut out = Vec::new();
    // Uploads: claim (insert or KEY SHARE), place, commit.
    for (i, &d) in shape.upload_digests.iter().enumerate() {
        let pid = i as u8;
        let mut n = s.clone();
        match s.uploads[i] {
            Pc::Start => {
                if s.xlock[d] != NONE {
                    continue; // blocks on the insert or FOR UPDATE
                }
                match s.rows[d] {
                    Row::Absent => {
                        n.xlock[d] = pid;
                        n.uploads[i] = Pc::Inserted;
                    }
                    Row::Live => {
                        n.share[d] |= 1 << pid;
                        n.uploads[i] = Pc::Shared;
                    }
                    Row::Deleting => continue, // backs off and retries: no change
                }
            }
            Pc::Inserted => {
                n.files[d] = true; // rename into place (W1 → W2)
                n.uploads[i] = Pc::Placed;
            }
            Pc::Placed | Pc::Shared => {
                if s.uploads[i] == Pc::Placed {
                    n.rows[d] = Row::Live;
                }
                n.pins[d] = true;
                release(&mut n, pid);
                n.uploads[i] = Pc::Done;
            }
            _ => continue,
        }
        out.push((format!("upload{i}(d{d})"), n));
    }
    // Writer crash at W1/W2: the insert rolls back, a placed file stays behind.
    for (i, _) in shape.upload_digests.iter().enumerate() {
        if matches!(s.uploads[i], Pc::Inserted | Pc::Placed | Pc::Shared)
            && s.crashes < shape.max_crashes
        {
            let mut n = s.clone();
            release(&mut n, i as u8);
            n.uploads[i] = Pc::Done;
            n.crashes += 1;
            out.push((format!("crash upload{i}"), n));
        }
    }
    // Manifest PUTs: KEY SHARE every reference (live), then commit.
    for (m, def) in MANIFESTS.iter().enumerate() {
        let pid = shape.put_pid(m);
        let refs = def.refs;
        let mut n = s.clone();
        match s.puts[m] {
            Pc::Start => {
                if refs.iter().any(|&d| s.xlock[d] != NONE) {
                    continue; // waits on FOR UPDATE
                }
                if refs.iter().any(|&d| s.rows[d] != Row::Live) {
                    n.puts[m] = Pc::Done; // 400 MANIFEST_BLOB_UNKNOWN
                    out.push((format!("put{m} refused"), n));
                    continue;
                }
                for &d in refs {
                    n.share[d] |= 1 << pid;
                }
                n.puts[m] = Pc::Locked;
            }
            Pc::Locked => {
                n.manifests[m] = MRow::Live;
                n.acked[m] = true;
                release(&mut n, pid);
                n.puts[m] = Pc::Done;
            }
            _ => continue,
        }
        out.push((format!("put{m}"), n));
    }
    // Deleting manifest 0: step 1 then step 2 (refs cascade).
    match s.delete {
        Pc::Start if s.manifests[0] == MRow::Live && s.puts[0] == Pc::Done => {
            let mut n = s.clone();
            n.manifests[0] = MRow::Deleting;
            n.acked[0] = false;
            n.delete = Pc::Marked;
            out.push(("delete m0 step 1".into(), n));
        }
        Pc::Marked => {
            let mut n = s.clone();
            n.manifests[0] = MRow::Absent;
            n.delete = Pc::Done;
            out.push(("delete m0 step 2".into(), n));
            if s.crashes < shape.max_crashes {
                let mut n = s.clone();
                n.delete = Pc::Done; // crashed: recovery must finish it
                n.crashes += 1;
                out.push(("crash delete m0".into(), n));
            }
        }
        _ => {}
    }
    // Collectors.
    for g in 0..shape.collectors {
        let pid = shape.gc_pid(g);
        match s.gcs[g] {
            Gc::Idle => {
                for d in 0..D {
                    // Step A: FOR UPDATE SKIP LOCKED, then the re-check, then commit.
                    let free = s.xlock[d] == NONE && s.share[d] == 0;
                    if s.rows[d] == Row::Live && (free || shape.broken) && !referenced(s, d) {
                        let mut n = s.clone();
                        n.rows[d] = Row::Deleting;
                        out.push((format!("gc{g} step A d{d}"), n));
                    }
                    // Step B (and Phase 0): FOR UPDATE on a `deleting` row.
                    if s.rows[d] == Row::Deleting && s.xlock[d] == NONE {
                        let mut n = s.clone();
                        n.xlock[d] = pid;
                        n.gcs[g] = Gc::BLocked(d as u8);
                        out.push((format!("gc{g} step B lock d{d}"), n));
                    }
                    // Phase 4: a file no row knows is claimed `deleting`.
                    if s.files[d] && s.rows[d] == Row::Absent && s.xlock[d] == NONE {
                        let mut n = s.clone();
                        n.rows[d] = Row::Deleting;
                        out.push((format!("gc{g} reconcile claim d{d}"), n));
                    }
                }
                // Phase 0 for an interrupted manifest delete.
                if s.manifests[0] == MRow::Deleting && s.delete == Pc::Done {
                    let mut n = s.clone();
                    n.manifests[0] = MRow::Absent;
                    out.push((format!("gc{g} recover m0"), n));
                }
            }
            Gc::BLocked(d) => {
                let mut n = s.clone();
                n.files[d as usize] = false;
                n.gcs[g] = Gc::BUnlinked(d);
                out.push((format!("gc{g} unlink d{d}"), n));
            }
            Gc::BUnlinked(d) => {
                let mut n = s.clone();
                n.rows[d as usize] = Row::Absent;
                n.pins[d as usize] = false;
                release(&mut n, pid);
                n.gcs[g] = Gc::Idle;
                out.push((format!("gc{g} step B commit d{d}"), n));
            }
        }
        if s.gcs[g] != Gc::Idle && s.crashes < shape.max_crashes {
            let mut n = s.clone();
            release(&mut n, pid);
            n.gcs[g] = Gc::Idle;
            n.crashes += 1;
            out.push((format!("crash gc{g}"), n));
        }
    }
    out
}

/// I1–I3; `prev` is the state before the step.
fn check(prev: &State, s: &State) -> Result<(), String> {
    for (m, def) in MANIFESTS.iter().enumerate() {
        if s.acked[m] {
            for &d in def.refs {
                if s.rows[d] != Row::Live || !s.files[d] {
                    return Err(format!(
                        "I1: manifest {m} acknowledged but d{d} is {:?}, file {}",
                        s.rows[d], s.files[d]
                    ));
                }
            }
        }
    }
    for d in 0..D {
        if s.rows[d] == Row::Live && !s.files[d] {
            return Err(format!("I2: d{d} is live without its file"));
        }
        if prev.rows[d] == Row::Deleting && s.rows[d] == Row::Live {
            return Err(format!("I3: d{d} left deleting for live"));
        }
        if prev.files[d] && !s.files[d] && prev.rows[d] != Row::Deleting {
            return Err(format!(
                "I2: the file of d{d} was removed while its row was {:?}",
                prev.rows[d]
            ));
        }
    }
    Ok(())
}

/// Explores every interleaving; returns the number of states or the trace to a violation.
fn explore(shape: &Shape) -> Result<usize, (String, Vec<String>)> {
    let start = initial(shape);
    let mut seen: HashSet<State> = HashSet::new();
    let mut parent: std::collections::HashMap<State, (State, String)> = Default::default();
    let mut queue = VecDeque::new();
    seen.insert(start.clone());
    queue.push_back(start);
    while let Some(s) = queue.pop_front() {
        for (label, n) in successors(shape, &s) {
            if let Err(why) = check(&s, &n) {
                let mut trace = vec![label];
                let mut cur = s.clone();
                while let Some((p, l)) = parent.get(&cur) {
                    trace.push(l.clone());
                    cur = p.clone();
                }
                trace.reverse();
                return Err((why, trace));
            }
            if seen.insert(n.clone()) {
                parent.insert(n.clone(), (s.clone(), label));
                queue.push_back(n);
            }
        }
    }
    Ok(seen.len())
}

#[test]
fn every_interleaving_keeps_i1_to_i3() {
    // Two uploads of the shared digest d1 (one may re-create it after GC),
    // one of each other, two manifests sharing d1, a delete, two collectors.
    let shape = Shape {
        upload_digests: vec![0, 1, 1, 2],
        collectors: 2,
        max_crashes: 2,
        broken: false,
    };
    match explore(&shape) {
        Ok(states) => {
            eprintln!("model: {states} states explored, I1–I3 hold");
            assert!(states > 10_000, "the model explored too little: {states}");
        }
        Err((why, trace)) => panic!("{why}\n  trace: {}", trace.join(" → ")),
    }
}

#[test]
fn the_model_catches_a_collector_that_ignores_writer_locks() {
    let shape = Shape {
        upload_digests: vec![0, 1],
        collectors: 1,
        max_crashes: 0,
        broken: true,
    };
    let err = explore(&shape).expect_err("a lock-free collector must break an invariant");
    assert!(err.0.starts_with("I1"), "{err:?}");
}
