//! The node config loader (`fednode::config::load_str`) on arbitrary text.
//!
//! `load_str` is what `fednode::config::load` runs on a file's text once it
//! has been read as UTF-8 (bytes that are not UTF-8 are a read error
//! there, so they are skipped here). The environment is a fixed fake: a
//! few variables are set (a node id, a port, a float, an empty string),
//! every other one is unset. Nothing is started: factories only validate
//! and build.
//!
//! Asserts: it never panics; `Err` always holds at least one problem; a
//! config that loads gets through `runtime::wiring_report` (what `fednode
//! check` prints) without panicking either.
#![no_main]

use libfuzzer_sys::fuzz_target;

fn env(name: &str) -> Option<String> {
    match name {
        "FEDNODE_NODE_ID" => Some("fuzz-01".into()),
        "PORT" | "FEDNODE_WS_PORT" => Some("8080".into()),
        "RATE" => Some("1.5".into()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match fednode::config::load_str(text, &env) {
        Ok(cfg) => {
            let _ = fednode::runtime::wiring_report(&cfg);
        }
        Err(errors) => assert!(!errors.is_empty(), "refused without a reason"),
    }
});
