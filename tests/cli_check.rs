//! `fednode check`: valid configs exit 0 and print the wiring; invalid ones
//! exit 1 with one line per problem, each naming its JSON path.

mod common;
use common::fednode;

fn write(json: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.json");
    std::fs::write(&path, json).unwrap();
    let p = path.to_str().unwrap().to_string();
    (dir, p)
}

#[test]
fn demo_config_is_valid() {
    let out = fednode(&["check", "configs/demo.json"], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("sim (input eeg_simulator)"), "{stdout}");
}

#[test]
fn every_config_in_configs_dir_is_valid() {
    let dir = common::root().join("configs");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            // The secrets the shipped configs name, as a deployment sets them.
            let secrets = [
                ("EDGE_API_KEY", "relay-key"),
                ("ZANDER_CONSUMER_TOKEN", "consumer-token"),
            ];
            let out = fednode(&["check", path.to_str().unwrap()], &secrets);
            assert!(
                out.status.success(),
                "{} is invalid:\n{}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            n += 1;
        }
    }
    assert!(n >= 1);
}

#[test]
fn every_config_in_configs_dir_passes_check_no_env_with_an_empty_environment() {
    let dir = common::root().join("configs");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let out = common::bin()
                .args(["check", "--no-env", path.to_str().unwrap()])
                .current_dir(common::root())
                .env_clear()
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{} fails check --no-env without an environment:\n{}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            n += 1;
        }
    }
    assert!(n >= 7, "only {n} configs");
}

#[test]
fn typo_wrong_enum_and_missing_env_each_get_a_line() {
    let (_d, path) = write(
        r#"{
      "node": {"id": "t"},
      "bus": {"kind": "natss"},
      "components": {
        "sim": {"type": "input", "name": "eeg_simulator", "config": {
          "sampling_rat": 256,
          "pacing": "realtim",
          "user_ids": ["${FEDNODE_TEST_SURELY_UNSET}"],
          "ports": {"outputs": [{"name": "out", "subject": "raw"}]}
        }}
      }
    }"#,
    );
    let out = fednode(&["check", &path], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines.contains(&"components.sim.config.user_ids[0]: environment variable FEDNODE_TEST_SURELY_UNSET is not set (use ${FEDNODE_TEST_SURELY_UNSET:-default} for a default)"),
        "{stderr}"
    );
    assert!(
        lines.contains(&"bus.kind: expected \"memory\" or \"nats\", got \"natss\""),
        "{stderr}"
    );
    assert_eq!(
        lines.len(),
        2,
        "the top-level error stops deeper checks:\n{stderr}"
    );

    // With the bus fixed, the component's own problems are all reported.
    let (_d2, path2) = write(
        r#"{
      "components": {
        "sim": {"type": "input", "name": "eeg_simulator", "config": {
          "sampling_rat": 256,
          "pacing": "realtim",
          "user_ids": ["${FEDNODE_TEST_SURELY_UNSET}"],
          "ports": {"outputs": [{"name": "out", "subject": "raw"}]}
        }}
      }
    }"#,
    );
    let out = fednode(&["check", &path2], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l
                .starts_with("components.sim.config.sampling_rat: unknown field, expected one of")),
        "{stderr}"
    );
    assert!(
        lines.contains(&"components.sim.config.pacing: expected \"realtime\" or \"as_fast_as_possible\", got \"realtim\""),
        "{stderr}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with(
            "components.sim.config.user_ids[0]: environment variable FEDNODE_TEST_SURELY_UNSET"
        )),
        "{stderr}"
    );
    assert_eq!(lines.len(), 3, "{stderr}");
}

#[test]
fn unknown_factory_and_type_mismatch() {
    let (_d, path) = write(
        r#"{"components": {
        "a": {"type": "input", "name": "udpp", "config": {}},
        "b": {"type": "output", "name": "udp", "config": {}},
        "c": {"type": "inputt", "name": "udp", "config": {}},
        "d": {"type": "input", "name": "udp", "enabled": true, "config": {"port": 1}, "extra": 1}
    }}"#,
    );
    let out = fednode(&["check", &path], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("components.a.name: unknown component \"udpp\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("components.b.type: \"udp\" is \"input\", got \"output\""),
        "{stderr}"
    );
    assert!(stderr.contains("components.c.type: expected \"input\", \"processor\", \"output\" or \"storage\", got \"inputt\""), "{stderr}");
    assert!(
        stderr.contains("components.d.extra: unknown field"),
        "{stderr}"
    );
}

