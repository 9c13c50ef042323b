//! A one-shot WebSocket peer for the command line:
//! `fednode request` ([`request`]), `fednode tail` ([`tail`]) and
//! `fednode send` ([`send`]). Each connects like any peer (text frames,
//! JSON envelopes), with an optional `Authorization` header value
//! ([`authorization`] builds one from `--token` / `--basic`).

use bytes::Bytes;
use fednode_kit::envelope::{Encoding, Envelope, Kind, ReplyPayload};
use fednode_kit::filter::Filter;
use futures::{FutureExt, SinkExt, StreamExt};
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::client::{self, ConnectError};
use crate::frame::{self, classify, close_code, Incoming, WsMessage};
use crate::identity::Identity;

/// How long `tail` and `send` may take to connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a CLI peer operation failed. The messages are meant for a terminal.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// Connecting failed: refused, HTTP 401, other status, timeout, bad URL.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// No reply in time.
    #[error("timeout after {}: no reply from {url}", humantime::format_duration(*after))]
    Timeout { url: String, after: Duration },
    /// The peer closed before the operation finished.
    #[error("{url} closed the connection{detail}")]
    Closed { url: String, detail: String },
    /// The connection failed mid-way.
    #[error("connection to {url} failed: {reason}")]
    Connection { url: String, reason: String },
    /// A line of `send` input is not JSON.
    #[error("input line {line} is not JSON: {reason}")]
    InvalidInput { line: u64, reason: String },
    /// Reading the input failed.
    #[error("cannot read the input: {0}")]
    Input(std::io::Error),
    /// Writing the output failed.
    #[error("cannot write the output: {0}")]
    Output(std::io::Error),
    /// The peer answered some of the data `send` sent with an error reply
    /// or a nack.
    #[error("{url}: the peer refused {refused} of {sent} messages; first: {first}")]
    Refused {
        url: String,
        refused: u64,
        sent: u64,
        first: String,
    },
}

/// The `Authorization` header value for `--token T` (bearer) or
/// `--basic USER:PASS`; `None` when neither is given.
pub fn authorization(token: Option<&str>, basic: Option<&str>) -> Option<String> {
    use base64::Engine;
    if let Some(t) = token {
        return Some(format!("Bearer {t}"));
    }
    basic.map(|up| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(up.as_bytes())
        )
    })
}

/// The CLI's TLS settings for `wss://` (`--ca-file`, `--cert-file`,
/// `--key-file`), for every connection this process makes.
static TLS: std::sync::OnceLock<std::sync::Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();

/// Trust `config`'s roots (and present its client certificate) on every
/// `wss://` connection of this process; without it, the system's roots.
/// Set once, before connecting.
pub fn use_tls(config: std::sync::Arc<rustls::ClientConfig>) {
    let _ = TLS.set(config);
}

/// One connection of the CLI peer (it announces no identity).
async fn open(
    url: &str,
    auth: Option<&str>,
    timeout: Duration,
) -> Result<client::ClientStream, ConnectError> {
    Ok(client::connect(
        url,
        auth,
        &Identity::default(),
        config(),
        timeout,
        TLS.get(),
    )
    .await?
    .0)
}

fn config() -> WebSocketConfig {
    WebSocketConfig::default()
}

fn closed(url: &str, frame: Option<(u16, String)>) -> PeerError {
    PeerError::Closed {
        url: url.to_string(),
        detail: match frame {
            Some((code, reason)) if reason.is_empty() => format!(" (code {code})"),
            Some((code, reason)) => format!(" (code {code}: {reason})"),
            None => String::new(),
        },
    }
}

fn broken(url: &str, e: impl std::fmt::Display) -> PeerError {
    PeerError::Connection {
        url: url.to_string(),
        reason: e.to_string(),
    }
}

fn frame_parts(
    f: Option<tokio_tungstenite::tungstenite::protocol::CloseFrame>,
) -> Option<(u16, String)> {
    f.map(|f| (u16::from(f.code), f.reason.as_str().to_string()))
}

