//! Server mode plumbing on axum 0.8, shared with the `websocket` output.
//!
//! - [`Gate`] decides *before* the upgrade: a missing or wrong credential is
//!   answered with HTTP 401, a connection over `max_connections` with HTTP
//!   503. An admitted connection holds an [`Admission`] (a semaphore permit)
//!   for its lifetime, so an abrupt disconnect frees its slot when the
//!   connection task ends, whatever the reason.
//! - [`upgrade`] completes the WebSocket handshake on an axum request and
//!   hands the caller a tokio-tungstenite [`ServerStream`] — the same
//!   `WebSocketStream` type client mode gets, so one connection loop
//!   ([`crate::frame::drive`]) serves both modes. The connection task is
//!   spawned on the caller's `TaskTracker`.
//! - [`bind`] turns "port in use" into a `StartError` naming the port;
//!   [`serve`] runs a router until cancellation (stop accepting; open
//!   WebSocket tasks are the caller's to close).
//! - [`PathTemplate`]: a server path whose segments may be `{name}`
//!   placeholders (`/subscribe/{user_id}`), checked at config time and
//!   matched against a request's path, for the `websocket` output and the
//!   `http_input`.

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::response::{IntoResponse, Response};
use axum::Router;
use fednode_kit::config::Credential;
use fednode_kit::StartError;
use http::{header, HeaderMap, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;

use crate::adaptive::{AdaptiveReader, MIN_READ};
use crate::config::parse_bind;
use crate::identity::{Identity, PeerInfo};

/// An accepted server-side connection.
pub type ServerStream = WebSocketStream<AdaptiveReader<TokioIo<Upgraded>>>;

/// Authentication and the connection limit, checked before the upgrade.
#[derive(Clone)]
pub struct Gate {
    credential: Arc<Credential>,
    slots: Arc<Semaphore>,
    max: usize,
}

/// A connection slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Admission {
    _permit: OwnedSemaphorePermit,
}

/// Why a connection was refused before the upgrade. The answer closes the
/// socket (`Connection: close`): a refused peer holds nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// No or wrong credential: HTTP 401 (with `WWW-Authenticate`).
    Unauthorized { basic: bool },
    /// `max_connections` reached: HTTP 503.
    Full { max: usize },
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        match self {
            Rejection::Unauthorized { basic } => {
                let challenge = if basic {
                    "Basic realm=\"fednode\""
                } else {
                    "Bearer realm=\"fednode\""
                };
                (
                    StatusCode::UNAUTHORIZED,
                    [
                        (header::WWW_AUTHENTICATE, challenge),
                        (header::CONNECTION, "close"),
                    ],
                    "unauthorized: missing or invalid credential\n",
                )
                    .into_response()
            }
            Rejection::Full { max } => (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1"), (header::CONNECTION, "close")],
                format!("connection limit reached (max_connections = {max})\n"),
            )
                .into_response(),
        }
    }
}

