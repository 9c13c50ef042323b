//! Relays that authenticate with their first message (`auth_message`):
//! `{"type":"auth","api_key","user_id","device_info"}`. A valid key binds
//! the connection to that user: its data gets `user_id` when it lacks it,
//! data naming another user is refused, `ws_downstream` data for the user
//! comes back on it, and a session starts (and ends with the connection)
//! on the `ws_sessions` subject. The auth message itself is never
//! published; a wrong one is answered `{"type":"error"}` and the
//! connection closed (1008).

use bytes::Bytes;
use fednode_kit::bus::{Message, Meta};
use fednode_kit::envelope::{new_id, now_millis};
use fednode_kit::json::{bind_member, scan, Bound, Members, Shape};
use fednode_ws::frame::{close_code, Outbound};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use crate::config::{AuthMessage, BOUND_MEMBER};
use crate::downstream::plain_frame;
use crate::metrics::reason;
use crate::shared::{Conn, RelaySession, Running};

/// `websocket_input_auth_messages_total{result}`.
mod result {
    pub const OK: &str = "ok";
    pub const INVALID_KEY: &str = "invalid_key";
    pub const INVALID_MESSAGE: &str = "invalid_message";
    pub const TIMEOUT: &str = "timeout";
    pub const REPEATED: &str = "repeated";
}

/// What happens to a data payload from a relay.
pub enum Checked {
    /// Publish this payload.
    Publish(Bytes),
    /// Not data (the auth message, or a refused one): already answered.
    Handled,
}

impl Running {
    /// A data payload from a connection under `auth_message`: the first one
    /// must authenticate; later ones are bound to the user.
    pub async fn check_relay_data(
        self: &Arc<Self>,
        conn: &Arc<Conn>,
        payload: Bytes,
        out: &Outbound,
    ) -> Checked {
        let auth = self
            .settings
            .auth_message
            .as_ref()
            .expect("called under auth_message");
        let Some(session) = conn.session.get() else {
            self.authenticate(auth, conn, &payload, out).await;
            return Checked::Handled;
        };
        let text = std::str::from_utf8(&payload).unwrap_or("");
        let mut members = Members::<1>::new();
        let is_auth = matches!(scan(text, &["type"], &mut members), Ok(Shape::Object))
            && members.values[0]
                .and_then(|s| s.string_text(text))
                .is_some_and(|t| t == "auth");
        if is_auth {
            // Never published: it holds a key.
            self.metrics.auth_message(result::REPEATED).inc();
            return Checked::Handled;
        }
        match bind_member(&payload, BOUND_MEMBER, &session.user_id) {
            Bound::Added(p) => Checked::Publish(p),
            Bound::Present(u) if *u == *session.user_id => Checked::Publish(payload),
            Bound::Present(other) => {
                self.metrics.dropped(reason::USER_MISMATCH).inc();
                out.try_send(plain_frame(&json!({
                    "type": "error",
                    "error": format!("this connection is bound to user {:?}; data for user {other:?} is refused", &*session.user_id),
                })));
                Checked::Handled
            }
            Bound::NotAnObject => Checked::Publish(payload),
        }
    }

    async fn authenticate(
        self: &Arc<Self>,
        auth: &AuthMessage,
        conn: &Arc<Conn>,
        payload: &[u8],
        out: &Outbound,
    ) {
        // A relay speaks plain JSON: answers and downstream data go to it
        // that way.
        conn.plain.store(true, Ordering::Relaxed);
        let (user_id, device_info) = match parse_auth(auth, payload) {
            Ok(v) => v,
            Err((result, message)) => {
                self.metrics.auth_message(result).inc();
                tracing::info!(component = %self.ctx.name, conn = %conn.id, remote = %conn.remote,
                    result, "relay refused: {message}");
                out.try_send(plain_frame(&json!({"type": "error", "error": message})));
                out.close(close_code::POLICY, result);
                return;
            }
        };
        let session = RelaySession {
            user_id: Arc::from(user_id.as_str()),
            session_id: new_id().to_string(),
            device_info,
            started_at: now_millis(),
        };
        let session = conn.session.get_or_init(|| session);
        self.metrics.auth_message(result::OK).inc();
        if self.routes_downstream() {
            self.note_key(conn, &session.user_id);
        }
        tracing::info!(component = %self.ctx.name, conn = %conn.id, user_id = %session.user_id,
            session_id = %session.session_id, "relay authenticated");
        out.try_send(plain_frame(&json!({
            "type": "auth_ok",
            "user_id": &*session.user_id,
            "session_id": session.session_id,
        })));
        self.publish_session(conn, "session_start").await;
    }

    /// A request or reply before the auth message: refused, and the
    /// connection closed.
    pub fn refuse_before_auth(&self, conn: &Conn, out: &Outbound) {
        self.metrics.auth_message(result::INVALID_MESSAGE).inc();
        tracing::info!(component = %self.ctx.name, conn = %conn.id, remote = %conn.remote,
            "relay refused: a frame before its auth message");
        out.try_send(plain_frame(&json!({
            "type": "error",
            "error": "the first message must be {\"type\":\"auth\",\"api_key\",\"user_id\",\"device_info\"}",
        })));
        out.close(close_code::POLICY, result::INVALID_MESSAGE);
    }

