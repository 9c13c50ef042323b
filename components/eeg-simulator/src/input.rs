//! Pacing and publishing: one task produces every user's samples, either in
//! step with the wall clock or as fast as the bus takes them.

use async_trait::async_trait;
use bytes::Bytes;
use fednode_kit::config::PortsConfig;
use fednode_kit::envelope::{new_id, now_millis};
use fednode_kit::{Component, Context, Health, Message, Meta, StartError};
use serde::Serialize;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Config, Pacing};
use crate::metrics::Metrics;
use crate::signal::Generator;

/// A running (or not yet started) simulator.
pub struct Simulator {
    cfg: Config,
    samples: AtomicU64,
    finished: AtomicBool,
}

#[derive(Serialize)]
struct OneSample<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    user_id: &'a str,
    timestamp: i64,
    channels: &'a [f64],
}

#[derive(Serialize)]
struct ManySamples<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    user_id: &'a str,
    timestamp: i64,
    samples: &'a [Vec<f64>],
}

impl Simulator {
    pub fn new(cfg: Config) -> Self {
        Simulator {
            cfg,
            samples: AtomicU64::new(0),
            finished: AtomicBool::new(false),
        }
    }

    /// Samples produced over all users.
    pub fn samples(&self) -> u64 {
        self.samples.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl Component for Simulator {
    fn ports(&self) -> &PortsConfig {
        &self.cfg.ports
    }

    async fn start(self: Arc<Self>, ctx: Context) -> Result<(), StartError> {
        let me = self.clone();
        ctx.tracker
            .clone()
            .spawn(async move { me.produce(ctx).await });
        Ok(())
    }

    fn health(&self) -> Health {
        Health::ok(
            if self.finished.load(Ordering::Relaxed) {
                "finished"
            } else {
                "running"
            },
            json!({
                "users": self.cfg.user_ids.len(),
                "sampling_rate": self.cfg.sampling_rate,
                "samples_total": self.samples(),
            }),
        )
    }
}

struct Stream {
    user: String,
    gen: Generator,
    batch: Vec<Vec<f64>>,
}

impl Simulator {
    async fn produce(self: Arc<Self>, ctx: Context) {
        let cfg = &self.cfg;
        let Metrics {
            samples_total,
            published,
        } = Metrics::new(&ctx);
        let subject = cfg.ports.output("out").expect("validated: out port");
        let mut streams: Vec<Stream> = cfg
            .user_ids
            .iter()
            .enumerate()
            .map(|(i, u)| Stream {
                user: u.clone(),
                gen: Generator::new(
                    cfg.sampling_rate,
                    cfg.channel_names.len(),
                    &cfg.components,
                    cfg.noise_amplitude,
                    cfg.seed.wrapping_add(i as u64),
                ),
                batch: Vec::new(),
            })
            .collect();
        let started = Instant::now();
        let start_ms = now_millis();
        let per_msg = cfg.samples_per_message as u64;
        let max = cfg.max_samples.unwrap_or(u64::MAX);
        let mut produced: u64 = 0; // per user
        let mut sample = Vec::with_capacity(cfg.channel_names.len());
        while produced < max && !ctx.cancel.is_cancelled() {
            // How many samples per user are due now.
            let due = match cfg.pacing {
                Pacing::Realtime => {
                    let due = (started.elapsed().as_secs_f64() * cfg.sampling_rate) as u64;
                    let due = due.min(max);
                    if due < produced + per_msg && due < max {
                        tokio::select! {
                            _ = ctx.cancel.cancelled() => break,
                            _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                        }
                        continue;
                    }
                    due
                }
                Pacing::AsFastAsPossible => (produced + 64 * per_msg).min(max),
            };
            while produced < due {
                let n = per_msg.min(due - produced);
                let ts = start_ms + (produced as f64 * 1000.0 / cfg.sampling_rate) as i64;
                for s in streams.iter_mut() {
                    s.batch.clear();
                    for _ in 0..n {
                        s.gen.next_sample(&mut sample);
                        s.batch.push(sample.clone());
                    }
                    let body = if per_msg == 1 {
                        serde_json::to_vec(&OneSample {
                            kind: "raw",
                            user_id: &s.user,
                            timestamp: ts,
                            channels: &s.batch[0],
                        })
                    } else {
                        serde_json::to_vec(&ManySamples {
                            kind: "raw",
                            user_id: &s.user,
                            timestamp: ts,
                            samples: &s.batch,
                        })
                    }
                    .expect("samples serialise");
                    let subject = if subject.is_static() {
                        subject.as_str().to_string()
                    } else {
                        subject.render(
                            &json!({"type": "raw", "user_id": s.user}),
                            Some(ctx.bus.origin()),
                        )
                    };
                    let msg = Message::new(subject, Bytes::from(body)).with_meta(Meta {
                        id: Some(new_id()),
                        timestamp: Some(ts),
                        node: None,
                        replay: false,
                        origin: None,
                    });
                    if ctx.bus.publish_retrying(msg, &ctx.cancel).await.is_err() {
                        return;
                    }
                    published.inc();
                    samples_total.inc_by(n);
                    self.samples.fetch_add(n, Ordering::Relaxed);
                }
                produced += n;
            }
            if cfg.pacing == Pacing::AsFastAsPossible {
                tokio::task::yield_now().await;
            }
        }
        self.finished.store(true, Ordering::Relaxed);
        tracing::info!(component = %ctx.name, samples_per_user = produced, "simulator finished");
    }
}
