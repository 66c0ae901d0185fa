//! Table tests over the policy rows: every row has one, known commands get the expected
//! handling, and the argument-dependent cases.

use bytes::Bytes;
use redis_protocol::resp2::types::OwnedFrame;

use super::*;
use crate::command::CommandTable;

fn args(list: &[&str]) -> Vec<Bytes> {
    list.iter()
        .map(|a| Bytes::copy_from_slice(a.as_bytes()))
        .collect()
}

fn handling_of(table: &CommandTable, name: &str) -> Handling {
    let spec = table
        .lookup(name)
        .unwrap_or_else(|| panic!("{name} in table"));
    table.policy(spec).handling
}

#[test]
fn every_row_has_a_policy_built_from_the_row() {
    let table = CommandTable::builtin();
    let mut rows = 0;
    for spec in table.iter() {
        for (row, container) in std::iter::once((spec, None))
            .chain(spec.subcommands.iter().map(|sub| (sub, Some(spec))))
        {
            rows += 1;
            let policy = table.policy(row);
            assert_eq!(*policy, Policy::of(row, container), "{}", row.name);
            assert_eq!(
                policy.is_write(),
                row.flags.contains(Flags::WRITE),
                "{}",
                row.name
            );
            assert_eq!(policy.acl_categories, row.acl_categories, "{}", row.name);
            // Metrics count a subcommand under its container's name.
            assert_eq!(policy.metric, spec.id, "{}", row.name);
            assert_eq!(policy.metric_label, spec.name, "{}", row.name);
        }
    }
    assert_eq!(rows, table.rows());
}

