//! Client mode: connect to a peer's WebSocket URL and keep the connection
//! up with the connection state machine
//! `INIT → CONNECTING → CONNECTED → RECONNECTING → FAILED`.
//!
//! [`connect`] makes one attempt (with the `Authorization` header and a
//! timeout) and turns tungstenite's errors into a [`ConnectError`] a human
//! can read. [`run_reconnecting`] is the loop both WebSocket components use:
//! it is generic over what to do with an established stream (a closure
//! returning [`SessionEnd`]) and reports every state change through a
//! callback, so the caller can drive metrics, `/health` and a watch channel.

use fednode_kit::backoff::ReconnectConfig;
use fednode_kit::config::Credential;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use crate::frame::WsError;
use crate::identity::{Identity, PeerInfo};
use crate::state::ConnectionState;

/// An established client connection.
pub type ClientStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Why one connection attempt failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConnectError {
    /// The URL cannot be used.
    #[error("invalid URL {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// Nothing listens there.
    #[error("connection refused to {url}")]
    Refused { url: String },
    /// The server wants another credential.
    #[error("HTTP 401 Unauthorized from {url}")]
    Unauthorized { url: String },
    /// The server answered the upgrade with another HTTP status.
    #[error("HTTP {status} from {url}")]
    Http { url: String, status: u16 },
    /// The attempt took longer than allowed.
    #[error("timeout after {} connecting to {url}", humantime::format_duration(*after))]
    Timeout { url: String, after: Duration },
    /// Anything else (DNS, TLS, reset, protocol).
    #[error("cannot connect to {url}: {reason}")]
    Other { url: String, reason: String },
}

impl ConnectError {
    /// Whether the server refused the credential.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, ConnectError::Unauthorized { .. })
    }
}

/// One connection attempt to `url`, sending `authorization` (a full header
/// value such as `Bearer abc`) when given and this side's `identity`
/// headers. Returns the stream and what the peer announced in its answer.
pub async fn connect(
    url: &str,
    authorization: Option<&str>,
    identity: &Identity,
    config: WebSocketConfig,
    timeout: Duration,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<(ClientStream, PeerInfo), ConnectError> {
    let invalid = |reason: String| ConnectError::InvalidUrl {
        url: url.to_string(),
        reason,
    };
    let mut request = url
        .into_client_request()
        .map_err(|e| invalid(e.to_string()))?;
    if let Some(a) = authorization {
        let value = http::HeaderValue::from_str(a)
            .map_err(|_| invalid("the credential is not a valid header value".into()))?;
        request
            .headers_mut()
            .insert(http::header::AUTHORIZATION, value);
    }
    identity.apply(request.headers_mut());
    let connector = tls.map(|c| tokio_tungstenite::Connector::Rustls(c.clone()));
    let attempt =
        tokio_tungstenite::connect_async_tls_with_config(request, Some(config), true, connector);
    match tokio::time::timeout(timeout, attempt).await {
        Err(_) => Err(ConnectError::Timeout {
            url: url.to_string(),
            after: timeout,
        }),
        Ok(Ok((ws, response))) => Ok((ws, PeerInfo::from_headers(response.headers()))),
        Ok(Err(e)) => Err(describe(url, e)),
    }
}

fn describe(url: &str, e: WsError) -> ConnectError {
    let url = url.to_string();
    match e {
        WsError::Http(resp) if resp.status() == http::StatusCode::UNAUTHORIZED => {
            ConnectError::Unauthorized { url }
        }
        WsError::Http(resp) => ConnectError::Http {
            url,
            status: resp.status().as_u16(),
        },
        WsError::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            ConnectError::Refused { url }
        }
        WsError::Url(u) => ConnectError::InvalidUrl {
            url,
            reason: u.to_string(),
        },
        other => ConnectError::Other {
            url,
            reason: other.to_string(),
        },
    }
}

