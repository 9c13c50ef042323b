//! A WebSocket load generator that runs in a process of its own.
//!
//! The WebSocket benchmarks (`ws_load`, `relay_bench`) must not measure a
//! server that shares its process and scheduler with the clients driving
//! it. So a benchmark re-runs its own executable as the generator: the
//! parent calls [`Generator::spawn`] with a job, the child's `main` starts
//! with [`run_if_child`], which runs that job and prints one report line.
//!
//! The generator is built to cost the server as little CPU as it can, so
//! that a 2-core machine spends its cycles on the system under test:
//!
//! - **Producers** pipeline pre-built, masked 200-byte text frames (208
//!   bytes on the wire) with one `write_all` of 64 KiB at a time; the
//!   envelopes carry distinct ids. Paced producers build each frame at send
//!   time with the send instant inside (`"t":<ns>`), for latency.
//! - **Consumers** walk frame headers in the bytes they read, without a
//!   WebSocket library: a data frame is counted, and its `"t"` read when
//!   latency is wanted.
//! - The handshake is a plain HTTP/1.1 upgrade request.
//!
//! Every job and report is `key=value` words, so parent and child need no
//! shared types. The same generator drives every system a benchmark
//! compares, in the same run.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The first argument that makes a benchmark executable a generator.
pub const FLAG: &str = "--fednode-loadgen";

/// Size of every generated envelope (the issues' "200-byte envelopes").
pub const ENVELOPE_BYTES: usize = 200;
/// A masked client frame: 2 header bytes, a 16-bit length, a 4-byte key.
const FRAME_BYTES: usize = ENVELOPE_BYTES + 8;
/// Frames per write when producing as fast as possible (≈ 64 KiB).
const FRAMES_PER_WRITE: usize = 315;

// ---- parent side -------------------------------------------------------------

/// A generator child process.
pub struct Generator {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

/// What a generator printed: `key=value` pairs.
#[derive(Debug, Clone, Default)]
pub struct Report(pub HashMap<String, String>);

impl Report {
    fn parse(line: &str) -> Report {
        Report(
            line.split_whitespace()
                .filter_map(|w| w.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// A number the report must contain.
    pub fn num(&self, key: &str) -> f64 {
        self.0
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("generator report has no number {key:?}: {:?}", self.0))
    }
}

impl Generator {
    /// Re-run the current executable as a generator with `job` (words such
    /// as `produce url=ws://… clients=4 seconds=5`). Its stdin stays open;
    /// jobs that hold connections (`idle`) end when it closes.
    pub fn spawn(job: &[String]) -> Generator {
        let mut args = vec![FLAG.to_string()];
        args.extend_from_slice(job);
        Generator::spawn_self(&args)
    }

    /// Re-run the current executable with `args` (a benchmark's own roles,
    /// such as the server process of `ws_load`), with the same pipes.
    pub fn spawn_self(args: &[String]) -> Generator {
        let exe = std::env::current_exe().expect("current_exe");
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the load generator process");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Generator {
            child,
            stdin,
            stdout,
        }
    }

    /// The child's process id (to read its memory, say).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Block until the child prints a line starting with `word`; its report.
    pub fn expect(&mut self, word: &str) -> Report {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.stdout.read_line(&mut line).expect("read generator");
            assert!(n > 0, "the load generator exited before printing {word:?}");
            if let Some(rest) = line.trim_end().strip_prefix(word) {
                return Report::parse(rest);
            }
        }
    }

    /// Async form of [`Generator::expect`], for a caller inside a runtime.
    pub async fn expect_async(mut self, word: &'static str) -> (Generator, Report) {
        tokio::task::spawn_blocking(move || {
            let r = self.expect(word);
            (self, r)
        })
        .await
        .expect("generator reader")
    }

    /// Close its stdin: the signal to end for jobs that run until then.
    pub fn close_stdin(&mut self) {
        drop(self.stdin.take());
    }

