//! From bus messages to rows.
//!
//! Generic table: `time` = the envelope timestamp (`Fednode-Timestamp`) or
//! the arrival time, `subject`, `node_id` = the envelope's node or ours,
//! `key` from `key_path`, `payload` = the message bytes untouched (jsonb),
//! `msg_id` = the envelope id (or, without one, `<stream>:<seq>` in durable
//! mode, else a fresh UUID) — the dedup key.
//!
//! `eeg` profile: `type` `raw` → `raw_samples`, `features` →
//! `features`, `prediction` → `predictions`, `session_start`/`auth` and
//! `session_end` → `sessions`; anything else → the generic table. Typed rows
//! take their time from the payload's `timestamp` (ms; values below 1e11
//! are read as seconds) and their session from `session_id`, else from the
//! user's current session, else a new one is opened implicitly (one per
//! connection, as an EEG relay expects).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use async_nats::jetstream::message::Acker;
use bytes::Bytes;
use fednode_kit::Meta;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::config::Profile;
use crate::path::KeyPath;
use crate::record::Record;
use crate::schema::{FEATURES, MESSAGES, PREDICTIONS, RAW};
use crate::table::Cell;

/// A message as it reaches the writer.
pub struct Incoming {
    pub subject: Arc<str>,
    pub payload: Bytes,
    pub meta: Meta,
    /// Microseconds since the epoch to use when the envelope has no
    /// timestamp: arrival time, or the JetStream publish time (stable
    /// across redeliveries).
    pub fallback_time_us: i64,
    /// A stable id when the envelope has none (`<stream>:<seq>`).
    pub fallback_id: Option<String>,
    /// JetStream ack handle (durable mode).
    /// Boxed: an `Acker` is ~280 bytes and most rows have none.
    pub ack: Option<Box<Acker>>,
}

impl Incoming {
    /// A message read back from the spill: converted again, it gives the
    /// row it was (same time, `msg_id`, origin and payload).
    pub fn from_record(r: Record) -> Incoming {
        Incoming {
            subject: r.subject,
            payload: r.payload,
            meta: Meta {
                id: Some(r.msg_id),
                timestamp: None,
                node: None,
                replay: false,
                origin: Some(fednode_kit::Origin {
                    node: fednode_kit::NodeId::from_wire(&r.node),
                    region: r.region.as_deref().map(fednode_kit::NodeId::from_wire),
                }),
            },
            fallback_time_us: r.time_us,
            fallback_id: None,
            ack: None,
        }
    }
}

/// One write operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// A row of logical table `table` (cells in the table def's order).
    Row { table: usize, cells: Vec<Cell> },
    /// Open (or describe) a session.
    SessionStart {
        id: Uuid,
        user: String,
        time_us: i64,
        device_info: Option<Bytes>,
    },
    /// Close a session.
    SessionEnd {
        id: Uuid,
        user: String,
        time_us: i64,
    },
}

/// What one message turned into, held until committed.
pub struct Item {
    pub op: Op,
    /// An implicit session opened for this row, written before it.
    pub pre: Option<Box<Op>>,
    pub ack: Option<Box<Acker>>,
    pub arrived: Instant,
    /// The message as the spill would keep it (its subject also names the
    /// row in logs).
    pub record: Record,
    /// Its sequence number in the spill, once it is there.
    pub spill_seq: Option<u64>,
}

impl Item {
    /// Whether losing this item from memory loses the message: it is not
    /// in the spill, and no JetStream consumer will deliver it again.
    pub fn only_in_memory(&self) -> bool {
        self.spill_seq.is_none() && self.ack.is_none()
    }
}

/// Why a message was not stored.
#[derive(Debug, PartialEq, Eq)]
pub enum Reject {
    /// Not JSON, or JSON PostgreSQL's jsonb refuses (`\u0000`).
    Parse(String),
}

/// Turns messages into items; holds the eeg profile's session state.
pub struct Converter {
    profile: Profile,
    key_path: KeyPath,
    /// Top-level field the key came from (moved out of typed `data`).
    key_field: Option<String>,
    node: Arc<str>,
    region: Option<Arc<str>>,
    current: HashMap<String, Uuid>,
    known: HashSet<Uuid>,
}

