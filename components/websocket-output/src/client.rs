//! Client mode: push to a hub's `websocket_input` server through the
//! transport's reconnect loop (INIT → CONNECTING → CONNECTED → RECONNECTING →
//! FAILED). The one connection object outlives reconnects: its queue keeps
//! filling while the link is down, and with `at_least_once` delivery what
//! the hub has not acknowledged is sent again first on the next session.

use fednode_ws::client::{run_reconnecting, ClientOptions, Link, SessionEnd};
use std::sync::Arc;

use crate::conn::Conn;
use crate::session;
use crate::shared::Shared;

pub(crate) async fn run(sh: Arc<Shared>, conn: Arc<Conn>) {
    let client = sh.s.client.clone().expect("client mode has a client block");
    let opts = ClientOptions::for_component(
        &client,
        sh.identity.clone(),
        sh.s.credential.clone(),
        sh.ws_config,
        sh.tls.client.clone(),
    );
    let on_state = {
        let sh = sh.clone();
        move |change: &fednode_ws::client::StateChange| sh.on_state(change)
    };
    let end = run_reconnecting(opts, sh.cancel.clone(), on_state, |ws, link: Link| {
        let (sh, conn, url) = (sh.clone(), conn.clone(), link.url);
        async move {
            tracing::info!(component = %sh.name, %url, hub_node = link.peer.node.as_deref(), "connected to the hub");
            conn.begin_session(link.peer);
            if sh.acked() {
                let n = conn.resend_all();
                if n > 0 {
                    sh.metrics.resent.inc_by(n as u64);
                    tracing::info!(component = %sh.name, unacknowledged = n, "resending unacknowledged data");
                }
            }
            let end = session::run(&sh, &conn, ws).await;
            if sh.cancel.is_cancelled() {
                SessionEnd::Stop
            } else {
                tracing::warn!(component = %sh.name, %url, %end, "hub connection lost");
                SessionEnd::Reconnect(end.to_string())
            }
        }
    })
    .await;
    tracing::debug!(component = %sh.name, state = %end, "client loop ended");
}