/// Connect to `url`, send one request `method(params)`, and return the
/// reply payload with the same id (data frames meanwhile are ignored).
/// `timeout` bounds the whole exchange, connecting included.
pub async fn request(
    url: &str,
    method: &str,
    params: serde_json::Value,
    auth: Option<String>,
    timeout: Duration,
) -> Result<ReplyPayload, PeerError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut ws = open(url, auth.as_deref(), timeout).await?;
    let env = Envelope::request(method, &params);
    ws.send(frame::encode(&env, Encoding::Json))
        .await
        .map_err(|e| broken(url, e))?;
    loop {
        let next = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| PeerError::Timeout {
                url: url.to_string(),
                after: timeout,
            })?;
        match next {
            None => return Err(closed(url, None)),
            Some(Err(e)) => return Err(broken(url, e)),
            Some(Ok(msg)) => match classify(msg) {
                Incoming::Envelope(reply, _) if reply.kind == Kind::Reply && reply.id == env.id => {
                    let payload = crate::pending::parse_reply(&reply.payload);
                    let _ = tokio::time::timeout(
                        Duration::from_millis(500),
                        ws.close(Some(frame::close_frame(close_code::NORMAL, "done"))),
                    )
                    .await;
                    return Ok(payload);
                }
                Incoming::Close(f) => return Err(closed(url, frame_parts(f))),
                _ => {}
            },
        }
    }
}

/// Connect to `url` and write each data payload as one JSON line to `out`
/// (only those matching `filter`, when given) until the peer closes.
pub async fn tail(
    url: &str,
    auth: Option<String>,
    filter: Option<Filter>,
    out: impl std::io::Write,
) -> Result<(), PeerError> {
    let opts = TailOptions {
        filter,
        ..TailOptions::default()
    };
    tail_with(url, auth, opts, out).await
}

/// What `tail` does besides printing.
#[derive(Default)]
pub struct TailOptions {
    /// Print only the payloads that match.
    pub filter: Option<Filter>,
    /// Ask for `replay` with these params once connected (`{"count": 100}`,
    /// `{"after_id": …}`, `{"start_time": …}`): the replayed data is
    /// printed before, and among, the live data.
    pub replay: Option<serde_json::Value>,
    /// When an established connection ends (the node restarts, the network
    /// drops), connect again with backoff, forever, and ask for a replay
    /// after the last id printed so that nothing the peer still buffers is
    /// missed. A first connection that fails is still an error.
    pub reconnect: bool,
}

