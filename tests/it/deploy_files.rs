//! The deployment files (docker/compose.yml, docker/k8s/*.yaml, the Grafana dashboard) checked
//! against the real slotproxy: every flag and `SLOTPROXY_*` variable they use is one the built
//! binary knows, every config file they mount parses as a `Config`, their ports agree with the
//! listen addresses, and every metric the dashboard queries is one `/metrics` serves.
//!
//! No image is built here (docker/test-image.sh does that); these checks run in CI.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::{TestCluster, wait_until};
use slotproxy::config::{Config, ReadPolicy, parse_node_addr};
use yaml_rust2::{Yaml, YamlLoader};

const BIN: &str = env!("CARGO_BIN_EXE_slotproxy");

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo_file(relative)).unwrap_or_else(|e| panic!("read {relative}: {e}"))
}

fn yaml_docs(relative: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(relative)).unwrap_or_else(|e| panic!("parse {relative}: {e}"))
}

/// What the built binary accepts: its flags and the environment variables it reads.
struct Cli {
    flags: BTreeSet<String>,
    env: BTreeSet<String>,
    /// The binary's bytes: variables read only from the environment (secrets) have no flag
    /// and so no `--help` line, but their names are in the binary.
    binary: Vec<u8>,
}

impl Cli {
    fn load() -> Cli {
        let out = Command::new(BIN).arg("--help").output().unwrap();
        assert!(out.status.success(), "slotproxy --help failed");
        let help = String::from_utf8(out.stdout).unwrap();
        Cli {
            flags: words(&help, "--", |c| c.is_ascii_lowercase() || c == '-'),
            env: words(&help, "SLOTPROXY_", |c| c.is_ascii_uppercase() || c == '_'),
            binary: std::fs::read(BIN).unwrap(),
        }
    }

    fn assert_flag(&self, flag: &str, file: &str) {
        let name = flag.split('=').next().unwrap();
        assert!(
            self.flags.contains(name),
            "{file} passes {name}, which `slotproxy --help` does not list (it has {:?})",
            self.flags
        );
    }

    fn assert_env(&self, name: &str, file: &str) {
        let secret_in_binary = is_secret(name)
            && self
                .binary
                .windows(name.len())
                .any(|w| w == name.as_bytes());
        assert!(
            self.env.contains(name) || secret_in_binary,
            "{file} sets {name}, which slotproxy does not read (`--help` lists {:?})",
            self.env
        );
    }
}

/// Every token of `text` that starts with `prefix` and continues with `more` characters.
fn words(text: &str, prefix: &str, more: impl Fn(char) -> bool) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        let tail = &rest[at + prefix.len()..];
        let len = tail.find(|c| !more(c)).unwrap_or(tail.len());
        if len > 0 && (at == 0 || !rest[..at].ends_with(|c: char| c.is_alphanumeric())) {
            found.insert(format!("{prefix}{}", &tail[..len]));
        }
        rest = &tail[len..];
    }
    found
}

fn str_of<'a>(yaml: &'a Yaml, what: &str) -> &'a str {
    yaml.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {yaml:?}"))
}

/// A compose `environment:` (map or `KEY=value` list) or a k8s `env:` list, as pairs; a k8s
/// variable taken from a Secret has the value `None`.
fn env_pairs(env: &Yaml) -> Vec<(String, Option<String>)> {
    match env {
        Yaml::Hash(map) => map
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    Yaml::String(s) => Some(s.clone()),
                    Yaml::Integer(i) => Some(i.to_string()),
                    Yaml::Boolean(b) => Some(b.to_string()),
                    other => panic!("environment value {other:?}"),
                };
                (str_of(k, "environment key").to_string(), value)
            })
            .collect(),
        Yaml::Array(items) => items
            .iter()
            .map(|item| match item {
                Yaml::String(s) => {
                    let (k, v) = s.split_once('=').unwrap_or((s, ""));
                    (k.to_string(), Some(v.to_string()))
                }
                Yaml::Hash(_) => (
                    str_of(&item["name"], "env name").to_string(),
                    item["value"].as_str().map(str::to_string),
                ),
                other => panic!("env entry {other:?}"),
            })
            .collect(),
        Yaml::BadValue | Yaml::Null => Vec::new(),
        other => panic!("environment {other:?}"),
    }
}

