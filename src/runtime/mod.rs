//! The node runtime: builds the bus, starts components in wiring order,
//! reports their health, applies a reloaded config (`reload.rs`), and stops
//! them from one root token — inputs first, then the rest as their inputs
//! fall silent, storage last — within the shutdown deadline.

pub mod graph;
pub mod registry;
mod reload;

pub use reload::{ReloadError, ReloadReport};

use fednode_kit::metrics::Metrics;
use fednode_kit::{Bus, BusHandle, Component, ComponentKind, Context, Health, NodeIdentity};
use parking_lot::{Mutex, RwLock};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    /// The entry as configured: a reload restarts the component when it
    /// changes.
    source: Value,
}

/// The components of one config generation.
struct Graph {
    entries: Vec<Arc<Entry>>,
    /// Indexes into `entries` of the enabled ones, in start order.
    order: Vec<usize>,
}

impl Graph {
    fn new(entries: Vec<Arc<Entry>>) -> Graph {
        let enabled: Vec<usize> = (0..entries.len())
            .filter(|&i| entries[i].component.is_some())
            .collect();
        let nodes = graph_nodes(&entries, &enabled);
        let order = graph::start_order(&nodes)
            .into_iter()
            .map(|i| enabled[i])
            .collect();
        Graph { entries, order }
    }

    fn find(&self, name: &str) -> Option<&Arc<Entry>> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// The enabled entries, in start order.
    fn in_start_order(&self) -> impl DoubleEndedIterator<Item = &Arc<Entry>> {
        self.order.iter().map(|&i| &self.entries[i])
    }
}

/// A running node.
pub struct Runtime {
    pub node: NodeIdentity,
    pub bus: Arc<dyn Bus>,
    pub metrics: Arc<Metrics>,
    graph: RwLock<Arc<Graph>>,
    /// Held by a reload and by the shutdown: one change at a time.
    changes: tokio::sync::Mutex<()>,
    stopping: AtomicBool,
    shutdown_timeout: Mutex<Duration>,
    /// What a reload may not change (`NodeConfig::fixed`).
    fixed: Value,
    /// The file `reload` reads.
    config_path: Option<PathBuf>,
    generation: AtomicU64,
    /// Names this process's handover queue groups.
    process_tag: String,
    root: CancellationToken,
    started_at: Instant,
    reloads: prometheus::IntCounterVec,
    generation_gauge: prometheus::IntGauge,
    /// The admin server's `http.tls`, whose files a reload reads again.
    admin_tls: std::sync::OnceLock<Arc<fednode_ws::tls::Acceptor>>,
}

impl Runtime {
    /// Wire a validated config onto a connected bus.
    pub fn new(cfg: NodeConfig, bus: Arc<dyn Bus>, metrics: Arc<Metrics>) -> Self {
        let root = CancellationToken::new();
        let entries = cfg
            .components
            .into_iter()
            .map(|c| Arc::new(Entry::new(c, &root)))
            .collect();
        let reloads = metrics.node_counter_vec(
            "fednode_config_reloads_total",
            "Config reloads (SIGHUP or POST /reload), by result: ok, invalid (nothing changed) or failed (a component did not start)",
            &["result"],
        );
        let generation_gauge = metrics
            .node_int_gauge_vec(
                "fednode_config_generation",
                "The running config's generation: 1 at start, one more per applied reload",
                &[],
            )
            .with_label_values(&[] as &[&str]);
        generation_gauge.set(1);
        metrics
            .node_int_gauge_vec(
                "fednode_build_info",
                "Always 1; the labels say which build this node runs",
                &["version", "git_sha"],
            )
            .with_label_values(&[crate::VERSION, crate::GIT_SHA])
            .set(1);
        // process_cpu_seconds_total, process_resident_memory_bytes,
        // process_open_fds, … (a second runtime on one registry, in tests,
        // already has them).
        let _ = metrics.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        Runtime {
            node: cfg.node,
            bus,
            metrics,
            graph: RwLock::new(Arc::new(Graph::new(entries))),
            changes: tokio::sync::Mutex::new(()),
            stopping: AtomicBool::new(false),
            shutdown_timeout: Mutex::new(cfg.shutdown_timeout),
            fixed: cfg.fixed,
            config_path: None,
            generation: AtomicU64::new(1),
            process_tag: uuid::Uuid::new_v4().simple().to_string(),
            root,
            started_at: Instant::now(),
            reloads,
            generation_gauge,
            admin_tls: std::sync::OnceLock::new(),
        }
    }

    /// The admin server's TLS, for reloads to read its files again.
    pub fn set_admin_tls(&self, tls: Arc<fednode_ws::tls::Acceptor>) {
        let _ = self.admin_tls.set(tls);
    }

    /// The config file that [`Runtime::reload`] re-reads.
    pub fn with_config_path(mut self, path: PathBuf) -> Self {
        self.config_path = Some(path);
        self
    }

    fn graph(&self) -> Arc<Graph> {
        self.graph.read().clone()
    }

