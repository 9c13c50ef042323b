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

/// A running piece of the graph.
#[async_trait]
pub trait Component: Send + Sync + 'static {
    /// The validated ports (the runtime wires and orders by them).
    fn ports(&self) -> &PortsConfig;

    /// Bind, subscribe, spawn; return once ready.
    async fn start(self: Arc<Self>, ctx: Context) -> Result<(), StartError>;

    /// Current health.
    fn health(&self) -> Health;

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
