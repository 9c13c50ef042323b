//! `${VAR}`, `${VAR:-default}` and `${VAR:?message}` in any string of the
//! config; `$${` is a literal `${`.
//!
//! As in POSIX shells and Docker Compose, `:-` and `:?` treat a variable
//! that is set but empty like an unset one. A plain `${VAR}` that is set but
//! empty expands to the empty string.
//!
//! A string that is exactly one `${VAR}` and whose value reads as a number
//! becomes that number, so `"http_port": "${PORT}"` works, and one whose
//! value is `true` or `false` becomes that boolean, so `"enabled":
//! "${FEATURE}"` works; the loader turns it back into a string if the field
//! wanted one.

use fednode_kit::config::{join, ConfigError};
use serde_json::Value;

/// What to do with a variable that has no value (and no default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unresolved {
    /// A config error naming the variable (`run`, `check`). The string is
    /// then a placeholder as below, so that the loader can drop the
    /// problems that only follow from the missing value.
    Error,
    /// Keep the string as it is and record its path (`check --no-env`). A
    /// string that is exactly one `${VAR}` becomes a stand-in, the number
    /// 1, so that a number field accepts it; the loader turns it back into
    /// the string if the field wanted another type.
    Placeholder,
}

/// Where `interpolate` puts what it found.
#[derive(Debug, Default)]
pub struct Found {
    /// The problems: each missing variable, with its path.
    pub errors: Vec<ConfigError>,
    /// Strings turned into numbers or booleans (stand-ins included):
    /// (path, the string to restore).
    pub typed: Vec<(String, String)>,
    /// The paths of strings left unresolved, with the variables they name.
    pub placeholders: Vec<(String, Vec<String>)>,
}

/// Replace every placeholder in `value`. Returns the problems (each missing
/// variable, with its path) and the paths of strings turned into numbers or
/// booleans.
pub fn interpolate(
    value: &mut Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
    typed: &mut Vec<(String, String)>,
) {
    let mut found = Found::default();
    interpolate_with(value, path, lookup, Unresolved::Error, &mut found);
    errors.append(&mut found.errors);
    typed.append(&mut found.typed);
}

/// [`interpolate`], with a choice of what an unresolved variable does.
pub fn interpolate_with(
    value: &mut Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    unresolved: Unresolved,
    found: &mut Found,
) {
    match value {
        Value::String(s) => {
            if !s.contains("${") {
                return;
            }
            let whole = s.starts_with("${") && s.ends_with('}') && s.matches("${").count() == 1;
            match expand(s, lookup) {
                Ok(expanded) => {
                    if whole {
                        let typed = match expanded.trim() {
                            "true" => Some(Value::Bool(true)),
                            "false" => Some(Value::Bool(false)),
                            t => t.parse::<serde_json::Number>().ok().map(Value::Number),
                        };
                        if let Some(v) = typed {
                            found.typed.push((path.to_string(), expanded));
                            *value = v;
                            return;
                        }
                    }
                    *s = expanded;
                }
                Err(missing) => {
                    if unresolved == Unresolved::Error {
                        report_missing(&missing, path, &mut found.errors);
                    }
                    found.placeholders.push((
                        path.to_string(),
                        missing.into_iter().map(|m| m.name).collect(),
                    ));
                    if whole {
                        found.typed.push((path.to_string(), s.clone()));
                        *value = Value::Number(1.into());
                    }
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                interpolate_with(v, &join(path, &format!("[{i}]")), lookup, unresolved, found);
            }
        }
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                interpolate_with(v, &join(path, k), lookup, unresolved, found);
            }
        }
        _ => {}
    }
}

/// One error line per missing variable, at `path`.
fn report_missing(missing: &[Missing], path: &str, errors: &mut Vec<ConfigError>) {
    for m in missing {
        let var = &m.name;
        let message = match &m.message {
            None => format!(
                "environment variable {var} is not set (use ${{{var}:-default}} for a default)"
            ),
            Some(msg) if msg.is_empty() => {
                format!("environment variable {var} is not set or empty")
            }
            Some(msg) => {
                format!("environment variable {var} is not set or empty: {msg}")
            }
        };
        errors.push(ConfigError::new(path, message));
    }
}

/// A variable without a value: its name and, for `${VAR:?message}`, the
/// message.
struct Missing {
    name: String,
    message: Option<String>,
}

