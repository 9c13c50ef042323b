//! `durable: true`: reading through a JetStream durable consumer on a real
//! nats-server, across an abrupt crash of the component (its runtime is
//! dropped: no flush, no acks), then a fresh instance.

mod common;

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use common::{count, start};
use fednode_kit::memory::MemoryBus;
use fednode_kit::metrics::Metrics;
use fednode_kit::{Bus, BusError, Message, Meta, NatsConnection, SubscribeOptions, Subscription};
use fednode_testkit::{wait_until, wait_until_async, NatsServer, PgCluster};
use serde_json::json;

/// A bus that says it is NATS (the durable consumer opens its own
/// connection from `nats_connection()`); everything else is in memory.
struct NatsBacked {
    mem: MemoryBus,
    url: String,
}

#[async_trait]
impl Bus for NatsBacked {
    async fn publish(&self, msg: Message) -> Result<(), BusError> {
        self.mem.publish(msg).await
    }
    async fn subscribe(
        &self,
        pattern: &str,
        opts: SubscribeOptions,
    ) -> Result<Subscription, BusError> {
        self.mem.subscribe(pattern, opts).await
    }
    async fn request(
        &self,
        subject: &str,
        payload: Bytes,
        meta: Meta,
        timeout: Duration,
    ) -> Result<Message, BusError> {
        self.mem.request(subject, payload, meta, timeout).await
    }
    async fn flush(&self) -> Result<(), BusError> {
        Ok(())
    }
    fn is_connected(&self) -> bool {
        true
    }
    fn kind(&self) -> &'static str {
        "nats"
    }
    fn dropped_total(&self) -> u64 {
        0
    }
    fn nats_connection(&self) -> Option<NatsConnection> {
        Some(NatsConnection {
            url: self.url.clone(),
            token: None,
            user: None,
            password: None,
            creds_file: None,
            tls: None,
        })
    }
}

fn context(nats_url: &str, metrics: &Arc<Metrics>) -> fednode_kit::Context {
    let bus = Arc::new(NatsBacked {
        mem: MemoryBus::new(),
        url: nats_url.to_string(),
    });
    fednode_kit::testing::context_on("store", bus, metrics)
}

const BASE_TS: i64 = 1_700_000_000_000;
const N: i64 = 4_000;

/// The component's durable JetStream consumer, as the server sees it.
async fn store_consumer(
    js: &async_nats::jetstream::Context,
) -> async_nats::jetstream::consumer::PullConsumer {
    js.get_stream("FEDNODE_STORE")
        .await
        .unwrap()
        .get_consumer("fednode_store")
        .await
        .unwrap()
}