/// Sessions remembered before the sets are reset (they only save upserts).
const SESSION_MEMORY: usize = 100_000;

pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Whether `json` holds the escape `\u0000`, which jsonb cannot store
/// (an escaped backslash followed by `u0000` is fine).
pub fn has_nul_escape(json: &[u8]) -> bool {
    let mut i = 0;
    while i < json.len() {
        if json[i] == b'\\' {
            if json.get(i + 1) == Some(&b'u') && json.get(i + 2..i + 6) == Some(b"0000") {
                return true;
            }
            i += 2; // skip the escaped character
        } else {
            i += 1;
        }
    }
    false
}

impl Converter {
    /// `node` and `region` are this node's: the origin of data that has
    /// none (it entered fednode here).
    pub fn new(
        profile: Profile,
        key_path: KeyPath,
        node: Arc<str>,
        region: Option<Arc<str>>,
    ) -> Self {
        let key_field = key_path.single_name().map(str::to_string);
        Converter {
            profile,
            key_path,
            key_field,
            node,
            region,
            current: HashMap::new(),
            known: HashSet::new(),
        }
    }

    /// The item for one message.
    pub fn convert(
        &mut self,
        m: Incoming,
        arrived: Instant,
    ) -> Result<Item, (Reject, Option<Box<Acker>>)> {
        if std::str::from_utf8(&m.payload).is_err() {
            return Err((Reject::Parse("payload is not UTF-8".into()), m.ack));
        }
        if has_nul_escape(&m.payload) {
            return Err((
                Reject::Parse("payload holds \\u0000, which PostgreSQL jsonb cannot store".into()),
                m.ack,
            ));
        }
        // The generic table needs only the key: validate and find it in one
        // pass; the eeg profile looks inside, so it builds the tree.
        let (key, value) = if self.profile == Profile::Eeg {
            match serde_json::from_slice::<Value>(&m.payload) {
                Ok(v) => (self.key_path.key(&v), Some(v)),
                Err(e) => return Err((Reject::Parse(format!("payload is not JSON: {e}")), m.ack)),
            }
        } else {
            match self.key_path.key_from_json(&m.payload) {
                Ok(k) => (k, None),
                Err(e) => return Err((Reject::Parse(format!("payload is not JSON: {e}")), m.ack)),
            }
        };
        let time_us = m
            .meta
            .timestamp
            .map(|ms| ms.saturating_mul(1000))
            .unwrap_or(m.fallback_time_us);
        let msg_id: Arc<str> = match (&m.meta.id, m.fallback_id) {
            (Some(id), _) => id.clone(),
            (None, Some(id)) => Arc::from(id),
            (None, None) => Arc::from(Uuid::new_v4().to_string()),
        };
        // Where the data first entered fednode (its origin), else the node
        // that published it, else this one.
        let (node, region) = match (m.meta.origin, m.meta.node) {
            (Some(o), _) => (self.text(o.node), o.region.map(|r| self.text(r))),
            (None, Some(n)) if *n != *self.node => (self.text(n), None),
            (None, _) => (self.node.clone(), self.region.clone()),
        };
        let record = Record {
            subject: m.subject,
            time_us,
            msg_id,
            node,
            region,
            payload: m.payload,
        };
        if let Some(value) = value {
            let kind = value.get("type").and_then(Value::as_str).unwrap_or("");
            if matches!(
                kind,
                "raw" | "features" | "prediction" | "session_start" | "auth" | "session_end"
            ) {
                let kind = kind.to_string();
                let id = Cell::Str(record.msg_id.clone());
                let (op, pre) = self.eeg(&kind, value, key, time_us, id);
                return Ok(Item {
                    op,
                    pre: pre.map(Box::new),
                    ack: m.ack,
                    arrived,
                    record,
                    spill_seq: None,
                });
            }
        }
        Ok(Item {
            op: Op::Row {
                table: MESSAGES,
                cells: vec![
                    Cell::Time(time_us),
                    Cell::Str(record.subject.clone()),
                    Cell::Str(record.node.clone()),
                    key.map(Cell::String).unwrap_or(Cell::Null),
                    Cell::Json(record.payload.clone()),
                    Cell::Str(record.msg_id.clone()),
                    record.region.clone().map(Cell::Str).unwrap_or(Cell::Null),
                ],
            },
            pre: None,
            ack: m.ack,
            arrived,
            record,
            spill_seq: None,
        })
    }

