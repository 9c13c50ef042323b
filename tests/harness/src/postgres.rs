//! A throwaway PostgreSQL cluster: `initdb` into a temp dir, then the
//! `postgres` postmaster as a direct child process.
//!
//! The postmaster is spawned directly (not through `pg_ctl`, which
//! daemonizes), so the PID we hold is the postmaster itself. As root,
//! PostgreSQL refuses to start; the child then drops to the `postgres` OS
//! user with `CommandExt::uid/gid`, which switches user inside the forked
//! child before `exec` — unlike `runuser`/`su`, which fork and stay around as
//! a parent that does not pass SIGKILL on.
//!
//! [`PgCluster::start_tls`] starts one that takes TCP clients over TLS only,
//! with a CA and certificates made at start by `openssl` (`tls.rs`).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::process::{self, POLL};
use crate::tls::TestCa;

const START_TIMEOUT: Duration = Duration::from_secs(30);
/// PostgreSQL cannot bind port 0 and report the port it got, so a port is
/// guessed and the start retried with another guess when it was taken.
const START_ATTEMPTS: usize = 10;
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const MISSING_SERVER: &str = "PostgreSQL server binaries not found: install with \
                              `apt-get install -y postgresql` (scripts/test does this when run as root)";
const MISSING_PSQL: &str = "psql not found: install with `apt-get install -y postgresql-client` \
                            (scripts/test does this when run as root)";

/// How a TLS cluster ([`PgCluster::start_tls_with`]) lets TCP clients in.
/// Either way a plain (non-TLS) TCP connection is refused: `pg_hba.conf`
/// has only `hostssl` lines for TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgTlsAuth {
    /// `hostssl … trust`: any client over TLS, as any user.
    Trust,
    /// `hostssl … cert`: a client certificate signed by the cluster's CA
    /// whose common name is the user name (see
    /// [`PgTlsFiles::client_cert`]).
    ClientCert,
}

/// The certificates of a TLS cluster, made by `openssl` at start in
/// `<temp dir>/tls` (removed with the cluster).
#[derive(Debug, Clone)]
pub struct PgTlsFiles {
    /// The CA that signed the server's and the client's certificates: a
    /// client's `sslrootcert`.
    pub ca_cert: PathBuf,
    /// The server's certificate, for `localhost`, `127.0.0.1` and `::1`.
    pub server_cert: PathBuf,
    /// Its key (mode 0600, owned by the server's OS user).
    pub server_key: PathBuf,
    /// A client certificate for user `postgres`, signed by the CA: `sslcert`.
    pub client_cert: PathBuf,
    /// Its key (mode 0600): `sslkey`.
    pub client_key: PathBuf,
}

/// A PostgreSQL cluster on 127.0.0.1 with trust auth for user `postgres`.
/// Dropping it shuts the server down (fast) and deletes its files.
///
/// ```no_run
/// let pg = fednode_testkit::PgCluster::start();
/// pg.create_database("metrics");
/// let url = pg.url_for("metrics"); // "postgres://postgres@127.0.0.1:PORT/metrics"
/// ```
///
/// With TLS ([`start_tls`](Self::start_tls)), TCP clients must use TLS;
/// the CA to verify the server with is [`tls`](Self::tls)`().ca_cert`:
///
/// ```no_run
/// let pg = fednode_testkit::PgCluster::start_tls();
/// let ca = &pg.tls().expect("a TLS cluster").ca_cert;
/// let url = format!("{}?sslmode=verify-full&sslrootcert={}", pg.url(), ca.display());
/// ```
pub struct PgCluster {
    /// The postmaster; `None` after `kill()`/`stop()` until `restart()`.
    child: Option<Child>,
    pid: u32,
    port: u16,
    /// `Some((uid, gid))` of the `postgres` user when we run as root.
    run_as: Option<(u32, u32)>,
    data: PathBuf,
    socket_dir: PathBuf,
    log: PathBuf,
    /// The certificates, when TCP clients must use TLS.
    tls: Option<PgTlsFiles>,
    /// Holds data, socket dir and log; removed on drop.
    dir: TempDir,
}

impl PgCluster {
    /// Runs `initdb` in a fresh temp dir and starts the server on a free
    /// port; returns once it accepts connections (panics after 30 s).
    ///
    /// The port is a guess that the start verifies: if another process
    /// holds it (the server logs "Address already in use" and exits), the
    /// server is started again on another port, up to 10 times.
    pub fn start() -> Self {
        Self::start_inner(None)
    }