/// [`tail`] with replay and reconnects.
pub async fn tail_with(
    url: &str,
    auth: Option<String>,
    opts: TailOptions,
    mut out: impl std::io::Write,
) -> Result<(), PeerError> {
    let mut backoff = fednode_kit::backoff::Backoff::new(
        Duration::from_millis(200),
        Duration::from_secs(10),
        2.0,
    );
    let mut last_id: Option<String> = None;
    let mut connected_once = false;
    loop {
        let mut ws = match open(url, auth.as_deref(), CONNECT_TIMEOUT).await {
            Ok(ws) => ws,
            Err(e) if !connected_once => return Err(e.into()),
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(%url, error = %e, retry_in = %humantime::format_duration(delay), "tail: reconnecting");
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        if connected_once {
            tracing::info!(%url, "tail: connected again");
        }
        connected_once = true;
        backoff.reset();
        // Replay: what was asked for on the first connection; after a
        // reconnect, what came after the last message printed.
        let replay = match (&last_id, &opts.replay) {
            (Some(id), _) => Some(serde_json::json!({"after_id": id})),
            (None, r) => r.clone(),
        };
        let mut replay_id = None;
        if let Some(params) = replay {
            let env = Envelope::request("replay", &params);
            replay_id = Some(env.id.clone());
            ws.send(frame::encode(&env, Encoding::Json))
                .await
                .map_err(|e| broken(url, e))?;
        }
        let ended = loop {
            let Some(msg) = ws.next().await else {
                break "the connection ended".to_string();
            };
            let msg = match msg {
                Ok(m) => m,
                Err(e) if opts.reconnect => break e.to_string(),
                Err(e) => return Err(broken(url, e)),
            };
            match classify(msg) {
                Incoming::Envelope(env, _) if env.kind == Kind::Data => {
                    if !env.id.is_empty() {
                        last_id = Some(env.id.to_string());
                    }
                    if let Some(f) = &opts.filter {
                        if !f.matches_bytes(&env.payload) {
                            continue;
                        }
                    }
                    write_line(&mut out, &env.payload).map_err(PeerError::Output)?;
                }
                Incoming::Envelope(env, _)
                    if env.kind == Kind::Reply && replay_id.as_ref() == Some(&env.id) =>
                {
                    let reply = crate::pending::parse_reply(&env.payload);
                    if !reply.is_ok() {
                        tracing::warn!(%url, reply = %serde_json::to_string(&reply.to_value()).unwrap_or_default(), "tail: replay refused");
                    }
                }
                Incoming::Close(f) => {
                    break frame_parts(f).map_or_else(
                        || "closed".to_string(),
                        |(c, r)| format!("closed ({c}: {r})"),
                    )
                }
                _ => {}
            }
        };
        if !opts.reconnect {
            return Ok(());
        }
        let delay = backoff.next_delay();
        tracing::warn!(%url, reason = %ended, retry_in = %humantime::format_duration(delay), "tail: connection lost; reconnecting");
        tokio::time::sleep(delay).await;
    }
}

/// One payload as one line (a pretty-printed payload is compacted).
fn write_line(out: &mut impl std::io::Write, payload: &[u8]) -> std::io::Result<()> {
    if payload.contains(&b'\n') {
        let v: serde_json::Value = serde_json::from_slice(payload).unwrap_or_default();
        serde_json::to_writer(&mut *out, &v)?;
    } else {
        out.write_all(payload)?;
    }
    out.write_all(b"\n")?;
    out.flush()
}

/// Read JSON lines from `input` and send each as a data envelope (empty
/// lines are skipped; a line that is not JSON stops with
/// [`PeerError::InvalidInput`]). Frames are batched and flushed whenever the
/// input has nothing more ready. When the input ends, waits until every
/// frame is flushed, closes with 1000, and returns how many were sent.
///
/// Meanwhile the peer's frames are read, until its close: error replies
/// (a `websocket` output without `ws_upstream` answers data that way) and
/// nacks are refusals, and when there was any, `send` fails with
/// [`PeerError::Refused`] once the close handshake is done (what was not
/// refused has been sent all the same).
pub async fn send(
    url: &str,
    auth: Option<String>,
    mut input: impl AsyncBufRead + Unpin,
) -> Result<u64, PeerError> {
    let ws = open(url, auth.as_deref(), CONNECT_TIMEOUT).await?;
    let (mut sink, mut stream) = ws.split();
    let done = tokio_util::sync::CancellationToken::new();

    let close_sent = std::sync::atomic::AtomicBool::new(false);

    let writer = async {
        let r = write_lines(url, &mut sink, &mut input).await;
        let reason = if r.is_ok() { "done" } else { "input error" };
        let close = WsMessage::Close(Some(frame::close_frame(close_code::NORMAL, reason)));
        let sent = tokio::time::timeout(CLOSE_WAIT, sink.send(close)).await;
        if matches!(sent, Ok(Ok(()))) && r.is_ok() {
            close_sent.store(true, std::sync::atomic::Ordering::Release);
        }
        done.cancel();
        match (r, sent) {
            (Ok(_), Ok(Err(e))) => Err(broken(url, e)),
            (Ok(_), Err(_)) => Err(PeerError::Timeout {
                url: url.to_string(),
                after: CLOSE_WAIT,
            }),
            (r, _) => r,
        }
    };
    // Read what the peer sends (replies, acks, its close) so it never
    // blocks on us, until its close: once our close is out, the peer
    // answers what came before it and then closes too.
    let reader = async {
        let mut answers = Answers::default();
        let mut deadline = None;
        loop {
            let next = tokio::select! {
                m = stream.next() => m,
                _ = done.cancelled(), if deadline.is_none() => {
                    if !close_sent.load(std::sync::atomic::Ordering::Acquire) {
                        return answers;
                    }
                    // Our close is out: wait a while for the peer's.
                    deadline = Some(tokio::time::Instant::now() + CLOSE_WAIT);
                    continue;
                }
                _ = sleep_until_opt(deadline), if deadline.is_some() => return answers,
            };
            match next {
                None | Some(Err(_)) => return answers,
                Some(Ok(WsMessage::Close(f))) => {
                    answers.close = Some(frame_parts(f));
                    return answers;
                }
                Some(Ok(m)) => answers.note(m),
            }
        }
    };
    let (sent, answers) = futures::future::join(writer, reader).await;
    match (sent, answers) {
        (Ok(n), a) if a.refused > 0 => Err(PeerError::Refused {
            url: url.to_string(),
            refused: a.refused,
            sent: n,
            first: a.first.unwrap_or_default(),
        }),
        (Ok(n), _) => Ok(n),
        // The peer closed first (e.g. 1009 for an oversized line): say so.
        (
            Err(PeerError::Connection { .. }),
            Answers {
                close: Some(frame), ..
            },
        ) => Err(closed(url, frame)),
        (Err(e), _) => Err(e),
    }
}

/// How long `send` waits for its close frame to go out, and then for the
/// peer's.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// What the peer answered to `send`.
#[derive(Default)]
struct Answers {
    /// Error replies and nacks.
    refused: u64,
    /// The first of them, as `code: message` (`nack: reason`).
    first: Option<String>,
    /// The peer's close frame, when it sent one.
    close: Option<Option<(u16, String)>>,
}

impl Answers {
    fn note(&mut self, msg: WsMessage) {
        let Incoming::Envelope(env, _) = classify(msg) else {
            return;
        };
        let why = match env.kind {
            Kind::Reply => match crate::pending::parse_reply(&env.payload) {
                r if r.is_ok() => return,
                ReplyPayload { error: Some(e), .. } => format!("{}: {}", e.code, e.message),
                r => format!("status {:?}", r.status),
            },
            Kind::Nack => {
                let reason = serde_json::from_slice::<serde_json::Value>(&env.payload)
                    .ok()
                    .and_then(|v| v["reason"].as_str().map(str::to_string))
                    .unwrap_or_else(|| "no reason given".to_string());
                format!("nack: {reason}")
            }
            _ => return,
        };
        self.refused += 1;
        self.first.get_or_insert(why);
    }
}

async fn write_lines<S>(
    url: &str,
    sink: &mut S,
    input: &mut (impl AsyncBufRead + Unpin),
) -> Result<u64, PeerError>
where
    S: futures::Sink<WsMessage, Error = frame::WsError> + Unpin,
{
    let mut buf = Vec::with_capacity(1024);
    let mut sent = 0u64;
    let mut line_no = 0u64;
    let mut unflushed = 0usize;
    loop {
        buf.clear();
        // `read_until` keeps partial bytes in `buf` when dropped, so trying
        // it without waiting first is safe.
        let n = match input.read_until(b'\n', &mut buf).now_or_never() {
            Some(r) => r,
            None => {
                if unflushed > 0 {
                    sink.flush().await.map_err(|e| broken(url, e))?;
                    unflushed = 0;
                }
                input.read_until(b'\n', &mut buf).await
            }
        }
        .map_err(PeerError::Input)?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let line = buf.trim_ascii();
        if line.is_empty() {
            continue;
        }
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(line) {
            return Err(PeerError::InvalidInput {
                line: line_no,
                reason: e.to_string(),
            });
        }
        let env = Envelope::data(Bytes::copy_from_slice(line));
        sink.feed(frame::encode(&env, Encoding::Json))
            .await
            .map_err(|e| broken(url, e))?;
        sent += 1;
        unflushed += 1;
        if unflushed >= 256 {
            sink.flush().await.map_err(|e| broken(url, e))?;
            unflushed = 0;
        }
    }
    sink.flush().await.map_err(|e| broken(url, e))?;
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_values() {
        assert_eq!(authorization(Some("t"), None).as_deref(), Some("Bearer t"));
        assert_eq!(
            authorization(None, Some("u:p")).as_deref(),
            Some("Basic dTpw")
        );
        assert_eq!(authorization(None, None), None);
    }
}
