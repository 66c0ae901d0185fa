//! One `redis-server` process: free ports, start, readiness, and kill on `Drop`.
//!
//! Knows nothing about clusters beyond the command-line flags that turn cluster mode on.

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::redis_server_path;

/// Lowest port handed to a node; its cluster bus is `port + 10000`.
const PORT_MIN: u16 = 20_000;
/// Highest port handed to a node (its bus port stays below 65536).
const PORT_MAX: u16 = 55_000;
/// Distance between a node's client port and its cluster bus port (fixed by Redis).
pub(crate) const BUS_PORT_OFFSET: u16 = 10_000;
/// Attempts to start one node before giving up (a port can be taken between check and bind).
const START_ATTEMPTS: usize = 8;
/// Time allowed for one `redis-server` to answer after it was spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Ports this process already handed out, so two nodes of one test never race for the same port.
static TAKEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
/// The `default` user's password of every secured node this process started, by `127.0.0.1:port`,
/// so the harness's own connections authenticate.
static PASSWORDS: Mutex<Option<HashMap<String, String>>> = Mutex::new(None);
/// State of the port picker (xorshift), seeded from pid and time on first use.
static RNG: AtomicU64 = AtomicU64::new(0);

/// What a node needs to be started.
#[derive(Debug, Clone)]
pub(crate) struct NodeSpec {
    /// Directory for the node's files (config, log); shared by the nodes of one cluster.
    pub dir: PathBuf,
    /// Start in cluster mode with a `cluster-config-file` in `dir`.
    pub cluster: bool,
    /// `requirepass`/`masterauth` and ACL users, for a secured node.
    pub auth: Option<NodeAuth>,
    /// A TLS port beside the plain one, with `tls-cluster` and `tls-replication` on.
    pub tls: Option<NodeTls>,
}

/// The PEM files of a TLS node (see [`TestCa`]).
#[derive(Debug, Clone)]
pub struct NodeTls {
    /// The CA that signed every certificate of the cluster (and of its clients).
    pub ca: PathBuf,
    /// The node's certificate (subjectAltName IP:127.0.0.1 and DNS:localhost).
    pub cert: PathBuf,
    /// The node's private key.
    pub key: PathBuf,
}

/// A throwaway certificate authority made with the `openssl` CLI, for TLS tests.
#[derive(Debug, Clone)]
pub struct TestCa {
    dir: PathBuf,
    name: String,
    /// The CA certificate (PEM).
    pub cert: PathBuf,
    key: PathBuf,
}

impl TestCa {
    /// A new CA named `name`, its files in `dir`.
    ///
    /// # Panics
    /// When `openssl` is missing or fails.
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let ca = TestCa {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            cert: dir.join(format!("{name}-ca.crt")),
            key: dir.join(format!("{name}-ca.key")),
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name} test CA"),
            "-keyout",
            path_str(&ca.key),
            "-out",
            path_str(&ca.cert),
        ]);
        ca
    }

    /// A certificate and key for `127.0.0.1`/`localhost` signed by this CA: (cert, key).
    ///
    /// # Panics
    /// When `openssl` fails.
    pub fn issue(&self, leaf: &str) -> (PathBuf, PathBuf) {
        let base = self.dir.join(format!("{}-{leaf}", self.name));
        let (key, csr, cert, ext) = (
            base.with_extension("key"),
            base.with_extension("csr"),
            base.with_extension("crt"),
            base.with_extension("ext"),
        );
        std::fs::write(&ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\n").expect("write ext");
        key_and_csr(leaf, &key, &csr);
        openssl(&[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            path_str(&csr),
            "-CA",
            path_str(&self.cert),
            "-CAkey",
            path_str(&self.key),
            "-CAcreateserial",
            "-extfile",
            path_str(&ext),
            "-out",
            path_str(&cert),
        ]);
        (cert, key)
    }
}

/// A new P-256 key for `leaf` and its certificate signing request.
fn key_and_csr(leaf: &str, key: &Path, csr: &Path) {
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        &format!("/CN={leaf}"),
        "-keyout",
        path_str(key),
        "-out",
        path_str(csr),
    ]);
}

