//! The kit's disk log (`fednode_kit::store`) against redb, fjall and plain
//! file writes, on what store-and-forward does: append 200-byte records
//! with an fsync per batch, then reopen after a crash.
//!
//! Run with:
//!   cd benches/store-compare && cargo run --release -- [--records 1000000] [--runs 3] [--dir /tmp] [--cold]
//!
//! Each measurement runs in a child process (this binary again), so that
//! "reopen after crash" opens files a process left without closing them
//! (it exits right after its last sync, no destructor runs), and "reopen
//! clean" after a process closed them properly. Workloads, per store:
//!
//! - `batch`: append `--records` records, sync after every 1,000 and at
//!   the end (fednode: `Log::sync`; redb: one write transaction per batch,
//!   `Durability::Immediate`; fjall: `persist(SyncData)`, with
//!   `manual_journal_persist`; file: `sync_data` of a file written through
//!   the same 256 KiB buffer with the same 208-byte framed records).
//! - `interval`: the same, syncing when 100 ms have passed instead.
//! - `open`: open the store written by `batch` and read its first record
//!   (fednode: every record is checked; file: the whole file is read).
//!   `--cold` drops the page cache first (root only; affects the machine).
//!
//! fsyncs are counted by `strace -f -c` (fsync, fdatasync, msync,
//! sync_file_range, syncfs) in a separate run of each append workload,
//! when strace is installed; the timed runs are not traced.

use fednode_kit::store::{Log, LogOptions};
use fjall::{KeyspaceCreateOptions, PersistMode};
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BATCH: u64 = 1000;
const INTERVAL: Duration = Duration::from_millis(100);
const TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const STORES: [&str; 4] = ["fednode", "redb", "fjall", "file"];

/// A 200-byte JSON envelope carrying `seq`, padded with spaces.
fn body(seq: u64) -> Vec<u8> {
    let head = format!(
        r#"{{"type":"data","id":"{seq:036}","timestamp":1704844800000,"payload":{{"sensor_id":"temp-01","value":23.5,"unit":"celsius","seq":{seq}"#
    );
    let mut b = head.into_bytes();
    b.resize(199, b' ');
    b.push(b'}');
    b
}

/// One workload's outcome, as a child prints it.
#[derive(Debug, Default, Clone, Copy)]
struct Outcome {
    secs: f64,
    syncs: u64,
    records: u64,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("child") {
        let records: u64 = args[4].parse().expect("records");
        let o = child(&args[1], &args[2], Path::new(&args[3]), records);
        println!("outcome {} {} {}", o.secs, o.syncs, o.records);
        // No destructors: what was not synced is left as a crash leaves it.
        std::process::exit(0);
    }
    let mut records = 1_000_000u64;
    let mut runs = 3usize;
    let mut dir = std::env::temp_dir();
    let mut cold = false;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--records" => records = it.next().and_then(|v| v.parse().ok()).expect("--records N"),
            "--runs" => runs = it.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            "--dir" => dir = PathBuf::from(it.next().expect("--dir PATH")),
            "--cold" => cold = true,
            other => panic!("unknown argument {other}"),
        }
    }
    parent(records, runs, &dir, cold);
}

struct Row {
    batch: Vec<Outcome>,
    interval: Vec<Outcome>,
    crash_open: Vec<Outcome>,
    clean_open: Vec<Outcome>,
    disk_bytes: Vec<u64>,
    fsyncs_batch: Option<u64>,
    fsyncs_interval: Option<u64>,
}

fn parent(records: u64, runs: usize, base: &Path, cold: bool) {
    let strace = Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    let mut rows = Vec::new();
    for store in STORES {
        let mut row = Row {
            batch: vec![],
            interval: vec![],
            crash_open: vec![],
            clean_open: vec![],
            disk_bytes: vec![],
            fsyncs_batch: None,
            fsyncs_interval: None,
        };
        for run in 1..=runs {
            let work = tempfile::Builder::new()
                .prefix("store-compare-")
                .tempdir_in(base)
                .unwrap();
            let a = work.path().join("a");
            let b = work.path().join("b");
            let o = spawn(store, "batch", &a, records, None);
            eprintln!(
                "run {run} {store} batch: {:.0} rec/s",
                records as f64 / o.secs
            );
            row.batch.push(o);
            row.disk_bytes.push(disk_bytes(&a));
            if cold {
                drop_caches();
            }
            let o = spawn(store, "open", &a, records, None);
            assert_eq!(o.records, records, "{store} lost records after the crash");
            row.crash_open.push(o);
            if cold {
                drop_caches();
            }
            row.clean_open.push(spawn(store, "open", &a, records, None));
            row.interval
                .push(spawn(store, "interval", &b, records, None));
        }
        if strace {
            let work = tempfile::Builder::new()
                .prefix("store-compare-")
                .tempdir_in(base)
                .unwrap();
            row.fsyncs_batch = Some(traced(store, "batch", &work.path().join("a"), records));
            row.fsyncs_interval = Some(traced(store, "interval", &work.path().join("b"), records));
        }
        rows.push((store, row));
    }
    print_table(records, runs, base, cold, &rows);
}

