//! Process plumbing shared by the servers: binary lookup, signals through
//! `sh -c kill` (the workspace forbids `unsafe`, so no libc), port polling,
//! log tails.

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// How often the wait loops poll.
pub(crate) const POLL: Duration = Duration::from_millis(20);

/// The first executable called `name` on `PATH`.
pub(crate) fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

pub(crate) fn is_executable(path: &Path) -> bool {
    fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Whether this process runs as root; decides if PostgreSQL must be run as
/// the `postgres` user (it refuses to run as root).
pub(crate) fn running_as_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| id(&["-u"]) == Some(0))
}

/// `id ARGS` parsed as a number, e.g. `id -u postgres`.
pub(crate) fn id(args: &[&str]) -> Option<u32> {
    let out = Command::new("id").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// Sends `signal` (a name such as `TERM`, `INT`, `KILL`, `STOP`) to `pid`.
/// Uses the shell builtin so it works without procps. Errors (the process
/// is already gone) are ignored: every caller then waits for the outcome.
pub(crate) fn signal(pid: u32, signal: &str) {
    let _ = Command::new("sh")
        .args(["-c", "kill -s \"$0\" \"$1\" 2>/dev/null", signal])
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .status();
}

/// Reaps `child`, waiting at most `timeout`. True if it exited.
pub(crate) fn wait_exit(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return true,
            Ok(None) if Instant::now() < deadline => thread::sleep(POLL),
            Ok(None) => return false,
            // Already reaped elsewhere: nothing left to wait for.
            Err(_) => return true,
        }
    }
}

/// SIGKILLs `child` and reaps it. Never panics (used from `Drop`).
pub(crate) fn kill_and_reap(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

pub(crate) fn port_accepts(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Polls until nothing accepts on `port`. True if it closed in time.
pub(crate) fn wait_port_closed(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while port_accepts(port) {
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL);
    }
    true
}

/// Whether `pid` is a live process; a zombie counts as dead because it
/// holds no ports, files or shared memory any more.
pub(crate) fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat_fields(&stat).is_some_and(|(state, _)| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// The live children of `pid`, found by scanning `/proc/*/stat`.
pub(crate) fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|candidate| {
            fs::read_to_string(format!("/proc/{candidate}/stat"))
                .ok()
                .and_then(|stat| stat_fields(&stat).map(|(_, ppid)| ppid == pid))
                .unwrap_or(false)
        })
        .collect()
}

/// (state, ppid) from a `/proc/PID/stat` line. The command name may contain
/// spaces and parentheses, so fields are counted after the last `)`.
fn stat_fields(stat: &str) -> Option<(String, u32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.to_string();
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// The last `lines` lines of a log file, for panic messages.
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(err) => format!("<cannot read {}: {err}>", path.display()),
    }
}

/// The current length of a log file (0 if it does not exist yet): where a
/// new start's lines begin in a log appended across restarts.
pub(crate) fn log_len(path: &Path) -> u64 {
    fs::metadata(path).map_or(0, |m| m.len())
}

/// What a log file holds from byte `offset` on (lossy UTF-8).
pub(crate) fn log_since(path: &Path, offset: u64) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let from = (offset as usize).min(bytes.len());
            String::from_utf8_lossy(&bytes[from..]).into_owned()
        }
        Err(_) => String::new(),
    }
}
