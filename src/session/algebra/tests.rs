//! Planning and computing without a cluster. Expected replies here were taken from
//! redis-server 7.0.15 for the same data; tests/it/set_algebra.rs compares with a live one.

use super::*;
use crate::command::{CommandTable, Handling};
use crate::protocol::string2ll;

/// The operation a command's policy row computes when its keys span slots.
fn computed(name: &str) -> Option<Algebra> {
    let table = CommandTable::builtin();
    match table.policy(table.lookup(name)?).handling {
        Handling::Computed(op) => Some(op),
        _ => None,
    }
}

fn reply(raw: &str) -> Reply {
    Reply::local(Bytes::from(raw.to_string()))
}

fn bulks(items: &[&str]) -> String {
    let mut out = format!("*{}\r\n", items.len());
    for item in items {
        out.push_str(&format!("${}\r\n{item}\r\n", item.len()));
    }
    out
}

fn run(args: &[&str], replies: &[String], protocol: Protocol) -> String {
    let request = Request::from_args(args.iter().map(|a| Bytes::from(a.to_string())));
    let op = computed(&args[0].to_ascii_lowercase()).unwrap();
    let (computation, reads) = plan(op, &request).unwrap();
    assert_eq!(reads.len(), replies.len(), "one reply per read");
    let replies: Vec<Reply> = replies.iter().map(|r| reply(r)).collect();
    String::from_utf8(merge(&computation, &replies, protocol).to_vec()).unwrap()
}

fn plan_error(args: &[&str]) -> String {
    let request = Request::from_args(args.iter().map(|a| Bytes::from(a.to_string())));
    let op = computed(&args[0].to_ascii_lowercase()).unwrap();
    String::from_utf8(plan(op, &request).unwrap_err().to_vec()).unwrap()
}

#[test]
fn one_read_per_distinct_key_addressed_by_its_slot() {
    let request = Request::from_args(["SUNION", "a", "b", "a", "{a}c"]);
    let (computation, reads) = plan(Algebra::SUnion, &request).unwrap();
    assert_eq!(computation.keys, [0, 1, 0, 2]);
    let slots: Vec<Slot> = reads.iter().map(|(slot, _)| *slot).collect();
    assert_eq!(slots, [hash_slot(b"a"), hash_slot(b"b"), hash_slot(b"a")]);
    assert_eq!(
        &reads[1].1.raw()[..],
        b"*2\r\n$8\r\nSMEMBERS\r\n$1\r\nb\r\n"
    );
    let request = Request::from_args(["ZINTER", "2", "a", "b", "WEIGHTS", "1", "2"]);
    let (_, reads) = plan(Algebra::ZInter, &request).unwrap();
    assert_eq!(
        &reads[0].1.raw()[..],
        b"*4\r\n$6\r\nZUNION\r\n$1\r\n1\r\n$1\r\na\r\n$10\r\nWITHSCORES\r\n"
    );
    let (_, reads) = plan(Algebra::PfCount, &Request::from_args(["PFCOUNT", "h"])).unwrap();
    assert_eq!(&reads[0].1.raw()[..], b"*2\r\n$3\r\nGET\r\n$1\r\nh\r\n");
}

#[test]
fn set_algebra_in_resp2_and_resp3() {
    let a = bulks(&["a", "b", "c"]);
    let b = bulks(&["b", "c", "d"]);
    let empty = bulks(&[]);
    let union = run(
        &["SUNION", "x", "y", "z"],
        &[a.clone(), b.clone(), empty.clone()],
        Protocol::Resp2,
    );
    assert_eq!(union, bulks(&["a", "b", "c", "d"]));
    let inter = run(
        &["SINTER", "x", "y"],
        &[a.clone(), b.clone()],
        Protocol::Resp3,
    );
    assert_eq!(inter, "~2\r\n$1\r\nb\r\n$1\r\nc\r\n");
    let none = run(
        &["SINTER", "x", "y"],
        &[a.clone(), empty.clone()],
        Protocol::Resp3,
    );
    assert_eq!(none, "~0\r\n");
    let diff = run(
        &["SDIFF", "x", "y"],
        &[a.clone(), b.clone()],
        Protocol::Resp2,
    );
    assert_eq!(diff, bulks(&["a"]));
    let card = run(
        &["SINTERCARD", "2", "x", "y", "LIMIT", "1"],
        &[a.clone(), b.clone()],
        Protocol::Resp2,
    );
    assert_eq!(card, ":1\r\n");
    let card = run(&["SINTERCARD", "2", "x", "y"], &[a, b], Protocol::Resp2);
    assert_eq!(card, ":2\r\n");
}

