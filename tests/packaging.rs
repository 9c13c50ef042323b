//! What ships beside the binary: the systemd unit parses and runs the
//! built binary's commands, the container build uses the commands CI
//! checks, shell completions and the version come out of the binary.

mod common;
use common::{fednode, root};

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The value of `Key=` lines in a unit file (all of them, in order).
fn unit_values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn the_systemd_unit_reloads_with_sighup_and_verifies() {
    let unit = read("packaging/fednode.service");
    assert_eq!(
        unit_values(&unit, "ExecStart"),
        ["/usr/local/bin/fednode run /etc/fednode/fednode.json"]
    );
    assert_eq!(
        unit_values(&unit, "ExecStartPre"),
        ["/usr/local/bin/fednode check /etc/fednode/fednode.json"]
    );
    assert_eq!(
        unit_values(&unit, "ExecReload"),
        ["/bin/kill -HUP $MAINPID"]
    );
    assert_eq!(unit_values(&unit, "KillSignal"), ["SIGTERM"]);

    // `systemd-analyze verify` where the machine has it, on a copy that
    // runs this build's binary (it checks that the binaries exist).
    let Ok(analyze) = which("systemd-analyze") else {
        eprintln!("systemd-analyze not installed: only the unit's keys were checked");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fednode.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/fednode", env!("CARGO_BIN_EXE_fednode")),
    )
    .unwrap();
    let out = std::process::Command::new(analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    // It reports unknown keys and bad values as warnings, not failures.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("fednode.service"))
        .collect();
    assert!(ours.is_empty(), "systemd-analyze verify: {stderr}");
}

fn which(cmd: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(["/usr/bin".into(), "/bin".into()])
        .map(|d| d.join(cmd))
        .find(|p| p.is_file())
        .ok_or(())
}

#[test]
fn the_container_build_runs_what_ci_checks() {
    let dockerfile = read("Dockerfile");
    let stages: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    assert!(stages[0].ends_with(" AS build"), "{}", stages[0]);

    // The build stage's toolchain is at least the workspace's
    // rust-version, and it builds with the lock file.
    let image = stages[0].split_whitespace().nth(1).unwrap();
    let version = image
        .strip_prefix("rust:")
        .and_then(|v| v.split('-').next())
        .unwrap_or_else(|| panic!("build stage image {image}"));
    let manifest = read("Cargo.toml");
    let wanted = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .unwrap()
        .trim_matches('"');
    let parse = |v: &str| -> Vec<u32> { v.split('.').map(|n| n.parse().unwrap()).collect() };
    assert!(parse(version) >= parse(wanted), "{image} < rust {wanted}");
    let runs: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("RUN cargo "))
        .collect();
    assert_eq!(runs, ["build --release --locked --bin fednode"]);
    // CI (scripts/test) builds with the same lock file: a stale
    // Cargo.lock fails there before it fails an image build.
    let script = read("scripts/test");
    for step in ["cargo clippy --workspace", "cargo test --workspace"] {
        let line = script
            .lines()
            .find(|l| l.starts_with(step))
            .unwrap_or_else(|| panic!("scripts/test runs {step}"));
        assert!(line.contains("--locked"), "{line}");
    }

    // The runtime stage: not root, a health check on readiness at the
    // admin address the image sets, the config it runs shipped with it.
    let runtime = &dockerfile[dockerfile.find(stages[1]).unwrap()..];
    let user = runtime
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER");
    assert!(user != "root" && user != "0", "runs as {user}");
    assert!(runtime.contains("ENV FEDNODE_ADMIN=0.0.0.0:9090"));
    assert!(runtime.contains("EXPOSE 9090"));
    let health = runtime
        .split("HEALTHCHECK")
        .nth(1)
        .expect("HEALTHCHECK")
        .lines()
        .take(2)
        .collect::<String>();
    assert!(
        health.contains("http://127.0.0.1:9090/health/ready"),
        "{health}"
    );
    assert!(runtime.contains(r#"ENTRYPOINT ["fednode"]"#));
    assert!(runtime.contains("COPY configs /etc/fednode"));
    assert!(runtime.contains(r#"CMD ["run", "/etc/fednode/demo.json"]"#));
    assert!(root().join("configs/demo.json").is_file());
    // The image does not ship the build context's bulk.
    let ignore = read(".dockerignore");
    for p in ["target/", ".git/"] {
        assert!(ignore.lines().any(|l| l == p), ".dockerignore lacks {p}");
    }
}

#[test]
fn completions_and_version() {
    for (shell, marker) in [
        ("bash", "_fednode()"),
        ("zsh", "#compdef fednode"),
        ("fish", "complete -c fednode"),
    ] {
        let out = fednode(&["completions", shell], &[]);
        assert!(out.status.success(), "completions {shell}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains(marker), "{shell}: {text}");
        for sub in ["run", "check", "request", "tail", "send"] {
            assert!(text.contains(sub), "{shell} completes {sub}");
        }
    }
    let out = fednode(&["completions", "tcsh"], &[]);
    assert!(!out.status.success());

    let out = fednode(&["--version"], &[]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.trim(),
        format!("fednode {} ({})", fednode::VERSION, fednode::GIT_SHA)
    );
    assert_ne!(fednode::GIT_SHA, "", "build.rs sets the commit");
}
