//! `fednode schema`: a JSON Schema every shipped config satisfies, and
//! that refuses what `check` refuses in shape (unknown keys, wrong
//! types, unknown factories), so an editor flags a mistake as it is typed.

mod common;
use common::{fednode, root};
use serde_json::{json, Value};

fn schema() -> jsonschema::Validator {
    let out = fednode(&["schema"], &[]);
    assert!(out.status.success());
    let schema: Value = serde_json::from_slice(&out.stdout).expect("the schema is JSON");
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    jsonschema::validator_for(&schema).expect("a valid JSON Schema")
}

fn errors(v: &jsonschema::Validator, config: &Value) -> Vec<String> {
    v.iter_errors(config)
        .map(|e| format!("{}: {e}", e.instance_path))
        .collect()
}

#[test]
fn every_shipped_config_satisfies_the_schema() {
    let v = schema();
    let mut n = 0;
    for dir in ["configs", "examples"] {
        let Ok(entries) = std::fs::read_dir(root().join(dir)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let plain = fednode::config::strip_comments(&text).unwrap();
            let config: Value = serde_json::from_str(&plain).unwrap();
            let found = errors(&v, &config);
            assert!(found.is_empty(), "{}: {found:#?}", path.display());
            n += 1;
        }
    }
    assert!(n >= 6, "only {n} configs checked");
}

#[test]
fn the_schema_refuses_what_check_refuses_in_shape() {
    let v = schema();
    let base = json!({
        "node": {"id": "n"},
        "components": {
            "sim": {"type": "input", "name": "eeg_simulator", "config": {
                "sampling_rate": "${RATE}",
                "ports": {"outputs": [{"name": "out", "subject": "eeg.raw"}]}
            }},
            "out": {"type": "output", "name": "websocket", "enabled": "${OUT_ON}", "config": {
                "mode": "server", "server": {"http_port": 8080, "tls": {"cert_file": "c", "key_file": "k"}},
                "ports": {"inputs": [{"name": "in", "subject": "eeg.>"}]}
            }}
        }
    });
    // `${VAR}` stands for a number or a boolean.
    assert_eq!(errors(&v, &base), Vec::<String>::new());

    let refused = |patch: &dyn Fn(&mut Value)| {
        let mut c = base.clone();
        patch(&mut c);
        let found = errors(&v, &c);
        assert!(!found.is_empty(), "accepted: {c}");
    };
    // A typo in a component's block.
    refused(&|c| c["components"]["sim"]["config"]["sampling_rat"] = json!(50));
    // A typo at the top level and in a shared block.
    refused(&|c| c["nodes"] = json!({}));
    refused(&|c| c["components"]["out"]["config"]["server"]["http_prot"] = json!(1));
    refused(&|c| c["components"]["out"]["config"]["server"]["tls"]["cert"] = json!("x"));
    // A wrong type, an unknown enum value, an unknown factory, a wrong kind.
    refused(&|c| c["components"]["sim"]["config"]["sampling_rate"] = json!("fast"));
    refused(&|c| c["bus"] = json!({"kind": "natss"}));
    refused(&|c| c["components"]["sim"]["name"] = json!("eeg_simulater"));
    refused(&|c| c["components"]["sim"]["type"] = json!("storage"));
}
