//! The filter as users write it: criteria `{path, operator, value}`
//! and `match`, from a config block or `subscribe` params.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{kind, FilterError};

/// One criterion as written in config or in `subscribe` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Criterion {
    /// A JSONPath such as `$.a.b`, `$.a[0]`, `$.a[*].b` or `$['a b']`.
    pub path: String,
    /// One of `==`, `!=`, `>`, `>=`, `<`, `<=`, `contains`, `exists`, `matches`.
    pub operator: String,
    /// The operand; absent only for `exists`. An explicit JSON `null` is
    /// `Some(Value::Null)`, distinct from an absent value.
    #[serde(
        default,
        deserialize_with = "deserialize_present",
        skip_serializing_if = "Option::is_none"
    )]
    pub value: Option<Value>,
}

impl Criterion {
    /// Builds a criterion (e.g. from `fednode tail --filter PATH OP VALUE`).
    pub fn new(path: impl Into<String>, operator: impl Into<String>, value: Option<Value>) -> Self {
        Self {
            path: path.into(),
            operator: operator.into(),
            value,
        }
    }
}

/// Serde maps a JSON `null` to `None` for `Option` fields; `value: null` must
/// instead mean "compare with null", so a present field is always `Some`.
fn deserialize_present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// The `criteria` of a `json_filter` config: one criterion object or a list.
///
/// The shape is remembered so that error paths point at the right place
/// (`criteria.operator` for one object, `criteria[1].operator` for a list).
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum CriteriaSpec {
    /// A single criterion object.
    One(Criterion),
    /// A list of criteria.
    Many(Vec<Criterion>),
}

impl CriteriaSpec {
    /// The criteria, in order.
    pub fn as_slice(&self) -> &[Criterion] {
        match self {
            CriteriaSpec::One(c) => std::slice::from_ref(c),
            CriteriaSpec::Many(list) => list,
        }
    }

    /// Where criterion `i` sits below `prefix`, for error messages.
    pub(super) fn location(&self, prefix: &str, i: usize) -> String {
        match self {
            CriteriaSpec::One(_) => prefix.to_string(),
            CriteriaSpec::Many(_) => format!("{prefix}[{i}]"),
        }
    }
}

impl<'de> Deserialize<'de> for CriteriaSpec {
    // Hand-written rather than `#[serde(untagged)]`: untagged enums replace
    // the real error ("unknown field `paht`") with "did not match any
    // variant", and they hide the position from serde_path_to_error.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct CriteriaVisitor;

        impl<'de> Visitor<'de> for CriteriaVisitor {
            type Value = CriteriaSpec;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a criterion {path, operator, value} or a list of criteria")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<CriteriaSpec, A::Error> {
                Criterion::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(CriteriaSpec::One)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<CriteriaSpec, A::Error> {
                Vec::<Criterion>::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(CriteriaSpec::Many)
            }
        }

        d.deserialize_any(CriteriaVisitor)
    }
}

/// How the criteria of a filter combine. Written `"all"` or `"any"`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum MatchMode {
    /// Every criterion must hold (the default).
    #[default]
    All,
    /// At least one criterion must hold.
    Any,
}

impl FromStr for MatchMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" => Ok(MatchMode::All),
            "any" => Ok(MatchMode::Any),
            other => Err(format!(
                "unknown match mode {other:?} (expected \"all\" or \"any\")"
            )),
        }
    }
}

impl fmt::Display for MatchMode {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            MatchMode::All => "all",
            MatchMode::Any => "any",
        })
    }
}

/// A complete filter as written: criteria, how they combine, and the name
/// under which errors are reported.
///
/// Serializes to the canonical `subscribe` form
/// `{"filters": [...], "match": "all"|"any"}`; deserializes from every shape
/// [`FilterSpec::from_value`] accepts.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterSpec {
    /// The criteria.
    pub criteria: CriteriaSpec,
    /// How the criteria combine.
    pub match_mode: MatchMode,
    /// The prefix of error paths: `criteria` (json_filter), `filter` or
    /// `filters` (subscribe). Criterion `i` of a list is `{prefix}[i]`.
    pub error_prefix: String,
}

impl FilterSpec {
    /// A spec from an already-deserialized `criteria` + `match`, as embedded
    /// in the `json_filter` config. Errors are reported under `criteria`.
    pub fn new(criteria: CriteriaSpec, match_mode: MatchMode) -> Self {
        Self {
            criteria,
            match_mode,
            error_prefix: "criteria".to_string(),
        }
    }

    /// A single-criterion spec, reported under `filter`.
    pub fn single(criterion: Criterion) -> Self {
        Self::new(CriteriaSpec::One(criterion), MatchMode::All).with_error_prefix("filter")
    }