/// Everything the reconnect loop needs.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `ws://` or `wss://` URLs of the peer (`client.url`, or the hubs of
    /// `client.urls`, tried in turn: a failed attempt or a dropped link
    /// moves to the next).
    pub urls: Vec<String>,
    /// What this side announces on the handshake.
    pub identity: Identity,
    /// What to present (client-mode `auth` is the client's credential).
    pub credential: Credential,
    /// Backoff and retry limits.
    pub reconnect: ReconnectConfig,
    /// Limit for one attempt.
    pub connect_timeout: Duration,
    /// Frame limits and buffer sizes.
    pub ws_config: WebSocketConfig,
    /// For `wss://`: `client.tls`, its files read again before each
    /// attempt, so renewed certificates apply on the next connection
    /// (`None`: the system's roots, no client certificate).
    pub tls: Option<crate::tls::ClientTlsSource>,
}

impl ClientOptions {
    /// The options of a client-mode component: its `client` block, what it
    /// announces, the credential it presents, its frame limits and TLS.
    pub fn for_component(
        client: &crate::config::ClientConfig,
        identity: Identity,
        credential: Credential,
        ws_config: WebSocketConfig,
        tls: Option<crate::tls::ClientTlsSource>,
    ) -> ClientOptions {
        ClientOptions {
            urls: client.targets(),
            identity,
            credential,
            reconnect: client.reconnect.clone(),
            connect_timeout: client.connect_timeout,
            ws_config,
            tls,
        }
    }
}

/// One state change of the client.
#[derive(Debug, Clone, PartialEq)]
pub struct StateChange {
    pub state: ConnectionState,
    /// RECONNECTING: which retry this is (1-based) since the last success.
    pub retry: u32,
    /// RECONNECTING: the delay before that retry.
    pub retry_in: Option<Duration>,
    /// Why the last attempt or session ended (RECONNECTING, FAILED).
    pub error: Option<String>,
}

/// An established link, as the session sees it.
#[derive(Debug, Clone)]
pub struct Link {
    /// The URL that answered.
    pub url: String,
    /// What the peer announced.
    pub peer: PeerInfo,
}

/// What a session tells the loop when it returns.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEnd {
    /// The connection was lost: reconnect (per the policy).
    Reconnect(String),
    /// Stop for good (shutting down).
    Stop,
}

/// With `max_retries: 0` (retry forever) a rejected credential still ends
/// in FAILED after this many consecutive HTTP 401 answers: a 401 is fatal,
/// and the retries only ride out a server whose secret is being rotated.
pub const UNAUTHORIZED_RETRIES_WHEN_UNLIMITED: u32 = 10;

