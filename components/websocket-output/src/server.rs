//! Server mode: peers connect to `server.path`. Authentication and
//! `max_connections` are checked before the upgrade (401 / 503) by the
//! transport's `Gate` (`fednode_ws::server`), which also performs the upgrade; each admitted
//! peer gets its own [`Conn`](crate::conn::Conn) and session.

use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use fednode_ws::identity::PeerInfo;
use fednode_ws::server::{upgrade, Rejection, ServerStream};
use std::net::SocketAddr;
use std::sync::Arc;

use crate::metrics::error_type;
use crate::session;
use crate::shared::Shared;

pub(crate) fn router(sh: Arc<Shared>) -> Router {
    let path =
        sh.s.server
            .as_ref()
            .map_or_else(|| "/".to_string(), |s| s.path.clone());
    Router::new().route(&path, any(accept)).with_state(sh)
}

async fn accept(
    State(sh): State<Arc<Shared>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    if sh.cancel.is_cancelled() {
        return (http::StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    let gate = sh.gate.as_ref().expect("server mode has a gate");
    let admission = match gate.admit(req.headers()) {
        Ok(a) => a,
        Err(rejected) => {
            let kind = match rejected {
                Rejection::Unauthorized { .. } => error_type::UNAUTHORIZED,
                Rejection::Full { .. } => error_type::CONNECTION_LIMIT,
            };
            sh.metrics.error(kind).inc();
            tracing::info!(component = %sh.name, %remote, kind, "connection refused");
            return rejected.into_response();
        }
    };
    let config = sh.ws_config;
    let tracker = sh.tracker.clone();
    let identity = sh.identity.clone();
    upgrade(
        req,
        config,
        &tracker,
        &identity,
        move |ws, peer| async move {
            let _slot = admission;
            serve_peer(sh, ws, remote, peer).await;
        },
    )
}

async fn serve_peer(sh: Arc<Shared>, ws: ServerStream, remote: SocketAddr, peer: PeerInfo) {
    let conn = sh.open_conn(Some(remote));
    tracing::info!(component = %sh.name, conn = %conn.id, %remote, peer_node = peer.node.as_deref(), "peer connected");
    conn.begin_session(peer);
    let end = session::run(&sh, &conn, ws).await;
    sh.close_conn(&conn);
    tracing::info!(component = %sh.name, conn = %conn.id, %remote, %end, "peer disconnected");
}
