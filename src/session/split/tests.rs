//! Unit tests of splitting and merging.

use bytes::{Bytes, BytesMut};

use super::*;
use crate::command::{CommandTable, Handling};
use crate::protocol::{Protocol, Reply};

fn reply(raw: &'static [u8]) -> Reply {
    Reply::local(Bytes::from_static(raw))
}

/// The merge of a command its policy row fans out to every primary.
fn fan_out_merge(name: &str) -> Option<Merge> {
    let table = CommandTable::builtin();
    match table.policy(table.lookup(name)?).handling {
        Handling::FanOut(merge) => Some(merge.into()),
        _ => None,
    }
}

#[test]
fn mget_splits_by_slot_and_merges_in_key_order() {
    let request = Request::from_args(["MGET", "a", "{a}x", "b", "a"]);
    let (merge, parts) = plan_split(SplitKind::Keys(MergeRule::Values), &request);
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].0, hash_slot(b"a"));
    assert_eq!(parts[0].1.args().len(), 4, "a, {{a}}x and a share a slot");
    assert_eq!(&parts[1].1.raw()[..], b"*2\r\n$4\r\nMGET\r\n$1\r\nb\r\n");
    let replies = [
        reply(b"*3\r\n$2\r\nva\r\n$-1\r\n$2\r\nva\r\n"),
        reply(b"*1\r\n$2\r\nvb\r\n"),
    ];
    assert_eq!(
        &merge_bytes(&merge, &replies)[..],
        b"*4\r\n$2\r\nva\r\n$-1\r\n$2\r\nvb\r\n$2\r\nva\r\n"
    );
}

fn merge_bytes(m: &Merge, replies: &[Reply]) -> Bytes {
    merge(m, replies, Protocol::Resp2)
}

#[test]
fn mset_keeps_pairs_together() {
    let request = Request::from_args(["MSET", "a", "1", "b", "2", "{a}c", "3"]);
    let (merge, parts) = plan_split(SplitKind::KeyValues, &request);
    assert_eq!(merge, Merge::AllOk);
    let args: Vec<Vec<&[u8]>> = parts
        .iter()
        .map(|(_, r)| r.args().iter().map(|a| &a[..]).collect())
        .collect();
    assert_eq!(args[0], [&b"MSET"[..], b"a", b"1", b"{a}c", b"3"]);
    assert_eq!(args[1], [&b"MSET"[..], b"b", b"2"]);
}

#[test]
fn merges_sum_concat_ok_and_surface_the_first_error() {
    assert_eq!(
        &merge_bytes(&Merge::Sum, &[reply(b":2\r\n"), reply(b":-1\r\n")])[..],
        b":1\r\n"
    );
    assert_eq!(
        &merge_bytes(&Merge::AllOk, &[reply(b"+OK\r\n"), reply(b"+OK\r\n")])[..],
        b"+OK\r\n"
    );
    assert_eq!(
        &merge_bytes(
            &Merge::Concat,
            &[
                reply(b"*1\r\n$1\r\na\r\n"),
                reply(b"*0\r\n"),
                reply(b"*1\r\n$1\r\nb\r\n")
            ]
        )[..],
        b"*2\r\n$1\r\na\r\n$1\r\nb\r\n"
    );
    assert_eq!(
        &merge_bytes(
            &Merge::Sum,
            &[
                reply(b":1\r\n"),
                reply(b"-ERR one\r\n"),
                reply(b"-ERR two\r\n")
            ]
        )[..],
        b"-ERR one\r\n"
    );
}

#[test]
fn info_fans_out_and_merges_through_merge() {
    assert_eq!(fan_out_merge("info"), Some(Merge::Info));
    let bulk = |text: &str| {
        let mut out = BytesMut::new();
        crate::protocol::reply::write_bulk(&mut out, text.as_bytes());
        Reply::local(out.freeze())
    };
    let replies = [
        bulk("# Keyspace\r\ndb0:keys=2,expires=0,avg_ttl=0\r\n"),
        bulk("# Keyspace\r\ndb0:keys=3,expires=0,avg_ttl=0\r\n"),
    ];
    assert_eq!(
        merge(&Merge::Info, &replies, Protocol::Resp2),
        bulk("# Keyspace\r\ndb0:keys=5,expires=0,avg_ttl=0\r\n").into_raw()
    );
    let error = [bulk(""), reply(b"-ERR no\r\n")];
    assert_eq!(
        &merge(&Merge::Info, &error, Protocol::Resp2)[..],
        b"-ERR no\r\n"
    );
}

#[test]
fn randomkey_takes_a_key_from_a_primary_that_has_one() {
    assert_eq!(fan_out_merge("randomkey"), Some(Merge::AnyNonNull));
    let replies = [reply(b"$-1\r\n"), reply(b"$1\r\nk\r\n"), reply(b"$-1\r\n")];
    assert_eq!(
        &merge_bytes(&Merge::AnyNonNull, &replies)[..],
        b"$1\r\nk\r\n"
    );
    let both = [reply(b"$1\r\na\r\n"), reply(b"$1\r\nb\r\n")];
    let picked = merge_bytes(&Merge::AnyNonNull, &both);
    assert!(&picked[..] == b"$1\r\na\r\n" || &picked[..] == b"$1\r\nb\r\n");
    let empty = [reply(b"_\r\n"), reply(b"_\r\n")];
    assert_eq!(
        &merge(&Merge::AnyNonNull, &empty, Protocol::Resp3)[..],
        b"_\r\n"
    );
    assert_eq!(
        &merge_bytes(&Merge::AnyNonNull, &[reply(b"$-1\r\n")])[..],
        b"$-1\r\n"
    );
}

