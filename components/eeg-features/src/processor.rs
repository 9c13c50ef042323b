//! The running component: input tasks that turn batches of raw messages
//! into feature messages, and a sweeper that frees idle streams.
//!
//! One task per input subscription takes messages in batches
//! (`next_many`), and for each batch, under one lock on the shared
//! [`State`]: parses every message once ([`crate::message`]), finds or
//! opens its stream in the stream table ([`crate::table`], which evicts
//! the least recently used stream when a bound is reached), pushes the
//! accepted samples, and for every window a sample completes computes the
//! features and serialises the output message. The lock is released before the batch's outputs are
//! published, so the sweeper and other inputs never wait on the bus.
//! Per-sample work allocates nothing; a window allocates only its output
//! bytes (and id).
//!
//! Order: samples of one stream are processed in arrival order and its
//! windows published in that order (per input port).
//!
//! Shutdown: on `ctx.cancel` each input task processes what is already
//! queued in its subscription, publishes the resulting windows, and ends.
//! Incomplete windows are dropped (a window needs all its samples).

use async_trait::async_trait;
use bytes::Bytes;
use fednode_kit::config::PortsConfig;
use fednode_kit::envelope::{new_id, now_millis};
use fednode_kit::log::LogThrottle;
use fednode_kit::subject::Template;
use fednode_kit::{
    Component, Context, Health, Message, Meta, StartError, SubscribeOptions, Subscription,
};
use prometheus::IntCounter;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::json;
use serde_json::value::RawValue;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::features::{FeatureExtractor, Features};
use crate::key::{KeyPath, KeyRef, MAX_KEY_BYTES};
use crate::message::{self, Body, Layout, MessageKind, Reason, SampleOutcome, Scratch};
use crate::metrics::Counters;
use crate::stream::{Stream, WindowBuffer, WindowMeta, WindowSpec};
use crate::table::{self, Entry, StreamTableUsage, Streams};

/// Messages taken from a subscription at once: large enough to amortise
/// the lock and the wake-up, small enough to keep latency low.
const BATCH: usize = 512;

/// A running (or not yet started) `eeg_features` processor.
pub struct EegFeatures {
    cfg: Config,
    spec: WindowSpec,
    state: Mutex<State>,
    /// Set by `start`.
    metrics: OnceLock<Counters>,
    samples: AtomicU64,
    windows: AtomicU64,
    streams_active: AtomicU64,
}

impl EegFeatures {
    /// A processor for a validated config (see [`Config::parse`]).
    /// Plans the FFT; does no I/O.
    pub fn new(cfg: Config) -> Self {
        let fc = cfg.feature_config();
        let spec = fc.window_spec().expect("validated config");
        let extractor = FeatureExtractor::new(&fc).expect("validated config");
        let key = cfg.key();
        let template = cfg.ports.output("out").expect("validated: an `out` port");
        let output = OutputSubject::new(template, key.output_name());
        let features = extractor.new_output();
        let state = State {
            layout: Layout::new(cfg.channel_names.clone(), key.first()),
            key,
            scratch: Scratch::default(),
            extractor,
            window: WindowBuffer::new(),
            features,
            streams: Streams::new(
                cfg.max_streams,
                table::byte_limit(
                    cfg.max_streams,
                    Stream::sample_bytes(cfg.channel_names.len(), spec),
                ),
            ),
            spec,
            channels: cfg.channel_names.len(),
            ms_per_sample: 1000.0 / cfg.sampling_rate,
            output,
            body_hint: 1024,
            log: LogThrottle::default(),
        };
        EegFeatures {
            cfg,
            spec,
            state: Mutex::new(state),
            metrics: OnceLock::new(),
            samples: AtomicU64::new(0),
            windows: AtomicU64::new(0),
            streams_active: AtomicU64::new(0),
        }
    }

    /// The config it runs with.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Samples accepted into streams so far.
    pub fn samples(&self) -> u64 {
        self.samples.load(Ordering::Relaxed)
    }

    /// Windows emitted so far.
    pub fn windows(&self) -> u64 {
        self.windows.load(Ordering::Relaxed)
    }

    /// Streams alive now.
    pub fn streams_active(&self) -> u64 {
        self.streams_active.load(Ordering::Relaxed)
    }

