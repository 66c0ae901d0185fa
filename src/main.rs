//! The `slotproxy` binary: flags (each also from a `SLOTPROXY_*` environment variable), config,
//! then `slotproxy::launch`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use slotproxy::config::Config;
use slotproxy::error::ConfigError;

/// A Redis Cluster proxy: cluster-unaware clients connect to one address and slotproxy routes
/// each command to the right node of the cluster.
#[derive(Debug, Parser)]
#[command(name = "slotproxy", version, about)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// TOML config file (see config/slotproxy.toml); flags override its values. SIGHUP and
    /// POST /reload re-read it.
    #[arg(long, value_name = "FILE", env = "SLOTPROXY_CONFIG")]
    config: Option<PathBuf>,
    /// Address clients connect to: ip:port, [ipv6]:port or host:port [default: 127.0.0.1:6379].
    #[arg(long, value_name = "ADDR", env = "SLOTPROXY_LISTEN")]
    listen: Option<String>,
    /// Address TLS clients connect to (like redis' tls-port); needs --tls-cert-file and
    /// --tls-key-file. --listen "" leaves only TLS [default: off].
    #[arg(long, value_name = "ADDR", env = "SLOTPROXY_TLS_LISTEN")]
    tls_listen: Option<String>,
    /// PEM certificate chain slotproxy presents to TLS clients ([tls] cert_file).
    #[arg(long, value_name = "FILE", env = "SLOTPROXY_TLS_CERT_FILE")]
    tls_cert_file: Option<PathBuf>,
    /// PEM private key of the TLS certificate ([tls] key_file).
    #[arg(long, value_name = "FILE", env = "SLOTPROXY_TLS_KEY_FILE")]
    tls_key_file: Option<PathBuf>,
    /// PEM CA file: TLS clients must present a certificate it signed ([tls] client_ca_file).
    #[arg(long, value_name = "FILE", env = "SLOTPROXY_TLS_CLIENT_CA_FILE")]
    tls_client_ca_file: Option<PathBuf>,
    /// Seed nodes, comma-separated, as host:port or redis://host:port [default: 127.0.0.1:16379].
    #[arg(
        long,
        value_name = "ADDR[,ADDR...]",
        value_delimiter = ',',
        env = "SLOTPROXY_CLUSTER"
    )]
    cluster: Option<Vec<String>>,
    /// Log level or tracing filter: error, warn, info, debug, slotproxy=trace [default: info].
    #[arg(long, value_name = "LEVEL", env = "SLOTPROXY_LOG")]
    log: Option<String>,
    /// Log line format: text or json [default: text].
    #[arg(long, value_name = "FORMAT", env = "SLOTPROXY_LOG_FORMAT")]
    log_format: Option<String>,
    /// Where read-only commands go: primary, prefer-replica, replica, any, or nearest (the node
    /// with the lowest measured round-trip time); replicas that fail their health check or lag
    /// their primary get none [default: primary].
    #[arg(long, value_name = "POLICY", env = "SLOTPROXY_READ_POLICY")]
    read_policy: Option<String>,
    /// When writes are acknowledged: primary, or replicated (after WAIT 1) [default: primary].
    #[arg(long, value_name = "MODE", env = "SLOTPROXY_ACK")]
    ack: Option<String>,
    /// Admin HTTP listener (/metrics, /healthz, /readyz, /cluster, /config, POST /reload);
    /// "" turns it off [default: 127.0.0.1:9379].
    #[arg(long, value_name = "ADDR", env = "SLOTPROXY_ADMIN_LISTEN")]
    admin_listen: Option<String>,
    /// Worker threads; 0 = the cores available to the process (cgroup-aware) [default: 0].
    #[arg(long, value_name = "N", env = "SLOTPROXY_THREADS")]
    threads: Option<usize>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Asks a running slotproxy whether it is ready (GET /readyz on its admin listener): exit
    /// 0 if so, 1 if not. Usable as a container HEALTHCHECK without a shell.
    Health {
        /// The admin listener to ask [default: 127.0.0.1:9379].
        #[arg(long, value_name = "ADDR", env = "SLOTPROXY_ADMIN_LISTEN")]
        admin: Option<String>,
        /// Seconds to wait for the answer.
        #[arg(long, value_name = "SECONDS", default_value_t = 2)]
        timeout: u64,
    },
}

fn main() -> ExitCode {
    // First, while this is the only thread.
    slotproxy::allocator::one_arena();
    let args = Args::parse();
    if let Some(Command::Health { admin, timeout }) = &args.command {
        let admin = admin.clone().unwrap_or_else(|| "127.0.0.1:9379".into());
        return match slotproxy::launch::health(&admin, Duration::from_secs(*timeout)) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("slotproxy health: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match load_config(&args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("slotproxy: {e}");
            return ExitCode::from(2);
        }
    };
    let set_log = match slotproxy::launch::init_logging(&config.log, config.log_format) {
        Ok(set_log) => set_log,
        Err(e) => {
            eprintln!("slotproxy: {e}");
            return ExitCode::from(2);
        }
    };
    let reread = args
        .config
        .is_some()
        .then(|| Box::new(move || load_config(&args)) as Box<slotproxy::reload::ReadConfig>);
    match slotproxy::launch::serve(config, reread, set_log) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("slotproxy: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The config file (if any), with flags and environment variables on top, validated.
fn load_config(args: &Args) -> Result<Config, ConfigError> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    let invalid = |field: &'static str| move |reason| ConfigError::Invalid { field, reason };
    if let Some(listen) = &args.listen {
        config.listen = listen.clone();
    }
    if let Some(tls_listen) = &args.tls_listen {
        config.tls_listen = tls_listen.clone();
    }
    if let Some(file) = &args.tls_cert_file {
        config.tls.cert_file = Some(file.clone());
    }
    if let Some(file) = &args.tls_key_file {
        config.tls.key_file = Some(file.clone());
    }
    if let Some(file) = &args.tls_client_ca_file {
        config.tls.client_ca_file = Some(file.clone());
    }
    if let Some(seeds) = &args.cluster {
        config.cluster.seeds = seeds.clone();
    }
    if let Some(log) = &args.log {
        config.log = log.clone();
    }
    if let Some(format) = &args.log_format {
        config.log_format = format.parse().map_err(invalid("log_format"))?;
    }
    if let Some(policy) = &args.read_policy {
        config.read_policy = policy.parse().map_err(invalid("read_policy"))?;
    }
    if let Some(ack) = &args.ack {
        config.backend.ack = ack.parse().map_err(invalid("backend.ack"))?;
    }
    if let Some(admin) = &args.admin_listen {
        config.admin.listen = admin.clone();
    }
    if let Some(threads) = args.threads {
        config.worker_threads = threads;
    }
    config.validate()?;
    // Unreadable password or certificate files are config errors (exit code 2), found here.
    config.resolve_backend_credentials()?;
    config.load_backend_tls()?;
    config.load_client_tls()?;
    Ok(config)
}
