//! The contract between the runtime and a component.
//!
//! A component is built from its config by a [`Registration`]'s `build`
//! function — pure validation, no I/O — and later started with a
//! [`Context`]. `start` returns once the component is ready (ports bound,
//! subscriptions made); its work runs in tasks spawned on `ctx.tracker`,
//! which end when `ctx.cancel` fires: inputs stop reading, processors and
//! outputs drain what they hold, storage flushes.

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus::BusHandle;
use crate::config::{ConfigError, PortsConfig};
use crate::metrics::ComponentMetrics;

/// The four component types, in the order they start last-to-
/// first and stop first-to-last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum ComponentKind {
    Input,
    Processor,
    Output,
    Storage,
}

impl ComponentKind {
    /// Parse the config's `type`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "input" => ComponentKind::Input,
            "processor" => ComponentKind::Processor,
            "output" => ComponentKind::Output,
            "storage" => ComponentKind::Storage,
            _ => return None,
        })
    }

    /// The config word.
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentKind::Input => "input",
            ComponentKind::Processor => "processor",
            ComponentKind::Output => "output",
            ComponentKind::Storage => "storage",
        }
    }
}

/// Who this node is (`node` in the config).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NodeIdentity {
    pub id: String,
    pub region: Option<String>,
    /// The node's data directory (top-level `data_dir`): where components
    /// keep files (an output's `store`, timescale's spill) unless their
    /// config names a path.
    #[serde(skip)]
    pub data_dir: Option<std::path::PathBuf>,
}

/// What a factory gets to build a component.
pub struct BuildContext<'a> {
    /// The instance name (the key in `components`).
    pub instance: &'a str,
    /// JSON path of the component's `config` block, for errors.
    pub path: &'a str,
    pub node: &'a NodeIdentity,
}

/// The result of a factory: a component not yet started.
pub type BuildResult = Result<Arc<dyn Component>, Vec<ConfigError>>;

/// One entry of the runtime's registry: an explicit map from factory name
/// to builder.
#[derive(Clone, Copy)]
pub struct Registration {
    /// The factory name used in `components.*.name`.
    pub name: &'static str,
    /// Other accepted names.
    pub aliases: &'static [&'static str],
    /// The `type` values this factory accepts.
    pub kinds: &'static [ComponentKind],
    /// Validate the `config` block and build the component.
    pub build: fn(&BuildContext<'_>, &Value) -> BuildResult,
    /// The JSON Schema of the `config` block (`fednode schema`).
    pub schema: fn() -> schemars::Schema,
}

/// Everything a started component may use.
#[derive(Clone)]
pub struct Context {
    /// The instance name.
    pub name: String,
    pub node: NodeIdentity,
    pub bus: BusHandle,
    pub metrics: ComponentMetrics,
    /// Fires when the component must stop.
    pub cancel: CancellationToken,
    /// Spawn every long-running task here; the runtime waits for them.
    pub tracker: TaskTracker,
}

/// A component's health as `/health` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Health {
    pub healthy: bool,
    /// A short word: `running`, `idle`, `connected`, `reconnecting`, `failed`…
    pub status: String,
    pub details: Value,
}

impl Health {
    /// Healthy with a status word.
    pub fn ok(status: &str, details: Value) -> Self {
        Health {
            healthy: true,
            status: status.into(),
            details,
        }
    }

    /// Unhealthy with a status word.
    pub fn failing(status: &str, details: Value) -> Self {
        Health {
            healthy: false,
            status: status.into(),
            details,
        }
    }
}

/// Why `start` failed: the runtime exits 1 naming the component.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

impl StartError {
    pub fn new(msg: impl Into<String>) -> Self {
        StartError(msg.into())
    }
}

/// An operator's request to a component (`POST /components/{name}/request`
/// and `<control>.send`).
#[derive(Debug, Clone, serde::Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminRequest {
    pub method: String,
    #[serde(default = "empty_params")]
    pub params: Value,
    /// One connection (server mode); all peers when absent.
    #[serde(default)]
    pub connection: Option<String>,
}

fn empty_params() -> Value {
    Value::Object(Default::default())
}

/// Why an admin call could not be served.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The component has no such capability (HTTP 404).
    #[error("{0}")]
    NotSupported(String),
    /// The named connection does not exist (HTTP 404).
    #[error("{0}")]
    NotFound(String),
    /// Bad input (HTTP 400).
    #[error("{0}")]
    BadRequest(String),
    /// No peer to talk to (HTTP 503).
    #[error("{0}")]
    Unavailable(String),
}

/// The transport a component listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// `TCP` or `UDP`, as error messages show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }
}

/// A socket a component will bind when it starts, as its config names it.
/// The node refuses a config in which two of them would collide, before
/// anything binds (see [`Listen::collides`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    pub protocol: Protocol,
    pub addr: SocketAddr,
    /// The key that sets the port, relative to the component's `config`
    /// block (`server.http_port`, `http_port`, `port`): where a collision
    /// is reported.
    pub field: &'static str,
}