    /// The stream table's streams and bytes, now and at their peak, with
    /// their bounds and the evictions so far.
    pub fn stream_table(&self) -> StreamTableUsage {
        self.lock().streams.usage()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a stream half-updated
        // in a way that matters more than stopping would: carry on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Component for EegFeatures {
    fn ports(&self) -> &PortsConfig {
        &self.cfg.ports
    }

    async fn start(self: Arc<Self>, ctx: Context) -> Result<(), StartError> {
        let counters = self.metrics.get_or_init(|| Counters::new(&ctx)).clone();
        // Subscribe to everything before returning, so nothing published
        // after `start` is missed.
        let subjects = self.cfg.ports.input_subjects();
        let opts = SubscribeOptions {
            capacity: self.cfg.queue_size,
            ..SubscribeOptions::default()
        };
        let subs = ctx.bus.subscribe_all(&subjects, &opts).await?;
        for (subject, sub) in subjects.into_iter().zip(subs) {
            tracing::info!(component = %ctx.name, input = %subject, "eeg_features reading");
            let me = self.clone();
            let (ctx, counters) = (ctx.clone(), counters.clone());
            ctx.tracker
                .clone()
                .spawn(async move { me.run(sub, ctx, counters).await });
        }
        let me = self.clone();
        ctx.tracker
            .clone()
            .spawn(async move { me.sweep(ctx, counters).await });
        Ok(())
    }

    fn health(&self) -> Health {
        Health::ok(
            "running",
            json!({
                "streams_active": self.streams_active(),
                "samples": self.samples(),
                "windows": self.windows(),
            }),
        )
    }

    fn describe(&self) -> serde_json::Value {
        json!({
            "key_path": self.cfg.key_path,
            "sampling_rate": self.cfg.sampling_rate,
            "channels": self.cfg.channel_names,
            "window_samples": self.spec.window_samples,
            "hop": self.spec.hop,
            "max_streams": self.cfg.max_streams,
            "max_stream_bytes": self.lock().streams.usage().bytes_limit,
        })
    }
}

impl EegFeatures {
    /// One input subscription until cancelled, then what is already queued.
    async fn run(self: Arc<Self>, mut sub: Subscription, ctx: Context, c: Counters) {
        let mut batch: Vec<Message> = Vec::with_capacity(BATCH);
        let mut out: Vec<Message> = Vec::new();
        loop {
            tokio::select! {
                biased;
                _ = ctx.cancel.cancelled() => break,
                n = sub.next_many(&mut batch, BATCH) => {
                    if n == 0 {
                        // The bus closed the subscription: nothing more comes.
                        return;
                    }
                }
            }
            self.process(&mut batch, &mut out, &ctx, &c).await;
        }
        // Take nothing new (a reloaded successor in the same queue group
        // gets it), and process what is already on its way.
        sub.close();
        while sub.next_many(&mut batch, BATCH).await > 0 {
            self.process(&mut batch, &mut out, &ctx, &c).await;
        }
        tracing::debug!(component = %ctx.name, "eeg_features input drained");
    }

    /// Turn a batch into windows, then publish them in order. Leaves both
    /// vectors empty.
    async fn process(
        &self,
        batch: &mut Vec<Message>,
        out: &mut Vec<Message>,
        ctx: &Context,
        c: &Counters,
    ) {
        let mut counts = Counts::default();
        {
            let mut st = self.lock();
            let now = Instant::now();
            for msg in batch.drain(..) {
                st.handle(&msg, now, out, &mut counts, c, &ctx.name);
            }
            let active = st.streams.len() as u64;
            self.streams_active.store(active, Ordering::Relaxed);
            c.streams_active.set(active as i64);
        }
        counts.flush(c);
        self.samples.fetch_add(counts.samples, Ordering::Relaxed);
        self.windows.fetch_add(counts.windows, Ordering::Relaxed);
        for msg in out.drain(..) {
            if let Err(e) = ctx.bus.publish_retrying(msg, &ctx.cancel).await {
                c.publish_errors.inc();
                tracing::warn!(component = %ctx.name, error = %e, "could not publish a feature message");
            }
        }
    }