/// Connect, run `session` on each established stream, and reconnect with
/// exponential backoff and jitter until `cancel` fires or the retries are
/// exhausted. Returns the final state (FAILED, or the state at cancellation).
///
/// `max_retries` counts reconnection attempts since the last successful
/// connection (0 = forever). A session that lasted at least a second resets
/// the backoff delay; one that drops at once keeps growing it, so a server
/// that accepts and closes is not hammered.
pub async fn run_reconnecting<F, Fut>(
    opts: ClientOptions,
    cancel: CancellationToken,
    mut on_state: impl FnMut(&StateChange) + Send,
    mut session: F,
) -> ConnectionState
where
    F: FnMut(ClientStream, Link) -> Fut + Send,
    Fut: Future<Output = SessionEnd> + Send,
{
    let auth = opts.credential.header_value();
    let mut backoff = opts.reconnect.backoff();
    let max = opts.reconnect.max_retries;
    let mut retries = 0u32;
    let mut unauthorized = 0u32;
    let mut state = ConnectionState::Connecting;
    let mut turn = 0usize;
    let mut emit = |change: StateChange, state: &mut ConnectionState| {
        *state = change.state;
        on_state(&change);
    };
    emit(
        StateChange {
            state: ConnectionState::Connecting,
            retry: 0,
            retry_in: None,
            error: None,
        },
        &mut state,
    );
    loop {
        let url = &opts.urls[turn % opts.urls.len()];
        let attempt = tokio::select! {
            biased;
            _ = cancel.cancelled() => return state,
            r = async {
                let tls = match opts.tls.as_ref().map(|t| t.load()).transpose() {
                    Ok(tls) => tls,
                    Err(reason) => return Err(ConnectError::Other { url: url.clone(), reason }),
                };
                connect(url, auth.as_deref(), &opts.identity, opts.ws_config, opts.connect_timeout, tls.as_ref()).await
            } => r,
        };
        let (error, failed_attempt, fatal) = match attempt {
            Ok((ws, peer)) => {
                retries = 0;
                unauthorized = 0;
                emit(
                    StateChange {
                        state: ConnectionState::Connected,
                        retry: 0,
                        retry_in: None,
                        error: None,
                    },
                    &mut state,
                );
                let began = Instant::now();
                let link = Link {
                    url: url.clone(),
                    peer,
                };
                let end = session(ws, link).await;
                if began.elapsed() >= Duration::from_secs(1) {
                    backoff.reset();
                }
                match end {
                    SessionEnd::Stop => return state,
                    SessionEnd::Reconnect(_) if cancel.is_cancelled() => return state,
                    SessionEnd::Reconnect(reason) => (reason, false, false),
                }
            }
            Err(e) => {
                if e.is_unauthorized() {
                    unauthorized += 1;
                } else {
                    unauthorized = 0;
                }
                tracing::debug!(%url, error = %e, "connection attempt failed");
                let fatal = matches!(e, ConnectError::InvalidUrl { .. });
                (e.to_string(), true, fatal)
            }
        };
        let give_up = !opts.reconnect.enabled
            || fatal
            || (failed_attempt && max > 0 && retries >= max)
            || (max == 0 && unauthorized > UNAUTHORIZED_RETRIES_WHEN_UNLIMITED);
        if give_up {
            tracing::error!(%url, error = %error, retries, "giving up on the connection");
            emit(
                StateChange {
                    state: ConnectionState::Failed,
                    retry: retries,
                    retry_in: None,
                    error: Some(error),
                },
                &mut state,
            );
            return ConnectionState::Failed;
        }
        retries += 1;
        // The next hub of the list (the same one when there is one).
        turn = turn.wrapping_add(1);
        let delay = backoff.next_delay();
        let next = &opts.urls[turn % opts.urls.len()];
        tracing::info!(url = %next, error = %error, retry = retries, delay = ?delay, "reconnecting");
        emit(
            StateChange {
                state: ConnectionState::Reconnecting,
                retry: retries,
                retry_in: Some(delay),
                error: Some(error),
            },
            &mut state,
        );
        tokio::select! {
            _ = cancel.cancelled() => return state,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fednode_kit::backoff::ReconnectConfig;
    use futures::StreamExt;
    use tokio::net::TcpListener;

    /// A server that accepts WebSocket connections and closes each at once.
    async fn hub() -> (String, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                if let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await {
                    let _ = ws.close(None).await;
                    while ws.next().await.is_some() {}
                }
            }
        });
        (url, task)
    }

    #[tokio::test]
    async fn urls_are_tried_in_turn_and_a_dropped_link_moves_to_the_next() {
        let dead = fednode_testkit::ClosedPort::new();
        let dead_url = format!("ws://127.0.0.1:{}/", dead.port());
        let (a, _a) = hub().await;
        let (b, _b) = hub().await;
        let reconnect: ReconnectConfig = serde_json::from_value(serde_json::json!({
            "initial_interval": "1ms", "max_interval": "5ms"
        }))
        .unwrap();
        let opts = ClientOptions {
            urls: vec![dead_url, a.clone(), b.clone()],
            identity: Identity::default(),
            credential: Credential::None,
            reconnect,
            connect_timeout: Duration::from_secs(5),
            ws_config: WebSocketConfig::default(),
            tls: None,
        };
        let cancel = CancellationToken::new();
        let mut answered = Vec::new();
        let stop = cancel.clone();
        run_reconnecting(
            opts,
            cancel,
            |_| {},
            |ws, link: Link| {
                answered.push(link.url);
                drop(ws);
                if answered.len() == 4 {
                    stop.cancel();
                }
                async { SessionEnd::Reconnect("closed".into()) }
            },
        )
        .await;
        // The refused one is skipped; each dropped link moves on, round
        // the list.
        assert_eq!(answered, vec![a.clone(), b.clone(), a, b]);
    }
}