impl Gate {
    /// A gate expecting `credential` and admitting `max_connections` at once.
    pub fn new(credential: Credential, max_connections: usize) -> Self {
        let max = max_connections.max(1);
        Gate {
            credential: Arc::new(credential),
            slots: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// Check the `Authorization` header (401), then take a slot (503).
    pub fn admit(&self, headers: &HeaderMap) -> Result<Admission, Rejection> {
        let auth = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if !self.credential.accepts(auth) {
            return Err(Rejection::Unauthorized {
                basic: matches!(*self.credential, Credential::Basic { .. }),
            });
        }
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => Ok(Admission { _permit: permit }),
            Err(_) => Err(Rejection::Full { max: self.max }),
        }
    }

    /// Connections holding a slot now.
    pub fn active(&self) -> usize {
        self.max - self.slots.available_permits()
    }

    /// `max_connections`.
    pub fn max(&self) -> usize {
        self.max
    }
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

fn bad_request(status: StatusCode, why: &'static str) -> Response {
    (status, why).into_response()
}

/// Complete the WebSocket handshake (HTTP/1.1 `Upgrade: websocket`) and run
/// `on_upgrade` with the stream and what the peer announced in a task on
/// `tracker`; the 101 answer carries this side's `identity`. Answers
/// 400/426 when the request is not a valid upgrade.
pub fn upgrade<F, Fut>(
    mut req: Request,
    config: WebSocketConfig,
    tracker: &TaskTracker,
    identity: &Identity,
    on_upgrade: F,
) -> Response
where
    F: FnOnce(ServerStream, PeerInfo) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let headers = req.headers();
    if req.method() != http::Method::GET {
        return bad_request(
            StatusCode::METHOD_NOT_ALLOWED,
            "WebSocket upgrade needs GET\n",
        );
    }
    if !header_has_token(headers, header::CONNECTION, "upgrade")
        || !header_has_token(headers, header::UPGRADE, "websocket")
    {
        return (
            StatusCode::UPGRADE_REQUIRED,
            [(header::UPGRADE, "websocket")],
            "this endpoint speaks WebSocket\n",
        )
            .into_response();
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return bad_request(
            StatusCode::BAD_REQUEST,
            "Sec-WebSocket-Version must be 13\n",
        );
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return bad_request(StatusCode::BAD_REQUEST, "Sec-WebSocket-Key is missing\n");
    };
    let accept = derive_accept_key(key.as_bytes());
    let mut peer = PeerInfo::from_headers(headers);
    peer.certificate = req
        .extensions()
        .get::<crate::tls::PeerCertificate>()
        .map(|c| c.subject.clone());
    let Some(on) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return bad_request(
            StatusCode::UPGRADE_REQUIRED,
            "this connection cannot be upgraded\n",
        );
    };
    tracker.spawn(async move {
        match on.await {
            Ok(upgraded) => {
                // `read_buffer_size` bounds the adaptive reads; the codec
                // itself reads from them in chunks of at most 16 KiB.
                let socket = AdaptiveReader::new(TokioIo::new(upgraded), config.read_buffer_size);
                let codec = config.read_buffer_size(MIN_READ.min(config.read_buffer_size));
                let ws = WebSocketStream::from_raw_socket(socket, Role::Server, Some(codec)).await;
                on_upgrade(ws, peer).await;
            }
            Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
        }
    });
    let mut response = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(Body::empty())
        .expect("static response parts are valid");
    identity.apply(response.headers_mut());
    response
}

/// Bind `bind:port`; a port in use is a `StartError` naming it.
pub async fn bind(bind: &str, port: u16) -> Result<TcpListener, StartError> {
    let ip = parse_bind(bind)
        .ok_or_else(|| StartError::new(format!("invalid bind address {bind:?}")))?;
    let addr = SocketAddr::new(ip, port);
    TcpListener::bind(addr).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            StartError::new(format!("port {port} is already in use (binding {addr})"))
        } else {
            StartError::new(format!("cannot listen on {addr} (port {port}): {e}"))
        }
    })
}

