//! The node runtime: builds the bus, starts components in wiring order,
//! reports their health, and stops them from one root token — inputs first,
//! then the rest as their inputs fall silent, storage last — within the
//! shutdown deadline.

pub mod graph;
pub mod registry;

use fednode_kit::metrics::Metrics;
use fednode_kit::{Bus, BusHandle, Component, ComponentKind, Context, Health, NodeIdentity};
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::NodeConfig;

/// Where a component is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Created,
    Starting,
    Running,
    Stopping,
    Stopped,
    Failed(String),
    Disabled,
}

impl State {
    fn word(&self) -> &'static str {
        match self {
            State::Created => "created",
            State::Starting => "starting",
            State::Running => "running",
            State::Stopping => "stopping",
            State::Stopped => "stopped",
            State::Failed(_) => "failed",
            State::Disabled => "disabled",
        }
    }
}

struct Entry {
    name: String,
    kind: ComponentKind,
    factory: &'static str,
    component: Option<Arc<dyn Component>>,
    state: Mutex<State>,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

/// A running node.
pub struct Runtime {
    pub node: NodeIdentity,
    pub bus: Arc<dyn Bus>,
    pub metrics: Arc<Metrics>,
    entries: Vec<Entry>,
    order: Vec<usize>,
    shutdown_timeout: Duration,
    root: CancellationToken,
    started_at: Instant,
}

impl Runtime {
    /// Wire a validated config onto a connected bus.
    pub fn new(cfg: NodeConfig, bus: Arc<dyn Bus>, metrics: Arc<Metrics>) -> Self {
        let root = CancellationToken::new();
        let entries: Vec<Entry> = cfg
            .components
            .into_iter()
            .map(|c| Entry {
                state: Mutex::new(if c.enabled {
                    State::Created
                } else {
                    State::Disabled
                }),
                name: c.name,
                kind: c.kind,
                factory: c.factory,
                component: c.component,
                cancel: root.child_token(),
                tracker: TaskTracker::new(),
            })
            .collect();
        let order = {
            let enabled: Vec<usize> = (0..entries.len())
                .filter(|&i| entries[i].component.is_some())
                .collect();
            let nodes = graph_nodes(&entries, &enabled);
            graph::start_order(&nodes)
                .into_iter()
                .map(|i| enabled[i])
                .collect()
        };
        Runtime {
            node: cfg.node,
            bus,
            metrics,
            entries,
            order,
            shutdown_timeout: cfg.shutdown_timeout,
            root,
            started_at: Instant::now(),
        }
    }

    /// Start every enabled component, consumers before producers. On the
    /// first failure, stop what started and return `"<name>: <reason>"`.
    pub async fn start(&self) -> Result<(), String> {
        for &i in &self.order {
            let e = &self.entries[i];
            let component = e.component.clone().expect("enabled entries are built");
            let cm = self.metrics.component(&e.name);
            let ctx = Context {
                name: e.name.clone(),
                node: self.node.clone(),
                bus: BusHandle::new(
                    self.bus.clone(),
                    &self.node.id,
                    self.node.region.as_deref(),
                    &cm,
                ),
                metrics: cm,
                cancel: e.cancel.clone(),
                tracker: e.tracker.clone(),
            };
            *e.state.lock() = State::Starting;
            tracing::info!(component = %e.name, factory = e.factory, "starting");
            match component.start(ctx).await {
                Ok(()) => *e.state.lock() = State::Running,
                Err(err) => {
                    let msg = format!("component {} ({}) cannot start: {}", e.name, e.factory, err);
                    *e.state.lock() = State::Failed(err.to_string());
                    self.shutdown().await;
                    return Err(msg);
                }
            }
        }
        Ok(())
    }

    /// Stop everything: producers first (the reverse of the start order),
    /// each drained before the next, all within `shutdown_timeout`. Returns
    /// whether everything stopped in time.
    pub async fn shutdown(&self) -> bool {
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        let mut clean = true;
        for &i in self.order.iter().rev() {
            let e = &self.entries[i];
            let was = e.state.lock().clone();
            if !matches!(was, State::Running | State::Starting | State::Failed(_)) {
                continue;
            }
            *e.state.lock() = State::Stopping;
            e.cancel.cancel();
            e.tracker.close();
            match tokio::time::timeout_at(deadline, e.tracker.wait()).await {
                Ok(()) => {
                    tracing::info!(component = %e.name, "stopped");
                    *e.state.lock() = State::Stopped;
                }
                Err(_) => {
                    clean = false;
                    tracing::error!(
                        component = %e.name,
                        tasks = e.tracker.len(),
                        "still running at the shutdown deadline"
                    );
                }
            }
        }
        self.root.cancel();
        let _ = tokio::time::timeout_at(deadline, self.bus.flush()).await;
        clean
    }

