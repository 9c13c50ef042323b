//! `configs/zander.json`, the EEG ingestion server in one node, played as
//! its users play it: relays authenticate with their first message and
//! stream raw EEG and features, a consumer attaches to one user by path
//! and sends a prediction back, a REST client posts another, and each
//! prediction reaches only the relay streaming that user. Sessions,
//! samples, features and predictions land in PostgreSQL; the API key
//! appears nowhere. Only environment variables differ from the file.

mod common;
use common::{http_with, Node};
use fednode_testkit::{wait_until_blocking, PgCluster};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const READY: Duration = Duration::from_secs(30);
const WAIT: Duration = Duration::from_secs(30);
const API_KEY: &str = "relay-key-7f3a";
const TOKEN: &str = "consumer-token-19c2";
/// Samples each relay streams.
const SAMPLES: usize = 40;

async fn connect(url: &str, bearer: Option<&str>) -> Ws {
    let mut req = url.into_client_request().unwrap();
    if let Some(t) = bearer {
        req.headers_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    tokio_tungstenite::connect_async(req)
        .await
        .expect("connect")
        .0
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(WsMessage::Text(v.to_string().into()))
        .await
        .unwrap();
}

/// The next JSON text frame (pings skipped), within `WAIT`.
async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .expect("frame");
        if let WsMessage::Text(t) = m {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

/// The payload of the next data frame: plain JSON, or an envelope's
/// payload.
async fn next_data(ws: &mut Ws) -> Value {
    let v = next_json(ws).await;
    if v["type"] == "data" && v.get("payload").is_some() {
        v["payload"].clone()
    } else {
        v
    }
}

async fn relay(url: &str, user: &str) -> Ws {
    let mut ws = connect(url, None).await;
    send(
        &mut ws,
        json!({"type": "auth", "api_key": API_KEY, "user_id": user,
               "device_info": {"device_type": "Emotiv EPOC", "sampling_rate": 256, "channel_count": 8}}),
    )
    .await;
    let ok = next_json(&mut ws).await;
    assert_eq!(ok["type"], "auth_ok", "{ok}");
    ws
}

fn count(pg: &PgCluster, sql: &str) -> i64 {
    pg.psql("postgres", sql).trim().parse().unwrap_or(-1)
}

#[test]
fn relays_consumers_predictions_and_rest_as_the_ingestion_server_did() {
    let pg = PgCluster::start();
    let mut node = Node::start(
        "configs/zander.json",
        &[
            ("DATABASE_URL", pg.url().as_str()),
            ("EDGE_API_KEY", &format!("other-key,{API_KEY}")),
            ("ZANDER_CONSUMER_TOKEN", TOKEN),
            ("FEDNODE_ADMIN", "127.0.0.1:0"),
            ("ZANDER_STREAM_PORT", "0"),
            ("ZANDER_SUBSCRIBE_PORT", "0"),
            ("ZANDER_REST_PORT", "0"),
        ],
    );
    node.wait_ready(READY);
    let stream = format!("ws://{}/stream", node.addr_of("relays"));
    let subscribe = format!("ws://{}/subscribe/jamie", node.addr_of("consumers"));
    let rest = node.addr_of("rest").to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();

    let (mut jamie, mut alex, mut consumer) = rt.block_on(async {
        let jamie = relay(&stream, "jamie").await;
        let alex = relay(&stream, "alex").await;
        let consumer = connect(&subscribe, Some(TOKEN)).await;
        (jamie, alex, consumer)
    });
    wait_until_blocking(WAIT, node.and_log("the consumer to attach"), || {
        node.metric("websocket_output_connections_active{component=\"consumers\"}") == 1.0
    });

    // Both relays stream; the consumer of /subscribe/jamie sees only jamie.
    rt.block_on(async {
        for i in 0..SAMPLES {
            let sample = |u: usize| json!({"type": "raw", "timestamp": 1_764_000_000_000i64 + i as i64 * 4,
                                           "channels": [u, 1, 2, 3, 4, 5, 6, 7]});
            send(&mut alex, sample(2)).await;
            send(&mut jamie, sample(1)).await;
        }
        send(&mut jamie, json!({"type": "features", "timestamp": 1_764_000_001_000i64,
                                "workload": 0.65, "confidence": 0.89, "band_powers": {"alpha": 0.35}}))
        .await;
        for i in 0..SAMPLES {
            let v = next_data(&mut consumer).await;
            assert_eq!(v["user_id"], "jamie", "{v}");
            assert_eq!(v["type"], "raw", "{v}");
            assert_eq!(v["channels"][0], 1, "sample {i}: {v}");
        }
        let v = next_data(&mut consumer).await;
        assert_eq!(v["type"], "features", "{v}");
        assert_eq!(v["user_id"], "jamie", "{v}");
    });

    // A prediction from the consumer, and one over REST: both reach only
    // jamie's relay.
    rt.block_on(async {
        send(
            &mut consumer,
            json!({"type": "prediction", "prediction_type": "workload_azure_lstm",
                                   "classifier_name": "azure_ml_lstm_v2", "version": "v2.1.0",
                                   "data": {"workload_prediction": 0.72, "confidence": 0.94}}),
        )
        .await;
        let p = next_data(&mut jamie).await;
        assert_eq!(p["type"], "prediction", "{p}");
        assert_eq!(p["user_id"], "jamie", "{p}");
        assert_eq!(p["data"]["workload_prediction"], 0.72, "{p}");
    });
    let bearer = format!("Bearer {TOKEN}");
    let (status, body) = http_with(
        "POST",
        &rest,
        "/predictions/jamie",
        &[("Authorization", &bearer)],
        Some(r#"{"type":"prediction","prediction_type":"emotion","classifier_name":"rest_client","data":{"valence":0.3}}"#),
    )
    .expect("REST answers");
    assert_eq!(status, 202, "{body}");
    rt.block_on(async {
        let p = next_data(&mut jamie).await;
        assert_eq!(p["prediction_type"], "emotion", "{p}");
        assert_eq!(p["user_id"], "jamie", "{p}");
    });
    assert_eq!(
        node.metric("websocket_input_downstream_sent_total{component=\"relays\"}"),
        2.0
    );
    rt.block_on(async {
        // Nothing for alex: its socket holds no frame.
        let quiet = tokio::time::timeout(Duration::from_millis(300), alex.next()).await;
        assert!(quiet.is_err(), "alex's relay got {quiet:?}");
        jamie.close(None).await.unwrap();
    });

    // Storage: two sessions (jamie's closed), the samples, the features, the
    // two predictions; the API key nowhere.
    wait_until_blocking(WAIT, node.and_log("rows in PostgreSQL"), || {
        count(&pg, "SELECT count(*) FROM raw_samples") == 2 * SAMPLES as i64
            && count(
                &pg,
                "SELECT count(*) FROM predictions WHERE user_id = 'jamie'",
            ) == 2
            && count(&pg, "SELECT count(*) FROM features WHERE user_id = 'jamie'") == 1
            && count(
                &pg,
                "SELECT count(*) FROM sessions WHERE user_id = 'jamie' AND end_time IS NOT NULL",
            ) == 1
            && count(
                &pg,
                "SELECT count(*) FROM sessions WHERE user_id = 'alex' AND end_time IS NULL",
            ) == 1
    });
    assert_eq!(
        count(&pg, "SELECT count(*) FROM raw_samples r JOIN sessions s USING (session_id) WHERE r.user_id = 'jamie' AND s.user_id = 'jamie'"),
        SAMPLES as i64,
        "jamie's samples belong to jamie's session"
    );
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM sessions WHERE device_info->>'device_type' = 'Emotiv EPOC'"
        ),
        2
    );
    let leaked = pg.psql(
        "postgres",
        &format!(
            "SELECT (SELECT count(*) FROM zander_messages WHERE payload::text LIKE '%{API_KEY}%') \
             + (SELECT count(*) FROM sessions WHERE device_info::text LIKE '%{API_KEY}%')"
        ),
    );
    assert_eq!(leaked.trim(), "0", "the API key was stored");
    assert!(!node.log().contains(API_KEY), "the API key was logged");
}
