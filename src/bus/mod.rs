//! Building the configured bus. The memory bus lives in the kit (component
//! tests use it); NATS lives here.

pub mod nats;

use fednode_kit::memory::MemoryBus;
use fednode_kit::metrics::Metrics;
use fednode_kit::Bus;
use std::sync::Arc;

use crate::config::{BusConfig, BusKind};

/// Connect the bus the config names.
pub async fn connect(cfg: &BusConfig, metrics: &Arc<Metrics>) -> Result<Arc<dyn Bus>, String> {
    match cfg.kind {
        BusKind::Memory => Ok(Arc::new(MemoryBus::new())),
        BusKind::Nats => Ok(Arc::new(nats::NatsBus::connect(cfg, metrics).await?)),
    }
}