fn env_value<'a>(pairs: &'a [(String, Option<String>)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.as_deref())
}

fn port_of(addr: &str, what: &str) -> u16 {
    addr.parse::<SocketAddr>()
        .unwrap_or_else(|e| panic!("{what} '{addr}' is not ip:port: {e}"))
        .port()
}

/// Whether `name` is a secret: read from the environment only, checked by
/// `secrets_reach_slotproxy_only_through_names_and_keys_it_reads`.
fn is_secret(name: &str) -> bool {
    name.contains("PASSWORD")
}

/// Checks the non-secret `SLOTPROXY_*` variables of one slotproxy container and returns the
/// client and admin ports they set.
fn check_slotproxy_env(cli: &Cli, env: &[(String, Option<String>)], file: &str) -> (u16, u16) {
    for (name, _) in env {
        assert!(
            name.starts_with("SLOTPROXY_"),
            "{file}: slotproxy gets {name}, which is not a SLOTPROXY_* variable"
        );
        if !is_secret(name) {
            cli.assert_env(name, file);
        }
    }
    if let Some(policy) = env_value(env, "SLOTPROXY_READ_POLICY") {
        policy
            .parse::<ReadPolicy>()
            .unwrap_or_else(|e| panic!("{file}: SLOTPROXY_READ_POLICY: {e}"));
    }
    if let Some(seeds) = env_value(env, "SLOTPROXY_CLUSTER") {
        for seed in seeds.split(',') {
            parse_node_addr(seed).unwrap_or_else(|e| panic!("{file}: SLOTPROXY_CLUSTER: {e}"));
        }
    }
    if let Some(threads) = env_value(env, "SLOTPROXY_THREADS") {
        assert!(
            threads.parse::<u16>().is_ok_and(|n| n > 0),
            "{file}: SLOTPROXY_THREADS"
        );
    }
    // Without these two the image's own ENV applies: 0.0.0.0:6379 and 0.0.0.0:9379.
    let listen = env_value(env, "SLOTPROXY_LISTEN").unwrap_or("0.0.0.0:6379");
    let admin = env_value(env, "SLOTPROXY_ADMIN_LISTEN").unwrap_or("0.0.0.0:9379");
    (
        port_of(listen, "SLOTPROXY_LISTEN"),
        port_of(admin, "SLOTPROXY_ADMIN_LISTEN"),
    )
}