    /// Close its stdin (ending an `idle` job) and wait for it to exit.
    pub fn finish(mut self) {
        self.close_stdin();
        let status = self.child.wait().expect("wait for the generator");
        assert!(status.success(), "the load generator failed: {status}");
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Resident memory of a process (`/proc/PID/status` VmRSS), in bytes.
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// CPU time (user + system) this process has used so far, all threads,
/// from `/proc/self/stat` (in USER_HZ = 100 ticks per second on Linux, so
/// 10 ms resolution). Benchmarks take the difference around a run to
/// report CPU per message, which a busy shared machine disturbs less than
/// throughput.
pub fn cpu_time() -> Duration {
    stat_cpu_time("/proc/self/stat")
}

/// [`cpu_time`] of another process (a node the benchmark started); zero
/// once it is gone.
pub fn process_cpu_time(pid: u32) -> Duration {
    stat_cpu_time(&format!("/proc/{pid}/stat"))
}

/// [`process_cpu_time`] of `pid` and of its live children (PostgreSQL's
/// backends, say).
pub fn process_tree_cpu_time(pid: u32) -> Duration {
    let mut total = process_cpu_time(pid);
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if let Some((cpu, ppid)) = proc_stat(&format!("/proc/{child}/stat")) {
                if ppid == pid {
                    total += cpu;
                }
            }
        }
    }
    total
}

fn stat_cpu_time(path: &str) -> Duration {
    proc_stat(path).map_or(Duration::ZERO, |(cpu, _)| cpu)
}

/// (CPU time, parent pid) from a `/proc/PID/stat` file. The fields after
/// the parenthesised command name start with the state; the parent pid is
/// the 4th field of the whole line, utime and stime the 14th and 15th.
fn proc_stat(path: &str) -> Option<(Duration, u32)> {
    let stat = std::fs::read_to_string(path).ok()?;
    let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ppid = f.get(1)?.parse().ok()?;
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some((Duration::from_millis(ticks * 10), ppid))
}

/// The accept loop of the raw tokio-tungstenite baselines the benchmarks
/// measure fednode against: for each connection on `listener`, set
/// `TCP_NODELAY`, upgrade it with tokio-tungstenite's defaults, and run
/// `serve` on it in a task of its own. Runs until the listener fails.
pub async fn accept_raw<F, Fut>(listener: tokio::net::TcpListener, serve: F)
where
    F: Fn(tokio_tungstenite::WebSocketStream<TcpStream>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let serve = Arc::new(serve);
    while let Ok((tcp, _)) = listener.accept().await {
        let _ = tcp.set_nodelay(true);
        let serve = serve.clone();
        tokio::spawn(async move {
            if let Ok(ws) = tokio_tungstenite::accept_async(tcp).await {
                serve(ws).await;
            }
        });
    }
}

// ---- child side --------------------------------------------------------------

/// Call first thing in a benchmark's `main`, before any runtime starts:
/// when this process was started by [`Generator::spawn`], run the job and
/// exit; otherwise return.
pub fn run_if_child() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some(FLAG) {
        return;
    }
    let role = args.get(1).cloned().unwrap_or_default();
    let opts: HashMap<String, String> = args[2..]
        .iter()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let threads: usize = opt(&opts, "threads").unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("generator runtime");
    let report = rt.block_on(async {
        match role.as_str() {
            "produce" => produce_job(&opts).await,
            "idle" => idle_job(&opts).await,
            "relay" => relay_job(&opts).await,
            other => panic!("unknown load generator job {other:?}"),
        }
    });
    println!("done {report}");
    let _ = std::io::stdout().flush();
    std::process::exit(0);
}

fn opt<T: std::str::FromStr>(opts: &HashMap<String, String>, key: &str) -> Option<T> {
    opts.get(key).map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("load generator option {key}={v} is not valid"))
    })
}

fn need<T: std::str::FromStr>(opts: &HashMap<String, String>, key: &str) -> T {
    opt(opts, key).unwrap_or_else(|| panic!("load generator job needs {key}="))
}

/// `produce url= clients= seconds=`: every client writes as fast as the
/// socket takes it for `seconds`. Reports `sent` frames and `seconds`.
async fn produce_job(opts: &HashMap<String, String>) -> String {
    let url: String = need(opts, "url");
    let clients: usize = need(opts, "clients");
    let seconds: f64 = need(opts, "seconds");
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (mut tx, _) = connect(&url).await;
        let (stop, sent) = (stop.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            let (mut rd, mut wr) = tx.split();
            let writer = async {
                let frames = FrameBatch::cycle(&format!("c{c}"), FRAMES_PER_WRITE, true);
                while !stop.load(Ordering::Relaxed) {
                    if wr.write_all(&frames.bytes).await.is_err() {
                        break;
                    }
                    sent.fetch_add(FRAMES_PER_WRITE as u64, Ordering::Relaxed);
                }
            };
            tokio::select! {
                _ = writer => {}
                _ = discard(&mut rd) => {}
            }
        }));
    }
    println!("started");
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    for t in tasks {
        let _ = t.await;
    }
    format!("sent={} seconds={elapsed:.3}", sent.load(Ordering::Relaxed))
}

