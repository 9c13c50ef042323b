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

/// mimalloc instead of glibc malloc: messages are allocated on one runtime
/// thread and freed on another, and glibc's per-arena locks made that cost
/// about 7 % of a WebSocket relay's CPU; end to end the relay is 23–33 %
/// faster with it (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "fednode",
    version,
    about = "A configurable edge-to-cloud federation node"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the graph until SIGINT/SIGTERM, then drain and stop.
    Run {
        /// The node config (JSON).
        config: PathBuf,
    },
    /// Validate a config and print its components and wiring.
    Check {
        /// The node config (JSON).
        config: PathBuf,
    },
    /// Send one request to a WebSocket peer and print the reply payload.
    Request {
        /// The peer's WebSocket URL (`ws://host:port/path`).
        url: String,
        /// `status`, `backpressure`, `subscribe`, `unsubscribe`, `replay`, `announce`, …
        method: String,
        /// The request's params as JSON.
        #[arg(long, default_value = "{}")]
        params: String,
        #[command(flatten)]
        auth: AuthArgs,
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
}

#[derive(clap::Args)]
struct AuthArgs {
    /// Bearer token to present.
    #[arg(long)]
    token: Option<String>,
    /// Basic credentials to present, as USER:PASS.
    #[arg(long, value_name = "USER:PASS", conflicts_with = "token")]
    basic: Option<String>,
}

impl AuthArgs {
    fn header(&self) -> Option<String> {
        fednode_ws::peer::authorization(self.token.as_deref(), self.basic.as_deref())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
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
            Command::Check { config } => check(config),
            Command::Request {
                url,
                method,
                params,
                auth,
                timeout,
            } => request(&url, &method, &params, &auth, timeout).await,
            Command::Tail { url, filter, auth } => tail(&url, filter, &auth).await,
            Command::Send { url, auth } => send(&url, &auth).await,
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
    let (lines, warnings) = runtime::wiring_report(&cfg);
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
    Ok(ExitCode::SUCCESS)
}

async fn run(path: PathBuf) -> anyhow::Result<ExitCode> {
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
    let node_id = cfg.node.id.clone();
    let rt = Arc::new(Runtime::new(cfg, bus, metrics));
    let admin_cancel = CancellationToken::new();
    let admin = match http {
        Some(addr) => {
            match fednode::admin::serve(addr, http_auth, rt.clone(), admin_cancel.clone()).await {
                Ok((local, task)) => {
                    tracing::info!(%local, "admin server listening");
                    Some(task)
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
    tracing::info!(node = %node_id, "node running; SIGINT or SIGTERM stops it");
    wait_for_signal()
        .await
        .context("installing signal handlers")?;
    tracing::info!("stopping");
    let clean = rt.shutdown().await;
    admin_cancel.cancel();
    if let Some(task) = admin {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), task).await;
    }
    if !clean {
        tracing::warn!("some components did not stop within shutdown_timeout");
    }
    Ok(ExitCode::SUCCESS)
}

async fn request(
    url: &str,
    method: &str,
    params: &str,
    auth: &AuthArgs,
    timeout: std::time::Duration,
) -> anyhow::Result<ExitCode> {
    let params: serde_json::Value =
        serde_json::from_str(params).context("--params is not valid JSON")?;
    match fednode_ws::peer::request(url, method, params, auth.header(), timeout).await {
        Ok(reply) => {
            println!("{}", serde_json::to_string(&reply.to_value())?);
            Ok(if reply.is_ok() {
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

async fn tail(url: &str, filter: Option<Vec<String>>, auth: &AuthArgs) -> anyhow::Result<ExitCode> {
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
    match fednode_ws::peer::tail(url, auth.header(), filter, stdout.lock()).await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn send(url: &str, auth: &AuthArgs) -> anyhow::Result<ExitCode> {
    let stdin = tokio::io::BufReader::new(tokio::io::stdin());
    match fednode_ws::peer::send(url, auth.header(), stdin).await {
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

async fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