fn spawn(
    store: &str,
    workload: &str,
    dir: &Path,
    records: u64,
    strace_out: Option<&Path>,
) -> Outcome {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = match strace_out {
        Some(out) => {
            let mut c = Command::new("strace");
            c.args([
                "-f",
                "-qq",
                "-c",
                "-e",
                "trace=fsync,fdatasync,msync,sync_file_range,syncfs",
                "-o",
            ])
            .arg(out)
            .arg(exe);
            c
        }
        None => Command::new(exe),
    };
    let out = cmd
        .args(["child", store, workload])
        .arg(dir)
        .arg(records.to_string())
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "{store} {workload}: {}", out.status);
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("outcome "))
        .expect("outcome line");
    let mut f = line.split(' ');
    Outcome {
        secs: f.next().unwrap().parse().unwrap(),
        syncs: f.next().unwrap().parse().unwrap(),
        records: f.next().unwrap().parse().unwrap(),
    }
}

/// The fsync-family system calls of one workload, counted by strace.
fn traced(store: &str, workload: &str, dir: &Path, records: u64) -> u64 {
    let out = dir.with_extension("strace");
    spawn(store, workload, dir, records, Some(&out));
    let text = fs::read_to_string(&out).unwrap();
    text.lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let name = *cols.last()?;
            let syncs = ["fsync", "fdatasync", "msync", "sync_file_range", "syncfs"];
            if syncs.contains(&name) {
                cols.get(3)?.parse::<u64>().ok()
            } else {
                None
            }
        })
        .sum()
}

fn drop_caches() {
    let ok = Command::new("sh")
        .args(["-c", "sync && echo 3 > /proc/sys/vm/drop_caches"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "--cold needs to write /proc/sys/vm/drop_caches (root)");
}

fn disk_bytes(p: &Path) -> u64 {
    let meta = fs::metadata(p).unwrap();
    if meta.is_dir() {
        fs::read_dir(p)
            .unwrap()
            .map(|e| disk_bytes(&e.unwrap().path()))
            .sum()
    } else {
        meta.len()
    }
}

fn child(store: &str, workload: &str, dir: &Path, records: u64) -> Outcome {
    match workload {
        "batch" | "interval" => {
            let by_time = workload == "interval";
            match store {
                "fednode" => append_fednode(dir, records, by_time),
                "redb" => append_redb(dir, records, by_time),
                "fjall" => append_fjall(dir, records, by_time),
                "file" => append_file(dir, records, by_time),
                _ => panic!("unknown store {store}"),
            }
        }
        "open" => {
            let start = Instant::now();
            let records = match store {
                "fednode" => open_fednode(dir),
                "redb" => open_redb(dir),
                "fjall" => open_fjall(dir),
                "file" => open_file(dir),
                _ => panic!("unknown store {store}"),
            };
            Outcome {
                secs: start.elapsed().as_secs_f64(),
                syncs: 0,
                records,
            }
        }
        _ => panic!("unknown workload {workload}"),
    }
}

/// When to sync: after every `BATCH` records, or once `INTERVAL` has
/// passed (checked every 64 records); and once at the end.
struct Pacer {
    records: u64,
    by_time: bool,
    start: Instant,
    last: Instant,
    syncs: u64,
}

impl Pacer {
    fn start(records: u64, by_time: bool) -> Self {
        let now = Instant::now();
        Pacer {
            records,
            by_time,
            start: now,
            last: now,
            syncs: 0,
        }
    }

    /// Whether to sync after record `seq`.
    fn due(&mut self, seq: u64) -> bool {
        let due = seq == self.records
            || if self.by_time {
                seq.is_multiple_of(64) && self.last.elapsed() >= INTERVAL
            } else {
                seq.is_multiple_of(BATCH)
            };
        if due {
            self.syncs += 1;
            self.last = Instant::now();
        }
        due
    }

    fn done(self) -> Outcome {
        Outcome {
            secs: self.start.elapsed().as_secs_f64(),
            syncs: self.syncs,
            records: self.records,
        }
    }
}

/// The body of record `seq`, from a table built before timing starts.
fn bodies() -> impl Fn(u64) -> &'static [u8] {
    let table: &'static [Vec<u8>] = Vec::leak((0..BATCH).map(|i| body(i + 1)).collect());
    move |seq| &table[(seq % BATCH) as usize]
}

fn append_fednode(dir: &Path, records: u64, by_time: bool) -> Outcome {
    let b = bodies();
    let (mut log, _) = Log::open(dir, LogOptions::default()).unwrap();
    let mut p = Pacer::start(records, by_time);
    for seq in 1..=records {
        log.append(b(seq)).unwrap();
        if p.due(seq) {
            log.sync().unwrap();
        }
    }
    let o = p.done();
    eprintln!("  fednode stats: {:?}", log.stats());
    std::mem::forget(log);
    o
}