async fn publish(js: &async_nats::jetstream::Context, i: i64) {
    let mut h = async_nats::HeaderMap::new();
    h.insert("Fednode-Id", format!("d{i}").as_str());
    h.insert("Fednode-Timestamp", (BASE_TS + i).to_string().as_str());
    h.insert("Fednode-Node", "edge-7");
    let body = json!({"user_id": format!("u{}", i % 5), "i": i}).to_string();
    js.publish_with_headers(format!("dur.u{}", i % 5), h, body.into())
        .await
        .expect("publish")
        .await
        .expect("stored by JetStream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_consumer_survives_a_crash_of_the_component() {
    let nats = NatsServer::start_jetstream();
    let pg = PgCluster::start();
    let url = pg.url();
    let config = json!({
        "url": url, "durable": true, "batch_size": 100, "flush_interval": "100ms",
        "jetstream": {"ack_wait": "2s"},
        "ports": {"inputs": [{"name": "in", "subject": "dur.>"}]}
    });

    // Instance 1 on its own runtime, so that it can be torn down abruptly.
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (crash_tx, crash_rx) = std::sync::mpsc::channel::<()>();
    let (nats_url, cfg1) = (nats.url(), config.clone());
    let first = thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let metrics = Metrics::new();
        rt.block_on(async {
            let ctx = context(&nats_url, &metrics);
            start(cfg1, &ctx).await.expect("start instance 1");
            started_tx.send(()).unwrap();
        });
        crash_rx.recv().unwrap();
        // The crash: every task is dropped where it stands.
        rt.shutdown_background();
    });
    started_rx.recv().unwrap();

    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let feeder_js = js.clone();
    let feeding = tokio::spawn(async move {
        for i in 0..N {
            publish(&feeder_js, i).await;
            if i % 100 == 99 {
                // Pacing, not waiting: the feed outlasts the crash.
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        }
    });
    wait_until_async(
        Duration::from_secs(20),
        "instance 1 to store rows",
        || async { count(&url, "SELECT count(*) FROM fednode_messages").await >= 800 },
    )
    .await;
    crash_tx.send(()).unwrap();
    first.join().unwrap();
    let at_crash = count(&url, "SELECT count(*) FROM fednode_messages").await;
    assert!(at_crash < N, "instance 1 finished before the crash");

    // Instance 2 resumes the same durable consumer.
    let metrics = Metrics::new();
    let ctx = context(&nats.url(), &metrics);
    let c = start(config, &ctx).await.expect("start instance 2");
    feeding.await.unwrap();
    // An upstream retry: the first 100 messages again, same ids and times.
    for i in 0..100 {
        publish(&js, i).await;
    }
    wait_until_async(Duration::from_secs(30), "every message stored", || async {
        count(&url, "SELECT count(DISTINCT msg_id) FROM fednode_messages").await == N
    })
    .await;
    let dup_metric = || {
        metrics
            .value("timescale_duplicates_total", &[("component", "store")])
            .unwrap_or(0.0)
    };
    wait_until(
        Duration::from_secs(10),
        "the resent messages counted as duplicates",
        || dup_metric() >= 100.0,
    )
    .await;
    // A redelivery (ack_wait is 2 s) also counts as a duplicate, so the
    // count above can be reached with a resent message still undelivered:
    // wait until the consumer has nothing left before stopping.
    let consumer_info = || async { store_consumer(&js).await.info().await.unwrap().clone() };
    wait_until_async(
        Duration::from_secs(30),
        "the consumer to have nothing left",
        || async {
            let info = consumer_info().await;
            info.num_pending == 0 && info.num_ack_pending == 0
        },
    )
    .await;
    fednode_kit::testing::stop(&ctx).await;
    assert_eq!(
        count(&url, "SELECT count(*) FROM fednode_messages").await,
        N,
        "duplicates were stored"
    );
    assert_eq!(
        count(
            &url,
            "SELECT count(*) FROM fednode_messages WHERE node_id = 'edge-7' AND key LIKE 'u%'"
        )
        .await,
        N
    );
    assert!(c.health().details["durable"] == json!(true));
    let indexes = pg.psql(
        "postgres",
        "SELECT indexdef FROM pg_indexes WHERE tablename = 'fednode_messages'",
    );
    assert!(
        indexes.contains("UNIQUE INDEX") && indexes.contains("(msg_id, \"time\")"),
        "{indexes}"
    );

    // Everything was acked: nothing left for the consumer.
    let info = consumer_info().await;
    assert_eq!(info.num_ack_pending, 0, "{info:?}");
    assert_eq!(info.num_pending, 0, "{info:?}");
    println!(
        "rows at crash: {at_crash}; duplicates skipped by instance 2: {}",
        dup_metric()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_postgres_refuses_is_terminated_not_redelivered() {
    let nats = NatsServer::start_jetstream();
    let pg = PgCluster::start();
    let url = pg.url();
    let metrics = Metrics::new();
    let ctx = context(&nats.url(), &metrics);
    start(
        json!({
            "url": url, "durable": true, "batch_size": 100, "flush_interval": "100ms",
            "jetstream": {"ack_wait": "1s"},
            "ports": {"inputs": [{"name": "in", "subject": "dur.>"}]}
        }),
        &ctx,
    )
    .await
    .expect("start");
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    // JSON nested deeper than PostgreSQL's stack (SQLSTATE 54001), between
    // ordinary rows.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    for i in 0..50 {
        if i == 20 {
            js.publish("dur.deep", deep.clone().into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
        publish(&js, i).await;
    }
    wait_until_async(Duration::from_secs(15), "the 50 good rows", || async {
        count(&url, "SELECT count(*) FROM fednode_messages").await == 50
    })
    .await;
    // Terminated: nothing pending, nothing awaiting an ack (a message
    // left unacked would be redelivered after ack_wait, forever).
    let consumer = store_consumer(&js).await;
    wait_until_async(
        Duration::from_secs(10),
        "every message acked or terminated",
        || {
            let mut c = consumer.clone();
            async move {
                let info = c.info().await.unwrap();
                info.num_ack_pending == 0 && info.num_pending == 0
            }
        },
    )
    .await;
    let rejected = || {
        metrics
            .value(
                "timescale_rows_rejected_total",
                &[("component", "store"), ("reason", "program_limit")],
            )
            .unwrap_or(0.0)
    };
    assert_eq!(rejected(), 1.0);
    fednode_kit::testing::stop(&ctx).await;
    assert_eq!(rejected(), 1.0, "the refused row came back");
    assert_eq!(
        count(&url, "SELECT count(*) FROM fednode_messages").await,
        50
    );
}
