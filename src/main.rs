//! The `slotproxy` binary: flags, logging, config, then `slotproxy::run`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use slotproxy::config::Config;
use slotproxy::error::ConfigError;

/// A Redis Cluster proxy: cluster-unaware clients connect to one address and slotproxy routes
/// each command to the right node of the cluster.
#[derive(Debug, Parser)]
#[command(name = "slotproxy", version, about)]
struct Args {
    /// TOML config file (see config/slotproxy.toml); flags override its values.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address clients connect to [default: 127.0.0.1:6379].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Seed nodes, comma-separated, as host:port or redis://host:port [default: 127.0.0.1:16379].
    #[arg(long, value_name = "ADDR[,ADDR...]", value_delimiter = ',')]
    cluster: Option<Vec<String>>,
    /// Log level or tracing filter: error, warn, info, debug, slotproxy=trace [default: info].
    #[arg(long, value_name = "LEVEL")]
    log: Option<String>,
    /// Where read-only commands go: primary, prefer-replica, replica, any, or nearest (the node
    /// with the lowest measured round-trip time); replicas that fail their health check or lag
    /// their primary get none [default: primary].
    #[arg(long, value_name = "POLICY")]
    read_policy: Option<String>,
    /// When writes are acknowledged: primary, or replicated (after WAIT 1) [default: primary].
    #[arg(long, value_name = "MODE")]
    ack: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match load_config(&args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("slotproxy: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = match tracing_subscriber::EnvFilter::try_new(&config.log) {
        Ok(filter) => filter,
        Err(e) => {
            eprintln!("slotproxy: config field `log`: {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt().with_env_filter(filter).init();
    match serve(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("slotproxy: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(args: &Args) -> Result<Config, ConfigError> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(listen) = &args.listen {
        config.listen = listen.clone();
    }
    if let Some(seeds) = &args.cluster {
        config.cluster.seeds = seeds.clone();
    }
    if let Some(log) = &args.log {
        config.log = log.clone();
    }
    if let Some(policy) = &args.read_policy {
        config.read_policy = policy.parse().map_err(|reason| ConfigError::Invalid {
            field: "read_policy",
            reason,
        })?;
    }
    if let Some(ack) = &args.ack {
        config.backend.ack = ack.parse().map_err(|reason| ConfigError::Invalid {
            field: "backend.ack",
            reason,
        })?;
    }
    config.validate()?;
    // Unreadable password or certificate files are config errors (exit code 2), found here.
    config.resolve_backend_credentials()?;
    config.load_backend_tls()?;
    Ok(config)
}

fn serve(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the tokio runtime")?;
    runtime.block_on(async {
        let addr = config.listen_addr()?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listen on {addr}"))?;
        let seeds: Vec<String> = config
            .cluster
            .seeds
            .iter()
            .map(|s| slotproxy::config::redact_seed(s))
            .collect();
        tracing::info!(%addr, ?seeds, "slotproxy listening");
        slotproxy::run(listener, config, shutdown_signal()).await?;
        Ok(())
    })
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}