#[test]
fn known_commands_map_to_expected_handlings() {
    let table = CommandTable::builtin();
    let single = |read_only| Handling::Single {
        read_only,
        blocking: false,
    };
    let cases = [
        ("get", single(true)),
        ("set", single(false)),
        ("eval", single(false)),
        ("evalsha", single(false)),
        ("fcall_ro", single(true)),
        ("sunionstore", single(false)),
        (
            "blpop",
            Handling::Single {
                read_only: false,
                blocking: true,
            },
        ),
        ("mget", Handling::Split(SplitKind::Keys(MergeRule::Values))),
        ("mset", Handling::Split(SplitKind::KeyValues)),
        ("del", Handling::Split(SplitKind::Keys(MergeRule::Sum))),
        ("exists", Handling::Split(SplitKind::Keys(MergeRule::Sum))),
        ("sunion", Handling::Computed(Algebra::SUnion)),
        ("zintercard", Handling::Computed(Algebra::ZInterCard)),
        ("pfcount", Handling::Computed(Algebra::PfCount)),
        ("ping", Handling::Local(Local::Ping)),
        ("hello", Handling::Local(Local::Hello)),
        ("client|setname", Handling::Local(Local::ClientSetName)),
        ("cluster|slots", Handling::Local(Local::ClusterSlots)),
        ("wait", Handling::Local(Local::Wait)),
        ("scan", Handling::Local(Local::Scan)),
        ("multi", Handling::Local(Local::Multi)),
        ("subscribe", Handling::Local(Local::Subscribe)),
        ("sunsubscribe", Handling::Local(Local::Subscribe)),
        ("publish", Handling::Local(Local::Publish)),
        ("spublish", Handling::Local(Local::Publish)),
        ("pubsub|numsub", Handling::Local(Local::PubSubCount)),
        ("pubsub|shardchannels", Handling::Local(Local::PubSubCount)),
        ("acl|setuser", Handling::Acl),
        ("acl|whoami", Handling::Acl),
        ("acl|cat", Handling::Acl),
        ("acl|genpass", Handling::AnyNode),
        ("acl|help", Handling::AnyNode),
        ("command|count", Handling::AnyNode),
        ("time", Handling::AnyNode),
        ("config|get", Handling::AnyNode),
        ("function|dump", Handling::AnyNode),
        ("pubsub|help", Handling::AnyNode),
        ("cluster|countkeysinslot", Handling::BySlotArgument),
        ("dbsize", Handling::FanOut(FanOutMerge::Sum)),
        ("keys", Handling::FanOut(FanOutMerge::Concat)),
        ("flushall", Handling::FanOut(FanOutMerge::AllOk)),
        ("info", Handling::FanOut(FanOutMerge::Info)),
        ("randomkey", Handling::FanOut(FanOutMerge::AnyNonNull)),
        ("script|load", Handling::FanOut(FanOutMerge::Same)),
        ("script|exists", Handling::FanOut(FanOutMerge::AllExist)),
        ("script|flush", Handling::FanOut(FanOutMerge::AllOk)),
        ("script|kill", Handling::FanOut(FanOutMerge::AnyOk)),
        ("function|load", Handling::FanOut(FanOutMerge::Same)),
        ("function|delete", Handling::FanOut(FanOutMerge::AllOk)),
        ("function|flush", Handling::FanOut(FanOutMerge::AllOk)),
        ("function|restore", Handling::FanOut(FanOutMerge::AllOk)),
        (
            "function|list",
            Handling::FanOut(FanOutMerge::CommonLibraries),
        ),
        (
            "function|stats",
            Handling::FanOut(FanOutMerge::RunningScript),
        ),
        ("latency|doctor", Handling::Refused(Refusal::NoMerge)),
        ("cluster|saveconfig", Handling::Refused(Refusal::NotYet)),
        ("failover", Handling::Refused(Refusal::Never)),
        ("cluster|meet", Handling::Refused(Refusal::Never)),
        ("cluster|replicate", Handling::Refused(Refusal::Never)),
        ("cluster|setslot", Handling::Refused(Refusal::Never)),
        ("client|kill", Handling::Local(Local::ClientKill)),
        ("client|unblock", Handling::Local(Local::ClientUnblock)),
        ("client|pause", Handling::Local(Local::ClientPause)),
        (
            "script|debug",
            Handling::Refused(Refusal::SharedConnections),
        ),
        ("shutdown", Handling::Admin(Allowed::Local(Local::Shutdown))),
        ("monitor", Handling::Admin(Allowed::Local(Local::Monitor))),
        ("config|set", Handling::Admin(Allowed::ConfigSet)),
        (
            "config|resetstat",
            Handling::Admin(Allowed::AllNodes(FanOutMerge::AllOk)),
        ),
        (
            "bgsave",
            Handling::Admin(Allowed::AllNodes(FanOutMerge::Same)),
        ),
        ("debug", Handling::Admin(Allowed::Debug)),
        ("migrate", Handling::Admin(Allowed::ByKeys)),
        ("replicaof", Handling::Admin(Allowed::AnyNode)),
    ];
    for (name, want) in cases {
        assert_eq!(handling_of(&table, name), want, "{name}");
    }
}