/// Serve `router` on `listener` until `cancel` fires, then let open
/// requests finish (upgraded WebSocket tasks are the caller's to close).
///
/// Each connection gets the peer address as `ConnectInfo<SocketAddr>` and
/// TCP_NODELAY (small replies are not held back). A connection that has not
/// sent a whole request head within `handshake_timeout` — a slowloris
/// upgrade, a socket opened and left silent, an idle keep-alive — is closed,
/// so a peer cannot hold sockets without speaking. `name` labels the log
/// lines (`"websocket server"`, `"admin server"`…).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    handshake_timeout: Duration,
    tls: Option<Arc<crate::tls::Acceptor>>,
    cancel: CancellationToken,
    name: &'static str,
) {
    let connections = TaskTracker::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(handshake_timeout);
    loop {
        let (tcp, remote) = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: say so, give
                    // closing sockets a moment, and keep serving.
                    tracing::warn!(error = %e, "{name} cannot accept a connection");
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(ACCEPT_RETRY) => continue,
                    }
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let router = router.clone();
        let http = http.clone();
        let cancel = cancel.clone();
        let tls = tls.as_ref().map(|a| a.get());
        connections.spawn(async move {
            match tls {
                None => {
                    serve_one(http, TokioIo::new(tcp), remote, None, router, cancel, name).await
                }
                Some(acceptor) => {
                    // The TLS handshake counts against the handshake
                    // timeout too: a client that stalls in it is closed.
                    let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp))
                        .await
                    {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, %remote, "{name}: TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%remote, "{name}: TLS handshake timed out");
                            return;
                        }
                    };
                    let peer = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|leaf| crate::tls::PeerCertificate::from_der(leaf.as_ref()));
                    serve_one(
                        http,
                        TokioIo::new(stream),
                        remote,
                        peer,
                        router,
                        cancel,
                        name,
                    )
                    .await
                }
            }
        });
    }
    connections.close();
    connections.wait().await;
}

/// One connection: HTTP/1.1 with upgrades, until it ends or `cancel`
/// asks for a graceful end.
async fn serve_one<I>(
    http: hyper::server::conn::http1::Builder,
    io: I,
    remote: SocketAddr,
    peer: Option<crate::tls::PeerCertificate>,
    router: Router,
    cancel: CancellationToken,
    name: &'static str,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(remote));
        if let Some(p) = &peer {
            req.extensions_mut().insert(p.clone());
        }
        router.clone().call(req)
    });
    let conn = http.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = cancel.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, %remote, "{name} connection ended");
    }
}

/// The pause after a failed `accept` (e.g. no file descriptor left).
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// A server path whose segments are literal text or one `{name}`
/// placeholder each, such as `/subscribe/{user_id}`.
///
/// A request path matches when it has as many segments, its literal
/// segments are equal (byte for byte, as written in the URL), and every
/// placeholder segment is non-empty; the placeholders' values are
/// percent-decoded (a value that does not decode to UTF-8 text does not
/// match). A path without placeholders matches only itself, exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    raw: String,
    segments: Vec<PathSegment>,
    names: Vec<Arc<str>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PathSegment {
    Literal(String),
    /// The index of the placeholder in `names`.
    Placeholder(usize),
}

impl PathTemplate {
    /// Parse a path starting with `/`. An error says what is wrong in a
    /// sentence meant for a config error line: a segment that mixes text and
    /// braces (`/a{b}`), a placeholder without a name (`{}`) or with other
    /// characters than letters, digits, `_` and `-`, a name used twice.
    pub fn parse(path: &str) -> Result<Self, String> {
        let Some(rest) = path.strip_prefix('/') else {
            return Err(format!("must start with \"/\", got {path:?}"));
        };
        let mut segments = Vec::new();
        let mut names: Vec<Arc<str>> = Vec::new();
        for segment in rest.split('/') {
            let name = segment
                .strip_prefix('{')
                .and_then(|s| s.strip_suffix('}'))
                .filter(|n| !n.contains(['{', '}']));
            match name {
                None if segment.contains(['{', '}']) => {
                    return Err(format!(
                        "the segment {segment:?} of {path:?} mixes text and braces: a segment is \
                         either literal text or exactly one placeholder such as {{user_id}}"
                    ))
                }
                None => segments.push(PathSegment::Literal(segment.to_string())),
                Some("") => {
                    return Err(format!(
                        "{path:?} has a placeholder without a name: write one such as {{user_id}}"
                    ))
                }
                Some(n)
                    if !n
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
                {
                    return Err(format!(
                        "the placeholder {{{n}}} of {path:?} may hold only letters, digits, \"_\" \
                         and \"-\""
                    ))
                }
                Some(n) if names.iter().any(|m| &**m == n) => {
                    return Err(format!(
                        "the placeholder {{{n}}} appears twice in {path:?}; each name binds one segment"
                    ))
                }
                Some(n) => {
                    segments.push(PathSegment::Placeholder(names.len()));
                    names.push(n.into());
                }
            }
        }
        Ok(PathTemplate {
            raw: path.to_string(),
            segments,
            names,
        })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The placeholders' names, in the order they appear.
    pub fn names(&self) -> &[Arc<str>] {
        &self.names
    }

    /// Whether the path holds no placeholder.
    pub fn is_literal(&self) -> bool {
        self.names.is_empty()
    }

    /// When the request path `path` (as in the URL, without the query)
    /// matches: each placeholder's decoded value, in the order of
    /// [`names`](Self::names) (empty for a literal path).
    pub fn matches(&self, path: &str) -> Option<Vec<String>> {
        if self.is_literal() {
            return (path == self.raw).then(Vec::new);
        }
        let mut parts = path.strip_prefix('/')?.split('/');
        let mut values = vec![String::new(); self.names.len()];
        for segment in &self.segments {
            let part = parts.next()?;
            match segment {
                PathSegment::Literal(text) if text == part => {}
                PathSegment::Literal(_) => return None,
                PathSegment::Placeholder(i) => values[*i] = percent_decode(part)?,
            }
        }
        if parts.next().is_some() {
            return None;
        }
        Some(values)
    }
}

impl std::fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.raw)
    }
}