    /// A node id or region as a cell's text (this node's own is shared).
    fn text(&self, id: fednode_kit::NodeId) -> Arc<str> {
        match id {
            s if *s == *self.node => self.node.clone(),
            s => Arc::from(&*s),
        }
    }

    fn remember(&mut self, id: Uuid) -> bool {
        if self.known.len() >= SESSION_MEMORY {
            self.known.clear();
        }
        self.known.insert(id)
    }

    fn eeg(
        &mut self,
        kind: &str,
        value: Value,
        key: Option<String>,
        envelope_time_us: i64,
        msg_id: Cell,
    ) -> (Op, Option<Op>) {
        let user = key.unwrap_or_else(|| "unknown".to_string());
        let time_us = payload_time_us(&value).unwrap_or(envelope_time_us);
        let explicit = value
            .get("session_id")
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok());
        match kind {
            "session_start" | "auth" => {
                let id = explicit.unwrap_or_else(Uuid::new_v4);
                self.current.insert(user.clone(), id);
                self.remember(id);
                let device_info = value
                    .get("device_info")
                    .filter(|v| !v.is_null())
                    .map(|v| Bytes::from(v.to_string()));
                return (
                    Op::SessionStart {
                        id,
                        user,
                        time_us,
                        device_info,
                    },
                    None,
                );
            }
            "session_end" => {
                let id = explicit
                    .or_else(|| self.current.get(&user).copied())
                    .unwrap_or_else(Uuid::new_v4);
                if self.current.get(&user) == Some(&id) {
                    self.current.remove(&user);
                }
                return (Op::SessionEnd { id, user, time_us }, None);
            }
            _ => {}
        }
        // A data row: find or open its session.
        let (session, pre) = match explicit {
            Some(id) => {
                let new = self.remember(id);
                (id, new.then(|| session_start(id, &user, time_us)))
            }
            None => match self.current.get(&user) {
                Some(id) => (*id, None),
                None => {
                    let id = Uuid::new_v4();
                    self.current.insert(user.clone(), id);
                    self.remember(id);
                    (id, Some(session_start(id, &user, time_us)))
                }
            },
        };
        let Value::Object(mut obj) = value else {
            unreachable!("typed messages are objects: they have a type field")
        };
        for f in ["type", "session_id", "timestamp"] {
            obj.shift_remove(f);
        }
        if let Some(f) = &self.key_field {
            obj.shift_remove(f);
        }
        let op = match kind {
            "raw" => Op::Row {
                table: RAW,
                cells: vec![
                    Cell::Time(time_us),
                    Cell::Uuid(session),
                    Cell::String(user),
                    json_cell(&Value::Object(obj)),
                    msg_id,
                ],
            },
            "features" => {
                let workload = float(obj.get("workload"));
                let confidence = float(obj.get("confidence"));
                Op::Row {
                    table: FEATURES,
                    cells: vec![
                        Cell::Time(time_us),
                        Cell::Uuid(session),
                        Cell::String(user),
                        workload,
                        confidence,
                        json_cell(&Value::Object(obj)),
                        msg_id,
                    ],
                }
            }
            _ => {
                let text = |obj: &mut Map<String, Value>, names: &[&str]| {
                    names.iter().find_map(|n| match obj.shift_remove(*n) {
                        Some(Value::String(s)) => Some(s),
                        Some(Value::Null) | None => None,
                        Some(other) => Some(other.to_string()),
                    })
                };
                let prediction_type =
                    text(&mut obj, &["prediction_type"]).unwrap_or_else(|| "unknown".into());
                let classifier_name =
                    text(&mut obj, &["classifier_name"]).unwrap_or_else(|| "unknown".into());
                let version = text(&mut obj, &["classifier_version", "version"]);
                let top_confidence = obj.shift_remove("confidence");
                let data = match obj.shift_remove("data") {
                    Some(d) if obj.is_empty() => d,
                    Some(d) => {
                        // Keep whatever else the message carried beside `data`.
                        obj.insert("data".into(), d);
                        Value::Object(obj)
                    }
                    None => Value::Object(obj),
                };
                let confidence = match float(top_confidence.as_ref()) {
                    Cell::Null => float(data.get("confidence")),
                    c => c,
                };
                Op::Row {
                    table: PREDICTIONS,
                    cells: vec![
                        Cell::Time(time_us),
                        Cell::Uuid(session),
                        Cell::String(user),
                        Cell::String(prediction_type),
                        Cell::String(classifier_name),
                        json_cell(&data),
                        confidence,
                        version.map(Cell::String).unwrap_or(Cell::Null),
                        msg_id,
                    ],
                }
            }
        };
        (op, pre)
    }
}