#[test]
fn env_numbers_and_defaults() {
    let (_d, path) = write(
        r#"{"components": {"u": {"type": "input", "name": "udp", "config": {
        "port": "${FEDNODE_T_PORT}", "bind": "${FEDNODE_T_BIND:-127.0.0.1}",
        "ports": {"outputs": [{"name": "out", "subject": "raw.${FEDNODE_T_SUFFIX:-x}"}]}}}}}"#,
    );
    let out = fednode(&["check", &path], &[("FEDNODE_T_PORT", "14999")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("raw.x"));
}

#[test]
fn dangling_subjects_warn_on_stderr() {
    let (_d, path) = write(
        r#"{"components": {"u": {"type": "input", "name": "udp", "config": {
        "port": 0, "ports": {"outputs": [{"name": "out", "subject": "raw"}]}}}}}"#,
    );
    let out = fednode(&["check", &path], &[]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("warning: u publishes to \"raw\"")),
        "{stderr}"
    );
}

#[test]
fn invalid_json_names_the_line() {
    let (_d, path) = write("{\n  \"components\": {\"a\" 1}\n}");
    let out = fednode(&["check", &path], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid JSON at line 2"));
}

#[test]
fn comments_and_trailing_commas_are_allowed_and_lines_stay_true() {
    let config = r#"{
  // The edge of the plant floor.
  "$schema": "./fednode.schema.json",
  "node": {"id": "commented"},  /* a block
     over two lines */
  "http": {"listen": null},
  "components": {
    "sim": {"type": "input", "name": "eeg_simulator", "config": {
      "sampling_rate": 50,   // slow, for a demo
      "ports": {"outputs": [{"name": "out", "subject": "eeg.raw"}],},
    }},
    "out": {"type": "output", "name": "websocket", "config": {
      "mode": "client",
      "client": {"url": "ws://hub:8081/ingest"},  // the // in the URL stays
      "ports": {"inputs": [{"name": "in", "subject": "eeg.>"}]},
    }},
  },
}"#;
    let (_d, path) = write(config);
    let out = fednode(&["check", &path], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A mistake after comments is reported at its real line.
    let (_d, path) = write("{\n  // one\n  /* two\n  three */\n  \"node\": {\"id\": \"x\"}}}\n");
    let out = fednode(&["check", &path], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid JSON at line 5"), "{err}");
}

/// The error lines of `fednode check` on a config that must be refused.
fn refused(json: &str, env: &[(&str, &str)]) -> Vec<String> {
    let (_d, path) = write(json);
    let out = fednode(&["check", &path], env);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    stderr.lines().map(str::to_string).collect()
}

#[test]
fn two_components_on_one_port_are_refused() {
    let lines = refused(
        r#"{"http": {"listen": "127.0.0.1:19090"}, "components": {
      "a": {"type": "input", "name": "websocket_input", "config": {"http_port": 18080,
            "ports": {"outputs": [{"name": "out", "subject": "raw"}]}}},
      "b": {"type": "output", "name": "websocket", "config": {
            "server": {"http_port": 18080, "bind": "127.0.0.1"},
            "ports": {"inputs": [{"name": "in", "subject": "raw"}]}}},
      "c": {"type": "input", "name": "http_input", "config": {"http_port": 19090,
            "ports": {"outputs": [{"name": "out", "subject": "raw"}]}}},
      "d": {"type": "input", "name": "udp", "config": {"port": 18080,
            "ports": {"outputs": [{"name": "out", "subject": "raw"}]}}},
      "e": {"type": "input", "name": "udp", "config": {"port": 18080, "bind": "127.0.0.1",
            "ports": {"outputs": [{"name": "out", "subject": "raw"}]}}},
      "f": {"type": "input", "name": "http_input", "config": {"http_port": 0,
            "ports": {"outputs": [{"name": "out", "subject": "raw"}]}}},
      "g": {"type": "input", "name": "websocket_input", "config": {"http_port": 0,
            "ports": {"outputs": [{"name": "out", "subject": "raw"}]}}},
      "h": {"type": "input", "name": "http_input", "config": {"http_port": 18081, "bind": "127.0.0.1",
            "ports": {"outputs": [{"name": "out", "subject": "raw"}]}}},
      "i": {"type": "input", "name": "http_input", "config": {"http_port": 18081, "bind": "127.0.0.2",
            "ports": {"outputs": [{"name": "out", "subject": "raw"}]}}}
    }}"#,
        &[],
    );
    // UDP and TCP on one number, port 0 twice, and two distinct addresses
    // on one port are all fine.
    assert_eq!(
        lines,
        vec![
            "components.b.config.server.http_port: port 18080 is already used by component \"a\" (TCP 0.0.0.0:18080)",
            "components.c.config.http_port: port 19090 is already used by the admin server (TCP 127.0.0.1:19090)",
            "components.e.config.port: port 18080 is already used by component \"d\" (UDP 0.0.0.0:18080)",
        ]
    );
}