impl Listen {
    /// A TCP listener on `addr`, its port set by `field`.
    pub fn tcp(addr: SocketAddr, field: &'static str) -> Self {
        Listen {
            protocol: Protocol::Tcp,
            addr,
            field,
        }
    }

    /// A UDP socket on `addr`, its port set by `field`.
    pub fn udp(addr: SocketAddr, field: &'static str) -> Self {
        Listen {
            protocol: Protocol::Udp,
            addr,
            field,
        }
    }

    /// Whether binding both would fail (or, for UDP, split the datagrams):
    /// same protocol and port (port 0 picks a free one, so never collides),
    /// and addresses that overlap. An address overlaps itself; `0.0.0.0`
    /// overlaps every IPv4 address; `::` overlaps every address, IPv4
    /// included, as a dual-stack socket does on Linux by default.
    /// `::1` and `0.0.0.0` do not overlap.
    pub fn collides(&self, other: &Listen) -> bool {
        if self.protocol != other.protocol
            || self.addr.port() == 0
            || self.addr.port() != other.addr.port()
        {
            return false;
        }
        let (a, b) = (
            self.addr.ip().to_canonical(),
            other.addr.ip().to_canonical(),
        );
        let covers = |wide: IpAddr, ip: IpAddr| match wide {
            IpAddr::V6(w) => w.is_unspecified(),
            IpAddr::V4(w) => w.is_unspecified() && ip.is_ipv4(),
        };
        a == b || covers(a, b) || covers(b, a)
    }
}

impl fmt::Display for Listen {
    /// `TCP 0.0.0.0:8080`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.protocol.as_str(), self.addr)
    }
}

/// A running piece of the graph.
#[async_trait]
pub trait Component: Send + Sync + 'static {
    /// The validated ports (the runtime wires and orders by them).
    fn ports(&self) -> &PortsConfig;

    /// Bind, subscribe, spawn; return once ready.
    /// Read certificate files again (SIGHUP, `POST /reload`): connections
    /// that follow use them, open ones keep theirs. On an error the
    /// previous certificate stays. Components without TLS do nothing.
    fn reread_certificates(&self) -> Result<(), String> {
        Ok(())
    }

    async fn start(self: Arc<Self>, ctx: Context) -> Result<(), StartError>;

    /// Current health.
    fn health(&self) -> Health;

    /// The sockets `start` will bind, from the config alone (no I/O): the
    /// node checks them against each other and the admin server before
    /// anything starts.
    fn listens(&self) -> Vec<Listen> {
        Vec::new()
    }

    /// Extra detail for `GET /components` (connections, filters, …).
    fn describe(&self) -> Value {
        Value::Null
    }

    /// Send a request to peers (WebSocket components).
    async fn admin_request(&self, _req: AdminRequest) -> Result<Value, AdminError> {
        Err(AdminError::NotSupported(
            "this component does not send requests to peers".into(),
        ))
    }

    /// The replay buffer (outputs), newest last.
    async fn buffer(
        &self,
        _count: Option<usize>,
        _start_time: Option<i64>,
    ) -> Result<Value, AdminError> {
        Err(AdminError::NotSupported(
            "this component keeps no buffer".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(addr: &str) -> Listen {
        Listen::tcp(addr.parse().unwrap(), "port")
    }

    #[test]
    fn listens_collide_on_the_same_port_and_overlapping_addresses() {
        // What Linux refuses (checked against real sockets, bindv6only=0).
        for (a, b) in [
            ("0.0.0.0:8080", "0.0.0.0:8080"),
            ("0.0.0.0:8080", "127.0.0.1:8080"),
            ("127.0.0.1:8080", "0.0.0.0:8080"),
            ("127.0.0.1:8080", "127.0.0.1:8080"),
            ("[::]:8080", "127.0.0.1:8080"),
            ("0.0.0.0:8080", "[::]:8080"),
            ("[::]:8080", "[::1]:8080"),
            ("[::1]:8080", "[::1]:8080"),
            ("[::ffff:127.0.0.1]:8080", "127.0.0.1:8080"),
        ] {
            assert!(tcp(a).collides(&tcp(b)), "{a} and {b} should collide");
        }
        // What it allows.
        for (a, b) in [
            ("0.0.0.0:8080", "0.0.0.0:8081"),
            ("127.0.0.1:8080", "127.0.0.2:8080"),
            ("0.0.0.0:8080", "[::1]:8080"),
            ("[::1]:8080", "127.0.0.1:8080"),
            ("0.0.0.0:0", "0.0.0.0:0"),
        ] {
            assert!(!tcp(a).collides(&tcp(b)), "{a} and {b} should not collide");
        }
    }

    #[test]
    fn tcp_and_udp_on_one_port_do_not_collide() {
        let addr = "0.0.0.0:14550".parse().unwrap();
        let (t, u) = (Listen::tcp(addr, "port"), Listen::udp(addr, "port"));
        assert!(!t.collides(&u));
        assert!(u.collides(&Listen::udp(addr, "port")));
        assert_eq!(u.to_string(), "UDP 0.0.0.0:14550");
        assert_eq!(tcp("[::]:80").to_string(), "TCP [::]:80");
    }
}