    /// `GET /health`: overall and per component.
    pub fn health(&self) -> (bool, Value) {
        let mut all = true;
        let mut map = serde_json::Map::new();
        for e in &self.entries {
            let state = e.state.lock().clone();
            let h = match (&e.component, &state) {
                (None, _) => Health::ok("disabled", Value::Null),
                (Some(_), State::Failed(why)) => Health::failing("failed", json!({ "error": why })),
                (Some(_), State::Created | State::Starting) => {
                    Health::failing(state.word(), Value::Null)
                }
                (Some(_), State::Stopping | State::Stopped) => {
                    Health::failing(state.word(), Value::Null)
                }
                (Some(c), _) => c.health(),
            };
            all &= h.healthy;
            map.insert(
                e.name.clone(),
                serde_json::to_value(&h).expect("health serialises"),
            );
        }
        (all, Value::Object(map))
    }

    /// `GET /health/ready`: every enabled component running, bus connected.
    pub fn ready(&self) -> bool {
        self.bus.is_connected()
            && self
                .entries
                .iter()
                .filter(|e| e.component.is_some())
                .all(|e| *e.state.lock() == State::Running)
    }

    /// `GET /components`.
    pub fn describe(&self) -> Value {
        let mut map = serde_json::Map::new();
        for e in &self.entries {
            let (inputs, outputs) = match &e.component {
                Some(c) => (
                    c.ports()
                        .inputs
                        .iter()
                        .map(|p| json!({"name": p.name, "subject": p.subject}))
                        .collect::<Vec<_>>(),
                    c.ports()
                        .outputs
                        .iter()
                        .map(|p| json!({"name": p.name, "subject": p.subject}))
                        .collect::<Vec<_>>(),
                ),
                None => (vec![], vec![]),
            };
            let mut obj = json!({
                "type": e.kind.as_str(),
                "factory": e.factory,
                "state": e.state.lock().word(),
                "subjects": {"inputs": inputs, "outputs": outputs},
            });
            if let Some(Value::Object(extra)) = e.component.as_ref().map(|c| c.describe()) {
                for (k, v) in extra {
                    obj[k] = v;
                }
            }
            map.insert(e.name.clone(), obj);
        }
        Value::Object(map)
    }

    /// A component by instance name (enabled only).
    pub fn component(&self, name: &str) -> Option<Arc<dyn Component>> {
        self.entries
            .iter()
            .find(|e| e.name == name)
            .and_then(|e| e.component.clone())
    }

    /// Seconds since the runtime was created.
    pub fn uptime(&self) -> Duration {
        self.started_at.elapsed()
    }
}

fn graph_nodes<'a>(entries: &'a [Entry], idx: &[usize]) -> Vec<graph::Node<'a>> {
    idx.iter()
        .map(|&i| {
            let e = &entries[i];
            let ports = e.component.as_ref().expect("built").ports();
            graph::Node {
                name: &e.name,
                kind: e.kind,
                inputs: ports.input_subjects(),
                outputs: ports.outputs.iter().map(|p| p.subject.clone()).collect(),
            }
        })
        .collect()
}

/// The wiring report `fednode check` prints: components, subjects, warnings.
pub fn wiring_report(cfg: &NodeConfig) -> (Vec<String>, Vec<String>) {
    let mut lines = Vec::new();
    let mut nodes = Vec::new();
    for c in &cfg.components {
        match &c.component {
            None => lines.push(format!(
                "{} ({} {}) disabled",
                c.name,
                c.kind.as_str(),
                c.factory
            )),
            Some(comp) => {
                let ports = comp.ports();
                lines.push(format!("{} ({} {})", c.name, c.kind.as_str(), c.factory));
                for p in &ports.inputs {
                    lines.push(format!("  in  {:<12} <- {}", p.name, p.subject));
                }
                for p in &ports.outputs {
                    lines.push(format!("  out {:<12} -> {}", p.name, p.subject));
                }
                nodes.push(graph::Node {
                    name: &c.name,
                    kind: c.kind,
                    inputs: ports.input_subjects(),
                    outputs: ports.outputs.iter().map(|p| p.subject.clone()).collect(),
                });
            }
        }
    }
    for (i, p) in nodes.iter().enumerate() {
        for (j, c) in nodes.iter().enumerate() {
            if i != j && graph::feeds(p, c) {
                lines.push(format!("wire: {} -> {}", p.name, c.name));
            }
        }
    }
    (lines, graph::warnings(&nodes))
}