impl TestCa {
    /// A certificate for `leaf` signed by this CA that expired in 2020 (valid 2020-01-01 to
    /// 2020-01-02, made with `openssl ca`, which takes explicit dates): (cert, key).
    ///
    /// # Panics
    /// When `openssl` fails.
    pub fn issue_expired(&self, leaf: &str) -> (PathBuf, PathBuf) {
        let base = self.dir.join(format!("{}-{leaf}", self.name));
        let (key, csr, cert) = (
            base.with_extension("key"),
            base.with_extension("csr"),
            base.with_extension("crt"),
        );
        let db = self.dir.join(format!("{}-{leaf}-db", self.name));
        std::fs::create_dir_all(&db).expect("create the openssl ca directory");
        std::fs::write(db.join("index.txt"), "").expect("write index.txt");
        std::fs::write(db.join("serial"), "01\n").expect("write serial");
        let conf = db.join("ca.cnf");
        std::fs::write(
            &conf,
            format!(
                "[ca]\ndefault_ca = test\n[test]\ndatabase = {0}/index.txt\n\
                 new_certs_dir = {0}\nserial = {0}/serial\ndefault_md = sha256\n\
                 policy = any\nunique_subject = no\nx509_extensions = leaf\n\
                 [any]\ncommonName = supplied\n\
                 [leaf]\nsubjectAltName = IP:127.0.0.1,DNS:localhost\n",
                path_str(&db)
            ),
        )
        .expect("write ca.cnf");
        key_and_csr(leaf, &key, &csr);
        openssl(&[
            "ca",
            "-batch",
            "-notext",
            "-config",
            path_str(&conf),
            "-cert",
            path_str(&self.cert),
            "-keyfile",
            path_str(&self.key),
            "-startdate",
            "20200101000000Z",
            "-enddate",
            "20200102000000Z",
            "-in",
            path_str(&csr),
            "-out",
            path_str(&cert),
        ]);
        (cert, key)
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// Runs `openssl args...`.
///
/// # Panics
/// When it is missing (with an install hint) or fails.
fn openssl(args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("run openssl ({e}): install it with `sudo apt-get install -y openssl`")
        });
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// How a secured node is configured, as in the seed document: `requirepass` and `masterauth`
/// with one password, plus any ACL users.
#[derive(Debug, Clone, Default)]
pub struct NodeAuth {
    /// The `default` user's password (`requirepass`), also the replicas' `masterauth`.
    pub password: String,
    /// ACL users in `ACL SETUSER` syntax, e.g. `"proxy on >pw ~* +@all"` (name first).
    pub users: Vec<String>,
}

/// Remembers (or, with `None`, forgets) the password the harness uses for `addr`.
pub(crate) fn set_password(addr: &str, password: Option<&str>) {
    let mut passwords = PASSWORDS.lock().expect("password registry lock");
    let passwords = passwords.get_or_insert_with(HashMap::new);
    match password {
        Some(password) => passwords.insert(addr.to_string(), password.to_string()),
        None => passwords.remove(addr),
    };
}

/// The password the harness uses for `addr`, if it has one (for `MIGRATE ... AUTH`).
pub(crate) fn password_of(addr: &str) -> Option<String> {
    let passwords = PASSWORDS.lock().expect("password registry lock");
    passwords.as_ref().and_then(|p| p.get(addr)).cloned()
}

/// `redis://[:password@]addr/` for the harness's connections to `addr`.
fn node_url(addr: &str) -> String {
    let passwords = PASSWORDS.lock().expect("password registry lock");
    match passwords.as_ref().and_then(|p| p.get(addr)) {
        Some(password) => format!("redis://:{password}@{addr}/"),
        None => format!("redis://{addr}/"),
    }
}

/// A running `redis-server`, SIGKILLed on `Drop`.
#[derive(Debug)]
pub(crate) struct RedisProcess {
    child: Child,
    /// `sh` that SIGKILLs `child` if this test process dies without running `Drop`.
    watchdog: Option<Child>,
    pub port: u16,
    /// The TLS port, for a node started with [`NodeSpec::tls`].
    pub tls_port: Option<u16>,
    pub log: PathBuf,
}

impl RedisProcess {
    /// Starts a node on a free port, retrying on another port when the bind fails.
    ///
    /// # Panics
    /// When no node could be started after several attempts, with the last node log.
    pub fn start(spec: &NodeSpec) -> RedisProcess {
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port(spec.cluster);
            match Self::start_on(spec, port) {
                Ok(process) => return process,
                Err(reason) => failures.push(format!("port {port}: {reason}")),
            }
        }
        panic!(
            "could not start redis-server after {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n")
        );
    }

    /// Starts a node on `port` (also used to restart a killed node with its config file).
    ///
    /// # Errors
    /// Why the node did not come up (exited early, or did not answer in time), with its log tail.
    pub fn start_on(spec: &NodeSpec, port: u16) -> Result<RedisProcess, String> {
        let log = spec.dir.join(format!("node-{port}.log"));
        let mut command = Command::new(redis_server_path());
        command
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&spec.dir)
            .args(["--appendonly", "no", "--save", ""])
            // Nodes share `dir`; a replica's full sync writes this file.
            .args(["--dbfilename", &format!("dump-{port}.rdb")])
            .args(["--protected-mode", "no", "--daemonize", "no"])
            // DEBUG from loopback (the proxy), so tests can route and allow it.
            .args(["--enable-debug-command", "local"])
            // Diskless sync without the default 5 s wait, so replicas are synced quickly.
            .args(["--repl-diskless-sync", "yes"])
            .args(["--repl-diskless-sync-delay", "0"])
            // A primary lists a replica in CLUSTER SLOTS only once the replica's offset is not 0;
            // on an idle primary the replication PING (default every 10 s) is what moves it.
            .args(["--repl-ping-replica-period", "1"])
            // DEBUG SLEEP from loopback clients: tests make a node slow with it.
            .args(["--enable-debug-command", "local"])
            .arg("--logfile")
            .arg(&log);
        if let Some(auth) = &spec.auth {
            command
                .args(["--requirepass", &auth.password])
                .args(["--masterauth", &auth.password]);
            for user in &auth.users {
                command.arg("--user").args(user.split_whitespace());
            }
            set_password(&format!("127.0.0.1:{port}"), Some(&auth.password));
        }
        let tls_port = spec.tls.as_ref().map(|tls| {
            let tls_port = free_port(false);
            command
                .args(["--tls-port", &tls_port.to_string()])
                .arg("--tls-cert-file")
                .arg(&tls.cert)
                .arg("--tls-key-file")
                .arg(&tls.key)
                .arg("--tls-ca-cert-file")
                .arg(&tls.ca)
                .args(["--tls-cluster", "yes", "--tls-replication", "yes"])
                // The bus stays at port + 10000, as for plain nodes (it would follow the TLS port).
                .args(["--cluster-port", &(port + BUS_PORT_OFFSET).to_string()]);
            tls_port
        });
        if spec.cluster {
            command
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
                .arg("--cluster-config-file")
                .arg(spec.dir.join(format!("nodes-{port}.conf")));
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", redis_server_path().display()))?;
        let mut process = RedisProcess {
            watchdog: Some(spawn_watchdog(child.id(), &spec.dir)),
            child,
            port,
            tls_port,
            log,
        };
        process.wait_ready()?;
        Ok(process)
    }

    /// The OS process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`STOP`, `CONT`) through `sh`'s `kill` builtin.
    ///
    /// # Panics
    /// When `sh` can't be run or `kill` fails.
    pub fn signal(&self, name: &str) {
        let status = Command::new("sh")
            .args([
                "-c",
                "kill -s \"$1\" \"$2\"",
                "sh",
                name,
                &self.pid().to_string(),
            ])
            .status()
            .expect("run sh to send a signal");
        assert!(status.success(), "kill -s {name} {} failed", self.pid());
    }

    /// Waits until this very process (not some other one on the port) answers.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = format!("127.0.0.1:{}", self.port);
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!(
                    "redis-server exited with {status}; log:\n{}",
                    log_tail(&self.log, 20)
                ));
            }
            // Another test process may have won the race for this port: check the pid too.
            if let Some(pid) = answering_pid(&addr) {
                if pid == self.pid() {
                    return Ok(());
                }
                return Err(format!(
                    "{addr} is answered by another redis-server (pid {pid})"
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no answer within {READY_TIMEOUT:?}; log:\n{}",
                    log_tail(&self.log, 20)
                ));
            }
            std::thread::sleep(super::POLL_INTERVAL);
        }
    }

    /// SIGKILLs the process and reaps it. Idempotent.
    pub fn kill(&mut self) {
        // The watchdog goes first, so it can never signal a recycled pid.
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `process_id` from `INFO server` of whoever answers on `addr`, if anyone does.
fn answering_pid(addr: &str) -> Option<u32> {
    let client = redis::Client::open(node_url(addr)).ok()?;
    let mut conn = client
        .get_connection_with_timeout(Duration::from_millis(500))
        .ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let info: String = redis::cmd("INFO").arg("server").query(&mut conn).ok()?;
    info_field(&info, "process_id")?.parse().ok()
}

/// One `field:value` line of an `INFO` reply.
pub(crate) fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
}

