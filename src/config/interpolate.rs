//! `${VAR}` and `${VAR:-default}` in any string of the config.
//!
//! A string that is exactly one `${VAR}` and whose value reads as a number
//! becomes that number, so `"http_port": "${PORT}"` works; the loader turns it
//! back into a string if the field wanted one.

use fednode_kit::config::{join, ConfigError};
use serde_json::Value;

/// Replace every placeholder in `value`. Returns the problems (each missing
/// variable, with its path) and the paths of strings turned into numbers.
pub fn interpolate(
    value: &mut Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
    numeric: &mut Vec<(String, String)>,
) {
    match value {
        Value::String(s) => {
            if !s.contains("${") {
                return;
            }
            match expand(s, lookup) {
                Ok(expanded) => {
                    let whole =
                        s.starts_with("${") && s.ends_with('}') && s.matches("${").count() == 1;
                    if whole {
                        if let Ok(n) = expanded.trim().parse::<serde_json::Number>() {
                            numeric.push((path.to_string(), expanded.clone()));
                            *value = Value::Number(n);
                            return;
                        }
                    }
                    *s = expanded;
                }
                Err(missing) => {
                    for var in missing {
                        errors.push(ConfigError::new(
                            path,
                            format!("environment variable {var} is not set (use ${{{var}:-default}} for a default)"),
                        ));
                    }
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                interpolate(v, &join(path, &format!("[{i}]")), lookup, errors, numeric);
            }
        }
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                interpolate(v, &join(path, k), lookup, errors, numeric);
            }
        }
        _ => {}
    }
}

/// Expand one string; `Err` lists the variables that are missing.
fn expand(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, Vec<String>> {
    let mut out = String::with_capacity(s.len());
    let mut missing = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            // An unclosed `${` is kept literally.
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        match (lookup(name), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => missing.push(name.to_string()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("8081".into()),
            "HOST" => Some("hub".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_defaults_numbers_and_reports_missing() {
        let mut v = json!({
            "a": "ws://${HOST}:${PORT}/x",
            "port": "${PORT}",
            "d": "${NOPE:-fallback}",
            "list": ["${MISSING}"]
        });
        let (mut errors, mut numeric) = (Vec::new(), Vec::new());
        interpolate(&mut v, "", &env, &mut errors, &mut numeric);
        assert_eq!(v["a"], "ws://hub:8081/x");
        assert_eq!(v["port"], 8081);
        assert_eq!(v["d"], "fallback");
        assert_eq!(numeric, vec![("port".to_string(), "8081".to_string())]);
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].to_string(),
            "list[0]: environment variable MISSING is not set (use ${MISSING:-default} for a default)"
        );
    }
}