    /// A connection under `auth_message` that has sent nothing valid within
    /// the timeout is closed.
    /// `closed` fires when the connection ends.
    pub fn watch_auth_timeout(self: &Arc<Self>, conn: &Arc<Conn>, closed: CancellationToken) {
        let Some(auth) = &self.settings.auth_message else {
            return;
        };
        let (run, conn, timeout) = (self.clone(), conn.clone(), auth.timeout);
        self.ctx.tracker.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(timeout) => {}
                _ = closed.cancelled() => return,
            }
            if conn.session.get().is_none() && !conn.out.is_closing() {
                run.metrics.auth_message(result::TIMEOUT).inc();
                let message = format!(
                    "no auth message within {}",
                    humantime::format_duration(timeout)
                );
                conn.out
                    .try_send(plain_frame(&json!({"type": "error", "error": message})));
                conn.out.close(close_code::POLICY, "auth timeout");
            }
        });
    }

    /// Publish a session event (`session_start`, `session_end`) on the
    /// `ws_sessions` subject, if there is one.
    pub async fn publish_session(&self, conn: &Conn, event: &str) {
        let (Some(template), Some(session)) = (&self.settings.sessions_subject, conn.session.get())
        else {
            return;
        };
        let now = now_millis();
        let mut body = json!({
            "type": event,
            "session_id": session.session_id,
            "user_id": &*session.user_id,
            "device_info": session.device_info,
            "connection": conn.id,
            "remote": conn.remote,
            "start_time": session.started_at,
            "timestamp": now,
        });
        if event == "session_end" {
            body["end_time"] = json!(now);
            body["messages"] = json!(conn.received.load(Ordering::Relaxed));
        }
        let payload = Bytes::from(serde_json::to_vec(&body).expect("json serialises"));
        let subject = template.render_bytes(&payload, Some(self.ctx.bus.origin()));
        let msg = Message {
            subject: Arc::from(subject),
            payload,
            meta: Meta {
                id: Some(new_id()),
                timestamp: Some(now),
                ..Meta::default()
            },
            reply: None,
        };
        if let Err(e) = self.ctx.bus.publish_retrying(msg, &self.flush_abort).await {
            tracing::warn!(component = %self.ctx.name, error = %e, event, "session event not published");
        }
    }
}

/// The user and device of a valid auth message, else the result label and
/// the message for the relay.
fn parse_auth(
    auth: &AuthMessage,
    payload: &[u8],
) -> Result<(String, Value), (&'static str, String)> {
    let invalid = |m: &str| (result::INVALID_MESSAGE, m.to_string());
    let v: Value = serde_json::from_slice(payload).map_err(|_| {
        invalid(
            "the first message must be {\"type\":\"auth\",\"api_key\",\"user_id\",\"device_info\"}",
        )
    })?;
    if v.get("type").and_then(Value::as_str) != Some("auth") {
        return Err(invalid(
            "the first message must be {\"type\":\"auth\",\"api_key\",\"user_id\",\"device_info\"}",
        ));
    }
    let key = v
        .get("api_key")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("the auth message has no api_key"))?;
    if !auth
        .keys
        .iter()
        .any(|k| fednode_kit::config::constant_eq(k, key))
    {
        return Err((result::INVALID_KEY, "invalid api_key".to_string()));
    }
    let user = v
        .get("user_id")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty() && u.len() <= 128)
        .ok_or_else(|| invalid("the auth message needs a user_id (text, 1 to 128 bytes)"))?;
    let device = v.get("device_info").cloned().unwrap_or(Value::Null);
    Ok((user.to_string(), device))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> AuthMessage {
        AuthMessage {
            keys: vec!["k1".into(), "k2".into()],
            timeout: std::time::Duration::from_secs(1),
        }
    }

    #[test]
    fn a_valid_auth_message_names_the_user_and_device() {
        let (u, d) = parse_auth(
            &auth(),
            br#"{"type":"auth","api_key":"k2","user_id":"jamie","device_info":{"channel_count":8}}"#,
        )
        .unwrap();
        assert_eq!(u, "jamie");
        assert_eq!(d, json!({"channel_count": 8}));
    }

    #[test]
    fn wrong_keys_and_shapes_are_refused_with_a_reason() {
        let refused = |p: &str| parse_auth(&auth(), p.as_bytes()).unwrap_err();
        assert_eq!(
            refused(r#"{"type":"auth","api_key":"nope","user_id":"u"}"#).0,
            result::INVALID_KEY
        );
        assert_eq!(
            refused(r#"{"type":"raw","user_id":"u"}"#).0,
            result::INVALID_MESSAGE
        );
        assert_eq!(
            refused(r#"{"type":"auth","user_id":"u"}"#).0,
            result::INVALID_MESSAGE
        );
        assert_eq!(
            refused(r#"{"type":"auth","api_key":"k1"}"#).0,
            result::INVALID_MESSAGE
        );
        assert_eq!(
            refused(r#"{"type":"auth","api_key":"k1","user_id":""}"#).0,
            result::INVALID_MESSAGE
        );
        assert_eq!(refused("[1]").0, result::INVALID_MESSAGE);
    }
}
