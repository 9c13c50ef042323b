//! The filter loop: one task per input subscription takes messages in
//! batches, parses each payload once (only the members the filter reads, see
//! `projection.rs`), evaluates the filter and republishes the messages that
//! pass, untouched, on the `out` subject.

use async_trait::async_trait;
use fednode_kit::config::{ConfigError, PortsConfig};
use fednode_kit::filter::{Filter, Outcome};
use fednode_kit::log::LogThrottle;
use fednode_kit::subject::Template;
use fednode_kit::{
    Component, Context, Health, Message, StartError, SubscribeOptions, Subscription,
};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex, OnceLock};

use crate::config::Config;
use crate::metrics::Counters;
use crate::projection::Projection;

/// Messages taken from a subscription at once: large enough to amortise the
/// channel wake-up, small enough to keep latency and memory low.
const BATCH: usize = 512;

/// A running (or not yet started) `json_filter` processor.
pub struct JsonFilter {
    cfg: Config,
    filter: Filter,
    /// Which parts of a payload the filter and the output subject read.
    projection: Projection,
    /// Set by `start`; `health` reads them.
    counters: OnceLock<Counters>,
    /// Shared by the input tasks so bad input is logged at most once a second
    /// for the whole component.
    bad_input_log: Mutex<LogThrottle>,
}

/// Where passing messages go.
enum Output {
    /// A fixed subject, shared by every message (no allocation per message).
    Static(Arc<str>),
    /// A template filled from each message's payload.
    Template(Template),
}

impl JsonFilter {
    /// Parse, validate and compile the config block at `path`.
    pub fn build(value: &Value, path: &str) -> Result<Self, Vec<ConfigError>> {
        let cfg = Config::parse(value, path)?;
        Self::new(cfg, path)
    }

    /// A processor for an already parsed config; `path` locates filter
    /// errors.
    pub fn new(cfg: Config, path: &str) -> Result<Self, Vec<ConfigError>> {
        let filter = cfg.compile(path)?;
        let out = cfg
            .ports
            .outputs
            .iter()
            .find(|p| p.name == "out")
            .map_or("", |p| p.subject.as_str());
        let projection = Projection::new(filter.spec(), out);
        Ok(JsonFilter {
            cfg,
            filter,
            projection,
            counters: OnceLock::new(),
            bad_input_log: Mutex::new(LogThrottle::default()),
        })
    }

    /// The compiled filter.
    pub fn filter(&self) -> &Filter {
        &self.filter
    }
}

#[async_trait]
impl Component for JsonFilter {
    fn ports(&self) -> &PortsConfig {
        &self.cfg.ports
    }

    async fn start(self: Arc<Self>, ctx: Context) -> Result<(), StartError> {
        let counters = self.counters.get_or_init(|| Counters::new(&ctx)).clone();
        let template = self
            .cfg
            .ports
            .output("out")
            .ok_or_else(|| StartError::new("json_filter: no valid `out` port"))?;
        let output = if template.is_static() {
            Arc::new(Output::Static(template.as_str().into()))
        } else {
            Arc::new(Output::Template(template))
        };
        // Subscribe to everything before returning, so the component is
        // ready (no message lost) when `start` returns.
        let subjects = self.cfg.ports.input_subjects();
        let opts = SubscribeOptions {
            capacity: self.cfg.queue_size,
            ..SubscribeOptions::default()
        };
        let subs = ctx.bus.subscribe_all(&subjects, &opts).await?;
        for (subject, sub) in subjects.into_iter().zip(subs) {
            tracing::info!(component = %ctx.name, input = %subject, "json_filter reading");
            let me = self.clone();
            let worker = Worker {
                ctx: ctx.clone(),
                output: output.clone(),
                counters: counters.clone(),
            };
            ctx.tracker.spawn(async move { me.run(sub, worker).await });
        }
        Ok(())
    }

    fn health(&self) -> Health {
        let get = |f: fn(&Counters) -> u64| self.counters.get().map_or(0, f);
        Health::ok(
            "running",
            json!({
                "in": get(|c| c.input.get()),
                "passed": get(|c| c.passed.get()),
                "rejected": get(|c| c.rejected.get()),
                "errors": get(|c| c.parse_errors.get() + c.publish_errors.get()),
            }),
        )
    }

    fn describe(&self) -> Value {
        json!({ "filter": self.filter.spec() })
    }
}

/// What one input task needs besides the component.
struct Worker {
    ctx: Context,
    output: Arc<Output>,
    counters: Counters,
}

impl JsonFilter {
    /// Filter one subscription until cancelled, then drain what is already
    /// queued: the runtime stops inputs first, so a clean stop loses nothing.
    async fn run(self: Arc<Self>, mut sub: Subscription, w: Worker) {
        let mut batch: Vec<Message> = Vec::with_capacity(BATCH);
        loop {
            tokio::select! {
                biased;
                _ = w.ctx.cancel.cancelled() => break,
                n = sub.next_many(&mut batch, BATCH) => {
                    if n == 0 {
                        // The bus closed the subscription: nothing more comes.
                        return;
                    }
                }
            }
            self.process(&mut batch, &w).await;
        }
        // Take nothing new (a reloaded successor in the same queue group
        // gets it), and filter what is already on its way.
        sub.close();
        while sub.next_many(&mut batch, BATCH).await > 0 {
            self.process(&mut batch, &w).await;
        }
        tracing::debug!(component = %w.ctx.name, "json_filter input drained");
    }

    /// Filter and forward a batch, in order; leaves `batch` empty.
    async fn process(&self, batch: &mut Vec<Message>, w: &Worker) {
        let c = &w.counters;
        for msg in batch.drain(..) {
            c.input.inc();
            let value = match self.projection.parse(&msg.payload) {
                Ok(v) => v,
                Err(e) => {
                    c.parse_errors.inc();
                    if let Some(suppressed) = self
                        .bad_input_log
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .allow()
                    {
                        tracing::warn!(
                            component = %w.ctx.name,
                            subject = %msg.subject,
                            error = %e,
                            suppressed,
                            "dropping a message that is not JSON"
                        );
                    }
                    continue;
                }
            };
            match self.filter.evaluate(&value) {
                Outcome::Match => {}
                Outcome::NoMatch => {
                    c.rejected.inc();
                    continue;
                }
                Outcome::OverBudget => {
                    c.rejected.inc();
                    c.over_budget.inc();
                    continue;
                }
            }
            let subject = match &*w.output {
                Output::Static(s) => s.clone(),
                Output::Template(t) => t.render(&value, msg.meta.origin.as_ref()).into(),
            };
            // Same payload bytes, same envelope fields, same reply subject:
            // only the subject changes.
            let out = Message { subject, ..msg };
            match w.ctx.bus.publish_retrying(out, &w.ctx.cancel).await {
                Ok(_) => c.passed.inc(),
                Err(e) => {
                    c.publish_errors.inc();
                    if let Some(suppressed) = self
                        .bad_input_log
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .allow()
                    {
                        tracing::warn!(
                            component = %w.ctx.name,
                            error = %e,
                            suppressed,
                            "dropping a message that could not be published"
                        );
                    }
                }
            }
        }
    }
}
