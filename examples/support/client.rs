//! What the example clients of a running node (`relay_simulator`,
//! `predictions_consumer`) share: their command line (`--url`,
//! `--seconds` and one count of their own), the wall clock in
//! milliseconds, and the backoff between connection attempts. Included
//! with `#[path = "support/client.rs"] mod client;`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The first wait before connecting again; doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The wait after `backoff`.
pub fn next_backoff(backoff: Duration) -> Duration {
    (backoff * 2).min(MAX_BACKOFF)
}

/// A client's command line.
pub struct Args {
    pub url: String,
    /// The value of the client's own count flag.
    pub count: u64,
    /// Stop after this many seconds (`None`: run until interrupted).
    pub seconds: Option<u64>,
}

/// Read `--url URL`, `--seconds S` and `count_flag N` (each count a whole
/// number above 0). On `--help`, or a wrong argument, prints what is wrong
/// and `usage`, and exits (0 for help, 2 otherwise).
pub fn args(program: &str, usage: &str, url: &str, count_flag: &str, count: u64) -> Args {
    parse(url, count_flag, count).unwrap_or_else(|e| {
        if !e.is_empty() {
            eprintln!("{program}: {e}");
        }
        eprintln!("{usage}");
        std::process::exit(if e.is_empty() { 0 } else { 2 });
    })
}

fn parse(url: &str, count_flag: &str, count: u64) -> Result<Args, String> {
    let mut parsed = Args {
        url: url.to_string(),
        count,
        seconds: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--url" => parsed.url = args.next().ok_or("--url needs a URL")?,
            "--seconds" => parsed.seconds = Some(positive(&arg, args.next())?),
            "-h" | "--help" => return Err("".into()),
            flag if flag == count_flag => parsed.count = positive(&arg, args.next())?,
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    Ok(parsed)
}

/// The whole number above 0 given after `flag`.
fn positive(flag: &str, value: Option<String>) -> Result<u64, String> {
    let v = value.ok_or_else(|| format!("{flag} needs a number"))?;
    let n = v.parse::<u64>().ok().filter(|&n| n > 0);
    n.ok_or_else(|| format!("{flag}: expected a whole number above 0, got {v:?}"))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
