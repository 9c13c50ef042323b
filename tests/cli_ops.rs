//! Operating the binary: `check --no-env` (placeholders for variables CI
//! does not have), `--log-format` / `--log-level` and colour only on a
//! terminal, and a second SIGTERM during a slow drain stopping at once.

mod common;
use common::{bin, fednode};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

fn write(dir: &Path, name: &str, json: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, json).unwrap();
    path.to_str().unwrap().to_string()
}

/// A websocket input whose port, a websocket client's URL and the admin
/// bearer token come from variables that are surely unset.
const WITH_PLACEHOLDERS: &str = r#"{
  "node": {"id": "ci"},
  "http": {"listen": "127.0.0.1:0", "auth": {"type": "bearer", "bearer_token_env": "FEDNODE_OPS_TEST_UNSET_TOKEN"}},
  "components": {
    "out": {"type": "output", "name": "websocket", "config": {
      "mode": "client",
      "client": {"url": "${FEDNODE_OPS_TEST_UNSET_URL}"},
      "ports": {"inputs": [{"name": "in", "subject": "x"}]}
    }},
    "in": {"type": "input", "name": "websocket_input", "config": {
      "mode": "server",
      "server": {"http_port": "${FEDNODE_OPS_TEST_UNSET_PORT}", "path": "/in"},
      "ports": {"outputs": [{"name": "out", "subject": "x"}]}
    }}
  }
}"#;

#[test]
fn check_no_env_accepts_unset_variables_that_check_rejects() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "c.json", WITH_PLACEHOLDERS);

    let out = fednode(&["check", &path], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("environment variable FEDNODE_OPS_TEST_UNSET_PORT is not set"),
        "{stderr}"
    );

    let out = fednode(&["check", "--no-env", &path], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{}\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    for var in [
        "FEDNODE_OPS_TEST_UNSET_URL",
        "FEDNODE_OPS_TEST_UNSET_PORT",
        "FEDNODE_OPS_TEST_UNSET_TOKEN",
    ] {
        assert!(stderr.contains(var), "the note names {var}:\n{stderr}");
    }

    // A number field written "${VAR}" alone, with everything else valid:
    // the config is built and the wiring printed.
    let port_only = WITH_PLACEHOLDERS
        .replace("${FEDNODE_OPS_TEST_UNSET_URL}", "ws://127.0.0.1:1/x")
        .replace(
            r#", "auth": {"type": "bearer", "bearer_token_env": "FEDNODE_OPS_TEST_UNSET_TOKEN"}"#,
            "",
        );
    assert!(!port_only.contains("_TOKEN") && !port_only.contains("_URL"));
    let path = write(dir.path(), "port.json", &port_only);
    let out = fednode(&["check", "--no-env", &path], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("wire: in -> out"), "{stdout}");
}