/// The ENV lines of docker/Dockerfile's base stage, which the compose and k8s defaults rely on.
#[test]
fn dockerfile_env_flags_and_ports_exist_in_slotproxy() {
    let cli = Cli::load();
    let dockerfile = read("docker/Dockerfile");
    let mut env = Vec::new();
    for name in words(&dockerfile, "SLOTPROXY_", |c| {
        c.is_ascii_uppercase() || c == '_'
    }) {
        let value = dockerfile
            .split(&format!("{name}="))
            .nth(1)
            .map(|rest| rest.split_whitespace().next().unwrap().to_string());
        env.push((name, value));
    }
    let (client, admin) = check_slotproxy_env(&cli, &env, "docker/Dockerfile");
    assert!(
        dockerfile.contains(&format!("EXPOSE {client}/tcp {admin}/tcp")),
        "docker/Dockerfile must EXPOSE the client port {client} and admin port {admin}"
    );
    assert!(dockerfile.contains(r#"HEALTHCHECK "#));
    assert!(dockerfile.contains(r#"CMD ["/slotproxy", "health"]"#));
    // `slotproxy health` exists: it runs (and fails, as nothing listens) rather than being an
    // unknown argument (exit 2 with a usage message).
    let admin = free_addr();
    let out = Command::new(BIN)
        .arg("health")
        .env("SLOTPROXY_ADMIN_LISTEN", admin.to_string())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "`slotproxy health` with no admin listener must exit 1: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn compose_uses_only_flags_env_and_config_keys_slotproxy_has() {
    let cli = Cli::load();
    let file = "docker/compose.yml";
    let compose = &yaml_docs(file)[0];
    let services = &compose["services"];
    let proxy = &services["slotproxy"];
    assert!(!proxy.is_badvalue(), "{file} has no `slotproxy` service");
    assert_eq!(
        str_of(&proxy["build"]["dockerfile"], "build.dockerfile"),
        "docker/Dockerfile"
    );

    let env = env_pairs(&proxy["environment"]);
    let (client, admin) = check_slotproxy_env(&cli, &env, file);
    if let Some(args) = proxy["command"].as_vec() {
        for arg in args.iter().map(|a| str_of(a, "command")) {
            if arg.starts_with("--") {
                cli.assert_flag(arg, file);
            }
        }
    }

    // Published ports are the container's listen ports.
    let published: BTreeSet<u16> = proxy["ports"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|p| {
            let text = str_of(p, "ports entry");
            text.rsplit(':').next().unwrap().parse().unwrap()
        })
        .collect();
    assert_eq!(
        published,
        BTreeSet::from([client, admin]),
        "{file}: slotproxy ports"
    );

    // The config file SLOTPROXY_CONFIG names is mounted (its keys: the secrets test below).
    let config_path = env_value(&env, "SLOTPROXY_CONFIG").expect("SLOTPROXY_CONFIG");
    mount_source(&proxy["volumes"], config_path, file);

    // The app knows only REDIS_URL, pointing at slotproxy's client port.
    let app_env = env_pairs(&services["app"]["environment"]);
    assert_eq!(
        env_value(&app_env, "REDIS_URL"),
        Some(format!("redis://slotproxy:{client}").as_str())
    );

    // Prometheus scrapes the admin port; Grafana gets the dashboard slotproxy ships.
    let prometheus = &yaml_docs("docker/prometheus/prometheus.yml")[0];
    let targets = &prometheus["scrape_configs"][0]["static_configs"][0]["targets"];
    assert_eq!(str_of(&targets[0], "target"), format!("slotproxy:{admin}"));
    let dashboard = mount_source(
        &services["grafana"]["volumes"],
        "/var/lib/grafana/dashboards/slotproxy/slotproxy.json",
        file,
    );
    assert_eq!(dashboard, "../config/grafana/slotproxy.json");
    assert!(repo_file("config/grafana/slotproxy.json").is_file());

    // The nodes are configured as the seed documents configure them.
    let redis_conf = read("docker/redis/redis.conf");
    for line in [
        "cluster-enabled yes",
        "cluster-node-timeout 5000",
        "appendonly yes",
        "save \"\"",
        "maxmemory-policy allkeys-lru",
    ] {
        assert!(
            redis_conf.lines().any(|l| l == line),
            "redis.conf lacks `{line}`"
        );
    }
    let nodes = (1..=6)
        .filter(|n| !services[format!("redis-node-{n}").as_str()].is_badvalue())
        .count();
    assert_eq!(nodes, 6, "{file}: six redis nodes");
    let init = str_of(
        &services["cluster-init"]["command"][0],
        "cluster-init command",
    );
    assert!(init.contains("--cluster-replicas 1") && init.contains("--cluster-yes"));
}

/// The host side of the `volumes:` entry mounted at `target`.
fn mount_source<'a>(volumes: &'a Yaml, target: &str, file: &str) -> &'a str {
    volumes
        .as_vec()
        .unwrap()
        .iter()
        .map(|v| str_of(v, "volume"))
        .find_map(|v| {
            let mut parts = v.split(':');
            let source = parts.next()?;
            (parts.next()? == target).then_some(source)
        })
        .unwrap_or_else(|| panic!("{file}: nothing is mounted at {target}"))
}

#[test]
fn k8s_manifests_use_only_flags_env_ports_and_config_keys_slotproxy_has() {
    let cli = Cli::load();
    let deployment = &yaml_docs("docker/k8s/deployment.yaml")[0];
    let file = "docker/k8s/deployment.yaml";
    assert_eq!(str_of(&deployment["kind"], "kind"), "Deployment");
    let pod = &deployment["spec"]["template"];
    let containers: Vec<&Yaml> = ["initContainers", "containers"]
        .iter()
        .flat_map(|list| pod["spec"][*list].as_vec().into_iter().flatten())
        .collect();
    let proxy = containers
        .iter()
        .find(|c| c["name"].as_str() == Some("slotproxy"))
        .expect("a container named slotproxy");
    let app = containers
        .iter()
        .find(|c| c["name"].as_str() == Some("app"))
        .expect("a container named app");
    // A native sidecar: started before the app, stopped after it.
    assert_eq!(proxy["restartPolicy"].as_str(), Some("Always"));

    let env = env_pairs(&proxy["env"]);
    let (client, admin) = check_slotproxy_env(&cli, &env, file);
    for arg in proxy["args"].as_vec().into_iter().flatten() {
        let arg = str_of(arg, "args");
        if arg.starts_with("--") {
            cli.assert_flag(arg, file);
        }
    }
    let ports: Vec<(&str, i64)> = proxy["ports"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|p| {
            (
                str_of(&p["name"], "port name"),
                p["containerPort"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        [("redis", i64::from(client)), ("admin", i64::from(admin))]
    );
    for (probe, path) in [
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ] {
        let get = &proxy[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{probe}");
        assert_eq!(get["port"].as_str(), Some("admin"), "{probe}");
    }
    assert!(
        proxy["lifecycle"]["preStop"]["sleep"]["seconds"]
            .as_i64()
            .unwrap()
            > 0
    );
    let grace = pod["spec"]["terminationGracePeriodSeconds"]
        .as_i64()
        .unwrap();
    assert!(
        grace
            > proxy["lifecycle"]["preStop"]["sleep"]["seconds"]
                .as_i64()
                .unwrap()
    );
    assert_eq!(
        env_value(&env_pairs(&app["env"]), "REDIS_URL"),
        Some(format!("redis://127.0.0.1:{client}").as_str())
    );

    // Annotations and the PodMonitor scrape the admin port of the pods that carry the sidecar.
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(
        annotations["prometheus.io/port"].as_str(),
        Some(admin.to_string().as_str())
    );
    assert_eq!(annotations["prometheus.io/path"].as_str(), Some("/metrics"));
    let monitor = &yaml_docs("docker/k8s/podmonitor.yaml")[0];
    assert_eq!(monitor["kind"].as_str(), Some("PodMonitor"));
    assert_eq!(
        monitor["spec"]["podMetricsEndpoints"][0]["port"].as_str(),
        Some("admin")
    );
    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_hash()
        .unwrap();
    for (k, v) in selector {
        assert_eq!(
            &pod["metadata"]["labels"][str_of(k, "label")],
            v,
            "PodMonitor selector"
        );
    }

    // The ConfigMap's config parses as slotproxy's Config and is the file SLOTPROXY_CONFIG names.
    let config_map = &yaml_docs("docker/k8s/configmap.yaml")[0];
    let toml = str_of(&config_map["data"]["slotproxy.toml"], "slotproxy.toml");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slotproxy.toml");
    std::fs::write(&path, toml).unwrap();
    Config::from_file(&path).unwrap_or_else(|e| panic!("configmap.yaml's slotproxy.toml: {e}"));
    let mount = proxy["volumeMounts"][0]["mountPath"].as_str().unwrap();
    assert_eq!(
        env_value(&env, "SLOTPROXY_CONFIG"),
        Some(format!("{mount}/slotproxy.toml").as_str())
    );
    let volume = &pod["spec"]["volumes"][0];
    assert_eq!(volume["name"], proxy["volumeMounts"][0]["name"]);
    assert_eq!(volume["configMap"]["name"], config_map["metadata"]["name"]);

    // Every secretKeyRef names a key of the Secret.
    let secret = &yaml_docs("docker/k8s/secret.yaml")[0];
    for entry in proxy["env"].as_vec().unwrap() {
        let reference = &entry["valueFrom"]["secretKeyRef"];
        if reference.is_badvalue() {
            continue;
        }
        assert_eq!(reference["name"], secret["metadata"]["name"]);
        let key = str_of(&reference["key"], "secretKeyRef.key");
        assert!(
            !secret["stringData"][key].is_badvalue(),
            "secret.yaml has no key {key}"
        );
    }
}

/// Passwords reach slotproxy from a Secret or a mounted file, never as a literal in a
/// deployment file, and only through variable names and config keys slotproxy has (the
/// security issue's SLOTPROXY_BACKEND_PASSWORD, SLOTPROXY_PASSWORD, `[backend] password_file`).
#[test]
fn secrets_reach_slotproxy_only_through_names_and_keys_it_reads() {
    let cli = Cli::load();
    let dockerfile = read("docker/Dockerfile");
    let documented = words(&dockerfile, "SLOTPROXY_", |c| {
        c.is_ascii_uppercase() || c == '_'
    });
    for name in documented.iter().filter(|n| is_secret(n)) {
        cli.assert_env(name, "docker/Dockerfile");
    }

    let file = "docker/compose.yml";
    let proxy = &yaml_docs(file)[0]["services"]["slotproxy"];
    let env = env_pairs(&proxy["environment"]);
    assert!(
        !env.iter().any(|(name, _)| is_secret(name)),
        "{file}: a password in slotproxy's environment would be in the file; use the secret"
    );
    let config_path = env_value(&env, "SLOTPROXY_CONFIG").expect("SLOTPROXY_CONFIG");
    let mounted = mount_source(&proxy["volumes"], config_path, file);
    Config::from_file(&repo_file(&format!("docker/{mounted}")))
        .unwrap_or_else(|e| panic!("{file}: the config mounted at {config_path}: {e}"));
    assert!(
        read(&format!("docker/{mounted}"))
            .contains("password_file = \"/run/secrets/redis_password\""),
        "{file}: slotproxy should read the nodes' password from the secret volume"
    );
    mount_source(&proxy["volumes"], "/run/secrets", file);

    let file = "docker/k8s/deployment.yaml";
    let deployment = &yaml_docs(file)[0];
    let sidecar = deployment["spec"]["template"]["spec"]["initContainers"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str() == Some("slotproxy"))
        .expect("the slotproxy sidecar");
    let env = env_pairs(&sidecar["env"]);
    let secrets: Vec<&(String, Option<String>)> =
        env.iter().filter(|(name, _)| is_secret(name)).collect();
    assert!(!secrets.is_empty(), "{file}: the sidecar gets no password");
    for (name, value) in secrets {
        assert!(
            value.is_none(),
            "{file}: {name} must come from a Secret, not a literal"
        );
        cli.assert_env(name, file);
    }
}

fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// One HTTP/1.0 GET; the status code and the body.
fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    http(addr, "GET", path)
}

/// One HTTP/1.0 request without a body; the status code and the body.
fn http(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_string();
    Ok((status, body))
}

/// The binary with its admin listener, configured through the environment as in a container.
struct RunningProxy {
    child: Child,
    client: SocketAddr,
    admin: SocketAddr,
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_binary(cluster: &TestCluster) -> RunningProxy {
    let client = free_addr();
    let admin = free_addr();
    let child = Command::new(BIN)
        .env("SLOTPROXY_LISTEN", client.to_string())
        .env("SLOTPROXY_ADMIN_LISTEN", admin.to_string())
        .env("SLOTPROXY_CLUSTER", cluster.seeds().join(","))
        .env("SLOTPROXY_LOG", "warn")
        // The sample config, so that POST /reload has a file to re-read.
        .env("SLOTPROXY_CONFIG", repo_file("config/slotproxy.toml"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut proxy = RunningProxy {
        child,
        client,
        admin,
    };
    wait_until(
        Duration::from_secs(15),
        "slotproxy's /readyz answers 200",
        || {
            assert!(
                proxy.child.try_wait().unwrap().is_none(),
                "slotproxy exited early"
            );
            http_get(proxy.admin, "/readyz").is_ok_and(|(status, _)| status == 200)
        },
    );
    proxy
}

/// Metric names a Prometheus expression uses (`slotproxy_...` identifiers).
fn metrics_in(expr: &str) -> BTreeSet<String> {
    words(expr, "slotproxy_", |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'
    })
}

fn collect_exprs(json: &serde_json::Value, out: &mut Vec<String>) {
    match json {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr" | "query", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => collect_exprs(value, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

#[test]
fn grafana_dashboard_queries_only_metrics_slotproxy_exports() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("config/grafana/slotproxy.json")).unwrap();
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| metrics_in(e)).collect();
    assert!(
        !used.is_empty(),
        "the dashboard queries no slotproxy metric"
    );

    let cluster = TestCluster::start(3, 1);
    let proxy = start_binary(&cluster);
    // Traffic for the labelled series: commands of several kinds, an error, a cross-slot MGET.
    let mut conn = redis::Client::open(format!("redis://{}", proxy.client))
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("deploy:a")
        .arg(1)
        .query(&mut conn)
        .unwrap();
    let _: Vec<Option<String>> = redis::cmd("MGET")
        .arg("deploy:a")
        .arg("deploy:b")
        .query(&mut conn)
        .unwrap();
    let _ = redis::cmd("NOSUCHCOMMAND").query::<()>(&mut conn);
    // A slot moved behind slotproxy's back: the next GET meets MOVED (redirect series).
    let key = "deploy:moved";
    let _: () = redis::cmd("SET").arg(key).arg(1).query(&mut conn).unwrap();
    let slot = cluster.keyslot(key.as_bytes());
    let from = cluster.owner_of(slot);
    let to = cluster
        .primaries()
        .into_iter()
        .find(|p| p.addr != from.addr)
        .unwrap();
    cluster.migrate_slot(slot, from, to);
    let moved: Option<String> = redis::cmd("GET").arg(key).query(&mut conn).unwrap();
    assert_eq!(moved.as_deref(), Some("1"));
    // A reload (config-reload series).
    let (status, body) = http(proxy.admin, "POST", "/reload").unwrap();
    assert_eq!(status, 200, "POST /reload: {body}");

    let (status, body) = http_get(proxy.admin, "/metrics").unwrap();
    assert_eq!(status, 200);
    // Families from `# TYPE` lines, and sample names (histograms add _bucket, _sum, _count).
    let mut exported = BTreeSet::new();
    for line in body.lines() {
        let name = match line.strip_prefix("# TYPE ") {
            Some(rest) => rest.split_whitespace().next(),
            None if line.starts_with('#') => None,
            None => line.split(['{', ' ']).next(),
        };
        if let Some(name) = name.filter(|n| !n.is_empty()) {
            exported.insert(name.to_string());
        }
    }
    let missing: Vec<&String> = used
        .iter()
        .filter(|m| {
            !exported.contains(*m)
                && !["_bucket", "_sum", "_count"].iter().any(|suffix| {
                    m.strip_suffix(suffix)
                        .is_some_and(|base| exported.contains(base))
                })
        })
        .collect();
    assert!(
        missing.is_empty(),
        "config/grafana/slotproxy.json queries {missing:?}, which /metrics does not export; it exports {exported:?}"
    );
}