#[test]
fn integer_results_come_in_intset_order() {
    let a = bulks(&["10", "x", "2", "-3"]);
    let b = bulks(&["x", "01"]);
    // 01 is not an integer to redis (not canonical): hash order, any order will do.
    let union = run(&["SUNION", "p", "q"], &[a.clone(), b], Protocol::Resp2);
    assert!(union.starts_with("*5\r\n"), "{union}");
    let diff = run(&["SDIFF", "p", "q"], &[a, bulks(&["x"])], Protocol::Resp2);
    assert_eq!(diff, bulks(&["-3", "2", "10"]));
}

#[test]
fn the_first_wrong_type_in_key_order_is_the_reply() {
    let wrongtype = "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";
    let other = "-ERR other\r\n";
    for (args, replies) in [
        (
            &["SINTER", "missing", "list"][..],
            vec![bulks(&[]), wrongtype.to_string()],
        ),
        (
            &["SDIFF", "list", "other"][..],
            vec![wrongtype.to_string(), other.to_string()],
        ),
        // ZUNION checks key types before its options.
        (
            &["ZUNION", "2", "z", "list", "WEIGHTS", "x", "1"][..],
            vec!["*0\r\n".to_string(), wrongtype.to_string()],
        ),
    ] {
        assert_eq!(run(args, &replies, Protocol::Resp2), wrongtype, "{args:?}");
    }
}

#[test]
fn argument_errors_match_redis() {
    for (args, want) in [
        (
            &["SINTERCARD", "0", "a"][..],
            "ERR numkeys should be greater than 0",
        ),
        (
            &["SINTERCARD", "x", "a"],
            "ERR numkeys should be greater than 0",
        ),
        (
            &["SINTERCARD", "3", "a", "b"],
            "ERR Number of keys can't be greater than number of args",
        ),
        (
            &["SINTERCARD", "2", "a", "b", "LIMIT", "-1"],
            "ERR LIMIT can't be negative",
        ),
        (&["SINTERCARD", "2", "a", "b", "LIMIT"], "ERR syntax error"),
        (
            &["ZUNION", "0", "a"],
            "ERR at least 1 input key is needed for 'zunion' command",
        ),
        (
            &["ZINTERCARD", "-1", "a"],
            "ERR at least 1 input key is needed for 'zintercard' command",
        ),
        (
            &["ZDIFF", "x", "a"],
            "ERR value is not an integer or out of range",
        ),
        (&["ZINTER", "3", "a", "b"], "ERR syntax error"),
    ] {
        assert_eq!(plan_error(args), format!("-{want}\r\n"), "{args:?}");
    }
    let z = "*0\r\n".to_string();
    for (args, want) in [
        (
            &["ZUNION", "2", "a", "b", "WEIGHTS", "1"][..],
            "ERR syntax error",
        ),
        (
            &["ZUNION", "2", "a", "b", "WEIGHTS", "nan", "1"],
            "ERR weight value is not a float",
        ),
        (
            &["ZUNION", "2", "a", "b", "AGGREGATE", "avg"],
            "ERR syntax error",
        ),
        (
            &["ZDIFF", "2", "a", "b", "WEIGHTS", "1", "1"],
            "ERR syntax error",
        ),
        (
            &["ZINTERCARD", "2", "a", "b", "WITHSCORES"],
            "ERR syntax error",
        ),
        (
            &["ZINTERCARD", "2", "a", "b", "LIMIT", "x"],
            "ERR LIMIT can't be negative",
        ),
    ] {
        let got = run(args, &[z.clone(), z.clone()], Protocol::Resp2);
        assert_eq!(got, format!("-{want}\r\n"), "{args:?}");
    }
}

fn scored(pairs: &[(&str, &str)]) -> String {
    let flat: Vec<&str> = pairs.iter().flat_map(|(m, s)| [*m, *s]).collect();
    bulks(&flat)
}

#[test]
fn zset_algebra_sums_smallest_input_first_and_formats_like_redis() {
    // Redis: ZUNION 3 e3 e2 e1 WITHSCORES -> m 0.59999999999999998 (inputs of one size keep
    // their order), and with e1 e2 e3 -> m 0.60000000000000009.
    let e1 = scored(&[("m", "0.10000000000000001")]);
    let e2 = scored(&[("m", "0.20000000000000001")]);
    let e3 = scored(&[("m", "0.29999999999999999")]);
    let args = ["ZUNION", "3", "a", "b", "c", "WITHSCORES"];
    let got = run(
        &args,
        &[e3.clone(), e2.clone(), e1.clone()],
        Protocol::Resp2,
    );
    assert_eq!(got, scored(&[("m", "0.59999999999999998")]));
    let got = run(
        &args,
        &[e1.clone(), e2.clone(), e3.clone()],
        Protocol::Resp2,
    );
    assert_eq!(got, scored(&[("m", "0.60000000000000009")]));
    // A larger input comes later whatever its position. Redis: ZINTER 3 big e2 e1 WITHSCORES
    // (big = {m: 0.3, x: 1, y: 2}) in RESP3 -> m ,0.60000000000000009: (0.2 + 0.1) + 0.3.
    let big = scored(&[("m", "0.29999999999999999"), ("x", "1"), ("y", "2")]);
    let got = run(
        &["ZINTER", "3", "big", "b", "a", "WITHSCORES"],
        &[big, e2, e1],
        Protocol::Resp3,
    );
    assert_eq!(got, "*1\r\n*2\r\n$1\r\nm\r\n,0.60000000000000009\r\n");
}