#[test]
fn a_block_for_the_other_websocket_mode_is_refused() {
    let lines = refused(
        r#"{"components": {
      "pull": {"type": "input", "name": "websocket_input", "config": {
            "mode": "client", "client": {"url": "ws://edge:8080/federation"},
            "server": {"http_port": 8081},
            "ports": {"outputs": [{"name": "out", "subject": "raw"}]}}},
      "serve": {"type": "output", "name": "websocket", "config": {
            "mode": "server", "server": {"http_port": 8080},
            "client": {"url": "ws://hub:8081/ingest"},
            "ports": {"inputs": [{"name": "in", "subject": "raw"}]}}}
    }}"#,
        &[],
    );
    assert_eq!(
        lines,
        vec![
            "components.pull.config.server: only used when mode is \"server\"",
            "components.serve.config.client: only used when mode is \"client\"",
        ]
    );
}

#[test]
fn env_booleans_fill_boolean_fields() {
    let (_d, path) = write(
        r#"{"node": {"id": "${FEDNODE_T_ON}"}, "components": {
      "u": {"type": "input", "name": "udp", "enabled": "${FEDNODE_T_UDP}", "config": {"port": 0,
            "ports": {"outputs": [{"name": "out", "subject": "raw"}]}}},
      "w": {"type": "input", "name": "websocket_input", "config": {"http_port": 0,
            "backpressure": {"enabled": "${FEDNODE_T_ON}"},
            "ports": {"outputs": [{"name": "out", "subject": "raw"}]}}}
    }}"#,
    );
    let env = [("FEDNODE_T_ON", "true"), ("FEDNODE_T_UDP", "false")];
    let out = fednode(&["check", &path], &env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A string field keeps the value as a string.
    assert!(stdout.contains("node true,"), "{stdout}");
    assert!(stdout.contains("u (input udp) disabled"), "{stdout}");

    let out = fednode(
        &["check", &path],
        &[("FEDNODE_T_ON", "true"), ("FEDNODE_T_UDP", "true")],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(stdout.lines().any(|l| l == "u (input udp)"), "{stdout}");
}

#[test]
fn an_unset_variable_in_a_number_field_is_one_line() {
    let lines = refused(
        r#"{"components": {
      "u": {"type": "input", "name": "udp", "config": {"port": "${FEDNODE_T_UNSET_A}",
            "ports": {"outputs": [{"name": "out", "subject": "raw"}]}}},
      "w": {"type": "input", "name": "websocket_input", "config": {
            "http_port": "${FEDNODE_T_UNSET_B}",
            "ports": {"outputs": [{"name": "out", "subject": "raw"}]}}}
    }}"#,
        &[],
    );
    assert_eq!(
        lines,
        vec![
            "components.u.config.port: environment variable FEDNODE_T_UNSET_A is not set (use ${FEDNODE_T_UNSET_A:-default} for a default)",
            "components.w.config.http_port: environment variable FEDNODE_T_UNSET_B is not set (use ${FEDNODE_T_UNSET_B:-default} for a default)",
        ]
    );
}