    /// Like [`start`](Self::start), but TCP clients must use TLS
    /// (`ssl = on`, and `hostssl … trust` the only TCP line of
    /// `pg_hba.conf`): a plain connection is refused with "no pg_hba.conf
    /// entry … no encryption". A fresh CA signs the server's certificate
    /// (for `localhost`, `127.0.0.1`, `::1`); see [`tls`](Self::tls).
    /// [`psql`](Self::psql) goes through the Unix socket.
    pub fn start_tls() -> Self {
        Self::start_tls_with(PgTlsAuth::Trust)
    }

    /// [`start_tls`](Self::start_tls) with a choice of how TLS clients
    /// authenticate.
    pub fn start_tls_with(auth: PgTlsAuth) -> Self {
        Self::start_inner(Some(auth))
    }

    fn start_inner(tls: Option<PgTlsAuth>) -> Self {
        let bins = pg_bins();
        let run_as = run_as();
        // As root, the dir must be traversable by `postgres`: keep it
        // directly under /tmp rather than wherever TMPDIR points.
        let mut builder = tempfile::Builder::new();
        builder.prefix("fednode-pg-");
        let dir = match run_as {
            Some(_) => builder.tempdir_in("/tmp"),
            None => builder.tempdir(),
        }
        .expect("create PostgreSQL temp dir");
        let data = dir.path().join("data");
        let socket_dir = dir.path().join("sock");
        let log = dir.path().join("postgres.log");
        fs::create_dir(&socket_dir).expect("create socket dir");
        fs::write(&log, "").expect("create PostgreSQL log");
        if let Some((uid, gid)) = run_as {
            for path in [dir.path(), &socket_dir, &log] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid))
                    .unwrap_or_else(|e| panic!("chown {} to postgres: {e}", path.display()));
            }
        }

        let mut cluster = PgCluster {
            child: None,
            pid: 0,
            port: 0,
            run_as,
            data,
            socket_dir,
            log,
            tls: None,
            dir,
        };
        cluster.initdb(&bins.initdb);
        if let Some(auth) = tls {
            cluster.tls = Some(cluster.configure_tls(auth));
        }
        let mut taken = Vec::new();
        while taken.len() < START_ATTEMPTS {
            cluster.port = crate::ports::guess_port();
            match cluster.spawn_and_wait() {
                Ok(()) => return cluster,
                Err(_) => taken.push(cluster.port),
            }
        }
        panic!(
            "postgres found each of the ports {taken:?} in use; log tail:\n{}",
            process::log_tail(&cluster.log, 30)
        );
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// The URL of database `db` on this cluster.
    pub fn url_for(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The postmaster's PID (the last one, if the server is down).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The server log (appended across restarts).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The certificates of a cluster started with TLS; `None` otherwise.
    pub fn tls(&self) -> Option<&PgTlsFiles> {
        self.tls.as_ref()
    }

    /// `CREATE DATABASE "name"` (through `psql`).
    pub fn create_database(&self, name: &str) {
        let quoted = name.replace('"', "\"\"");
        self.psql("postgres", &format!("CREATE DATABASE \"{quoted}\""));
    }

    /// Runs `sql` in database `db` with `psql -XAtq -v ON_ERROR_STOP=1` and
    /// returns its trimmed output (one row per line, columns split by `|`).
    /// Panics with psql's stderr if it fails. On a TLS cluster it connects
    /// through the Unix socket, so that it does not depend on libpq's TLS
    /// defaults (nor on a `~/.postgresql/root.crt`).
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let psql = pg_bins()
            .psql
            .as_ref()
            .unwrap_or_else(|| panic!("{MISSING_PSQL}"));
        let mut cmd = Command::new(psql);
        cmd.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"]);
        match self.tls {
            None => cmd.arg("-d").arg(self.url_for(db)),
            Some(_) => cmd.arg("-h").arg(&self.socket_dir).args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
            ]),
        };
        let out = cmd
            .args(["-c", sql])
            .env("PGCONNECT_TIMEOUT", "10")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", psql.display()));
        if !out.status.success() {
            panic!(
                "psql on port {} failed ({}) for {sql:?}:\n{}",
                self.port,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Fast shutdown (SIGINT): the postmaster ends its backends and exits.
    /// Waits for the exit and for the port to close; falls back to `kill()`
    /// after 30 s.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::signal(child.id(), "INT");
            if !process::wait_exit(&mut child, STOP_TIMEOUT) {
                self.crash(child);
            }
        }
        process::wait_port_closed(self.port, STOP_TIMEOUT);
    }

    /// Crash: SIGKILL the postmaster and every process it had started,
    /// wait until the port closes, and remove the stale lock files so that
    /// [`restart`](Self::restart) goes through crash recovery.
    pub fn kill(&mut self) {
        if let Some(child) = self.child.take() {
            self.crash(child);
        }
        if !process::wait_port_closed(self.port, STOP_TIMEOUT) {
            panic!("port {} still open after killing postgres", self.port);
        }
    }

    /// Starts the server again on the same port and data dir and waits
    /// until it accepts connections. A running server is stopped first.
    /// Should another process have taken the port meanwhile, the start is
    /// retried (on the same port: clients dial it) for up to
    /// [`crate::REBIND_TIMEOUT`].
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + crate::REBIND_TIMEOUT;
        while let Err(log) = self.spawn_and_wait() {
            if Instant::now() >= deadline {
                panic!(
                    "postgres could not bind its port {} again within {:?}:\n{log}",
                    self.port,
                    crate::REBIND_TIMEOUT
                );
            }
            thread::sleep(POLL);
        }
    }

    fn initdb(&self, initdb: &Path) {
        let out = self
            .command(initdb)
            .arg("-D")
            .arg(&self.data)
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", initdb.display()));
        if !out.status.success() {
            panic!(
                "initdb failed ({}):\n{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Makes the CA and the certificates in `<dir>/tls`, turns `ssl` on in
    /// `postgresql.conf` and replaces `pg_hba.conf` with local (socket)
    /// trust and `hostssl`-only TCP lines.
    fn configure_tls(&self, auth: PgTlsAuth) -> PgTlsFiles {
        let dir = self.dir.path().join("tls");
        fs::create_dir(&dir).expect("create TLS dir");
        let ca = TestCa::new(&dir, "ca");
        let (server_cert, server_key) =
            ca.issue_server(&dir, "server", &["localhost", "127.0.0.1", "::1"]);
        let (client_cert, client_key) = ca.issue_client(&dir, "client", "postgres");
        // The server reads these as `postgres`; it refuses a key that
        // others can read (the key is 0600) or that another user owns.
        if let Some((uid, gid)) = self.run_as {
            for path in [&dir, ca.cert(), &server_cert, &server_key] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid))
                    .unwrap_or_else(|e| panic!("chown {} to postgres: {e}", path.display()));
            }
        }
        let quote = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', "''"));
        let mut conf = format!(
            "\n# fednode-testkit: TLS\nssl = on\nssl_cert_file = {}\nssl_key_file = {}\n",
            quote(&server_cert),
            quote(&server_key)
        );
        let method = match auth {
            PgTlsAuth::Trust => "trust",
            PgTlsAuth::ClientCert => {
                // The CA client certificates are checked against.
                conf.push_str(&format!("ssl_ca_file = {}\n", quote(ca.cert())));
                "cert"
            }
        };
        let conf_path = self.data.join("postgresql.conf");
        OpenOptions::new()
            .append(true)
            .open(&conf_path)
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .unwrap_or_else(|e| panic!("append to {}: {e}", conf_path.display()));
        // No `host` line: a TCP connection without TLS matches nothing and
        // is refused ("no pg_hba.conf entry … no encryption").
        let hba = format!(
            "# fednode-testkit: TCP clients over TLS only; psql uses the socket\n\
             local   all  all                 trust\n\
             hostssl all  all  127.0.0.1/32   {method}\n\
             hostssl all  all  ::1/128        {method}\n"
        );
        let hba_path = self.data.join("pg_hba.conf");
        fs::write(&hba_path, hba).unwrap_or_else(|e| panic!("write {}: {e}", hba_path.display()));
        PgTlsFiles {
            ca_cert: ca.cert().to_path_buf(),
            server_cert,
            server_key,
            client_cert,
            client_key,
        }
    }

    /// Starts the postmaster on `self.port` and waits until it is ready.
    /// `Err` (this start's log) only if the port was in use; any other
    /// failure panics.
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let from = process::log_len(&self.log);
        let log = OpenOptions::new()
            .append(true)
            .open(&self.log)
            .expect("open PostgreSQL log");
        let postgres = &pg_bins().postgres;
        let child = self
            .command(postgres)
            .arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string(), "-h", "127.0.0.1", "-k"])
            .arg(&self.socket_dir)
            // Speed without losing acknowledged commits on `kill()`: fsync=off
            // only matters if the OS crashes, but synchronous_commit=off would
            // leave recent commits in shared memory, lost with the process,
            // and make every crash test flaky.
            .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", postgres.display()));
        self.pid = child.id();
        self.child = Some(child);
        self.wait_ready(from)
    }

    /// Ready means `postmaster.pid` names our child with status `ready`
    /// (written once recovery is done) and the TCP port accepts. `from`:
    /// where this start's lines begin in the log.
    fn wait_ready(&mut self, from: u64) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let pid_file = self.data.join("postmaster.pid");
        loop {
            let child = self.child.as_mut().expect("server was just spawned");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                let log = process::log_since(&self.log, from);
                if crate::is_addr_in_use(&log) {
                    return Err(log);
                }
                panic!(
                    "postgres on port {} exited during startup ({status}); log tail:\n{}",
                    self.port,
                    process::log_tail(&self.log, 30)
                );
            }
            let ready = fs::read_to_string(&pid_file).is_ok_and(|text| {
                let lines: Vec<&str> = text.lines().map(str::trim).collect();
                lines.first() == Some(&self.pid.to_string().as_str())
                    && lines.get(7) == Some(&"ready")
            });
            if ready && process::port_accepts(self.port) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                if let Some(child) = self.child.take() {
                    self.crash(child);
                }
                panic!(
                    "postgres on port {} not ready after {START_TIMEOUT:?}; log tail:\n{}",
                    self.port,
                    process::log_tail(&self.log, 30)
                );
            }
            thread::sleep(POLL);
        }
    }

    /// SIGKILLs the postmaster and its children. The children would notice
    /// the postmaster's death and exit by themselves, but one lingering
    /// backend keeps the shared memory attached and a restart would refuse
    /// to start, so they are killed too. The postmaster is frozen first so
    /// it cannot fork between listing its children and dying. Never panics
    /// (reachable from `Drop`).
    fn crash(&self, mut child: Child) {
        let pid = child.id();
        process::signal(pid, "STOP");
        let children = process::children_of(pid);
        process::kill_and_reap(&mut child);
        for &c in &children {
            process::signal(c, "KILL");
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while children.iter().any(|&c| process::pid_alive(c)) && Instant::now() < deadline {
            thread::sleep(POLL);
        }
        // Every process of this cluster is gone: the lock files are stale.
        let _ = fs::remove_file(self.data.join("postmaster.pid"));
        let _ = fs::remove_file(self.socket_dir.join(format!(".s.PGSQL.{}.lock", self.port)));
    }

    /// A command for a server binary, as the `postgres` user if we are root.
    fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(self.dir.path());
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::signal(child.id(), "INT");
            if !process::wait_exit(&mut child, Duration::from_secs(10)) {
                self.crash(child);
            }
        }
    }
}

