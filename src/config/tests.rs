//! Unit tests of config loading: interpolation, placeholders, listens.

use super::*;

fn env(name: &str) -> Option<String> {
    let v = match name {
        "ON" => "true",
        "OFF" => "false",
        "PORT" => "8080",
        _ => return None,
    };
    Some(v.into())
}

/// The error lines of an invalid config.
fn lines(text: &str) -> Vec<String> {
    match load_str(text, &env) {
        Ok(_) => panic!("valid: {text}"),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    }
}

fn udp(port: &str) -> String {
    format!(
        r#"{{"type": "input", "name": "udp", "config": {{"port": {port},
           "ports": {{"outputs": [{{"name": "out", "subject": "raw"}}]}}}}}}"#
    )
}

fn ws_in(server: &str) -> String {
    format!(
        r#"{{"type": "input", "name": "websocket_input", "config": {{{server},
           "ports": {{"outputs": [{{"name": "out", "subject": "raw"}}]}}}}}}"#
    )
}

#[test]
fn listens_that_collide_are_refused_at_the_later_ones_port() {
    let text = format!(
        r#"{{"http": {{"listen": "127.0.0.1:9090"}}, "components": {{
            "a": {}, "b": {}, "c": {}, "d": {}, "e": {}, "f": {}}}}}"#,
        ws_in(r#""http_port": "${PORT}""#),
        ws_in(r#""server": {"http_port": 8080, "bind": "127.0.0.1"}"#),
        udp("8080"),
        ws_in(r#""server": {"http_port": 9090, "bind": "::"}"#),
        ws_in(r#""http_port": 0"#),
        ws_in(r#""http_port": 0"#),
    );
    assert_eq!(
        lines(&text),
        vec![
            "components.b.config.server.http_port: port 8080 is already used by \
             component \"a\" (TCP 0.0.0.0:8080)",
            "components.d.config.server.http_port: port 9090 is already used by \
             the admin server (TCP 127.0.0.1:9090)",
        ]
    );
}

#[test]
fn an_unset_variable_is_the_one_problem_at_its_path() {
    let text = format!(
        r#"{{"components": {{"a": {}, "b": {}, "c": {}}}}}"#,
        udp(r#""${UNSET_A}""#),
        ws_in(r#""http_port": "${UNSET_B}""#),
        // A stand-in port is not compared with others.
        udp("1"),
    );
    assert_eq!(
        lines(&text),
        vec![
            "components.a.config.port: environment variable UNSET_A is not set \
             (use ${UNSET_A:-default} for a default)",
            "components.b.config.http_port: environment variable UNSET_B is not set \
             (use ${UNSET_B:-default} for a default)",
        ]
    );
}

#[test]
fn true_and_false_from_variables_fill_boolean_fields_only() {
    let text = format!(
        r#"{{"node": {{"id": "${{ON}}"}}, "components": {{
            "a": {}, "b": {{"type": "input", "name": "udp", "enabled": "${{OFF}}", "config": {{"port": 0,
                 "ports": {{"outputs": [{{"name": "out", "subject": "raw"}}]}}}}}}}}}}"#,
        ws_in(r#""http_port": 0, "backpressure": {"enabled": "${OFF}"}"#),
    );
    let cfg = load_str(&text, &env).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(cfg.node.id, "true", "a string field keeps the string");
    assert!(cfg.components[0].enabled && !cfg.components[1].enabled);

    // Any other value stays a string, and a boolean field refuses it.
    let text = text.replacen("${OFF}", "${PORT}", 1);
    assert_eq!(
        lines(&text),
        vec![
            "components.a.config.backpressure.enabled: invalid type: string \"8080\", \
              expected a boolean"
        ]
    );
}
