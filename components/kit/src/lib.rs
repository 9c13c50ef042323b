//! fednode-kit: what every component builds on, and nothing else of ours.
//!
//! - [`component`]: the `Component` trait, `Context`, `Registration`, health.
//! - [`bus`]: the `Bus` trait, `Message`, `BusHandle` (per-component metrics);
//!   [`memory`]: the embedded bus.
//! - [`envelope`]: the wire envelope and its JSON / MessagePack codecs.
//! - [`config`]: strict config parsing with JSON paths, ports, auth.
//! - [`subject`]: NATS subject matching and subject templates.
//! - [`filter`]: the filter engine shared by `json_filter` and `subscribe`.
//! - [`meta`]: what travels beside a payload (id, timestamp, node, origin)
//!   and its NATS header names.
//! - [`metrics`]: the node's Prometheus registry.
//! - [`queue`]: the bounded queue with `on_full` policies; [`backoff`]: retry delays.
//! - [`reply`]: request and reply payloads and the error codes.
//! - [`store`]: the append-only disk log (store-and-forward, spills).
//! - [`testing`]: a `Context` on a memory bus for component tests.

pub mod backoff;
pub mod bus;
pub mod component;
pub mod config;
pub mod envelope;
pub mod filter;
pub mod json;
pub mod log;
pub mod memory;
pub mod meta;
pub mod metrics;
#[cfg(feature = "nats")]
pub mod nats;
pub mod queue;
pub mod reply;
pub mod store;
pub mod subject;
pub mod testing;

pub use bus::{
    Bus, BusError, BusHandle, Message, Meta, NatsConnection, NodeId, Origin, Overflow, Published,
    SubscribeOptions, Subscription, TryPublish,
};
pub use component::{
    AdminError, AdminRequest, BuildContext, BuildResult, Component, ComponentKind, Context, Health,
    NodeIdentity, Registration, StartError,
};
pub use config::{ConfigError, PortsConfig};
pub use envelope::{Encoding, Envelope, ErrorCode, Kind, ReplyPayload, RequestPayload};