#[test]
fn check_no_env_still_reports_structural_errors_with_the_same_line() {
    let dir = tempfile::tempdir().unwrap();
    let broken = WITH_PLACEHOLDERS
        .replace(r#""mode": "server""#, r#""mode": "serverr""#)
        .replace(r#""path": "/in""#, r#""path": "/in", "pathh": "/typo""#);
    let path = write(dir.path(), "c.json", &broken);
    let with_env = fednode(&["check", &path], &[]);
    let no_env = fednode(&["check", "--no-env", &path], &[]);
    assert_eq!(with_env.status.code(), Some(1));
    assert_eq!(no_env.status.code(), Some(1));
    let with_env = String::from_utf8_lossy(&with_env.stderr);
    let no_env = String::from_utf8_lossy(&no_env.stderr);
    let line = r#"components.in.config.mode: expected "server" or "client", got "serverr""#;
    assert!(with_env.lines().any(|l| l == line), "{with_env}");
    assert!(no_env.lines().any(|l| l == line), "{no_env}");
    // The placeholders themselves are not errors under --no-env.
    assert!(!no_env.contains("is not set"), "{no_env}");
    assert!(!no_env.contains("FEDNODE_OPS_TEST_UNSET"), "{no_env}");
}

/// A `fednode run` started with extra arguments, its stderr in a file;
/// killed on drop.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn start(args: &[&str], config: &str, env: &[(&str, &str)], dir: &Path) -> Proc {
        let log = dir.join("fednode.log");
        let config = write(dir, "node.json", config);
        let mut c = bin();
        c.arg("run")
            .args(args)
            .arg(&config)
            .current_dir(common::root())
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            c.env(k, v);
        }
        Proc {
            child: c.spawn().expect("spawn fednode"),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_log(&self, needle: &str, within: Duration) {
        let t = Instant::now();
        while !self.log().contains(needle) {
            assert!(
                t.elapsed() < within,
                "no {needle:?} in the log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let t = Instant::now();
        while t.elapsed() < within {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A node that logs a few lines and stops at once on SIGTERM.
const QUICK: &str = r#"{
  "node": {"id": "logs"},
  "http": {"listen": "127.0.0.1:0"},
  "components": {
    "sim": {"type": "input", "name": "eeg_simulator", "config": {
      "sampling_rate": 50,
      "ports": {"outputs": [{"name": "out", "subject": "eeg.raw"}]}
    }}
  }
}"#;

/// Run [`QUICK`] until it logs "node running" (or, when `quiet`, for a
/// second), stop it, and return its log.
fn run_quick(args: &[&str], env: &[(&str, &str)], quiet: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Proc::start(args, QUICK, env, dir.path());
    if quiet {
        std::thread::sleep(Duration::from_secs(1));
    } else {
        p.wait_log("node running", Duration::from_secs(20));
    }
    p.signal("TERM");
    let status = p.wait_exit(Duration::from_secs(20)).expect("exits");
    assert!(status.success(), "{status:?}\n{}", p.log());
    p.log()
}

#[test]
fn json_logs_are_one_object_per_line_with_level_and_message() {
    let log = run_quick(&["--log-format", "json"], &[], false);
    let mut n = 0;
    let mut running = false;
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\n{log}"));
        assert!(v["level"].is_string(), "{line}");
        assert!(v["message"].is_string(), "{line}");
        assert!(v["timestamp"].is_string(), "{line}");
        if v["message"] == "node running; SIGHUP reloads the config, SIGINT or SIGTERM stops it" {
            assert_eq!(v["level"], "INFO");
            assert_eq!(v["node"], "logs", "fields sit beside the message: {line}");
            running = true;
        }
        n += 1;
    }
    assert!(n >= 3 && running, "{log}");
}

#[test]
fn text_logs_into_a_file_have_no_colour_codes() {
    let log = run_quick(&[], &[], false);
    assert!(log.contains("node running"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "ESC in a log written to a file:\n{log}"
    );
}

#[test]
fn log_level_flag_and_rust_log_wins() {
    let log = run_quick(&["--log-level", "warn"], &[], true);
    assert!(!log.contains("INFO"), "{log}");
    // RUST_LOG, when set, wins over --log-level.
    let log = run_quick(&["--log-level", "warn"], &[("RUST_LOG", "info")], false);
    assert!(log.contains("node running"), "{log}");
}

#[test]
fn a_second_sigterm_during_a_slow_drain_stops_at_once() {
    // Timescale pointed at a port where no PostgreSQL listens, without a
    // spill: at a stop it retries its held rows until shutdown_timeout
    // (60 s here), so the drain is slow.
    let config = r#"{
      "node": {"id": "slow"},
      "http": {"listen": null},
      "shutdown_timeout": "60s",
      "components": {
        "sim": {"type": "input", "name": "eeg_simulator", "config": {
          "sampling_rate": 50,
          "ports": {"outputs": [{"name": "out", "subject": "eeg.raw"}]}
        }},
        "store": {"type": "storage", "name": "timescale", "config": {
          "url": "postgres://fednode@127.0.0.1:1/nowhere", "retry_on_start": true,
          "ports": {"inputs": [{"name": "in", "subject": "eeg.>"}]}
        }}
      }
    }"#;
    let dir = tempfile::tempdir().unwrap();
    let mut p = Proc::start(&[], config, &[], dir.path());
    p.wait_log("node running", Duration::from_secs(20));
    // Rows held in memory (the writer says so when it retries).
    p.wait_log("buffered=", Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(500));
    p.signal("TERM");
    p.wait_log("stopping", Duration::from_secs(10));
    assert!(
        p.wait_exit(Duration::from_millis(700)).is_none(),
        "the drain should be slow:\n{}",
        p.log()
    );
    p.signal("TERM");
    let t = Instant::now();
    let status = p
        .wait_exit(Duration::from_secs(2))
        .unwrap_or_else(|| panic!("still running 2 s after the second SIGTERM:\n{}", p.log()));
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!(status.code(), Some(143), "{}", p.log());
    assert!(
        p.log().contains("second signal during the drain"),
        "{}",
        p.log()
    );
}

#[test]
fn log_fields_print_plainly() {
    // Every component that listens, on port 0: each logs its address.
    let config = r#"{
  "node": {"id": "plain-logs"},
  "http": {"listen": "127.0.0.1:0"},
  "components": {
    "udp_in": {"type": "input", "name": "udp", "config": {
      "port": 0, "bind": "127.0.0.1",
      "ports": {"outputs": [{"name": "out", "subject": "p.udp"}]}}},
    "http_in": {"type": "input", "name": "http_input", "config": {
      "http_port": 0, "bind": "127.0.0.1",
      "ports": {"outputs": [{"name": "out", "subject": "p.http"}]}}},
    "ws_in": {"type": "input", "name": "websocket_input", "config": {
      "mode": "server", "server": {"http_port": 0, "bind": "127.0.0.1"},
      "ports": {"outputs": [{"name": "ws_data", "subject": "p.ws"}]}}},
    "ws_out": {"type": "output", "name": "websocket", "config": {
      "mode": "server", "server": {"http_port": 0, "bind": "127.0.0.1"},
      "ports": {"inputs": [{"name": "in", "subject": "p.>"}]}}}
  }
}"#;
    let dir = tempfile::tempdir().unwrap();
    let mut p = Proc::start(&[], config, &[], dir.path());
    p.wait_log("node running", Duration::from_secs(20));
    p.signal("TERM");
    assert!(p.wait_exit(Duration::from_secs(20)).is_some());
    let log = p.log();
    let listening: Vec<&str> = log.lines().filter(|l| l.contains("listening")).collect();
    assert_eq!(listening.len(), 5, "admin and four components:\n{log}");
    for line in listening {
        assert!(
            line.contains("addr=127.0.0.1:") || line.contains("local=127.0.0.1:"),
            "{line}"
        );
    }
    assert!(
        !log.contains("Some("),
        "an Option printed with Debug:\n{log}"
    );
}
