//! The demo's EEG pipeline end to end with the built binary:
//! eeg_simulator → eeg_features → websocket output → `fednode tail`, one
//! feature message per hop (1 s) for each user after the first 2 s window.

mod common;
use common::Node;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn features_arrive_once_per_hop_for_each_user() {
    // Every server on port 0; the output's port is read from the log.
    let mut node = Node::start(
        "configs/demo.json",
        &[
            ("FEDNODE_ADMIN", "127.0.0.1:0"),
            ("FEDNODE_UDP_PORT", "0"),
            ("FEDNODE_WS_PORT", "0"),
        ],
    );
    node.wait_ready(Duration::from_secs(20));
    let mut tail = common::bin()
        .args(["tail", &format!("ws://{}/features", node.addr_of("ws_out"))])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(tail.stdout.take().unwrap()).lines();

    // (user → [(arrival, window)]) until each user has three windows.
    let mut seen: BTreeMap<String, Vec<(Instant, serde_json::Value)>> = BTreeMap::new();
    let t0 = Instant::now();
    while seen.len() < 2 || seen.values().any(|w| w.len() < 3) {
        assert!(t0.elapsed() < Duration::from_secs(15), "too slow: {seen:?}");
        let line = lines.next().expect("tail ended").unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["type"], "features");
        let user = v["user_id"].as_str().unwrap().to_string();
        seen.entry(user).or_default().push((Instant::now(), v));
    }
    let _ = tail.kill();
    let _ = tail.wait();
    assert_eq!(seen.keys().collect::<Vec<_>>(), vec!["alex", "jamie"]);
    for (user, windows) in &seen {
        for pair in windows.windows(2) {
            let (a, b) = (&pair[0].1["window"], &pair[1].1["window"]);
            assert_eq!(
                b["index"].as_u64().unwrap(),
                a["index"].as_u64().unwrap() + 1,
                "{user}"
            );
            assert_eq!(
                b["start_sample"].as_u64().unwrap() - a["start_sample"].as_u64().unwrap(),
                256
            );
            let dt = b["end_timestamp"].as_i64().unwrap() - a["end_timestamp"].as_i64().unwrap();
            assert!((990..=1010).contains(&dt), "{user}: windows {dt} ms apart");
            // Real-time pacing: they also arrive about a second apart.
            let gap = pair[1].0 - pair[0].0;
            assert!(
                gap > Duration::from_millis(600) && gap < Duration::from_millis(1400),
                "{user}: {gap:?}"
            );
        }
        let w = &windows[0].1;
        assert_eq!(
            w["window"]["end_sample"].as_u64().unwrap()
                - w["window"]["start_sample"].as_u64().unwrap(),
            512
        );
        // The simulator's strongest component is 10 Hz: alpha dominates.
        let bp = &w["band_powers"];
        let alpha = bp["alpha"].as_f64().unwrap();
        for band in ["delta", "theta", "beta", "gamma"] {
            assert!(alpha > bp[band].as_f64().unwrap(), "{user}: {bp}");
        }
    }
    node.signal("TERM");
    assert!(
        node.wait_exit(Duration::from_secs(10)).unwrap().success(),
        "{}",
        node.log()
    );
}