/// Expand one string; `Err` lists the variables that are missing.
fn expand(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, Vec<Missing>> {
    let mut out = String::with_capacity(s.len());
    let mut missing = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        // `$${` is a literal `${`.
        if rest[..start].ends_with('$') {
            out.push_str(&rest[..start - 1]);
            out.push_str("${");
            rest = &rest[start + 2..];
            continue;
        }
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            // An unclosed `${` is kept literally.
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let inner = &after[..end];
        // The first `:` after the name: `:-` or `:?` (anything else, and a
        // name without one, is a plain `${VAR}`).
        let colon = inner
            .find(':')
            .filter(|&i| matches!(inner.as_bytes().get(i + 1), Some(b'-' | b'?')));
        let (name, op, arg) = match colon {
            Some(i) => (&inner[..i], &inner[i + 1..i + 2], &inner[i + 2..]),
            None => (inner, "", ""),
        };
        let value = lookup(name);
        match op {
            "-" => match value.filter(|v| !v.is_empty()) {
                Some(v) => out.push_str(&v),
                None => out.push_str(arg),
            },
            "?" => match value.filter(|v| !v.is_empty()) {
                Some(v) => out.push_str(&v),
                None => missing.push(Missing {
                    name: name.to_string(),
                    message: Some(arg.to_string()),
                }),
            },
            _ => match value {
                Some(v) => out.push_str(&v),
                None => missing.push(Missing {
                    name: name.to_string(),
                    message: None,
                }),
            },
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
            "ON" => Some("true".into()),
            "OFF" => Some("false".into()),
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
        let (mut errors, mut typed) = (Vec::new(), Vec::new());
        interpolate(&mut v, "", &env, &mut errors, &mut typed);
        assert_eq!(v["a"], "ws://hub:8081/x");
        assert_eq!(v["port"], 8081);
        assert_eq!(v["d"], "fallback");
        // The missing one is reported, and stands in as 1 like a
        // `--no-env` placeholder (the loader drops what follows from it).
        assert_eq!(v["list"][0], 1);
        assert_eq!(
            typed,
            vec![
                ("port".to_string(), "8081".to_string()),
                ("list[0]".to_string(), "${MISSING}".to_string()),
            ]
        );
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].to_string(),
            "list[0]: environment variable MISSING is not set (use ${MISSING:-default} for a default)"
        );
    }

    #[test]
    fn true_and_false_become_booleans() {
        let mut v = json!({
            "on": "${ON}", "off": "${OFF}", "d": "${UNSET:-false}",
            "inside": "x${ON}", "word": "${HOST}"
        });
        let (mut errors, mut typed) = (Vec::new(), Vec::new());
        interpolate(&mut v, "", &env, &mut errors, &mut typed);
        assert!(errors.is_empty());
        assert_eq!(v["on"], true);
        assert_eq!(v["off"], false);
        assert_eq!(v["d"], false);
        // Only a whole-string placeholder changes type.
        assert_eq!(v["inside"], "xtrue");
        assert_eq!(v["word"], "hub");
        let mut paths: Vec<_> = typed
            .iter()
            .map(|(p, t)| (p.as_str(), t.as_str()))
            .collect();
        paths.sort();
        assert_eq!(
            paths,
            vec![("d", "false"), ("off", "false"), ("on", "true")]
        );
    }

    #[test]
    fn error_mode_records_the_unresolved_paths() {
        let mut v = json!({"url": "ws://${UNSET}/x", "port": "${UNSET_PORT}"});
        let mut found = Found::default();
        interpolate_with(&mut v, "", &env, Unresolved::Error, &mut found);
        assert_eq!(found.errors.len(), 2);
        assert_eq!(v["url"], "ws://${UNSET}/x");
        assert_eq!(v["port"], 1);
        let mut paths: Vec<_> = found.placeholders.iter().map(|(p, _)| p.as_str()).collect();
        paths.sort();
        assert_eq!(paths, vec!["port", "url"]);
    }

    fn env_with_empty(name: &str) -> Option<String> {
        match name {
            "EMPTY" => Some(String::new()),
            "HOST" => Some("hub".into()),
            _ => None,
        }
    }

    fn expand_one(s: &str) -> (Value, Vec<String>) {
        let mut v = Value::String(s.into());
        let (mut errors, mut typed) = (Vec::new(), Vec::new());
        interpolate(&mut v, "x", &env_with_empty, &mut errors, &mut typed);
        (v, errors.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn default_applies_when_set_but_empty() {
        assert_eq!(expand_one("${EMPTY:-d}").0, "d");
        assert_eq!(expand_one("${UNSET:-d}").0, "d");
        assert_eq!(expand_one("${HOST:-d}").0, "hub");
        // Without `:-`, empty is a value.
        assert_eq!(expand_one("a${EMPTY}b").0, "ab");
        // A default may itself contain `:?` or `:-`.
        assert_eq!(expand_one("${UNSET:-a:-b:?c}").0, "a:-b:?c");
    }

    #[test]
    fn required_with_message_names_the_variable() {
        assert_eq!(expand_one("${HOST:?set HOST}").0, "hub");
        let (_, errors) = expand_one("ws://${UNSET:?the hub's address}/x");
        assert_eq!(
            errors,
            vec!["x: environment variable UNSET is not set or empty: the hub's address"]
        );
        let (_, errors) = expand_one("${EMPTY:?must be set}");
        assert_eq!(
            errors,
            vec!["x: environment variable EMPTY is not set or empty: must be set"]
        );
        let (_, errors) = expand_one("${EMPTY:?}");
        assert_eq!(
            errors,
            vec!["x: environment variable EMPTY is not set or empty"]
        );
    }

    #[test]
    fn double_dollar_is_a_literal() {
        assert_eq!(expand_one("$${HOST}").0, "${HOST}");
        assert_eq!(expand_one("a $${UNSET} b ${HOST}").0, "a ${UNSET} b hub");
        // Not a whole-string placeholder: stays a string.
        let (v, errors) = expand_one("$${PORT}");
        assert_eq!(v, "${PORT}");
        assert!(errors.is_empty());
    }

    #[test]
    fn placeholder_mode_keeps_unresolved_strings_and_records_them() {
        let mut v = json!({"url": "ws://${UNSET}/x", "port": "${UNSET_PORT}", "h": "${HOST}"});
        let mut found = Found::default();
        interpolate_with(&mut v, "", &env, Unresolved::Placeholder, &mut found);
        assert!(found.errors.is_empty());
        assert_eq!(v["url"], "ws://${UNSET}/x");
        assert_eq!(v["port"], 1);
        assert_eq!(v["h"], "hub");
        let mut paths: Vec<_> = found.placeholders.iter().map(|(p, _)| p.as_str()).collect();
        paths.sort();
        assert_eq!(paths, vec!["port", "url"]);
    }
}
