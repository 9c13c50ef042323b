//! A message as the spill keeps it: what converting it again at the next
//! start needs to give the same row. The time and `msg_id` are the ones the
//! row got (so a row that was committed after all is recognised by
//! `msg_id` and not written twice), the node and region are its origin,
//! and the payload is the message's bytes, untouched.
//!
//! Encoding (one record of the kit's disk log): a version byte, the time
//! (i64 little-endian, microseconds), a flags byte (bit 0: a region
//! follows), then `subject`, `msg_id`, `node` and, when flagged, `region`,
//! each as a u32 little-endian length and UTF-8 bytes; the payload is the
//! rest of the record.

use std::sync::Arc;

use bytes::Bytes;

const VERSION: u8 = 1;
const HAS_REGION: u8 = 1;

/// One spillable message.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub subject: Arc<str>,
    /// The row's time, microseconds since the Unix epoch.
    pub time_us: i64,
    pub msg_id: Arc<str>,
    /// The origin node (the generic table's `node_id`).
    pub node: Arc<str>,
    pub region: Option<Arc<str>>,
    pub payload: Bytes,
}

impl Record {
    /// The bytes of one log record.
    pub fn encode(&self) -> Vec<u8> {
        let strings = [
            Some(&self.subject),
            Some(&self.msg_id),
            Some(&self.node),
            self.region.as_ref(),
        ];
        let len = 10 + strings.iter().flatten().map(|s| 4 + s.len()).sum::<usize>();
        let mut out = Vec::with_capacity(len + self.payload.len());
        out.push(VERSION);
        out.extend_from_slice(&self.time_us.to_le_bytes());
        out.push(if self.region.is_some() { HAS_REGION } else { 0 });
        for s in strings.into_iter().flatten() {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        out.extend_from_slice(&self.payload);
        out
    }

    /// A record read back; `bytes` is shared by the payload, not copied.
    pub fn decode(bytes: Bytes) -> Result<Record, String> {
        let mut r = Reader { bytes, at: 0 };
        let version = r.take(1)?[0];
        if version != VERSION {
            return Err(format!("unknown spill record version {version}"));
        }
        let time: [u8; 8] = r.take(8)?.as_ref().try_into().expect("8 bytes");
        let flags = r.take(1)?[0];
        let subject = r.text()?;
        let msg_id = r.text()?;
        let node = r.text()?;
        let region = if flags & HAS_REGION != 0 {
            Some(r.text()?)
        } else {
            None
        };
        Ok(Record {
            subject,
            time_us: i64::from_le_bytes(time),
            msg_id,
            node,
            region,
            payload: r.bytes.slice(r.at..),
        })
    }
}

struct Reader {
    bytes: Bytes,
    at: usize,
}

impl Reader {
    fn take(&mut self, n: usize) -> Result<Bytes, String> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len());
        let end = end.ok_or_else(|| "spill record cut short".to_string())?;
        let out = self.bytes.slice(self.at..end);
        self.at = end;
        Ok(out)
    }

    fn text(&mut self) -> Result<Arc<str>, String> {
        let len: [u8; 4] = self.take(4)?.as_ref().try_into().expect("4 bytes");
        let b = self.take(u32::from_le_bytes(len) as usize)?;
        std::str::from_utf8(&b)
            .map(Arc::from)
            .map_err(|_| "spill record holds text that is not UTF-8".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for region in [None, Some(Arc::from("eu-west"))] {
            let r = Record {
                subject: "data.x".into(),
                time_us: -1_700_000_000_000_123,
                msg_id: "m-1".into(),
                node: "edge-é".into(),
                region,
                payload: Bytes::from_static(br#"{"a":[1,2,"\u0041"]}"#),
            };
            let bytes = Bytes::from(r.encode());
            assert_eq!(Record::decode(bytes).unwrap(), r);
        }
        // An empty payload is kept as empty.
        let r = Record {
            subject: "".into(),
            time_us: 0,
            msg_id: "".into(),
            node: "n".into(),
            region: None,
            payload: Bytes::new(),
        };
        assert_eq!(Record::decode(Bytes::from(r.encode())).unwrap(), r);
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let r = Record {
            subject: "s".into(),
            time_us: 5,
            msg_id: "id".into(),
            node: "n".into(),
            region: Some("r".into()),
            payload: Bytes::from_static(b"{}"),
        };
        let bytes = r.encode();
        // Cut anywhere before the payload: an error.
        for cut in 0..bytes.len() - 2 {
            assert!(
                Record::decode(Bytes::copy_from_slice(&bytes[..cut])).is_err(),
                "{cut}"
            );
        }
        let mut other = bytes.clone();
        other[0] = 9;
        assert!(Record::decode(Bytes::from(other))
            .unwrap_err()
            .contains("version 9"));
        let mut huge = bytes;
        huge[10..14].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Record::decode(Bytes::from(huge)).is_err());
    }
}
