//! Helpers for component tests: a [`Context`] on a fresh memory bus, so a
//! component can be started and driven without the runtime.

use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus::{Bus, BusHandle};
use crate::component::{Context, NodeIdentity};
use crate::memory::MemoryBus;
use crate::metrics::Metrics;

/// A context for component `name` on `bus`, with its own metrics registry.
pub fn context_on(name: &str, bus: Arc<dyn Bus>, metrics: &Arc<Metrics>) -> Context {
    let node = NodeIdentity {
        id: "test-node".into(),
        region: Some("test".into()),
        data_dir: None,
    };
    let cm = metrics.component(name);
    Context {
        name: name.to_string(),
        bus: BusHandle::new(bus, &node.id, node.region.as_deref(), &cm),
        node,
        metrics: cm,
        cancel: CancellationToken::new(),
        tracker: TaskTracker::new(),
    }
}

/// A context on a fresh memory bus; returns the bus and registry too.
pub fn context(name: &str) -> (Context, MemoryBus, Arc<Metrics>) {
    let bus = MemoryBus::new();
    let metrics = Metrics::new();
    let ctx = context_on(name, Arc::new(bus.clone()), &metrics);
    (ctx, bus, metrics)
}

/// Stop a component started with `ctx` the way the runtime does: cancel,
/// then wait for its tasks.
pub async fn stop(ctx: &Context) {
    ctx.cancel.cancel();
    ctx.tracker.close();
    ctx.tracker.wait().await;
}
