//! The `fednode` command line. Everything else lives in the
//! library: this file parses arguments, sets up logging and maps results to
//! exit codes.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use fednode::config;
use fednode::runtime::{self, Runtime};
use fednode_kit::metrics::Metrics;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// jemalloc instead of glibc malloc: messages are allocated on one runtime
/// thread and freed on another, and glibc's per-arena locks made that cost
/// about 7 % of a WebSocket relay's CPU. Against mimalloc, jemalloc gives
/// the same throughput and a steadier tail latency under sustained load
/// (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "fednode",
    version = fednode::LONG_VERSION,
    about = "A configurable edge-to-cloud federation node"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log line format on stderr: `text` (coloured only when stderr is a
    /// terminal) or `json` (one object per line).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log level (`error`, `warn`, `info`, `debug`, `trace`) or a filter
    /// directive like `info,fednode_ws=debug`. `RUST_LOG`, when set, wins.
    #[arg(long, global = true, value_name = "LEVEL", default_value = "info")]
    log_level: String,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the graph until SIGINT/SIGTERM, then drain and stop; SIGHUP
    /// re-reads the config and applies what changed.
    Run {
        /// The node config (JSON).
        config: PathBuf,
    },
    /// Validate a config and print its components and wiring.
    Check {
        /// Accept `${VAR}`s without a value (and auth `*_env` variables
        /// that are unset) as placeholders: check structure and types
        /// without the secrets, e.g. in CI.
        #[arg(long)]
        no_env: bool,
        /// The node config (JSON).
        config: PathBuf,
    },
    /// Send one request to a WebSocket peer and print the reply payload;
    /// or, given a component's URL on a node's admin server, have that
    /// component send it to its peers (one with `--connection`).
    Request {
        /// A peer's WebSocket URL (`ws://host:port/path`), or a component
        /// on an admin server (`http://hub:9090/components/ws_in`).
        url: String,
        /// `status`, `backpressure`, `subscribe`, `unsubscribe`, `replay`, `announce`, …
        method: String,
        /// The request's params as JSON.
        #[arg(long, default_value = "{}")]
        params: String,
        #[command(flatten)]
        auth: AuthArgs,
        /// With an admin URL: the peer to ask, by connection id or by the
        /// node id it announced (`edge-01`); every peer when left out.
        #[arg(long)]
        connection: Option<String>,
        /// How long to wait for the reply (connecting included).
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Connect as a consumer and print each data payload as one JSON line.
    Tail {
        /// The peer's WebSocket URL.
        url: String,
        /// Only payloads where PATH OP VALUE holds (VALUE is read as JSON
        /// when it parses, else as a string), e.g. `--filter '$.value' '>' 50`.
        #[arg(long, num_args = 3, value_names = ["PATH", "OP", "VALUE"])]
        filter: Option<Vec<String>>,
        /// Ask the peer to replay from its buffer first, with these params:
        /// `{"count": 100}`, `{"after_id": "…"}` or `{"start_time": …}`.
        #[arg(long, value_name = "JSON")]
        replay: Option<String>,
        /// Exit when the connection ends instead of connecting again (and
        /// asking for what was missed).
        #[arg(long)]
        once: bool,
        #[command(flatten)]
        auth: AuthArgs,
    },
    /// Read JSON lines from stdin and send each as a data envelope.
    Send {
        /// The peer's WebSocket URL.
        url: String,
        #[command(flatten)]
        auth: AuthArgs,
    },
    /// Print the JSON Schema of a config file (for editors and CI).
    Schema,
    /// Print a shell completion script (`fednode completions bash >
    /// /etc/bash_completion.d/fednode`).
    Completions {
        /// `bash`, `zsh`, `fish`, `elvish` or `powershell`.
        shell: clap_complete::Shell,
    },
}

#[derive(clap::Args)]
struct AuthArgs {
    /// Bearer token to present.
    #[arg(long)]
    token: Option<String>,
    /// Basic credentials to present, as USER:PASS.
    #[arg(long, value_name = "USER:PASS", conflicts_with = "token")]
    basic: Option<String>,
    /// For wss://: trust this CA (PEM) instead of the system's roots.
    #[arg(long, value_name = "PEM")]
    ca_file: Option<PathBuf>,
    /// For wss://: present this client certificate (PEM; with --key-file).
    #[arg(long, value_name = "PEM", requires = "key_file")]
    cert_file: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(long, value_name = "PEM", requires = "cert_file")]
    key_file: Option<PathBuf>,
}