/// `idle url= connections=`: open that many connections, print `ready`,
/// hold them (reading whatever comes) until stdin closes.
async fn idle_job(opts: &HashMap<String, String>) -> String {
    let url: String = need(opts, "url");
    let n: usize = need(opts, "connections");
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let (mut s, _) = connect(&url).await;
        held.push(tokio::spawn(async move { discard(&mut s).await }));
    }
    println!("ready connections={n}");
    let _ = std::io::stdout().flush();
    stdin_closed().await;
    for h in held {
        h.abort();
    }
    format!("connections={n}")
}

/// `relay input= output= producers= consumers= per_producer= [rate=]
/// [latency=1] [ids=none]`: consumers connect to `output` first, then each producer
/// sends `per_producer` frames to `input` (at `rate` msgs/s in total, in
/// 1 ms ticks, or as fast as it can). Consumers count until they have
/// every frame or nothing came for 2 s. Reports `received`, `expected`,
/// `seconds` (first send to last receipt) and, with latency, `p50_us`,
/// `p99_us`, `p999_us`, `max_us`.
async fn relay_job(opts: &HashMap<String, String>) -> String {
    let input: String = need(opts, "input");
    let output: String = need(opts, "output");
    let producers: usize = need(opts, "producers");
    let consumers: usize = need(opts, "consumers");
    let per_producer: u64 = need(opts, "per_producer");
    let rate: Option<u64> = opt(opts, "rate");
    let latency = opts.get("latency").is_some_and(|v| v == "1");
    // `ids=none`: frames without ids (the system under test assigns them).
    let with_ids = opts.get("ids").is_none_or(|v| v != "none");
    let expected_each = producers as u64 * per_producer;

    let mut readers = Vec::new();
    for _ in 0..consumers {
        let (stream, leftover) = connect(&output).await;
        readers.push(tokio::spawn(consume(
            stream,
            leftover,
            expected_each,
            latency,
        )));
    }
    // Let the output register every consumer.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    let mut writers = Vec::new();
    for p in 0..producers {
        let (stream, _) = connect(&input).await;
        let per_tick = rate.map(|r| (r / 1000 / producers as u64).max(1));
        writers.push(tokio::spawn(produce(
            stream,
            p,
            per_producer,
            per_tick,
            with_ids,
        )));
    }
    let mut received = 0u64;
    let mut last = start;
    let mut lat = Vec::new();
    for r in readers {
        let c = r.await.expect("consumer");
        received += c.received;
        if let Some(l) = c.last {
            last = last.max(l);
        }
        lat.extend(c.latencies_us);
    }
    for w in writers {
        w.abort();
    }
    let mut out = format!(
        "received={received} expected={} seconds={:.6}",
        expected_each * consumers as u64,
        last.duration_since(start).as_secs_f64()
    );
    if latency {
        lat.sort_unstable();
        let pct = |p: f64| {
            lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0)
        };
        out.push_str(&format!(
            " p50_us={} p99_us={} p999_us={} max_us={}",
            pct(0.50),
            pct(0.99),
            pct(0.999),
            lat.last().copied().unwrap_or(0)
        ));
    }
    out
}

/// Read and ignore whatever the server sends until the stream ends, so
/// that it never blocks on us.
async fn discard(r: &mut (impl AsyncReadExt + Unpin)) {
    let mut buf = vec![0u8; 16 * 1024];
    while matches!(r.read(&mut buf).await, Ok(n) if n > 0) {}
}

/// Wait until this process's stdin closes: how a parent tells a child
/// that runs until told (an `idle` job, a benchmark's server) to stop.
pub async fn stdin_closed() {
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        while std::io::stdin()
            .read_line(&mut line)
            .map(|k| k > 0)
            .unwrap_or(false)
        {
            line.clear();
        }
    })
    .await
    .expect("stdin reader");
}

/// One producer of `relay`: `n` frames, paced (`per_tick` per ms) or not;
/// then keeps the socket open until aborted.
async fn produce(
    stream: TcpStream,
    producer: usize,
    n: u64,
    per_tick: Option<u64>,
    with_ids: bool,
) {
    let (mut rd, mut wr) = stream.into_split();
    tokio::spawn(async move { discard(&mut rd).await });
    let prefix = format!("p{producer}");
    let mut seq = 0u64;
    match per_tick {
        None => {
            let batch = FrameBatch::cycle(&prefix, FRAMES_PER_WRITE, with_ids);
            while seq < n {
                let k = (n - seq).min(FRAMES_PER_WRITE as u64) as usize;
                if wr.write_all(&batch.bytes[..k * FRAME_BYTES]).await.is_err() {
                    return;
                }
                seq += k as u64;
            }
        }
        Some(per_tick) => {
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            let mut buf = Vec::with_capacity(per_tick as usize * FRAME_BYTES);
            while seq < n {
                tick.tick().await;
                buf.clear();
                for _ in 0..per_tick.min(n - seq) {
                    let env = envelope_with(&prefix, seq, Some(now_ns()), with_ids);
                    push_masked_frame(&mut buf, env.as_bytes(), seq as u32);
                    seq += 1;
                }
                if wr.write_all(&buf).await.is_err() {
                    return;
                }
            }
        }
    }
    std::future::pending::<()>().await;
}