/// A `sh` that SIGKILLs `pid` and removes `dir` once its stdin closes, which happens when this
/// test process exits by any means: `Drop` does not run on SIGKILL, `abort` or a timeout's SIGTERM.
///
/// # Panics
/// When `sh` can't be started.
fn spawn_watchdog(pid: u32, dir: &Path) -> Child {
    // With SLOTPROXY_KEEP_TEST_DIRS the dir is kept here too (an empty $2 removes nothing).
    let dir = if keep_test_dirs() { Path::new("") } else { dir };
    Command::new("sh")
        .args([
            "-c",
            r#"read -r _ignored; kill -9 "$1" 2>/dev/null; [ -z "$2" ] || rm -rf -- "$2""#,
            "sh",
            &pid.to_string(),
        ])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // The pipe's write end stays in the returned `Child`; nothing is ever written to it.
        .spawn()
        .expect("spawn the sh watchdog of a redis-server")
}

/// The last `lines` lines of a node log, for panic messages.
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(no log at {}: {e})", path.display()),
    }
}

/// A port whose cluster bus port (when `with_bus`) is also free, not yet handed out by this
/// process. Binding is only a hint: another process can take it before redis-server binds, which
/// [`RedisProcess::start`] handles by retrying.
pub(crate) fn free_port(with_bus: bool) -> u16 {
    let mut taken = TAKEN.lock().expect("port registry lock");
    let taken = taken.get_or_insert_with(HashSet::new);
    let span = u64::from(PORT_MAX - PORT_MIN) + 1;
    for _ in 0..10_000 {
        let port = PORT_MIN + u16::try_from(next_random() % span).expect("span fits in u16");
        if taken.contains(&port) || !can_bind(port) {
            continue;
        }
        if with_bus && !can_bind(port + BUS_PORT_OFFSET) {
            continue;
        }
        taken.insert(port);
        return port;
    }
    panic!("no free port pair found in {PORT_MIN}..={PORT_MAX}");
}

