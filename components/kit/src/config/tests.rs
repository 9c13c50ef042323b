//! Unit tests of the strict config helpers.

use super::*;
use serde_json::json;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Inner {
    #[serde(default)]
    port: u16,
    #[serde(default)]
    mode: Mode,
}

#[derive(Debug, Deserialize, Default, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
enum Mode {
    #[default]
    Server,
    Client,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Outer {
    name: String,
    #[serde(default)]
    server: Option<Inner>,
    #[serde(default)]
    list: Vec<Inner>,
}

#[test]
fn reports_every_problem_with_its_path() {
    let v = json!({
        "name": "x",
        "server": {"prot": 1, "mode": "serverr"},
        "list": [{"port": "nope"}]
    });
    let errs = parse_strict::<Outer>(&v, "components.a.config").unwrap_err();
    let lines: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        lines,
        vec![
            "components.a.config.server.prot: unknown field, expected \"port\" or \"mode\"",
            "components.a.config.server.mode: expected \"server\" or \"client\", got \"serverr\"",
            "components.a.config.list[0].port: invalid type: string \"nope\", expected u16",
        ]
    );
}

#[test]
fn a_missing_field_does_not_hide_later_problems() {
    let v = json!({"server": {"mode": "nope"}, "list": [{"prot": 1}]});
    let errs = parse_strict::<Outer>(&v, "c").unwrap_err();
    let lines: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        lines,
        vec![
            "c.server.mode: expected \"server\" or \"client\", got \"nope\"",
            "c.list[0].prot: unknown field, expected \"port\" or \"mode\"",
            "c.name: required field is missing",
        ]
    );
}

#[test]
fn missing_required_field_points_at_it() {
    let errs = parse_strict::<Outer>(&json!({}), "c").unwrap_err();
    assert_eq!(errs[0].to_string(), "c.name: required field is missing");
}

#[test]
fn ports_validation_names_paths() {
    let ports: PortsConfig = serde_json::from_value(json!({
        "inputs": [{"name": "in", "subject": "a.>.b"}],
        "outputs": [{"name": "oops", "subject": "x.*"}]
    }))
    .unwrap();
    let errs = ports.validate(
        "p",
        &PortRules {
            inputs: &["in"],
            outputs: &["out"],
            required_inputs: &["in"],
            required_outputs: &["out"],
            any_input_name: false,
        },
    );
    let lines: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert!(
        lines.iter().any(|l| l.starts_with("p.inputs[0].subject:")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l == "p.outputs[0].name: expected \"out\", got \"oops\""),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("p.outputs[0].subject:")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l == "p.outputs: a port named \"out\" is required"),
        "{lines:?}"
    );
}

#[test]
fn credentials() {
    let c = Credential::Bearer("s3cret".into());
    assert!(c.accepts(Some("Bearer s3cret")));
    // The scheme is case-insensitive, the token is not.
    assert!(c.accepts(Some("bearer s3cret")));
    assert!(c.accepts(Some("BEARER   s3cret")));
    assert!(!c.accepts(Some("Bearer S3CRET")));
    assert!(!c.accepts(Some("Bearers3cret")));
    assert!(!c.accepts(Some("Basic s3cret")));
    assert!(!c.accepts(Some("Bearer nope")));
    assert!(!c.accepts(None));
    let b = Credential::Basic {
        user: "u".into(),
        password: "p".into(),
    };
    assert!(b.accepts(b.header_value().as_deref()));
    assert!(Credential::None.accepts(None));
}
