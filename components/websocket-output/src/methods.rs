//! The request methods, answered for the connection that asked:
//! `backpressure`, `subscribe`, `unsubscribe`, `replay`, `status`,
//! `announce`. Anything else is `unknown_method`; bad params are
//! `invalid_params` (a filter whose path or operator is wrong:
//! `invalid_filter`). Replies go back in the request's encoding.

// An error reply is built once per bad request; its size does not matter.
#![allow(clippy::result_large_err)]

use fednode_kit::filter::{Filter, FilterError, FilterSpec, Limits};
use fednode_kit::{Encoding, Envelope, ErrorCode, ReplyPayload, RequestPayload};
use fednode_ws::frame::Outbound;
use serde_json::{json, Map, Value};
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::buffer::ReplayParams;
use crate::conn::Conn;
use crate::metrics::error_type;
use crate::shared::Cmd;
use crate::shared::Shared;

/// The methods, for error messages.
pub const METHODS: [&str; 6] = [
    "backpressure",
    "subscribe",
    "unsubscribe",
    "replay",
    "status",
    "announce",
];

pub(crate) async fn handle(
    sh: &Arc<Shared>,
    conn: &Arc<Conn>,
    env: Envelope,
    encoding: Encoding,
    out: &Outbound,
) {
    let reply = match answer(sh, conn, &env, encoding).await {
        Some(r) => r,
        // `replay`: the fan-out task sends the reply, ahead of the data.
        None => return,
    };
    out.send_envelope(&Envelope::reply(&env.id, &reply), encoding)
        .await;
}

async fn answer(
    sh: &Arc<Shared>,
    conn: &Arc<Conn>,
    env: &Envelope,
    encoding: Encoding,
) -> Option<ReplyPayload> {
    let req: RequestPayload = match serde_json::from_slice(&env.payload) {
        Ok(r) => r,
        Err(e) => {
            sh.metrics.error(error_type::INVALID_REQUEST).inc();
            return Some(invalid(format!(
                "a request's payload is {{method, params}}: {e}"
            )));
        }
    };
    sh.metrics.request_received(&req.method);
    if !sh.s.bidirectional.enabled {
        return Some(ReplyPayload::error(
            ErrorCode::Unavailable,
            "requests are disabled on this node (bidirectional.enabled is false)",
        ));
    }
    let params = match req.params {
        Value::Object(m) => m,
        Value::Null => Map::new(),
        other => return Some(invalid(format!("params must be an object, got {other}"))),
    };
    Some(match req.method.as_str() {
        "backpressure" => backpressure(sh, conn, &params),
        "subscribe" => subscribe(sh, conn, params).await,
        "unsubscribe" => unsubscribe(conn, &params),
        "status" => ReplyPayload::ok(sh.status(Some(conn))),
        "announce" => announce(conn, &params),
        "replay" => return replay(sh, conn, env, encoding, &params),
        other => ReplyPayload::error(
            ErrorCode::UnknownMethod,
            format!(
                "unknown method {other:?}; this node answers {}",
                METHODS.join(", ")
            ),
        ),
    })
}

fn invalid(message: impl Into<String>) -> ReplyPayload {
    ReplyPayload::error(ErrorCode::InvalidParams, message)
}