impl AuthArgs {
    /// The `Authorization` header, after setting up TLS for `wss://` when
    /// a CA or client certificate was given.
    fn header(&self) -> anyhow::Result<Option<String>> {
        if let Some(config) = self.tls()? {
            fednode_ws::peer::use_tls(config);
        }
        Ok(self.authorization())
    }

    /// The `Authorization` header of `--token` or `--basic`.
    fn authorization(&self) -> Option<String> {
        fednode_ws::peer::authorization(self.token.as_deref(), self.basic.as_deref())
    }

    /// The TLS settings of `--ca-file`, `--cert-file` and `--key-file`.
    fn tls(&self) -> anyhow::Result<Option<std::sync::Arc<rustls::ClientConfig>>> {
        if self.ca_file.is_none() && self.cert_file.is_none() {
            return Ok(None);
        }
        let tls = fednode_ws::tls::ClientTls {
            ca_file: self.ca_file.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
        };
        tls.config("--ca-file/--cert-file")
            .map(Some)
            .map_err(anyhow::Error::msg)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Schema = cli.command {
        use std::io::Write as _;
        let schema = fednode::config::schema();
        let text = serde_json::to_string_pretty(&schema).expect("a schema serialises");
        // A closed pipe (`fednode schema | head`) is not an error.
        let _ = writeln!(std::io::stdout(), "{text}");
        return ExitCode::SUCCESS;
    }
    if let Command::Completions { shell } = cli.command {
        use clap::CommandFactory as _;
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "fednode",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    if let Err(e) = init_logging(cli.log_format, &cli.log_level) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Run { config } => run(config).await,
            Command::Check { config, no_env } => {
                if no_env {
                    check_no_env(config)
                } else {
                    check(config)
                }
            }
            Command::Request {
                url,
                method,
                params,
                auth,
                connection,
                timeout,
            } => {
                request(
                    &url,
                    &method,
                    &params,
                    &auth,
                    connection.as_deref(),
                    timeout,
                )
                .await
            }
            Command::Tail {
                url,
                filter,
                replay,
                once,
                auth,
            } => tail(&url, filter, replay.as_deref(), once, &auth).await,
            Command::Send { url, auth } => send(&url, &auth).await,
            Command::Completions { .. } | Command::Schema => {
                unreachable!("handled before the runtime starts")
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_config_errors(errors: &[fednode_kit::ConfigError]) {
    for e in errors {
        eprintln!("{e}");
    }
}

fn check(path: PathBuf) -> anyhow::Result<ExitCode> {
    let cfg = match config::load(&path) {
        Ok(c) => c,
        Err(errors) => {
            print_config_errors(&errors);
            return Ok(ExitCode::FAILURE);
        }
    };
    print_valid(&path, &cfg);
    Ok(ExitCode::SUCCESS)
}

/// What `check` prints for a valid config: a summary line, the wiring, and
/// warnings on stderr.
fn print_valid(path: &std::path::Path, cfg: &config::NodeConfig) {
    let (lines, warnings) = runtime::wiring_report(cfg);
    println!(
        "config {} is valid: node {}, bus {:?}, {} components",
        path.display(),
        cfg.node.id,
        cfg.bus.kind,
        cfg.components.len()
    );
    for l in lines {
        println!("{l}");
    }
    for w in warnings {
        eprintln!("warning: {w}");
    }
}

/// `check --no-env`: placeholders for what the environment does not give.
fn check_no_env(path: PathBuf) -> anyhow::Result<ExitCode> {
    let checked = match config::load_no_env(&path) {
        Ok(c) => c,
        Err(errors) => {
            print_config_errors(&errors);
            return Ok(ExitCode::FAILURE);
        }
    };
    match &checked.config {
        Some(cfg) => print_valid(&path, cfg),
        None => println!(
            "config {} is valid with placeholders (wiring not shown: it needs the variables)",
            path.display()
        ),
    }
    if !checked.unresolved.is_empty() {
        eprintln!(
            "note: checked without a value for {}",
            checked.unresolved.join(", ")
        );
    }
    for e in &checked.unchecked {
        eprintln!("note: not checked without its variable: {e}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn run(path: PathBuf) -> anyhow::Result<ExitCode> {
    // First, so that a SIGHUP during start-up is a reload request, not the
    // default action (which kills the process without a drain).
    let mut signals = Signals::install().context("installing signal handlers")?;
    let cfg = match config::load(&path) {
        Ok(c) => c,
        Err(errors) => {
            print_config_errors(&errors);
            return Ok(ExitCode::FAILURE);
        }
    };
    let metrics = Metrics::new();
    let bus = match fednode::bus::connect(&cfg.bus, &metrics).await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: bus: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let http = cfg.http_listen;
    let http_auth = cfg.http_auth.clone();
    let http_tls = cfg.http_tls.clone();
    let node_id = cfg.node.id.clone();
    let rt = Arc::new(Runtime::new(cfg, bus, metrics).with_config_path(path));
    let admin_cancel = CancellationToken::new();
    let admin = match http {
        Some(addr) => {
            match fednode::admin::serve(
                addr,
                http_auth,
                http_tls.as_ref(),
                rt.clone(),
                admin_cancel.clone(),
            )
            .await
            {
                Ok(admin) => {
                    tracing::info!(local = %admin.local, "admin server listening");
                    if let Some(tls) = admin.tls {
                        rt.set_admin_tls(tls);
                    }
                    Some(admin.task)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        None => None,
    };
    if let Err(e) = rt.start().await {
        eprintln!("error: {e}");
        admin_cancel.cancel();
        return Ok(ExitCode::FAILURE);
    }
    tracing::info!(
        node = %node_id,
        "node running; SIGHUP reloads the config, SIGINT or SIGTERM stops it"
    );
    let first = loop {
        match signals.next().await {
            Sig::Hup => reload(&rt).await,
            stop => break stop,
        }
    };
    tracing::info!(
        signal = first.name(),
        "stopping; a second SIGINT or SIGTERM stops at once"
    );
    let drain = async {
        let clean = rt.shutdown().await;
        admin_cancel.cancel();
        if let Some(task) = admin {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), task).await;
        }
        clean
    };
    tokio::pin!(drain);
    let clean = loop {
        tokio::select! {
            clean = &mut drain => break clean,
            second = signals.next() => {
                if let Sig::Hup = second {
                    tracing::warn!("SIGHUP during the drain: not reloading, the node is stopping");
                    continue;
                }
                // What is still held in memory is lost: that is what was asked.
                tracing::error!(
                    signal = second.name(),
                    exit_code = second.exit_code(),
                    "second signal during the drain: stopping at once without finishing the drain"
                );
                std::process::exit(second.exit_code());
            }
        }
    };
    if !clean {
        tracing::warn!("some components did not stop within shutdown_timeout");
    }
    Ok(ExitCode::SUCCESS)
}

/// SIGHUP: re-read the config; its problems are logged one per line.
async fn reload(rt: &Runtime) {
    tracing::info!("SIGHUP: reloading the config");
    match rt.reload().await {
        Ok(report) => {
            for (name, error) in &report.failed {
                tracing::error!(component = %name, "{error}");
            }
        }
        Err(runtime::ReloadError::Invalid(errors)) => {
            tracing::error!(
                errors = errors.len(),
                "config reload refused; the running config is unchanged"
            );
            for e in errors {
                tracing::error!("{e}");
            }
        }
        Err(runtime::ReloadError::Stopping) => {
            tracing::warn!("config reload refused: the node is stopping");
        }
    }
}

async fn request(
    url: &str,
    method: &str,
    params: &str,
    auth: &AuthArgs,
    connection: Option<&str>,
    timeout: std::time::Duration,
) -> anyhow::Result<ExitCode> {
    let params: serde_json::Value =
        serde_json::from_str(params).context("--params is not valid JSON")?;
    if url.starts_with("http://") || url.starts_with("https://") {
        let header = auth.authorization();
        let tls = auth.tls()?;
        return match fednode::admin_client::request(
            url,
            method,
            params,
            connection,
            header.as_deref(),
            tls,
            timeout,
        )
        .await
        {
            Ok(answer) => {
                let ok = answer.is_ok();
                print_answer(Ok((answer.body, ok)))
            }
            Err(e) => print_answer(Err(e)),
        };
    }
    if connection.is_some() {
        anyhow::bail!(
            "--connection needs the URL of a component on an admin server \
             (http://hub:9090/components/ws_in)"
        );
    }
    match fednode_ws::peer::request(url, method, params, auth.header()?, timeout).await {
        Ok(reply) => print_answer(Ok((reply.to_value(), reply.is_ok()))),
        Err(e) => print_answer(Err(e.to_string())),
    }
}

/// What `request` prints: the answer as one JSON line on stdout (exit 0
/// when it is ok, else 1), or the reason it failed on stderr (exit 1).
fn print_answer(answer: Result<(serde_json::Value, bool), String>) -> anyhow::Result<ExitCode> {
    match answer {
        Ok((body, ok)) => {
            println!("{}", serde_json::to_string(&body)?);
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn tail(
    url: &str,
    filter: Option<Vec<String>>,
    replay: Option<&str>,
    once: bool,
    auth: &AuthArgs,
) -> anyhow::Result<ExitCode> {
    let replay = replay
        .map(serde_json::from_str::<serde_json::Value>)
        .transpose()
        .context("--replay is not valid JSON")?;
    use fednode_kit::filter::{Criterion, Filter, FilterSpec};
    let filter = match filter.as_deref() {
        Some([path, op, value]) => {
            let value = serde_json::from_str(value)
                .unwrap_or_else(|_| serde_json::Value::String(value.clone()));
            let spec = FilterSpec::single(Criterion::new(path.clone(), op.clone(), Some(value)));
            match Filter::compile(&spec) {
                Ok(f) => Some(f),
                Err(errors) => {
                    for e in errors {
                        eprintln!("error: --{e}");
                    }
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        _ => None,
    };
    let stdout = std::io::stdout();
    let opts = fednode_ws::peer::TailOptions {
        filter,
        replay,
        reconnect: !once,
    };
    match fednode_ws::peer::tail_with(url, auth.header()?, opts, stdout.lock()).await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn send(url: &str, auth: &AuthArgs) -> anyhow::Result<ExitCode> {
    let stdin = tokio::io::BufReader::new(tokio::io::stdin());
    match fednode_ws::peer::send(url, auth.header()?, stdin).await {
        Ok(n) => {
            tracing::info!(messages = n, "sent");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// SIGINT, SIGTERM and SIGHUP, as they arrive.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

#[derive(Clone, Copy)]
enum Sig {
    Int,
    Term,
    Hup,
}

impl Sig {
    fn name(self) -> &'static str {
        match self {
            Sig::Int => "SIGINT",
            Sig::Term => "SIGTERM",
            Sig::Hup => "SIGHUP",
        }
    }

    /// 128 + the signal's number (SIGHUP 1, SIGINT 2, SIGTERM 15), as
    /// shells report a process killed by it: 130 or 143.
    fn exit_code(self) -> i32 {
        128 + match self {
            Sig::Hup => 1,
            Sig::Int => 2,
            Sig::Term => 15,
        }
    }
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self) -> Sig {
        tokio::select! {
            _ = self.term.recv() => Sig::Term,
            _ = self.int.recv() => Sig::Int,
            _ = self.hup.recv() => Sig::Hup,
        }
    }
}

/// Logs on stderr: `format`, at `level` unless `RUST_LOG` is set; ANSI
/// colour only when stderr is a terminal (and `NO_COLOR` is not set).
fn init_logging(format: LogFormat, level: &str) -> Result<(), String> {
    use std::io::IsTerminal as _;
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => {
            EnvFilter::try_new(&v).map_err(|e| format!("RUST_LOG={v:?}: {e}"))?
        }
        _ => EnvFilter::try_new(level).map_err(|e| format!("--log-level {level:?}: {e}"))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match format {
        LogFormat::Text => {
            let colour = std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            builder.with_ansi(colour).init();
        }
        // One object per line: timestamp, level, target, message and the
        // event's fields at the top level.
        LogFormat::Json => builder
            .with_ansi(false)
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
    Ok(())
}