#[test]
fn script_and_function_commands_fan_out_with_their_merges() {
    let sha = b"$40\r\ne0e1f9fabfc9d4800c877a703b823ac0578ff8db\r\n";
    assert_eq!(fan_out_merge("script|load"), Some(Merge::Same));
    assert_eq!(
        &merge_bytes(&Merge::Same, &[reply(sha), reply(sha)])[..],
        sha
    );
    assert_eq!(
        &merge_bytes(&Merge::Same, &[reply(sha), reply(b"$1\r\nx\r\n")])[..],
        b"-ERR slotproxy: the primaries' replies differ\r\n"
    );
    let no_known = Merge::AllExist { known: Vec::new() };
    assert_eq!(fan_out_merge("script|exists"), Some(no_known.clone()));
    let parts = [
        reply(b"*3\r\n:1\r\n:1\r\n:0\r\n"),
        reply(b"*3\r\n:1\r\n:0\r\n:0\r\n"),
    ];
    assert_eq!(
        &merge_bytes(&no_known, &parts)[..],
        b"*3\r\n:1\r\n:0\r\n:0\r\n"
    );
    let known = Merge::AllExist {
        known: vec![false, true, false],
    };
    assert_eq!(
        &merge_bytes(&known, &parts)[..],
        b"*3\r\n:1\r\n:1\r\n:0\r\n",
        "a script slotproxy would load where it is missing exists"
    );
    for name in ["function|delete", "function|flush", "function|restore"] {
        assert_eq!(fan_out_merge(name), Some(Merge::AllOk), "{name}");
    }
    assert_eq!(fan_out_merge("function|load"), Some(Merge::Same));
}

#[test]
fn script_kill_reports_the_primary_that_was_busy() {
    let notbusy = b"-NOTBUSY No scripts in execution right now.\r\n";
    let unkillable = b"-UNKILLABLE Sorry the script already executed write commands\r\n";
    assert_eq!(
        &merge_bytes(&Merge::AnyOk, &[reply(notbusy), reply(b"+OK\r\n")])[..],
        b"+OK\r\n"
    );
    assert_eq!(
        &merge_bytes(&Merge::AnyOk, &[reply(notbusy), reply(unkillable)])[..],
        unkillable
    );
    assert_eq!(
        &merge_bytes(&Merge::AnyOk, &[reply(notbusy), reply(notbusy)])[..],
        notbusy
    );
}

#[test]
fn function_stats_reports_the_primary_running_a_script() {
    let idle: &[u8] = b"*4\r\n$14\r\nrunning_script\r\n$-1\r\n$7\r\nengines\r\n*0\r\n";
    let busy: &[u8] = b"*4\r\n$14\r\nrunning_script\r\n*2\r\n$4\r\nname\r\n$1\r\nf\r\n\
                        $7\r\nengines\r\n*0\r\n";
    assert_eq!(
        &merge_bytes(&Merge::RunningScript, &[reply(idle), reply(busy)])[..],
        busy
    );
    assert_eq!(
        &merge_bytes(&Merge::RunningScript, &[reply(idle), reply(idle)])[..],
        idle
    );
}

#[test]
fn function_list_keeps_the_libraries_every_primary_has() {
    let lib = |name: &str| {
        format!(
            "*6\r\n$12\r\nlibrary_name\r\n${}\r\n{name}\r\n$6\r\nengine\r\n$3\r\nLUA\r\n\
             $9\r\nfunctions\r\n*0\r\n",
            name.len()
        )
    };
    let list = |names: &[&str]| {
        let mut raw = format!("*{}\r\n", names.len());
        for name in names {
            raw.push_str(&lib(name));
        }
        Reply::local(Bytes::from(raw))
    };
    let merged = merge_bytes(
        &Merge::CommonLibraries,
        &[
            list(&["a", "b", "c"]),
            list(&["c", "a"]),
            list(&["a", "c", "d"]),
        ],
    );
    assert_eq!(merged, list(&["a", "c"]).into_raw());
    // RESP3: each library is a map.
    let map = "%3\r\n$12\r\nlibrary_name\r\n$1\r\na\r\n$6\r\nengine\r\n$3\r\nLUA\r\n\
               $9\r\nfunctions\r\n*0\r\n";
    let one = Reply::local(Bytes::from(format!("*1\r\n{map}")));
    let none = reply(b"*0\r\n");
    assert_eq!(
        merge(
            &Merge::CommonLibraries,
            &[one.clone(), one.clone()],
            Protocol::Resp3
        ),
        one.clone().into_raw()
    );
    assert_eq!(
        &merge(&Merge::CommonLibraries, &[one, none], Protocol::Resp3)[..],
        b"*0\r\n"
    );
}

#[test]
fn resp3_values_merge_with_resp3_nulls() {
    let request = Request::from_args(["MGET", "a", "b"]);
    let (rule, _) = plan_split(SplitKind::Keys(MergeRule::Values), &request);
    let replies = [reply(b"*1\r\n_\r\n"), reply(b"*1\r\n$1\r\nx\r\n")];
    assert_eq!(
        &merge(&rule, &replies, Protocol::Resp3)[..],
        b"*2\r\n_\r\n$1\r\nx\r\n"
    );
}
