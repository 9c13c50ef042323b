//! The testkit against the real binaries: start, crash, restart.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use fednode_testkit::{free_port, NatsServer, PgCluster};

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
fn free_port_is_bindable() {
    let port = free_port();
    assert_ne!(port, 0);
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("port is free");
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