/// Where the PostgreSQL binaries live; looked up once per test process.
struct PgBins {
    initdb: PathBuf,
    postgres: PathBuf,
    psql: Option<PathBuf>,
}

/// `initdb` and `postgres` must come from the same directory (the same
/// major version): the first `PATH` entry holding both, else the highest
/// `/usr/lib/postgresql/N/bin`.
fn pg_bins() -> &'static PgBins {
    static BINS: OnceLock<PgBins> = OnceLock::new();
    BINS.get_or_init(|| {
        let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        dirs.extend(versioned_bin_dirs());
        let dir = dirs
            .into_iter()
            .find(|d| {
                process::is_executable(&d.join("initdb"))
                    && process::is_executable(&d.join("postgres"))
            })
            .unwrap_or_else(|| panic!("{MISSING_SERVER}"));
        let initdb = dir.join("initdb");
        // Prefer the psql of the same installation (resolving symlinks such
        // as /usr/local/bin/initdb -> /usr/lib/postgresql/15/bin/initdb).
        let real_dir = fs::canonicalize(&initdb)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf));
        let psql = [Some(dir.clone()), real_dir]
            .into_iter()
            .flatten()
            .map(|d| d.join("psql"))
            .find(|p| process::is_executable(p))
            .or_else(|| process::find_on_path("psql"));
        PgBins {
            initdb,
            postgres: dir.join("postgres"),
            psql,
        }
    })
}

/// `/usr/lib/postgresql/*/bin`, highest major version first.
fn versioned_bin_dirs() -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir("/usr/lib/postgresql") else {
        return Vec::new();
    };
    let mut versions: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().to_str()?.to_string();
            let version = name
                .split('.')
                .map(|part| part.parse().ok())
                .collect::<Option<Vec<u32>>>()?;
            Some((version, e.path().join("bin")))
        })
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

/// As root, the uid/gid of the `postgres` OS user to run the server as.
fn run_as() -> Option<(u32, u32)> {
    if !process::running_as_root() {
        return None;
    }
    match (
        process::id(&["-u", "postgres"]),
        process::id(&["-g", "postgres"]),
    ) {
        (Some(uid), Some(gid)) => Some((uid, gid)),
        _ => panic!(
            "running as root, PostgreSQL must run as the `postgres` OS user, which does not \
             exist: install with `apt-get install -y postgresql` (it creates the user)"
        ),
    }
}
