//! Tables as the writer sees them: quoted identifiers, the logical columns a
//! profile fills ([`ColumnSpec`]), the column types found in the database
//! ([`ColType`]), row values ([`Cell`]) and their per-column arrays for
//! `INSERT … SELECT FROM UNNEST(…)` ([`ColumnArray`]).
//!
//! Rows are kept as cells until their batch is written and bound then for
//! the column types the table really has, so an existing table with
//! `varchar` or `json` columns is written as correctly as one we created.

use std::sync::Arc;

use bytes::Bytes;
use sqlx::types::chrono::{DateTime, Utc};

/// `name` or `schema.name`, validated and quoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ident {
    schema: Option<String>,
    name: String,
}

const MAX_IDENT: usize = 63;

fn valid_part(p: &str) -> bool {
    let mut chars = p.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        && p.len() <= MAX_IDENT
}

fn quote(p: &str) -> String {
    format!("\"{p}\"")
}

impl Ident {
    /// Parse a table name as written in the config. Case is kept (the name
    /// is always quoted), so `Events` and `events` are different tables.
    pub fn parse(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split('.').collect();
        let ok = matches!(parts.len(), 1 | 2) && parts.iter().all(|p| valid_part(p));
        if !ok {
            return Err(format!(
                "\"{s}\" is not a table name: expected name or schema.name, each of letters, digits and _ (at most 63), not starting with a digit"
            ));
        }
        Ok(match parts.as_slice() {
            [name] => Ident {
                schema: None,
                name: name.to_string(),
            },
            [schema, name] => Ident {
                schema: Some(schema.to_string()),
                name: name.to_string(),
            },
            _ => unreachable!("checked above"),
        })
    }

    /// A bare name known to be valid.
    pub fn bare(name: &str) -> Self {
        Ident::parse(name).expect("a valid built-in table name")
    }

    /// Another table in the same schema.
    pub fn sibling(&self, name: &str) -> Self {
        Ident {
            schema: self.schema.clone(),
            name: name.to_string(),
        }
    }

    /// The schema, when one was written.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// The quoted, possibly schema-qualified name for SQL.
    pub fn qualified(&self) -> String {
        match &self.schema {
            Some(s) => format!("{}.{}", quote(s), quote(&self.name)),
            None => quote(&self.name),
        }
    }

    /// The unquoted name (for messages and derived names).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// As written (`schema.name`).
    pub fn display(&self) -> String {
        match &self.schema {
            Some(s) => format!("{s}.{}", self.name),
            None => self.name.clone(),
        }
    }

    /// The quoted name of an index on this table (`<table>_<suffix>`,
    /// shortened to PostgreSQL's 63 bytes).
    pub fn index_name(&self, suffix: &str) -> String {
        let keep = MAX_IDENT.saturating_sub(suffix.len() + 1);
        let mut base = self.name.clone();
        base.truncate(keep);
        quote(&format!("{base}_{suffix}"))
    }
}

/// What a logical column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellKind {
    Time,
    Text,
    Json,
    Uuid,
    Float,
}

/// A column type found in the database that we know how to encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    /// `timestamptz` or `timestamp` (same binary form).
    Timestamp,
    /// `text`, `varchar`, `char`, `name`, `citext`.
    Text,
    Jsonb,
    Json,
    Uuid,
    Float8,
    Float4,
}

impl ColType {
    /// From `format_type(atttypid, NULL)`.
    pub fn from_pg(name: &str) -> Option<Self> {
        Some(match name {
            "timestamp with time zone" | "timestamp without time zone" => ColType::Timestamp,
            "text" | "character varying" | "character" | "name" | "citext" => ColType::Text,
            "jsonb" => ColType::Jsonb,
            "json" => ColType::Json,
            "uuid" => ColType::Uuid,
            "double precision" => ColType::Float8,
            "real" => ColType::Float4,
            _ => return None,
        })
    }

    /// Whether cells of `kind` can be written to a column of this type.
    pub fn accepts(self, kind: CellKind) -> bool {
        matches!(
            (kind, self),
            (CellKind::Time, ColType::Timestamp)
                | (CellKind::Text, ColType::Text)
                | (
                    CellKind::Json,
                    ColType::Jsonb | ColType::Json | ColType::Text
                )
                | (CellKind::Uuid, ColType::Uuid | ColType::Text)
                | (CellKind::Float, ColType::Float8 | ColType::Float4)
        )
    }
}

/// The types a column of `kind` may have, for error messages.
pub fn accepted_types(kind: CellKind) -> &'static str {
    match kind {
        CellKind::Time => "timestamptz or timestamp",
        CellKind::Text => "text, varchar or char",
        CellKind::Json => "jsonb, json or text",
        CellKind::Uuid => "uuid or text",
        CellKind::Float => "double precision or real",
    }
}

/// One logical column of a table we write.
#[derive(Debug, Clone, Copy)]
pub struct ColumnSpec {
    pub name: &'static str,
    pub kind: CellKind,
    /// Without it rows cannot be written (a `NOT NULL` column we fill).
    pub required: bool,
    /// Its definition in our `CREATE TABLE`.
    pub ddl: &'static str,
}

/// One value of a row, not yet encoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    /// Microseconds since the Unix epoch.
    Time(i64),
    Str(Arc<str>),
    String(String),
    /// JSON text.
    Json(Bytes),
    Uuid(uuid::Uuid),
    Float(f64),
}

