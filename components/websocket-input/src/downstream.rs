//! The way back: data on the `ws_downstream` subject goes to the peer that
//! sent that stream's data. In server mode a message's key
//! (`downstream_key`, default `$.user_id`) picks the connection: the one
//! bound to that user by its auth message, else the one that last sent
//! data with that key. In client mode everything goes to the one link.
//! Predictions and commands thus reach only the relay (or edge) that
//! streams that user.

use fednode_kit::bus::{Message, Subscription};
use fednode_kit::envelope::{now_millis, Encoding, Envelope, Kind};
use fednode_kit::log::LogThrottle;
use fednode_ws::config::Mode;
use fednode_ws::frame::{self, WsMessage};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::metrics::downstream as why;
use crate::shared::{Conn, Running, MAX_ROUTES};

impl Running {
    /// Whether data from peers must be read for its key.
    pub fn routes_downstream(&self) -> bool {
        self.settings.downstream_subject.is_some() && self.settings.mode == Mode::Server
    }

    /// Data from `conn` named stream `key`: route that key's downstream
    /// data to `conn` from now on.
    pub fn note_key(&self, conn: &Arc<Conn>, key: &str) {
        {
            let mut last = conn.last_key.lock();
            if last.as_deref() == Some(key) {
                return;
            }
            *last = Some(Arc::from(key));
        }
        let key: Arc<str> = Arc::from(key);
        let mut routes = self.routes.lock();
        let full = routes.len() >= MAX_ROUTES;
        let was = match routes.get_mut(&key) {
            Some(c) if Arc::ptr_eq(c, conn) => return,
            Some(c) => Some(std::mem::replace(c, conn.clone())),
            None if full => return,
            None => {
                routes.insert(key.clone(), conn.clone());
                None
            }
        };
        drop(routes);
        if let Some(was) = was {
            was.keys.lock().remove(&key);
        }
        conn.keys.lock().insert(key);
    }

    /// `conn` is closing: its keys route nowhere until another connection
    /// sends them.
    pub fn forget_keys(&self, conn: &Arc<Conn>) {
        let keys: Vec<Arc<str>> = conn.keys.lock().drain().collect();
        let mut routes = self.routes.lock();
        for k in keys {
            if routes.get(&k).is_some_and(|c| Arc::ptr_eq(c, conn)) {
                routes.remove(&k);
            }
        }
    }

    /// The key of a data payload, as text (a string member's text, else
    /// the member's JSON text).
    pub fn key_of(&self, payload: &[u8]) -> Option<String> {
        let text = std::str::from_utf8(payload).ok()?;
        let found = self.settings.downstream_key.find(text).ok()??;
        let key = match serde_json::from_str::<String>(&found) {
            Ok(s) => s,
            Err(_) => found.into_owned(),
        };
        (!key.is_empty()).then_some(key)
    }

    /// Send what arrives on `ws_downstream` to the peers, until shutdown.
    pub async fn downstream_loop(self: Arc<Self>, mut sub: Subscription) {
        let mut throttle = LogThrottle::default();
        loop {
            let msg = tokio::select! {
                m = sub.next() => m,
                _ = self.ctx.cancel.cancelled() => None,
            };
            let Some(msg) = msg else { break };
            if let Err(reason) = self.send_down(msg) {
                self.metrics.downstream_dropped(reason).inc();
                if let Some(held_back) = throttle.allow() {
                    tracing::warn!(component = %self.ctx.name, reason, held_back,
                        "downstream data reached no peer");
                }
            }
        }
    }

    fn send_down(&self, msg: Message) -> Result<(), &'static str> {
        let conn = match self.settings.mode {
            Mode::Client => self
                .conns
                .lock()
                .values()
                .next()
                .cloned()
                .ok_or(why::NOT_CONNECTED)?,
            Mode::Server => {
                let key = self.key_of(&msg.payload).ok_or(why::NO_KEY)?;
                self.routes
                    .lock()
                    .get(key.as_str())
                    .cloned()
                    .ok_or(why::NO_ROUTE)?
            }
        };
        let frame = downstream_frame(&conn, msg);
        if !conn.out.try_send(frame) {
            return Err(why::PEER_FULL);
        }
        conn.sent_down.fetch_add(1, Ordering::Relaxed);
        self.metrics.downstream_sent.inc();
        Ok(())
    }
}

/// The frame a peer gets: the bare payload for a peer that speaks plain
/// JSON, else a data envelope in the peer's encoding.
fn downstream_frame(conn: &Conn, msg: Message) -> WsMessage {
    if conn.plain.load(Ordering::Relaxed) {
        return WsMessage::Text(frame::text(msg.payload.to_vec()));
    }
    let meta = msg.meta;
    let env = Envelope {
        kind: Kind::Data,
        id: meta.id.unwrap_or_else(fednode_kit::envelope::new_id),
        timestamp: Some(meta.timestamp.unwrap_or_else(now_millis)),
        replay: false,
        origin: meta.origin,
        payload: msg.payload,
    };
    let encoding: Encoding = conn.encoding();
    frame::encode(&env, encoding)
}

/// A plain JSON text frame.
pub fn plain_frame(value: &serde_json::Value) -> WsMessage {
    WsMessage::Text(frame::text(
        serde_json::to_vec(value).expect("json serialises"),
    ))
}