#[test]
fn zset_nan_rules_follow_redis() {
    // Redis, zi = {a: inf, b: 1, c: -inf}, zj = {a: 5, b: 5, c: 5}.
    let zi = scored(&[("c", "-inf"), ("b", "1"), ("a", "inf")]);
    let zj = scored(&[("a", "5"), ("b", "5"), ("c", "5")]);
    let cases = [
        ("MIN", "zinter", ["b", "0", "a", "5", "c", "5"]),
        ("SUM", "zinter", ["a", "0", "c", "0", "b", "5"]),
        ("MIN", "zunion", ["a", "0", "b", "0", "c", "0"]),
    ];
    for (how, name, want) in cases {
        let args = [
            name,
            "2",
            "j",
            "i",
            "WEIGHTS",
            "1",
            "0",
            "AGGREGATE",
            how,
            "WITHSCORES",
        ];
        let got = run(&args, &[zj.clone(), zi.clone()], Protocol::Resp2);
        assert_eq!(got, bulks(&want), "{args:?}");
    }
}

#[test]
fn zdiff_keeps_the_first_inputs_scores() {
    let z = scored(&[("a", "1"), ("b", "2"), ("c", "3")]);
    let s = scored(&[("a", "1"), ("d", "1")]);
    let got = run(
        &["ZDIFF", "2", "z", "s", "WITHSCORES"],
        &[z, s],
        Protocol::Resp2,
    );
    assert_eq!(got, scored(&[("b", "2"), ("c", "3")]));
}

#[test]
fn doubles_print_as_percent_17g() {
    // Python's '%.17g' (correctly rounded, as glibc's printf) gave these.
    for (value, want) in [
        (0.1, "0.10000000000000001"),
        (1e-5, "1.0000000000000001e-05"),
        (1e16, "10000000000000000"),
        (1e17, "1e+17"),
        (123456789.123, "123456789.123"),
        (0.1 + 0.2, "0.30000000000000004"),
        (-0.0, "-0"),
        (0.0, "0"),
        (5e-324, "4.9406564584124654e-324"),
        (f64::MAX, "1.7976931348623157e+308"),
        (1e-4, "0.0001"),
        (100.0, "100"),
        (-2.5, "-2.5"),
        (f64::INFINITY, "inf"),
        (f64::NEG_INFINITY, "-inf"),
    ] {
        assert_eq!(zsets::format_g17(value), want, "{value:?}");
    }
}

#[test]
fn weights_parse_like_strtod() {
    let weight = |text: &str| -> Option<f64> {
        let args: Vec<Bytes> = ["ZUNION", "1", "k", "WEIGHTS", text]
            .iter()
            .map(|a| Bytes::from(a.to_string()))
            .collect();
        let (_, options) = zsets::parse(Algebra::ZUnion, &args).unwrap();
        options.ok().map(|o| o.weights[0])
    };
    assert_eq!(weight("2.5"), Some(2.5));
    assert_eq!(weight("+1e2"), Some(100.0));
    assert_eq!(weight("-inf"), Some(f64::NEG_INFINITY));
    assert_eq!(weight("Infinity"), Some(f64::INFINITY));
    assert_eq!(weight("0x10"), Some(16.0));
    assert_eq!(weight("0x1.8p1"), Some(3.0));
    assert_eq!(weight(".5"), Some(0.5));
    assert_eq!(weight("5."), Some(5.0));
    for bad in [
        "", " 1", "1 ", "nan", "1e400", "1e-400", "0x", "1e", "+-1", "abc", "1\0",
    ] {
        assert_eq!(weight(bad), None, "{bad:?}");
    }
    assert_eq!(weight("0e-400"), Some(0.0));
}

#[test]
fn string2ll_takes_canonical_integers_only() {
    assert_eq!(string2ll(b"0"), Some(0));
    assert_eq!(string2ll(b"-12"), Some(-12));
    assert_eq!(string2ll(b"-9223372036854775808"), Some(i64::MIN));
    for bad in [
        &b"-0"[..],
        b"01",
        b"+1",
        b"",
        b"-",
        b" 1",
        b"9223372036854775808",
    ] {
        assert_eq!(string2ll(bad), None, "{bad:?}");
    }
}