    /// Free streams idle for `stream_idle_timeout`, checking a few times
    /// per timeout (at most once per second), never per message.
    async fn sweep(self: Arc<Self>, ctx: Context, c: Counters) {
        let timeout = self.cfg.stream_idle_timeout;
        let every = (timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ctx.cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let mut st = self.lock();
            let freed = st.streams.sweep(Instant::now(), timeout);
            if freed > 0 {
                let active = st.streams.len() as u64;
                drop(st);
                self.streams_active.store(active, Ordering::Relaxed);
                c.streams_active.set(active as i64);
                tracing::debug!(component = %ctx.name, freed, active, "freed idle streams");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Counting
// ---------------------------------------------------------------------------

/// What one batch did, added to the metrics once per batch.
#[derive(Default)]
struct Counts {
    samples: u64,
    windows: u64,
    passed: u64,
    rejected: [u64; 5],
    evicted: u64,
    parse_errors: u64,
    invalid: u64,
}

impl Counts {
    fn flush(&self, c: &Counters) {
        let add = |counter: &IntCounter, n: u64| {
            if n > 0 {
                counter.inc_by(n);
            }
        };
        add(&c.samples, self.samples);
        add(&c.windows, self.windows);
        add(&c.passed, self.passed);
        add(&c.evicted, self.evicted);
        add(&c.parse_errors, self.parse_errors);
        add(&c.invalid, self.invalid);
        for (counter, n) in c.rejected.iter().zip(self.rejected) {
            add(counter, n);
        }
    }
}

// ---------------------------------------------------------------------------
// Output subjects
// ---------------------------------------------------------------------------

/// Where feature messages go.
enum OutputSubject {
    /// A fixed subject.
    Static(Arc<str>),
    /// A template that reads only `type` and the key: rendered once per
    /// stream.
    PerStream(Template),
    /// A template that reads other fields: rendered from each message.
    PerWindow(Template),
}

impl OutputSubject {
    fn new(t: Template, key_name: &str) -> Self {
        if t.is_static() {
            return OutputSubject::Static(t.as_str().into());
        }
        let per_stream = placeholders(t.as_str()).all(|f| f == "type" || f == key_name);
        if per_stream {
            OutputSubject::PerStream(t)
        } else {
            OutputSubject::PerWindow(t)
        }
    }
}

/// The `{field}` names of a subject template.
fn placeholders(raw: &str) -> impl Iterator<Item = &str> {
    raw.split('{')
        .skip(1)
        .filter_map(|part| part.split_once('}').map(|(f, _)| f))
}

// ---------------------------------------------------------------------------
// Per-message work
// ---------------------------------------------------------------------------

/// Everything the input tasks share, behind one lock.
struct State {
    layout: Layout,
    key: KeyPath,
    scratch: Scratch,
    extractor: FeatureExtractor,
    window: WindowBuffer,
    features: Features,
    streams: Streams,
    spec: WindowSpec,
    channels: usize,
    ms_per_sample: f64,
    output: OutputSubject,
    /// Size of the last output message, to size the next one's buffer.
    body_hint: usize,
    log: LogThrottle,
}

impl State {
    fn handle(
        &mut self,
        msg: &Message,
        now: Instant,
        sink: &mut Vec<Message>,
        counts: &mut Counts,
        c: &Counters,
        component: &str,
    ) {
        let header = match message::parse(&msg.payload, &self.layout, &mut self.scratch) {
            Ok(h) => h,
            Err(e) => {
                counts.parse_errors += 1;
                if let Some(suppressed) = self.log.allow_at(now) {
                    tracing::warn!(component, subject = %msg.subject, error = %e, suppressed,
                        "dropping a message that is not a JSON object");
                }
                return;
            }
        };
        if header.kind == MessageKind::Other {
            counts.passed += 1;
            return;
        }
        let problem = match header.body {
            Body::One | Body::Many => None,
            Body::None => Some("a raw message needs `channels` or `samples`"),
            Body::Both => Some("a raw message has either `channels` or `samples`, not both"),
            Body::NotAList => Some("`samples` must be a list of samples"),
        };
        if let Some(problem) = problem {
            counts.invalid += 1;
            if let Some(suppressed) = self.log.allow_at(now) {
                tracing::warn!(component, subject = %msg.subject, suppressed, "dropping a message: {problem}");
            }
            return;
        }
        let key = self.key.resolve(header.key);
        let mut first_rejection = None;
        for s in &self.scratch.samples {
            if let SampleOutcome::Rejected(r) = s {
                counts.rejected[r.index()] += 1;
                first_rejection.get_or_insert(*r);
            }
        }
        let accepted = self.scratch.accepted();
        // A key too long to keep: every sample the parser accepted is
        // refused for it, before a stream is looked up or opened.
        let key_too_long = accepted > 0 && key.len() > MAX_KEY_BYTES;
        if key_too_long {
            counts.rejected[Reason::KeyTooLong.index()] += accepted as u64;
            first_rejection.get_or_insert(Reason::KeyTooLong);
        }
        if let Some(reason) = first_rejection {
            self.log_rejection(now, component, &key, reason);
        }
        if accepted == 0 || key_too_long {
            return;
        }

        let idx = match self.streams.find_and_touch(&key, now) {
            Some(i) => i,
            None => {
                let (spec, channels, output) = (self.spec, self.channels, &self.output);
                let key_name = self.key.output_name();
                let (i, evicted) = self.streams.open(&key, || {
                    let key_json = key.to_json();
                    let subject = match output {
                        OutputSubject::PerStream(t) => {
                            let fields: serde_json::Value = serde_json::from_str(&format!(
                                "{{\"type\":\"features\",{}:{}}}",
                                serde_json::to_string(key_name).expect("a string serialises"),
                                key_json.get()
                            ))
                            .expect("valid JSON");
                            // No origin placeholder in a per-stream template.
                            Some(Arc::from(t.render(&fields, None)))
                        }
                        _ => None,
                    };
                    Entry {
                        key_json,
                        subject,
                        stream: Stream::new(channels, spec),
                        last_seen: now,
                    }
                });
                counts.evicted += evicted;
                i
            }
        };

        let (n, ms_per_sample) = (self.channels, self.ms_per_sample);
        let State {
            scratch,
            streams,
            extractor,
            window,
            features,
            output,
            key: key_path,
            body_hint,
            ..
        } = &mut *self;
        let entry = streams.get_mut(idx);
        let base_ts = header.timestamp.or(msg.meta.timestamp);
        let mut values = scratch.values.chunks_exact(n);
        for (i, outcome) in scratch.samples.iter().enumerate() {
            if *outcome != SampleOutcome::Accepted {
                continue;
            }
            let sample = values.next().expect("one value chunk per accepted sample");
            let ts = if header.has_timestamps {
                scratch.timestamps.get(i).copied().flatten()
            } else if i == 0 {
                base_ts
            } else {
                // Later samples of a batch: one sample period apart.
                base_ts.map(|t| t + (i as f64 * ms_per_sample).round() as i64)
            };
            counts.samples += 1;
            let Some(meta) = entry
                .stream
                .push(sample, ts)
                .expect("the parser checked the channel count")
            else {
                continue;
            };
            // A window is complete: features, message, subject.
            let t0 = Instant::now();
            entry.stream.copy_window(window);
            extractor
                .compute_into(window.iter(), features)
                .expect("a stream delivers the configured shape");
            c.compute.observe(t0.elapsed().as_secs_f64());
            let mut body = Vec::with_capacity(*body_hint + 64);
            serde_json::to_writer(
                &mut body,
                &OutputMessage {
                    key_name: key_path.output_name(),
                    key: &entry.key_json,
                    window: &meta,
                    features,
                },
            )
            .expect("features serialise");
            *body_hint = body.len();
            let subject: Arc<str> = match output {
                OutputSubject::Static(s) => s.clone(),
                OutputSubject::PerStream(_) => entry.subject.clone().expect("rendered at open"),
                OutputSubject::PerWindow(t) => {
                    t.render_bytes(&body, msg.meta.origin.as_ref()).into()
                }
            };
            sink.push(Message {
                subject,
                payload: Bytes::from(body),
                meta: Meta {
                    id: Some(new_id()),
                    timestamp: Some(meta.end_timestamp.unwrap_or_else(now_millis)),
                    node: None,
                    replay: false,
                    // Features come from where their samples came from.
                    origin: msg.meta.origin.clone(),
                },
                reply: None,
            });
            counts.windows += 1;
        }
    }

    fn log_rejection(&mut self, now: Instant, component: &str, key: &KeyRef<'_>, reason: Reason) {
        if let Some(suppressed) = self.log.allow_at(now) {
            tracing::warn!(
                component,
                key = key.display(),
                key_bytes = key.len(),
                reason = reason.as_str(),
                suppressed,
                "rejecting samples"
            );
        }
    }
}

/// The output message, in its key order.
struct OutputMessage<'a> {
    key_name: &'a str,
    key: &'a RawValue,
    window: &'a WindowMeta,
    features: &'a Features,
}

impl Serialize for OutputMessage<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let f = self.features;
        let mut m = s.serialize_map(Some(10))?;
        m.serialize_entry("type", "features")?;
        m.serialize_entry(self.key_name, self.key)?;
        m.serialize_entry("timestamp", &self.window.end_timestamp)?;
        m.serialize_entry("window", self.window)?;
        m.serialize_entry("band_powers", &f.band_powers)?;
        m.serialize_entry("average", &f.average)?;
        m.serialize_entry("channels", &f.channels)?;
        m.serialize_entry("metrics", &f.metrics)?;
        m.serialize_entry("workload", &f.workload)?;
        m.serialize_entry("confidence", &f.confidence)?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_placeholders() {
        let names: Vec<&str> = placeholders("user.{user_id}.{type}.x").collect();
        assert_eq!(names, vec!["user_id", "type"]);
        assert_eq!(placeholders("plain").count(), 0);
    }
}
