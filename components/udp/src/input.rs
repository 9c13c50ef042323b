//! The socket loop: receive, check the datagram is JSON, publish.

use async_trait::async_trait;
use bytes::Bytes;
use fednode_kit::component::Listen;
use fednode_kit::config::PortsConfig;
use fednode_kit::envelope::{new_id, now_millis};
use fednode_kit::log::LogThrottle;
use fednode_kit::subject::Template;
use fednode_kit::{Component, Context, Health, Message, Meta, StartError};
use parking_lot::Mutex;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::UdpSocket;

use crate::config::Config;
use crate::metrics::Metrics;

/// A running (or not yet started) `udp` input.
pub struct UdpInput {
    cfg: Config,
    local: Mutex<Option<SocketAddr>>,
    received: AtomicU64,
    errors: AtomicU64,
}

impl UdpInput {
    pub fn new(cfg: Config) -> Self {
        UdpInput {
            cfg,
            local: Mutex::new(None),
            received: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
    }

    /// The bound address once started (tests bind port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        *self.local.lock()
    }
}

#[async_trait]
impl Component for UdpInput {
    fn ports(&self) -> &PortsConfig {
        &self.cfg.ports
    }

    fn listens(&self) -> Vec<Listen> {
        self.cfg.listen().into_iter().collect()
    }

    async fn start(self: Arc<Self>, ctx: Context) -> Result<(), StartError> {
        let addr = format!("{}:{}", self.cfg.bind, self.cfg.port);
        let socket = UdpSocket::bind(&addr)
            .await
            .map_err(|e| StartError::new(format!("cannot bind UDP {addr}: {e}")))?;
        *self.local.lock() = socket.local_addr().ok();
        if let Ok(addr) = socket.local_addr() {
            tracing::info!(component = %ctx.name, %addr, "udp input listening");
        }
        let subject = self.cfg.ports.output("out").expect("validated: out port");
        let me = self.clone();
        ctx.tracker
            .clone()
            .spawn(async move { me.receive(socket, subject, ctx).await });
        Ok(())
    }

    fn health(&self) -> Health {
        Health::ok(
            "running",
            json!({
                "addr": self.local_addr().map(|a| a.to_string()),
                "datagrams_received": self.received.load(Ordering::Relaxed),
                "errors": self.errors.load(Ordering::Relaxed),
            }),
        )
    }
}

impl UdpInput {
    async fn receive(self: Arc<Self>, socket: UdpSocket, subject: Template, ctx: Context) {
        let Metrics {
            received,
            published,
            errors,
        } = Metrics::new(&ctx);
        let mut buf = vec![0u8; 65_536];
        let mut bad_datagrams = LogThrottle::default();
        loop {
            let (n, peer) = tokio::select! {
                _ = ctx.cancel.cancelled() => break,
                r = socket.recv_from(&mut buf) => match r {
                    Ok(x) => x,
                    Err(e) => {
                        errors.with(&["socket_error"]).inc();
                        tracing::warn!(error = %e, "udp receive failed");
                        continue;
                    }
                },
            };
            received.inc();
            self.received.fetch_add(1, Ordering::Relaxed);
            let data = &buf[..n];
            let value: serde_json::Value = match serde_json::from_slice(data) {
                Ok(v) => v,
                Err(e) => {
                    errors.with(&["parse_error"]).inc();
                    self.errors.fetch_add(1, Ordering::Relaxed);
                    if let Some(suppressed) = bad_datagrams.allow() {
                        tracing::warn!(%peer, error = %e, suppressed, "dropping a datagram that is not JSON");
                    }
                    continue;
                }
            };
            let subject = subject.render(&value, Some(ctx.bus.origin()));
            let msg = Message::new(subject, Bytes::copy_from_slice(data)).with_meta(Meta {
                id: Some(new_id()),
                timestamp: Some(now_millis()),
                node: None,
                replay: false,
                origin: None,
            });
            if ctx.bus.publish_retrying(msg, &ctx.cancel).await.is_ok() {
                published.inc();
            } else {
                errors.with(&["publish_error"]).inc();
            }
        }
    }
}