fn can_bind(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// xorshift64, seeded from the pid and the clock so parallel test processes pick different ports.
fn next_random() -> u64 {
    let mut current = RNG.load(Ordering::Relaxed);
    loop {
        let mut x = if current == 0 { seed() } else { current };
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        match RNG.compare_exchange(current, x, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return x,
            Err(actual) => current = actual,
        }
    }
}

fn seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mixed = nanos ^ (u64::from(std::process::id()) << 32) ^ 0x9E37_79B9_7F4A_7C15;
    mixed.max(1)
}

/// Creates the temp dir for a group of nodes.
pub(crate) fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create a temp dir for redis-server nodes")
}

/// Keeps `dir` when `SLOTPROXY_KEEP_TEST_DIRS` is set (and says where), otherwise removes it.
pub(crate) fn finish_temp_dir(dir: tempfile::TempDir) {
    if keep_test_dirs() {
        eprintln!("SLOTPROXY_KEEP_TEST_DIRS: kept {}", dir.keep().display());
    }
}

/// Whether `SLOTPROXY_KEEP_TEST_DIRS` asks to keep the nodes' temp dirs.
fn keep_test_dirs() -> bool {
    std::env::var_os("SLOTPROXY_KEEP_TEST_DIRS").is_some()
}

/// One non-cluster `redis-server` on a free port, for comparing replies; killed on `Drop`.
pub struct StandaloneRedis {
    /// `127.0.0.1:port`.
    pub addr: String,
    /// The client port.
    pub port: u16,
    process: Option<RedisProcess>,
    dir: Option<tempfile::TempDir>,
}

impl StandaloneRedis {
    /// Starts the node and waits until it answers (blocking).
    ///
    /// # Panics
    /// When `redis-server` is missing or does not start.
    pub fn start() -> StandaloneRedis {
        super::failure::record_panics();
        let dir = temp_dir("slotproxy-standalone-");
        let spec = NodeSpec {
            dir: dir.path().to_path_buf(),
            cluster: false,
            auth: None,
            tls: None,
        };
        let process = RedisProcess::start(&spec);
        StandaloneRedis {
            addr: format!("127.0.0.1:{}", process.port),
            port: process.port,
            process: Some(process),
            dir: Some(dir),
        }
    }

    /// A new synchronous client connection.
    ///
    /// # Panics
    /// When the node can't be reached.
    pub fn conn(&self) -> redis::Connection {
        connect(&self.addr)
    }
}

impl Drop for StandaloneRedis {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            if std::thread::panicking() {
                eprintln!(
                    "standalone redis {} log tail:\n{}",
                    self.addr,
                    log_tail(&process.log, 20)
                );
                super::failure::echo_panic();
            }
            process.kill();
        }
        if let Some(dir) = self.dir.take() {
            finish_temp_dir(dir);
        }
    }
}

/// A synchronous connection to `addr` with timeouts, so a stopped node can't hang a test.
///
/// # Panics
/// When the connection fails.
pub(crate) fn connect(addr: &str) -> redis::Connection {
    try_connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
}

/// Like [`connect`], returning the error.
pub(crate) fn try_connect(addr: &str) -> redis::RedisResult<redis::Connection> {
    let client = redis::Client::open(node_url(addr))?;
    let conn = client.get_connection_with_timeout(Duration::from_secs(5))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    conn.set_write_timeout(Some(Duration::from_secs(10)))?;
    Ok(conn)
}