    /// Start every enabled component, consumers before producers. On the
    /// first failure, stop what started and return `"<name>: <reason>"`.
    pub async fn start(&self) -> Result<(), String> {
        let _change = self.changes.lock().await;
        let graph = self.graph();
        for e in graph.in_start_order() {
            if let Err(msg) = self.start_entry(e).await {
                drop(_change);
                self.shutdown().await;
                return Err(msg);
            }
        }
        Ok(())
    }

    /// Start one component; on failure its state says why.
    async fn start_entry(&self, e: &Entry) -> Result<(), String> {
        let component = e.component.clone().expect("enabled entries are built");
        let cm = self.metrics.component(&e.name);
        let mut bus = BusHandle::new(
            self.bus.clone(),
            &self.node.id,
            self.node.region.as_deref(),
            &cm,
        );
        if e.kind == ComponentKind::Processor {
            // A reload starts a changed processor beside the old one; the
            // group shares the messages between them until the old one has
            // closed its subscriptions (one group per node process, so
            // another node on the same NATS still gets every message).
            bus = bus
                .with_handover_group(&format!("fednode-handover.{}.{}", self.process_tag, e.name));
        }
        let ctx = Context {
            name: e.name.clone(),
            node: self.node.clone(),
            bus,
            metrics: cm,
            cancel: e.cancel.clone(),
            tracker: e.tracker.clone(),
        };
        *e.state.lock() = State::Starting;
        tracing::info!(component = %e.name, factory = e.factory, "starting");
        match component.start(ctx).await {
            Ok(()) => {
                *e.state.lock() = State::Running;
                Ok(())
            }
            Err(err) => {
                *e.state.lock() = State::Failed(err.to_string());
                Err(format!(
                    "component {} ({}) cannot start: {}",
                    e.name, e.factory, err
                ))
            }
        }
    }

    /// Cancel one component and wait for its tasks until `deadline`.
    /// Returns whether it stopped in time.
    async fn stop_entry(&self, e: &Entry, deadline: tokio::time::Instant) -> bool {
        let was = e.state.lock().clone();
        if !matches!(was, State::Running | State::Starting | State::Failed(_)) {
            return true;
        }
        *e.state.lock() = State::Stopping;
        e.cancel.cancel();
        e.tracker.close();
        match tokio::time::timeout_at(deadline, e.tracker.wait()).await {
            Ok(()) => {
                tracing::info!(component = %e.name, "stopped");
                *e.state.lock() = State::Stopped;
                true
            }
            Err(_) => {
                tracing::error!(
                    component = %e.name,
                    tasks = e.tracker.len(),
                    "still running at the shutdown deadline"
                );
                false
            }
        }
    }

    fn deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + *self.shutdown_timeout.lock()
    }

    /// Stop everything: producers first (the reverse of the start order),
    /// each drained before the next, all within `shutdown_timeout`. Returns
    /// whether everything stopped in time. A reload in progress finishes
    /// first; none starts after.
    pub async fn shutdown(&self) -> bool {
        self.stopping.store(true, Ordering::SeqCst);
        let _change = self.changes.lock().await;
        let deadline = self.deadline();
        let mut clean = true;
        let graph = self.graph();
        for e in graph.in_start_order().rev() {
            clean &= self.stop_entry(e, deadline).await;
        }
        self.root.cancel();
        let _ = tokio::time::timeout_at(deadline, self.bus.flush()).await;
        clean
    }

    /// The running config's generation: 1 at start, one more per applied
    /// reload.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// The bus as `/health` shows it: unhealthy while disconnected, with
    /// the reason.
    pub fn bus_health(&self) -> Health {
        let details = json!({"kind": self.bus.kind()});
        match self.bus.problem() {
            None if self.bus.is_connected() => Health::ok("connected", details),
            problem => {
                let mut details = details;
                details["error"] = Value::String(problem.unwrap_or_else(|| "not connected".into()));
                Health::failing("disconnected", details)
            }
        }
    }

    /// `GET /health`: overall and per component.
    pub fn health(&self) -> (bool, Value) {
        let mut all = self.bus_health().healthy;
        let mut map = serde_json::Map::new();
        for e in &self.graph().entries {
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
                .graph()
                .entries
                .iter()
                .filter(|e| e.component.is_some())
                .all(|e| *e.state.lock() == State::Running)
    }

    /// `GET /components`.
    pub fn describe(&self) -> Value {
        let mut map = serde_json::Map::new();
        for e in &self.graph().entries {
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
        self.graph().find(name).and_then(|e| e.component.clone())
    }

    /// Seconds since the runtime was created.
    pub fn uptime(&self) -> Duration {
        self.started_at.elapsed()
    }
}

impl Entry {
    fn new(c: crate::config::ComponentSpec, root: &CancellationToken) -> Entry {
        Entry {
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
            source: c.source,
        }
    }
}

fn graph_nodes<'a>(entries: &'a [Arc<Entry>], idx: &[usize]) -> Vec<graph::Node<'a>> {
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