impl Cell {
    /// The text of a text cell.
    pub fn text(&self) -> Option<&str> {
        match self {
            Cell::Str(s) => Some(s),
            Cell::String(s) => Some(s),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Cell::Str(s) => Some(s),
            Cell::String(s) => Some(s),
            // Payloads are checked to be UTF-8 when they arrive.
            Cell::Json(j) => std::str::from_utf8(j).ok(),
            _ => None,
        }
    }
}

/// A `timestamptz` from microseconds since the Unix epoch.
pub fn pg_time(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

/// The SQL array type a column's values are bound as, and the cast applied
/// to the unnested value (`jsonb` is sent as text and parsed by the server,
/// the same work `COPY` makes it do).
pub fn unnest_types(kind: CellKind, ty: ColType) -> (&'static str, &'static str) {
    match (kind, ty) {
        (CellKind::Time, _) => ("timestamptz[]", ""),
        (CellKind::Uuid, ColType::Uuid) => ("uuid[]", ""),
        (CellKind::Float, ColType::Float4) => ("float8[]", "::real"),
        (CellKind::Float, _) => ("float8[]", ""),
        (_, ColType::Jsonb) => ("text[]", "::jsonb"),
        (_, ColType::Json) => ("text[]", "::json"),
        _ => ("text[]", ""),
    }
}

/// One column of a batch, as the array bound to `UNNEST`.
pub enum ColumnArray<'a> {
    Times(Vec<Option<DateTime<Utc>>>),
    Texts(Vec<Option<&'a str>>),
    OwnedTexts(Vec<Option<String>>),
    Uuids(Vec<Option<uuid::Uuid>>),
    Floats(Vec<Option<f64>>),
}

impl<'a> ColumnArray<'a> {
    /// The values of cell `i` of each row, for a column of type `ty`.
    pub fn build(kind: CellKind, ty: ColType, i: usize, rows: &[&'a Vec<Cell>]) -> Self {
        match (kind, ty) {
            (CellKind::Time, _) => ColumnArray::Times(
                rows.iter()
                    .map(|r| match r[i] {
                        Cell::Time(us) => Some(pg_time(us)),
                        _ => None,
                    })
                    .collect(),
            ),
            (CellKind::Uuid, ColType::Uuid) => ColumnArray::Uuids(
                rows.iter()
                    .map(|r| match r[i] {
                        Cell::Uuid(u) => Some(u),
                        _ => None,
                    })
                    .collect(),
            ),
            (CellKind::Uuid, _) => ColumnArray::OwnedTexts(
                rows.iter()
                    .map(|r| match r[i] {
                        Cell::Uuid(u) => Some(u.hyphenated().to_string()),
                        _ => None,
                    })
                    .collect(),
            ),
            (CellKind::Float, _) => ColumnArray::Floats(
                rows.iter()
                    .map(|r| match r[i] {
                        Cell::Float(f) => Some(f),
                        _ => None,
                    })
                    .collect(),
            ),
            _ => ColumnArray::Texts(rows.iter().map(|r| r[i].as_str()).collect()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert_eq!(
            Ident::parse("fednode_messages").unwrap().qualified(),
            "\"fednode_messages\""
        );
        assert_eq!(Ident::parse("s.T1").unwrap().qualified(), "\"s\".\"T1\"");
        assert_eq!(Ident::parse("s.t").unwrap().display(), "s.t");
        for bad in ["", "a b", "1a", "a.b.c", "a;drop", "\"x\"", "a."] {
            assert!(Ident::parse(bad).is_err(), "{bad}");
        }
        let long = "x".repeat(63);
        let idx = Ident::parse(&long).unwrap().index_name("time_brin");
        assert_eq!(idx.len(), 63 + 2);
        assert!(idx.ends_with("_time_brin\""));
    }

    #[test]
    fn unnest_arrays() {
        let rows = [
            vec![
                Cell::Time(1_000_000),
                Cell::Json(Bytes::from_static(b"{}")),
                Cell::Null,
            ],
            vec![
                Cell::Time(2_000_000),
                Cell::Str("x".into()),
                Cell::Float(0.5),
            ],
        ];
        let refs: Vec<&Vec<Cell>> = rows.iter().collect();
        assert!(
            matches!(ColumnArray::build(CellKind::Time, ColType::Timestamp, 0, &refs),
            ColumnArray::Times(v) if v[1] == Some(pg_time(2_000_000)))
        );
        assert!(
            matches!(ColumnArray::build(CellKind::Json, ColType::Jsonb, 1, &refs),
            ColumnArray::Texts(v) if v == [Some("{}"), Some("x")])
        );
        assert!(
            matches!(ColumnArray::build(CellKind::Float, ColType::Float4, 2, &refs),
            ColumnArray::Floats(v) if v == [None, Some(0.5)])
        );
        assert_eq!(
            unnest_types(CellKind::Json, ColType::Jsonb),
            ("text[]", "::jsonb")
        );
        assert_eq!(unnest_types(CellKind::Uuid, ColType::Text), ("text[]", ""));
        assert_eq!(pg_time(1_700_000_000_000_000).timestamp(), 1_700_000_000);
    }

    #[test]
    fn type_compatibility() {
        assert!(ColType::Text.accepts(CellKind::Json));
        assert!(!ColType::Jsonb.accepts(CellKind::Text));
        assert_eq!(ColType::from_pg("character varying"), Some(ColType::Text));
        assert_eq!(ColType::from_pg("bigint"), None);
    }
}
