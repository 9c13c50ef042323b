//! The admin API from the command line: `fednode request
//! http://hub:9090/components/ws_in status --connection edge-01` has a
//! component of a running node send a request over its WebSocket links —
//! to the peer named (a connection id or the node id it announced), or to
//! every peer — and prints what came back. This is how an operator steers
//! an edge that pushes to a hub, through the hub.

use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// What the admin server answered.
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The JSON body: a reply payload (`{status, result | error}`) for one
    /// peer, `{"replies": {connection: payload}}` for all, or an admin
    /// error (`{"error", "message"}`).
    pub body: Value,
}

impl Answer {
    /// 200, and every reply in it `ok`.
    pub fn is_ok(&self) -> bool {
        let ok = |p: &Value| p["status"] == "ok";
        self.status == 200
            && match self.body.get("replies").and_then(Value::as_object) {
                Some(all) => all.values().all(ok),
                None => ok(&self.body),
            }
    }
}

/// `POST <component_url>/request` with `{method, params, connection?}`.
/// `component_url` is `http(s)://host:port/components/<name>`;
/// `authorization` the header value for `http.auth`; `tls` the roots for
/// an `https://` admin server (the system's when `None`).
pub async fn request(
    component_url: &str,
    method: &str,
    params: Value,
    connection: Option<&str>,
    authorization: Option<&str>,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
) -> Result<Answer, String> {
    let path = component_url
        .parse::<http::Uri>()
        .map(|u| u.path().trim_end_matches('/').to_string())
        .map_err(|e| format!("invalid URL {component_url}: {e}"))?;
    if !path.starts_with("/components/") || path.len() <= "/components/".len() {
        return Err(format!(
            "{component_url}: expected the URL of a component on the admin server, \
             like http://hub:9090/components/ws_in"
        ));
    }
    let mut body = json!({"method": method, "params": params});
    if let Some(c) = connection {
        body["connection"] = json!(c);
    }
    let url = format!("{}/request", component_url.trim_end_matches('/'));
    exchange(
        http::Method::POST,
        &url,
        Some(body),
        authorization,
        tls,
        timeout,
    )
    .await
}

/// `GET <url>` on an admin server (`/components`, `/health`, …), with the
/// same credentials and TLS as [`request`].
pub async fn get(
    url: &str,
    authorization: Option<&str>,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
) -> Result<Answer, String> {
    exchange(http::Method::GET, url, None, authorization, tls, timeout).await
}

/// One HTTP/1.1 exchange with an admin server over `http://` or
/// `https://`; the body, when there is one, is JSON.
async fn exchange(
    method: http::Method,
    url: &str,
    body: Option<Value>,
    authorization: Option<&str>,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
) -> Result<Answer, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("invalid URL {url}: {e}"))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(format!("{url}: expected an http:// or https:// URL")),
    };
    let host = uri
        .host()
        .ok_or_else(|| format!("{url}: no host"))?
        .to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, format!("{host}:{port}"))
        .header(http::header::CONTENT_TYPE, "application/json");
    if let Some(a) = authorization {
        req = req.header(http::header::AUTHORIZATION, a);
    }
    let body = body.map_or_else(String::new, |b| b.to_string());
    let req = req
        .body(Full::new(bytes::Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        if https {
            let roots = match tls {
                Some(c) => c,
                None => fednode_ws::tls::ClientTls::default().config("--ca-file")?,
            };
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|e| format!("{host}: {e}"))?;
            let stream = tokio_rustls::TlsConnector::from(roots)
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS with {host}:{port}: {e}"))?;
            send(TokioIo::new(stream), req).await
        } else {
            send(TokioIo::new(tcp), req).await
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("no answer from {host}:{port} within {timeout:?}"))?
}

async fn send<I>(io: I, req: http::Request<Full<bytes::Bytes>>) -> Result<Answer, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(
        |_| json!({"error": "not_json", "message": String::from_utf8_lossy(&bytes)}),
    );
    Ok(Answer { status, body })
}