fn append_redb(dir: &Path, records: u64, by_time: bool) -> Outcome {
    let b = bodies();
    fs::create_dir_all(dir).unwrap();
    let db = redb::Database::create(dir.join("db.redb")).unwrap();
    let mut p = Pacer::start(records, by_time);
    let mut seq = 1;
    while seq <= records {
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(TABLE).unwrap();
            loop {
                table.insert(seq, b(seq)).unwrap();
                seq += 1;
                if p.due(seq - 1) {
                    break;
                }
            }
        }
        txn.commit().unwrap();
    }
    let o = p.done();
    std::mem::forget(db);
    o
}

fn fjall_open(dir: &Path) -> (fjall::Database, fjall::Keyspace) {
    let db = fjall::Database::builder(dir)
        .manual_journal_persist(true)
        .open()
        .unwrap();
    let ks = db.keyspace("log", KeyspaceCreateOptions::default).unwrap();
    (db, ks)
}

fn append_fjall(dir: &Path, records: u64, by_time: bool) -> Outcome {
    let b = bodies();
    let (db, ks) = fjall_open(dir);
    let mut p = Pacer::start(records, by_time);
    for seq in 1..=records {
        ks.insert(seq.to_be_bytes(), b(seq)).unwrap();
        if p.due(seq) {
            db.persist(PersistMode::SyncData).unwrap();
        }
    }
    let o = p.done();
    std::mem::forget(ks);
    std::mem::forget(db);
    o
}

fn append_file(dir: &Path, records: u64, by_time: bool) -> Outcome {
    let b = bodies();
    fs::create_dir_all(dir).unwrap();
    let f = File::create(dir.join("data")).unwrap();
    let mut w = BufWriter::with_capacity(256 << 10, f);
    let mut p = Pacer::start(records, by_time);
    for seq in 1..=records {
        let body = b(seq);
        w.write_all(&(body.len() as u32).to_le_bytes()).unwrap();
        // Where the checksum goes: the baseline computes none.
        w.write_all(&[0; 4]).unwrap();
        w.write_all(body).unwrap();
        if p.due(seq) {
            w.flush().unwrap();
            w.get_ref().sync_data().unwrap();
        }
    }
    p.done()
}

fn open_fednode(dir: &Path) -> u64 {
    let (mut log, rec) = Log::open(dir, LogOptions::default()).unwrap();
    let first = log.read_batch(1, 1, u64::MAX).unwrap();
    assert_eq!(first[0].0, 1);
    rec.records
}

fn open_redb(dir: &Path) -> u64 {
    let db = redb::Database::create(dir.join("db.redb")).unwrap();
    let txn = db.begin_read().unwrap();
    let table = txn.open_table(TABLE).unwrap();
    assert!(table.get(1).unwrap().is_some());
    table.len().unwrap()
}

fn open_fjall(dir: &Path) -> u64 {
    let (_db, ks) = fjall_open(dir);
    assert!(ks.get(1u64.to_be_bytes()).unwrap().is_some());
    // fjall has no O(1) count; the last key says how many there are.
    let (k, _) = ks.last_key_value().unwrap().into_inner().unwrap();
    u64::from_be_bytes(k[..8].try_into().unwrap())
}

fn open_file(dir: &Path) -> u64 {
    let mut f = File::open(dir.join("data")).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let r = f.read(&mut buf).unwrap();
        if r == 0 {
            break;
        }
        n += r as u64;
    }
    n / 208
}

fn median_f(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn print_table(records: u64, runs: usize, base: &Path, cold: bool, rows: &[(&str, Row)]) {
    let cache = if cold {
        "cold page cache"
    } else {
        "warm page cache"
    };
    println!(
        "\n{records} records of 200 B in {}, median of {runs} run(s); reopen with a {cache}\n",
        base.display()
    );
    println!("| store | append, sync / 1000 rec | fsyncs | append, sync / 100 ms | fsyncs | reopen after crash | reopen clean | on disk |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (store, row) in rows {
        let rate = |v: &[Outcome]| median_f(v.iter().map(|o| o.records as f64 / o.secs).collect());
        let ms = |v: &[Outcome]| median_f(v.iter().map(|o| o.secs * 1e3).collect());
        let fsyncs = |traced: Option<u64>, v: &[Outcome]| match traced {
            Some(n) => format!("{n}"),
            None => format!(
                "{} syncs",
                median_f(v.iter().map(|o| o.syncs as f64).collect())
            ),
        };
        let disk = median_f(row.disk_bytes.iter().map(|&b| b as f64).collect()) / 1e6;
        let name = match *store {
            "fednode" => "fednode store",
            "redb" => "redb 5.0",
            "fjall" => "fjall 3.1",
            _ => "plain file (dd-like)",
        };
        println!(
            "| {name} | {:.0} rec/s | {} | {:.0} rec/s | {} | {:.0} ms | {:.0} ms | {disk:.0} MB |",
            rate(&row.batch),
            fsyncs(row.fsyncs_batch, &row.batch),
            rate(&row.interval),
            fsyncs(row.fsyncs_interval, &row.interval),
            ms(&row.crash_open),
            ms(&row.clean_open),
        );
    }
}