struct Consumed {
    received: u64,
    last: Option<Instant>,
    latencies_us: Vec<u64>,
}

/// Count data frames until `expected` or 2 s of silence.
async fn consume(mut s: TcpStream, leftover: Vec<u8>, expected: u64, latency: bool) -> Consumed {
    let mut parser = FrameParser::new(leftover);
    let mut out = Consumed {
        received: 0,
        last: None,
        latencies_us: Vec::new(),
    };
    let on_frame = |opcode: u8, payload: &[u8], out: &mut Consumed| {
        if opcode == 1 || opcode == 2 {
            out.received += 1;
            if latency {
                if let Some(t0) = sent_at(payload) {
                    out.latencies_us.push(now_ns().saturating_sub(t0) / 1000);
                }
            }
        }
    };
    parser.drain(|op, p| on_frame(op, p, &mut out));
    while out.received < expected {
        match tokio::time::timeout(Duration::from_secs(2), parser.fill(&mut s)).await {
            Ok(Ok(n)) if n > 0 => {
                parser.drain(|op, p| on_frame(op, p, &mut out));
                out.last = Some(Instant::now());
            }
            _ => break,
        }
    }
    out
}

// ---- frames ------------------------------------------------------------------

static BASE: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since this process's first call.
pub fn now_ns() -> u64 {
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// A data envelope of exactly [`ENVELOPE_BYTES`]; `t` is the send time, for
/// latency.
pub fn envelope(prefix: &str, seq: u64, t: Option<u64>) -> String {
    envelope_with(prefix, seq, t, true)
}

/// [`envelope`], with or without an `id` (without one, the receiver
/// assigns a fresh id to each: what a benchmark of acknowledged delivery,
/// where ids are deduplicated, needs of frames sent again and again).
pub fn envelope_with(prefix: &str, seq: u64, t: Option<u64>, with_id: bool) -> String {
    let t = t.map(|t| format!(r#""t":{t},"#)).unwrap_or_default();
    let id = if with_id {
        format!(r#""id":"{prefix}-{seq:09}","#)
    } else {
        String::new()
    };
    let head = format!(
        r#"{{"type":"data",{id}"timestamp":1704844800000,"payload":{{"sensor_id":"temp-01","value":23.5,"seq":{seq},{t}"pad":""#
    );
    let tail = r#""}}"#;
    let pad = ENVELOPE_BYTES
        .checked_sub(head.len() + tail.len())
        .expect("envelope head too long");
    format!("{head}{}{tail}", "x".repeat(pad))
}

/// The send time written by [`envelope`].
fn sent_at(payload: &[u8]) -> Option<u64> {
    let at = payload.windows(4).position(|w| w == br#""t":"#)? + 4;
    let digits = payload[at..].iter().take_while(|b| b.is_ascii_digit());
    let mut v = 0u64;
    let mut any = false;
    for d in digits {
        v = v * 10 + u64::from(d - b'0');
        any = true;
    }
    any.then_some(v)
}

/// Append one masked text frame (RFC 6455 §5.2) carrying `payload`.
pub fn push_masked_frame(buf: &mut Vec<u8>, payload: &[u8], salt: u32) {
    assert!(payload.len() < 1 << 16, "generator frames are < 64 KiB");
    buf.push(0x81); // FIN, text
    if payload.len() < 126 {
        buf.push(0x80 | payload.len() as u8);
    } else {
        buf.push(0x80 | 126);
        buf.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    // Any key is valid; vary it so the server really unmasks.
    let key = (salt.wrapping_mul(0x9E37_79B9) | 0x0101_0101).to_be_bytes();
    buf.extend_from_slice(&key);
    buf.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
}

/// Pre-built frames, written again and again.
struct FrameBatch {
    bytes: Vec<u8>,
}

impl FrameBatch {
    fn cycle(prefix: &str, n: usize, with_ids: bool) -> FrameBatch {
        let mut bytes = Vec::with_capacity(n * FRAME_BYTES);
        for seq in 0..n as u64 {
            push_masked_frame(
                &mut bytes,
                envelope_with(prefix, seq, None, with_ids).as_bytes(),
                seq as u32,
            );
        }
        assert_eq!(bytes.len(), n * FRAME_BYTES);
        FrameBatch { bytes }
    }
}

/// Splits the bytes of a server's (unmasked) frames.
struct FrameParser {
    buf: Vec<u8>,
    start: usize,
}

impl FrameParser {
    fn new(leftover: Vec<u8>) -> Self {
        FrameParser {
            buf: leftover,
            start: 0,
        }
    }

    /// Read more bytes; 0 at end of stream.
    async fn fill(&mut self, s: &mut TcpStream) -> std::io::Result<usize> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.reserve(64 * 1024);
        s.read_buf(&mut self.buf).await
    }

    /// Hand every complete frame to `f(opcode, payload)`.
    fn drain(&mut self, mut f: impl FnMut(u8, &[u8])) {
        loop {
            let b = &self.buf[self.start..];
            if b.len() < 2 {
                return;
            }
            let opcode = b[0] & 0x0f;
            let masked = b[1] & 0x80 != 0;
            let (len, mut at) = match b[1] & 0x7f {
                126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
                127 if b.len() >= 10 => (
                    u64::from_be_bytes(b[2..10].try_into().expect("8 bytes")) as usize,
                    10,
                ),
                126 | 127 => return,
                l => (l as usize, 2),
            };
            if masked {
                at += 4;
            }
            if b.len() < at + len {
                return;
            }
            f(opcode, &b[at..at + len]);
            self.start += at + len;
        }
    }
}

/// Connect and upgrade; the stream and any bytes read past the response.
pub async fn connect(url: &str) -> (TcpStream, Vec<u8>) {
    let rest = url
        .strip_prefix("ws://")
        .unwrap_or_else(|| panic!("the generator speaks ws:// only, not {url}"));
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut s = TcpStream::connect(host)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    let _ = s.set_nodelay(true);
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: ZmVkbm9kZS1sb2FkZ2VuLQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("send the upgrade");
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = s.read(&mut chunk).await.expect("read the upgrade reply");
        assert!(n > 0, "{url} closed during the upgrade");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            assert!(
                head.starts_with("HTTP/1.1 101"),
                "{url} refused the upgrade: {head}"
            );
            return (s, buf[end + 4..].to_vec());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_are_200_bytes_and_frames_parse_back() {
        let e = envelope("p3", 42, Some(123_456));
        assert_eq!(e.len(), ENVELOPE_BYTES);
        assert_eq!(sent_at(e.as_bytes()), Some(123_456));
        let batch = FrameBatch::cycle("c0", 3, true);
        // Unmask by hand and check the first payload.
        let b = &batch.bytes[..FRAME_BYTES];
        assert_eq!(b[0], 0x81);
        assert_eq!(u16::from_be_bytes([b[2], b[3]]) as usize, ENVELOPE_BYTES);
        let key = &b[4..8];
        let plain: Vec<u8> = b[8..]
            .iter()
            .enumerate()
            .map(|(i, x)| x ^ key[i % 4])
            .collect();
        assert_eq!(plain, envelope("c0", 0, None).as_bytes());
        // An unmasked server frame, split across two reads.
        let mut server = vec![0x81, 126, 0, ENVELOPE_BYTES as u8];
        server.extend_from_slice(e.as_bytes());
        server.extend_from_slice(&[0x89, 0]); // a ping, not counted as data
        let mut p = FrameParser::new(server[..100].to_vec());
        let mut seen = Vec::new();
        p.drain(|op, pl| seen.push((op, pl.len())));
        assert!(seen.is_empty());
        p.buf.extend_from_slice(&server[100..]);
        p.drain(|op, pl| seen.push((op, pl.len())));
        assert_eq!(seen, vec![(1, ENVELOPE_BYTES), (9, 0)]);
    }

    #[test]
    fn proc_stat_reads_cpu_and_parent_past_an_odd_command_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stat");
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt
        // majflt cmajflt utime stime ...
        std::fs::write(
            &path,
            "42 (a) b (c) S 7 42 42 0 -1 4194560 10 0 0 0 250 50 0 0 20 0 1 0\n",
        )
        .unwrap();
        let (cpu, ppid) = proc_stat(path.to_str().unwrap()).unwrap();
        assert_eq!((cpu, ppid), (Duration::from_millis(3_000), 7));
        assert_eq!(proc_stat("/nonexistent/stat"), None);
        // This process, with its children, has used at least its own time.
        let me = std::process::id();
        assert!(process_tree_cpu_time(me) >= process_cpu_time(me));
    }
}
