//! `fednode schema`: the JSON Schema of a whole config file, for editors
//! (completion, checks as you type) and for CI.
//!
//! Built from the config structs themselves (schemars), so it cannot drift
//! from what `run` accepts: the top level from [`RawConfig`], each
//! component's `config` block from its factory's
//! [`Registration::schema`](fednode_kit::Registration), one entry schema
//! per factory (its `name`, the `type`s it accepts, its block). Two things
//! the structs do not say are added: a number or boolean may be written
//! as a string that is exactly `"${VAR}"` (read as a number once the
//! variable is set), and the schema's definitions are prefixed with the
//! factory they come from, so two crates' types of the same name stay
//! apart.
//!
//! What the schema cannot say, `fednode check` still does: values in range,
//! subjects and paths that parse, ports that collide.

use serde_json::{json, Map, Value};

use super::RawConfig;
use crate::runtime::registry;

/// The schema of a config file.
pub fn schema() -> Value {
    let mut root = serde_json::to_value(schemars::schema_for!(RawConfig)).expect("a schema");
    let mut defs = Map::new();
    let mut entries = Vec::new();
    for reg in registry::all() {
        let mut config = serde_json::to_value((reg.schema)()).expect("a schema");
        prefix_refs(&mut config, reg.name);
        let obj = config.as_object_mut().expect("an object schema");
        if let Some(Value::Object(own)) = obj.remove("$defs") {
            for (k, v) in own {
                defs.insert(format!("{}.{k}", reg.name), v);
            }
        }
        obj.remove("$schema");
        let names: Vec<&str> = std::iter::once(reg.name)
            .chain(reg.aliases.iter().copied())
            .collect();
        let kinds: Vec<&str> = reg.kinds.iter().map(|k| k.as_str()).collect();
        entries.push(json!({
            "title": reg.name,
            "type": "object",
            "properties": {
                "type": {"enum": kinds, "description": "input, processor, output or storage"},
                "name": {"enum": names, "description": "The factory"},
                "enabled": {"type": "boolean", "default": true},
                "config": {"anyOf": [config, {"type": "null"}]},
            },
            "required": ["type", "name"],
            "additionalProperties": false,
        }));
    }
    root["properties"]["components"] = json!({
        "description": "The graph: instance name → entry",
        "type": "object",
        "additionalProperties": {"oneOf": entries},
    });
    match root.get_mut("$defs") {
        Some(Value::Object(own)) => own.extend(defs),
        _ => root["$defs"] = Value::Object(defs),
    }
    root["title"] = json!("fednode config");
    allow_variables(&mut root);
    root
}

/// `#/$defs/X` → `#/$defs/<factory>.X`.
fn prefix_refs(v: &mut Value, factory: &str) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get_mut("$ref") {
                if let Some(name) = r.strip_prefix("#/$defs/") {
                    *r = format!("#/$defs/{factory}.{name}");
                }
            }
            m.values_mut().for_each(|v| prefix_refs(v, factory));
        }
        Value::Array(a) => a.iter_mut().for_each(|v| prefix_refs(v, factory)),
        _ => {}
    }
}

/// Every schema whose type is a number, integer or boolean also accepts
/// a string that is exactly `"${VAR}"`.
fn allow_variables(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.values_mut().for_each(allow_variables);
            let scalar = |t: &Value| matches!(t.as_str(), Some("integer" | "number" | "boolean"));
            let typed = match m.get("type") {
                Some(t @ Value::String(_)) => scalar(t),
                Some(Value::Array(ts)) => ts.iter().any(scalar),
                _ => false,
            };
            if typed {
                let original = Value::Object(std::mem::take(m));
                m.insert(
                    "anyOf".into(),
                    json!([original, {
                        "type": "string",
                        "pattern": r"^\$\{[^}]+\}$",
                        "description": "${VAR}, ${VAR:-default} or ${VAR:?message}: read as this field's type",
                    }]),
                );
            }
        }
        Value::Array(a) => a.iter_mut().for_each(allow_variables),
        _ => {}
    }
}