/// `%XX` escapes decoded; `None` for an empty segment, a broken escape, or
/// bytes that are not UTF-8 text.
fn percent_decode(segment: &str) -> Option<String> {
    if segment.is_empty() {
        return None;
    }
    if !segment.contains('%') {
        return Some(segment.to_string());
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::PathTemplate;

    #[test]
    fn placeholders_bind_whole_segments() {
        let t = PathTemplate::parse("/subscribe/{user_id}").unwrap();
        assert_eq!(t.names().len(), 1);
        assert_eq!(&*t.names()[0], "user_id");
        assert!(!t.is_literal());
        assert_eq!(t.matches("/subscribe/jamie"), Some(vec!["jamie".into()]));
        assert_eq!(
            t.matches("/subscribe/j%C3%A9r%C3%B4me%2Fx"),
            Some(vec!["jérôme/x".into()])
        );
        for no in [
            "/subscribe/",
            "/subscribe",
            "/subscribe/a/b",
            "/other/jamie",
            "/subscribe/%zz",
            "/subscribe/%ff",
            "subscribe/jamie",
        ] {
            assert_eq!(t.matches(no), None, "{no}");
        }
        let t = PathTemplate::parse("/u/{user}/s/{session}").unwrap();
        assert_eq!(t.matches("/u/a/s/b"), Some(vec!["a".into(), "b".into()]));
        assert_eq!(t.matches("/u/a/x/b"), None);
    }

    #[test]
    fn a_literal_path_matches_only_itself() {
        for path in ["/", "/ws", "/ws/"] {
            let t = PathTemplate::parse(path).unwrap();
            assert!(t.is_literal());
            assert_eq!(t.matches(path), Some(vec![]));
        }
        let t = PathTemplate::parse("/ws").unwrap();
        assert_eq!(t.matches("/ws/"), None);
        assert_eq!(t.matches("/"), None);
    }

    #[test]
    fn bad_segments_are_refused_with_a_reason() {
        for (path, why) in [
            ("/a{b}", "mixes text and braces"),
            ("/{a}b", "mixes text and braces"),
            ("/{{a}}", "mixes text and braces"),
            ("/x/}", "mixes text and braces"),
            ("/x/{}", "without a name"),
            ("/x/{a b}", "only letters, digits"),
            ("/{id}/{id}", "appears twice"),
            ("x/{id}", "must start with"),
        ] {
            let e = PathTemplate::parse(path).unwrap_err();
            assert!(e.contains(why), "{path}: {e}");
        }
    }
}
