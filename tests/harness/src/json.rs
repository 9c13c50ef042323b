//! Config overlays: a test starts from a base config and changes a few
//! members.

use serde_json::Value;

/// Deep-merges `extra` into `base`: where both hold an object under the
/// same key, the objects are merged member by member, recursively; any
/// other member of `extra` (a scalar, an array, `null`, an object where
/// `base` has none) replaces or adds that member. A non-object `extra`
/// leaves `base` unchanged.
///
/// ```
/// use serde_json::json;
/// let mut cfg = json!({"server": {"http_port": 0, "path": "/ws"}, "ports": {"inputs": [1]}});
/// fednode_testkit::merge(&mut cfg, json!({"server": {"path": "/x"}, "ports": {"inputs": [2]}}));
/// assert_eq!(cfg, json!({"server": {"http_port": 0, "path": "/x"}, "ports": {"inputs": [2]}}));
/// ```
pub fn merge(base: &mut Value, extra: Value) {
    let (Value::Object(base), Value::Object(extra)) = (base, extra) else {
        return;
    };
    for (key, value) in extra {
        match (base.get_mut(&key), value) {
            (Some(inner @ Value::Object(_)), value @ Value::Object(_)) => merge(inner, value),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}