#[test]
fn every_allowable_admin_command_is_refused_by_default_and_has_a_handling() {
    let table = CommandTable::builtin();
    for name in crate::config::ALLOWABLE_ADMIN_COMMANDS {
        match handling_of(&table, name) {
            Handling::Admin(allowed) => {
                assert!(!matches!(allowed.handling(), Handling::Admin(_)), "{name}")
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    assert_eq!(
        Allowed::Debug.handling(),
        Handling::AllNodes(FanOutMerge::Same)
    );
    assert_eq!(
        Allowed::ConfigSet.handling(),
        Handling::AllNodes(FanOutMerge::AllOk)
    );
}

#[test]
fn refusals_complete_the_error_line() {
    assert_eq!(
        Refusal::NotYet.reason(),
        "is not supported by slotproxy yet"
    );
    assert_eq!(Refusal::NoMerge.reason(), Refusal::NotYet.reason());
    assert!(
        Refusal::Admin
            .reason()
            .ends_with("session.allowed_admin_commands")
    );
}

#[test]
fn debug_object_is_routed_by_key_only_with_one_key() {
    assert!(is_debug_object(&args(&["DEBUG", "OBJECT", "k"])));
    assert!(is_debug_object(&args(&["debug", "object", "k"])));
    assert!(!is_debug_object(&args(&["DEBUG", "OBJECT"])));
    assert!(!is_debug_object(&args(&["DEBUG", "SLEEP", "0"])));
    assert!(!is_debug_object(&args(&["DEBUG", "OBJECT", "k", "x"])));
}

#[test]
fn config_set_of_paths_passwords_and_addresses_is_refused() {
    for refused in [
        &["config", "set", "requirepass", "x"][..],
        &["CONFIG", "SET", "DIR", "/tmp"],
        &["config", "set", "maxmemory", "1mb", "dbfilename", "x.rdb"],
        &["config", "set", "tls-cert-file", "/x"],
        &["config", "set", "cluster-announce-ip", "10.0.0.1"],
    ] {
        assert!(config_set_refused(&args(refused)).is_some(), "{refused:?}");
    }
    for allowed in [
        &["config", "set", "maxmemory", "1mb"][..],
        &[
            "config",
            "set",
            "maxmemory-policy",
            "allkeys-lru",
            "hz",
            "20",
        ],
        // A value that names a refused parameter is still just a value.
        &["config", "set", "notify-keyspace-events", "dir"],
    ] {
        assert!(config_set_refused(&args(allowed)).is_none(), "{allowed:?}");
    }
}

#[test]
fn rows_learned_from_a_node_get_a_policy() {
    let bulk = |s: &str| OwnedFrame::BulkString(s.as_bytes().to_vec());
    // Redis 5's shape: name, arity, flags, first key, last key, key step.
    let legacy = |name: &str, flags: &[&str], first: i64| {
        vec![
            bulk(name),
            OwnedFrame::Integer(-2),
            OwnedFrame::Array(flags.iter().map(|f| bulk(f)).collect()),
            OwnedFrame::Integer(first),
            OwnedFrame::Integer(first),
            OwnedFrame::Integer(1),
        ]
    };
    // Redis 7's adds ACL categories, tips, key specs and subcommands.
    let with_subcommands = |name: &str, subcommands: Vec<OwnedFrame>| {
        let mut entry = legacy(name, &[], 0);
        entry.extend([
            OwnedFrame::Array(vec![]),
            OwnedFrame::Array(vec![]),
            OwnedFrame::Array(vec![]),
            OwnedFrame::Array(subcommands),
        ]);
        OwnedFrame::Array(entry)
    };
    let mut table = CommandTable::builtin();
    let before = table.rows();
    let reply = OwnedFrame::Array(vec![
        OwnedFrame::Array(legacy("json.get", &["readonly", "module"], 1)),
        with_subcommands("client", vec![with_subcommands("client|brand-new", vec![])]),
    ]);
    assert_eq!(table.merge_node_commands(&reply).len(), 2);
    assert_eq!(table.rows(), before + 2);
    let json = table.lookup("json.get").expect("merged");
    let policy = table.policy(json);
    assert_eq!(
        policy.handling,
        Handling::Single {
            read_only: true,
            blocking: false
        }
    );
    assert_eq!(policy.access, Access::ReadOnly);
    assert_eq!((policy.metric, policy.metric_label), (json.id, "json.get"));
    let client = table.lookup("client").expect("client");
    let new = table.lookup("client|brand-new").expect("merged");
    let policy = table.policy(new);
    assert_eq!(policy.handling, Handling::Refused(Refusal::NotYet));
    assert_eq!((policy.metric, policy.metric_label), (client.id, "client"));
    // The container kept its row, and its known subcommands their policies.
    assert_eq!(
        handling_of(&table, "client|setname"),
        Handling::Local(Local::ClientSetName)
    );
}

#[test]
fn script_rows_say_where_their_script_is() {
    let table = CommandTable::builtin();
    let cases = [
        ("eval", Some(ScriptUse::Body(1))),
        ("eval_ro", Some(ScriptUse::Body(1))),
        ("script|load", Some(ScriptUse::Body(2))),
        ("evalsha", Some(ScriptUse::Sha)),
        ("evalsha_ro", Some(ScriptUse::Sha)),
        ("script|flush", Some(ScriptUse::Flush)),
        ("fcall", None),
        ("get", None),
    ];
    for (name, want) in cases {
        let spec = table.lookup(name).expect("command in table");
        assert_eq!(table.policy(spec).scripts, want, "{name}");
    }
}