/// Params may only hold these keys.
fn only(params: &Map<String, Value>, allowed: &[&str]) -> Result<(), ReplyPayload> {
    match params.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(invalid(format!(
            "unknown param {k:?}; expected {}",
            allowed
                .iter()
                .map(|a| format!("{a:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        None => Ok(()),
    }
}

/// A rate in msg/s: a number >= 0 or null; 0 and null mean none.
fn rate(v: Option<&Value>, name: &str) -> Result<Option<f64>, ReplyPayload> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(r) if r.is_finite() && r >= 0.0 => Ok((r > 0.0).then_some(r)),
            _ => Err(invalid(format!("{name} must be a number >= 0, got {n}"))),
        },
        Some(other) => Err(invalid(format!(
            "{name} must be a number (msg/s) or null, got {other}"
        ))),
    }
}

fn backpressure(sh: &Shared, conn: &Conn, params: &Map<String, Value>) -> ReplyPayload {
    if let Err(r) = only(params, &["rate_limit", "unit"]) {
        return r;
    }
    if !params.contains_key("rate_limit") {
        return invalid("rate_limit is required (a number in msg/sec; 0 or null lifts the limit)");
    }
    match params.get("unit") {
        None | Some(Value::Null) => {}
        Some(Value::String(u)) if matches!(u.as_str(), "msg/sec" | "msg/s") => {}
        Some(other) => return invalid(format!("unit must be \"msg/sec\", got {other}")),
    }
    if !sh.s.backpressure.enabled {
        return ReplyPayload::error(
            ErrorCode::Unavailable,
            "rate changes are disabled on this node (backpressure.enabled is false)",
        );
    }
    let limit = match rate(params.get("rate_limit"), "rate_limit") {
        Ok(l) => l,
        Err(r) => return r,
    };
    let current = conn.meter.current();
    let adjusted = conn.set_rate_limit(limit);
    let show = |r: Option<f64>| r.map_or_else(|| "none".to_string(), |r| r.to_string());
    tracing::info!(conn = %conn.id, rate_limit = %show(limit), in_force = %show(adjusted), "rate limit changed by peer");
    ReplyPayload::ok(json!({"current_rate": current, "adjusted_to": adjusted}))
}

/// `subscribe`: refused beyond `max_subscriptions` or `max_filter_bytes`;
/// the filter compiles on the blocking pool, off the connection's I/O
/// thread (a large regex takes a while to build).
async fn subscribe(sh: &Shared, conn: &Conn, params: Map<String, Value>) -> ReplyPayload {
    let max = sh.s.max_subscriptions;
    if conn.subscription_count() >= max {
        return too_many_subscriptions(max);
    }
    let params = Value::Object(params);
    let limits = Limits {
        max_filter_bytes: sh.s.max_filter_bytes,
        ..Limits::default()
    };
    let compiled = tokio::task::spawn_blocking(move || {
        let spec = FilterSpec::from_value(&params).map_err(|e| invalid(FilterError::join(&e)))?;
        Filter::compile_with_limits(&spec, &limits)
            .map_err(|e| ReplyPayload::error(ErrorCode::InvalidFilter, FilterError::join(&e)))
    })
    .await;
    let filter = match compiled {
        Ok(Ok(filter)) => filter,
        Ok(Err(reply)) => return reply,
        Err(e) => {
            return ReplyPayload::error(
                ErrorCode::Unavailable,
                format!("the filter could not be compiled: {e}"),
            )
        }
    };
    match conn.subscribe(filter, max) {
        Some(id) => ReplyPayload::ok(json!({"subscription_id": id, "filter_applied": true})),
        None => too_many_subscriptions(max),
    }
}

fn too_many_subscriptions(max: usize) -> ReplyPayload {
    invalid(format!(
        "this connection holds {max} subscriptions (max_subscriptions); unsubscribe one first"
    ))
}

fn unsubscribe(conn: &Conn, params: &Map<String, Value>) -> ReplyPayload {
    if let Err(r) = only(params, &["subscription_id"]) {
        return r;
    }
    match params.get("subscription_id") {
        Some(Value::String(id)) => {
            if conn.unsubscribe(id) {
                ReplyPayload::ok(json!({"removed": true}))
            } else {
                invalid(format!("no subscription {id:?} on this connection"))
            }
        }
        None => invalid("subscription_id is required"),
        Some(other) => invalid(format!("subscription_id must be a string, got {other}")),
    }
}

fn announce(conn: &Conn, params: &Map<String, Value>) -> ReplyPayload {
    if let Err(r) = only(params, &["capabilities"]) {
        return r;
    }
    let caps = match params.get("capabilities") {
        Some(Value::Object(c)) => c,
        None => return invalid("capabilities is required"),
        Some(other) => return invalid(format!("capabilities must be an object, got {other}")),
    };
    match caps.get("region") {
        None | Some(Value::Null) | Some(Value::String(_)) => {}
        Some(other) => {
            return invalid(format!("capabilities.region must be a string, got {other}"))
        }
    }
    let types = match caps.get("message_types") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => {
            let mut set = HashSet::new();
            for t in a {
                match t {
                    Value::String(s) => {
                        set.insert(s.clone());
                    }
                    other => {
                        return invalid(format!(
                            "capabilities.message_types must be a list of strings, found {other}"
                        ))
                    }
                }
            }
            Some(set)
        }
        Some(other) => {
            return invalid(format!(
                "capabilities.message_types must be a list of strings, got {other}"
            ))
        }
    };
    let max_rate = match rate(caps.get("max_rate"), "capabilities.max_rate") {
        Ok(r) => r,
        Err(r) => return r,
    };
    let caps = Value::Object(caps.clone());
    tracing::info!(conn = %conn.id, capabilities = %caps, "peer announced capabilities");
    conn.announce(caps, types, max_rate);
    ReplyPayload::ok(json!({"registered": true, "routing_updated": true}))
}

fn replay_params(params: &Map<String, Value>) -> Result<ReplayParams, ReplyPayload> {
    only(params, &["count", "start_time", "after_id"])?;
    let mut p = ReplayParams::default();
    match params.get("count") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) if n.as_u64().is_some() => p.count = n.as_u64().map(|c| c as usize),
        Some(other) => {
            return Err(invalid(format!(
                "count must be an integer >= 0, got {other}"
            )))
        }
    }
    match params.get("start_time") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) if n.as_f64().is_some_and(f64::is_finite) => {
            p.start_time = n.as_i64().or_else(|| n.as_f64().map(|f| f.ceil() as i64));
        }
        Some(other) => {
            return Err(invalid(format!(
                "start_time must be a timestamp in milliseconds since the epoch, got {other}"
            )))
        }
    }
    match params.get("after_id") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => p.after_id = Some(s.clone()),
        Some(other) => return Err(invalid(format!("after_id must be a string, got {other}"))),
    }
    Ok(p)
}

/// Validate here; the fan-out task cuts the buffer and sends the reply
/// (returns `None` when it took the request).
fn replay(
    sh: &Shared,
    conn: &Arc<Conn>,
    env: &Envelope,
    encoding: Encoding,
    params: &Map<String, Value>,
) -> Option<ReplyPayload> {
    let params = match replay_params(params) {
        Ok(p) => p,
        Err(r) => return Some(r),
    };
    let max = sh.s.bidirectional.max_concurrent_requests;
    if conn.replays_pending.fetch_add(1, Ordering::AcqRel) >= max {
        conn.replays_pending.fetch_sub(1, Ordering::AcqRel);
        return Some(ReplyPayload::error(
            ErrorCode::TooManyRequests,
            format!("{max} replays already pending on this connection (max_concurrent_requests)"),
        ));
    }
    let cmd = Cmd::Replay {
        conn: conn.clone(),
        request_id: env.id.clone(),
        encoding,
        params,
    };
    match sh.cmds.try_send(cmd) {
        Ok(()) => None,
        Err(_) => {
            conn.replays_pending.fetch_sub(1, Ordering::AcqRel);
            Some(ReplyPayload::error(
                ErrorCode::Unavailable,
                "the output is too busy or stopping; try again",
            ))
        }
    }
}
