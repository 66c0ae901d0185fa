//! The `slotproxy` binary: help, version, and one-line config errors with exit code 2.

use std::process::{Command, Output};

fn slotproxy(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_slotproxy"))
        .args(args)
        .output()
        .expect("run the slotproxy binary")
}

#[test]
fn help_documents_every_flag() {
    let out = slotproxy(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--config",
        "--listen",
        "--cluster",
        "--log",
        "--read-policy",
        "--ack",
        "--log-format",
        "--admin-listen",
        "--threads",
        "--tls-listen",
        "--tls-cert-file",
        "--tls-key-file",
        "--tls-client-ca-file",
        "SLOTPROXY_TLS_LISTEN",
        "SLOTPROXY_LISTEN",
        "SLOTPROXY_CLUSTER",
        "health",
        "--help",
        "--version",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
    assert!(help.contains("redis://host:port"), "{help}");
}

#[test]
fn version_prints_the_crate_version() {
    let out = slotproxy(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("slotproxy {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn bad_flags_and_config_exit_2_with_a_one_line_error_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let unknown_key = dir.path().join("unknown.toml");
    std::fs::write(&unknown_key, "[backend]\nconnections = 4\n").unwrap();
    let zero = dir.path().join("zero.toml");
    std::fs::write(&zero, "[session]\nmax_in_flight = 0\n").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--listen".into(), "not-an-address".into()], "listen"),
        (
            vec!["--cluster".into(), "127.0.0.1".into()],
            "cluster.seeds",
        ),
        (
            vec!["--cluster".into(), "rediss://h:1".into()],
            "cluster.seeds",
        ),
        (
            vec!["--config".into(), unknown_key.display().to_string()],
            "connections",
        ),
        (
            vec!["--config".into(), zero.display().to_string()],
            "session.max_in_flight",
        ),
        (
            vec!["--config".into(), "/nonexistent/slotproxy.toml".into()],
            "/nonexistent/slotproxy.toml",
        ),
        (vec!["--log".into(), "info,[[".into()], "log"),
        (
            vec!["--read-policy".into(), "nearest-ish".into()],
            "read_policy",
        ),
        (vec!["--ack".into(), "all".into()], "backend.ack"),
        (vec!["--log-format".into(), "xml".into()], "log_format"),
        (
            vec!["--admin-listen".into(), "nowhere".into()],
            "admin.listen",
        ),
        (vec!["--threads".into(), "many".into()], "--threads"),
        (vec!["--frobnicate".into()], "--frobnicate"),
    ];
    for (args, names) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = slotproxy(&args);
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(names),
            "{args:?} error does not name {names}: {stderr}"
        );
        if !args.contains(&"--frobnicate") && !args.contains(&"--threads") {
            assert_eq!(
                stderr.trim().lines().count(),
                1,
                "{args:?}: not one line: {stderr}"
            );
        }
    }
}

#[test]
fn sample_config_is_accepted_by_the_binary() {
    // --help after --config parses nothing; so check the file through a bad override instead:
    // the file loads, then the flag's value is what gets refused.
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/config/slotproxy.toml");
    let out = slotproxy(&["--config", sample, "--listen", "bad"]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("`listen`"), "{stderr}");
}
