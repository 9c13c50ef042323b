//! Reading back what a child process logged, so that a test can start a
//! server on port 0 and learn the port the OS gave it (no guessed ports).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// `text` without ANSI escape sequences (the colours `tracing-subscriber`
/// writes even into a file).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        // CSI: ESC [ parameters… final byte in '@'..='~'.
        if chars.next() == Some('[') {
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
    }
    out
}

/// The address logged on the first line of `log` that contains `message`
/// and, when `component` is given, the field `component=NAME`: the first
/// `key=value` field whose value is a socket address (`127.0.0.1:4222`,
/// also `Some(127.0.0.1:4222)` as a `?`-formatted `Option` prints it). An
/// unspecified IP (a server bound to `0.0.0.0`) reads as `127.0.0.1`, the
/// address to connect to.
///
/// Works on `tracing-subscriber`'s default format, with or without colours:
///
/// ```
/// let log = "2026-01-01T00:00:00Z  INFO udp: udp input listening component=udp addr=Some(0.0.0.0:5555)\n";
/// let addr = fednode_testkit::logged_addr(log, "listening", Some("udp")).unwrap();
/// assert_eq!(addr.to_string(), "127.0.0.1:5555");
/// ```
pub fn logged_addr(log: &str, message: &str, component: Option<&str>) -> Option<SocketAddr> {
    let log = strip_ansi(log);
    let wanted = component.map(|c| format!("component={c}"));
    log.lines()
        .filter(|line| line.contains(message))
        .filter(|line| {
            wanted
                .as_deref()
                .is_none_or(|w| line.split_whitespace().any(|field| field == w))
        })
        .find_map(|line| line.split_whitespace().find_map(field_addr))
}

/// `key=ADDR`, `key=Some(ADDR)` or `key="ADDR"` as an address to connect to.
fn field_addr(field: &str) -> Option<SocketAddr> {
    let (_, value) = field.split_once('=')?;
    let value = value
        .strip_prefix("Some(")
        .and_then(|v| v.strip_suffix(')'))
        .unwrap_or(value)
        .trim_matches('"');
    let mut addr: SocketAddr = value.parse().ok()?;
    if addr.ip().is_unspecified() {
        addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    Some(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fields_of_coloured_lines() {
        let log = "\u{1b}[2m2026-12-04T20:47:50.977039Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m \
                   \u{1b}[2mfednode\u{1b}[0m\u{1b}[2m:\u{1b}[0m admin server listening \
                   \u{1b}[3mlocal\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:44501\n\
                   x INFO y: websocket output listening \u{1b}[3mcomponent\u{1b}[0m\u{1b}[2m=\u{1b}[0mws_out \
                   \u{1b}[3maddr\u{1b}[0m\u{1b}[2m=\u{1b}[0mSome(0.0.0.0:38813) path=/federation\n\
                   x INFO y: websocket_input listening component=ws_in addr=127.0.0.1:40001 path=/in\n";
        assert_eq!(
            logged_addr(log, "admin server listening", None),
            Some("127.0.0.1:44501".parse().unwrap())
        );
        assert_eq!(
            logged_addr(log, "listening", Some("ws_out")),
            Some("127.0.0.1:38813".parse().unwrap())
        );
        assert_eq!(
            logged_addr(log, "listening", Some("ws_in")),
            Some("127.0.0.1:40001".parse().unwrap())
        );
        // `component=ws` is not `component=ws_in`.
        assert_eq!(logged_addr(log, "listening", Some("ws")), None);
        assert_eq!(logged_addr(log, "nothing like this", None), None);
    }
}
