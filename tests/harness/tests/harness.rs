//! The testkit against the real binaries: start, crash, restart.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use fednode_testkit::{wait_until_blocking, ClosedPort, NatsServer, PgCluster};

/// Connects to a NATS server and returns its greeting line.
fn nats_info(port: u16) -> String {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to nats-server");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .expect("read INFO");
    line
}

fn port_open(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[test]
fn a_closed_port_refuses_connections_and_stays_reserved() {
    let closed = ClosedPort::new();
    assert_ne!(closed.port(), 0);
    let err = TcpStream::connect(closed.addr()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    let err = TcpListener::bind(closed.addr()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    drop(closed);
}

/// Holds `port` (as a listener) on a thread of its own until `log` shows
/// that a server failed to bind it; the handle ends once the port is free.
fn occupy_until_refused(port: u16, log: &Path) -> std::thread::JoinHandle<()> {
    let squatter = TcpListener::bind(("127.0.0.1", port)).expect("take the port");
    let log = log.to_path_buf();
    std::thread::spawn(move || {
        wait_until_blocking(
            Duration::from_secs(30),
            "a start refused for the port in use",
            || {
                std::fs::read_to_string(&log)
                    .is_ok_and(|text| fednode_testkit::is_addr_in_use(&text))
            },
        );
        drop(squatter);
    })
}

#[test]
fn nats_restart_waits_for_its_port_taken_meanwhile() {
    let mut nats = NatsServer::start();
    let port = nats.port();
    nats.stop();
    let squatter = occupy_until_refused(port, nats.log_path());
    nats.restart();
    squatter.join().unwrap();
    assert_eq!(nats.port(), port);
    assert!(nats_info(port).starts_with("INFO "));
}

#[test]
fn postgres_restart_waits_for_its_port_taken_meanwhile() {
    let mut pg = PgCluster::start();
    let port = pg.port();
    pg.stop();
    let squatter = occupy_until_refused(port, pg.log_path());
    pg.restart();
    squatter.join().unwrap();
    assert_eq!(pg.port(), port);
    assert_eq!(pg.psql("postgres", "select 1"), "1");
}

#[test]
fn nats_kill_and_restart_on_same_port() {
    let mut nats = NatsServer::start();
    let port = nats.port();
    assert_eq!(nats.url(), format!("nats://127.0.0.1:{port}"));
    assert!(nats_info(port).starts_with("INFO "));

    let old_pid = nats.pid();
    nats.kill();
    assert!(!port_open(port), "port closed after kill");
    assert!(!Path::new(&format!("/proc/{old_pid}")).exists());

    nats.restart();
    assert_eq!(nats.port(), port);
    assert_ne!(nats.pid(), old_pid);
    assert!(nats_info(port).starts_with("INFO "));

    nats.stop();
    assert!(!port_open(port), "port closed after stop");
}

#[test]
fn nats_jetstream_keeps_its_store_across_restart() {
    let mut nats = NatsServer::start_jetstream();
    let store = nats.store_dir().expect("jetstream has a store dir");
    assert!(nats_info(nats.port()).contains("\"jetstream\":true"));
    nats.kill();
    nats.restart();
    assert!(nats_info(nats.port()).contains("\"jetstream\":true"));
    assert!(store.is_dir(), "store dir survives the restart");
}

#[test]
fn nats_is_killed_on_drop() {
    let nats = NatsServer::start();
    let (pid, port) = (nats.pid(), nats.port());
    drop(nats);
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    assert!(!port_open(port));
}

#[test]
fn postgres_survives_kill_9_and_restart() {
    let mut pg = PgCluster::start();
    let port = pg.port();
    assert_eq!(
        pg.url(),
        format!("postgres://postgres@127.0.0.1:{port}/postgres")
    );
    assert_eq!(pg.psql("postgres", "select 1"), "1");

    pg.create_database("fed");
    pg.psql("fed", "create table t (v int); insert into t values (42)");

    // The PID we hold is the postmaster itself (not a runuser/su wrapper).
    let pid_file = std::fs::read_to_string(pg.data_dir().join("postmaster.pid")).unwrap();
    assert_eq!(
        pid_file.lines().next().unwrap().trim(),
        pg.pid().to_string()
    );

    let old_pid = pg.pid();
    pg.kill();
    assert!(!port_open(port), "port closed after kill -9");
    assert!(!Path::new(&format!("/proc/{old_pid}")).exists());

    pg.restart();
    assert_eq!(pg.port(), port);
    assert_eq!(pg.psql("postgres", "select 1"), "1");
    assert_eq!(pg.psql("fed", "select v from t"), "42");
}

#[test]
fn postgres_stop_is_clean_and_drop_removes_everything() {
    let mut pg = PgCluster::start();
    let port = pg.port();
    pg.stop();
    assert!(!port_open(port), "port closed after stop");
    pg.restart();
    assert_eq!(pg.psql("postgres", "select 2"), "2");

    let (pid, dir) = (pg.pid(), pg.data_dir().to_path_buf());
    drop(pg);
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    assert!(!port_open(port));
    assert!(!dir.exists(), "temp dir removed on drop");
}

#[test]
fn a_panicking_test_still_stops_its_servers() {
    let (tx, rx) = std::sync::mpsc::channel();
    let outcome = std::thread::spawn(move || {
        let nats = NatsServer::start();
        let pg = PgCluster::start();
        tx.send((nats.pid(), nats.port(), pg.pid(), pg.port()))
            .unwrap();
        panic!("simulated test failure");
    })
    .join();
    assert!(outcome.is_err(), "the thread panicked");
    let (nats_pid, nats_port, pg_pid, pg_port) = rx.recv().unwrap();
    for pid in [nats_pid, pg_pid] {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} gone"
        );
    }
    assert!(!port_open(nats_port) && !port_open(pg_port));
}