fn session_start(id: Uuid, user: &str, time_us: i64) -> Op {
    Op::SessionStart {
        id,
        user: user.to_string(),
        time_us,
        device_info: None,
    }
}

fn json_cell(v: &Value) -> Cell {
    Cell::Json(Bytes::from(v.to_string()))
}

fn float(v: Option<&Value>) -> Cell {
    match v.and_then(Value::as_f64) {
        Some(f) if f.is_finite() => Cell::Float(f),
        _ => Cell::Null,
    }
}

/// The payload's own `timestamp` in microseconds: milliseconds since the
/// epoch, or seconds when the number is below 1e11 (before 1973 in ms).
fn payload_time_us(v: &Value) -> Option<i64> {
    let t = v.get("timestamp")?.as_f64()?;
    if !t.is_finite() || t <= 0.0 {
        return None;
    }
    let us = if t < 1e11 { t * 1e6 } else { t * 1e3 };
    (us < 9.0e15).then_some(us as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn incoming(payload: Value, id: Option<&str>, ts: Option<i64>) -> Incoming {
        Incoming {
            subject: "data.x".into(),
            payload: Bytes::from(payload.to_string()),
            meta: Meta {
                id: id.map(Into::into),
                timestamp: ts,
                node: None,
                replay: false,
                origin: None,
            },
            fallback_time_us: 5_000_000,
            fallback_id: None,
            ack: None,
        }
    }

    fn conv(profile: Profile) -> Converter {
        Converter::new(
            profile,
            KeyPath::parse("$.user_id").unwrap(),
            "me".into(),
            None,
        )
    }

    #[test]
    fn generic_rows() {
        let mut c = conv(Profile::Messages);
        let item = c
            .convert(
                incoming(
                    json!({"user_id": "jamie", "v": 1}),
                    Some("id-1"),
                    Some(1_700_000_000_000),
                ),
                Instant::now(),
            )
            .unwrap_or_else(|_| panic!("rejected"));
        let Op::Row { table, cells } = item.op else {
            panic!()
        };
        assert_eq!(table, MESSAGES);
        assert_eq!(cells[0], Cell::Time(1_700_000_000_000_000));
        assert_eq!(cells[1], Cell::Str("data.x".into()));
        assert_eq!(cells[2], Cell::Str("me".into()));
        assert_eq!(cells[3], Cell::String("jamie".into()));
        assert_eq!(cells[5], Cell::Str("id-1".into()));
        // No timestamp, no id, no key.
        let item = c
            .convert(incoming(json!([1, 2]), None, None), Instant::now())
            .unwrap_or_else(|_| panic!());
        let Op::Row { cells, .. } = item.op else {
            panic!()
        };
        assert_eq!(cells[0], Cell::Time(5_000_000));
        assert_eq!(cells[3], Cell::Null);
        assert!(matches!(&cells[5], Cell::Str(s) if Uuid::parse_str(s).is_ok()));
    }

    #[test]
    fn rejects_non_json_and_nul() {
        let mut c = conv(Profile::Messages);
        let mut m = incoming(json!({}), None, None);
        m.payload = Bytes::from_static(b"{nope");
        assert!(matches!(
            c.convert(m, Instant::now()),
            Err((Reject::Parse(_), None))
        ));
        let m = incoming(json!({"a": "x\u{0}y"}), None, None);
        assert!(c.convert(m, Instant::now()).is_err());
        assert!(!has_nul_escape(br#"{"a":"\\u0000"}"#));
        assert!(has_nul_escape(br#"{"a":"\\\u0000"}"#));
    }

    #[test]
    fn eeg_sessions_and_typed_rows() {
        let mut c = conv(Profile::Eeg);
        let now = Instant::now();
        // A raw sample without a session opens one implicitly.
        let item = c
            .convert(incoming(json!({"type": "raw", "user_id": "u1", "timestamp": 1_700_000_000_000i64, "channels": [1.0, 2.0]}), None, None), now)
            .unwrap_or_else(|_| panic!());
        let Some(pre) = item.pre else {
            panic!("no implicit session")
        };
        let Op::SessionStart { id, .. } = *pre else {
            panic!()
        };
        let Op::Row { table, cells } = item.op else {
            panic!()
        };
        assert_eq!(table, RAW);
        assert_eq!(cells[0], Cell::Time(1_700_000_000_000_000));
        assert_eq!(cells[1], Cell::Uuid(id));
        assert_eq!(
            cells[3],
            Cell::Json(Bytes::from(r#"{"channels":[1.0,2.0]}"#))
        );
        // The next one reuses it.
        let item = c
            .convert(incoming(json!({"type": "features", "user_id": "u1", "workload": 0.5, "band_powers": {}}), None, Some(1000)), now)
            .unwrap_or_else(|_| panic!());
        assert!(item.pre.is_none());
        let Op::Row { table, cells } = item.op else {
            panic!()
        };
        assert_eq!(
            (table, &cells[1], &cells[3]),
            (FEATURES, &Cell::Uuid(id), &Cell::Float(0.5))
        );
        assert_eq!(cells[0], Cell::Time(1_000_000));
        // A prediction keeps its data object.
        let item = c
            .convert(incoming(json!({"type": "prediction", "user_id": "u1", "prediction_type": "workload_azure_lstm",
                "classifier_name": "azure_ml_lstm_v2", "version": "v2.1.0", "data": {"workload_prediction": 0.72, "confidence": 0.94}}), None, None), now)
            .unwrap_or_else(|_| panic!());
        let Op::Row { table, cells } = item.op else {
            panic!()
        };
        assert_eq!(table, PREDICTIONS);
        assert_eq!(cells[3], Cell::String("workload_azure_lstm".into()));
        assert_eq!(
            cells[5],
            Cell::Json(Bytes::from(
                r#"{"workload_prediction":0.72,"confidence":0.94}"#
            ))
        );
        assert_eq!(cells[6], Cell::Float(0.94));
        assert_eq!(cells[7], Cell::String("v2.1.0".into()));
        // Other types go to the generic table.
        let item = c
            .convert(
                incoming(json!({"type": "alert", "user_id": "u1"}), None, None),
                now,
            )
            .unwrap_or_else(|_| panic!());
        assert!(matches!(
            item.op,
            Op::Row {
                table: MESSAGES,
                ..
            }
        ));
        // session_end closes the current session; the next raw opens another.
        let item = c
            .convert(
                incoming(json!({"type": "session_end", "user_id": "u1"}), None, None),
                now,
            )
            .unwrap_or_else(|_| panic!());
        assert!(matches!(item.op, Op::SessionEnd { id: ended, .. } if ended == id));
        let item = c
            .convert(
                incoming(
                    json!({"type": "raw", "user_id": "u1", "channels": []}),
                    None,
                    None,
                ),
                now,
            )
            .unwrap_or_else(|_| panic!());
        assert!(
            matches!(item.pre.as_deref(), Some(Op::SessionStart { id: other, .. }) if *other != id)
        );
    }

    #[test]
    fn payload_seconds_and_millis() {
        assert_eq!(
            payload_time_us(&json!({"timestamp": 1_700_000_000.5})),
            Some(1_700_000_000_500_000)
        );
        assert_eq!(
            payload_time_us(&json!({"timestamp": 1_700_000_000_000i64})),
            Some(1_700_000_000_000_000)
        );
        assert_eq!(payload_time_us(&json!({"timestamp": "x"})), None);
    }
}