    /// Replaces the prefix of error paths.
    pub fn with_error_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.error_prefix = prefix.into();
        self
    }

    /// The `json_filter` form: `criteria` (one object or a list) and the
    /// `match` string beside it (`None` = `all`). Errors name `criteria…`
    /// and `match`.
    pub fn from_criteria(criteria: &Value, match_: Option<&str>) -> Result<Self, Vec<FilterError>> {
        let mut errors = Vec::new();
        let parsed = criteria_from_value(criteria, "criteria", &mut errors);
        let match_mode = match match_.map(str::parse).transpose() {
            Ok(mode) => mode.unwrap_or_default(),
            Err(message) => {
                errors.push(FilterError::new("match", message));
                MatchMode::All
            }
        };
        match parsed {
            Some(criteria) if errors.is_empty() => Ok(Self::new(criteria, match_mode)),
            _ => Err(errors),
        }
    }

    /// Any accepted shape, typically `subscribe` params:
    ///
    /// * `{"filter": {path, operator, value}}` (errors under `filter`),
    /// * `{"filters": [...], "match": "all"|"any"}` (errors under `filters[i]`),
    /// * `{"criteria": ..., "match": ...}` (errors under `criteria`),
    /// * a bare criterion object (`filter`) or a bare list (`filters[i]`).
    ///
    /// `match` is accepted beside any of the keyed forms.
    pub fn from_value(value: &Value) -> Result<Self, Vec<FilterError>> {
        let mut errors = Vec::new();
        let spec = match value {
            Value::Array(_) => criteria_from_value(value, "filters", &mut errors)
                .map(|c| Self::new(c, MatchMode::All).with_error_prefix("filters")),
            Value::Object(map) => {
                const KEYS: [&str; 3] = ["filter", "filters", "criteria"];
                let present: Vec<&str> =
                    KEYS.into_iter().filter(|k| map.contains_key(*k)).collect();
                if present.is_empty() {
                    // No wrapper key: the object is the criterion itself.
                    criteria_from_value(value, "filter", &mut errors)
                        .map(|c| Self::new(c, MatchMode::All).with_error_prefix("filter"))
                } else {
                    if present.len() > 1 {
                        errors.push(FilterError::new(
                            present[1],
                            format!("cannot be combined with {:?}", present[0]),
                        ));
                    }
                    for key in map.keys() {
                        if !KEYS.contains(&key.as_str()) && key != "match" {
                            errors.push(FilterError::new(
                                key.clone(),
                                "unknown field, expected one of `filter`, `filters`, `criteria`, `match`",
                            ));
                        }
                    }
                    let match_mode = match map.get("match") {
                        None => MatchMode::All,
                        Some(Value::String(s)) => s.parse().unwrap_or_else(|message| {
                            errors.push(FilterError::new("match", message));
                            MatchMode::All
                        }),
                        Some(other) => {
                            errors.push(FilterError::new(
                                "match",
                                format!("expected \"all\" or \"any\", got {}", kind(other)),
                            ));
                            MatchMode::All
                        }
                    };
                    let key = present[0];
                    criteria_from_value(&map[key], key, &mut errors)
                        .map(|c| Self::new(c, match_mode).with_error_prefix(key))
                }
            }
            other => {
                errors.push(FilterError::new(
                    "filter",
                    format!(
                        "expected a criterion object or a list of criteria, got {}",
                        kind(other)
                    ),
                ));
                None
            }
        };
        match spec {
            Some(spec) if errors.is_empty() => Ok(spec),
            _ => Err(errors),
        }
    }
}

/// Reads one criterion or a list from `value`, pushing shape errors (unknown
/// or missing fields) under `prefix` / `prefix[i]`.
fn criteria_from_value(
    value: &Value,
    prefix: &str,
    errors: &mut Vec<FilterError>,
) -> Option<CriteriaSpec> {
    let one = |v: &Value, at: String, errors: &mut Vec<FilterError>| match v {
        Value::Object(_) => Criterion::deserialize(v)
            .map_err(|e| errors.push(FilterError::new(at, e.to_string())))
            .ok(),
        other => {
            errors.push(FilterError::new(
                at,
                format!(
                    "expected a criterion object {{path, operator, value}}, got {}",
                    kind(other)
                ),
            ));
            None
        }
    };
    match value {
        Value::Array(items) => {
            let parsed: Vec<Option<Criterion>> = items
                .iter()
                .enumerate()
                .map(|(i, item)| one(item, format!("{prefix}[{i}]"), errors))
                .collect();
            parsed
                .into_iter()
                .collect::<Option<Vec<_>>>()
                .map(CriteriaSpec::Many)
        }
        Value::Object(_) => one(value, prefix.to_string(), errors).map(CriteriaSpec::One),
        other => {
            errors.push(FilterError::new(
                prefix,
                format!(
                    "expected a criterion object or a list of criteria, got {}",
                    kind(other)
                ),
            ));
            None
        }
    }
}

impl Serialize for FilterSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("FilterSpec", 2)?;
        st.serialize_field("filters", self.criteria.as_slice())?;
        st.serialize_field("match", &self.match_mode)?;
        st.end()
    }
}

impl<'de> Deserialize<'de> for FilterSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        FilterSpec::from_value(&value)
            .map_err(|errors| de::Error::custom(FilterError::join(&errors)))
    }
}
