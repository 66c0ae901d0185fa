//! `SLOWLOG GET [count]` and `SLOWLOG LEN` over every primary, as one server's slow log.
//!
//! Each primary is asked for its whole log (`SLOWLOG GET -1`; a log holds
//! `slowlog-max-len` entries, 128 by default). The entries are merged newest first (by their
//! timestamp, then their id), and `count` of them returned (10 by default, all for -1), as
//! redis-server returns its own. Entries of commands no client of slotproxy sent are left
//! out: `PING` and `INFO replication` (slotproxy's health checks; slotproxy answers its
//! clients' `PING`s itself, while a client's own `INFO replication` is left out with them) and
//! `REPLCONF` (a replica's `ACK`). `SLOWLOG LEN` counts the same entries, so it
//! agrees with `SLOWLOG GET -1`. Each entry stays as its node wrote it: its id is that node's,
//! and its client address is slotproxy's connection to the node. Pure: replies in, reply out.

use bytes::{Bytes, BytesMut};

use crate::protocol::reply::{write_array_len, write_integer};
use crate::protocol::view::elements;
use crate::protocol::{Reply, Request, View, string2ll};

/// `SLOWLOG GET`'s default count.
const DEFAULT_COUNT: i64 = 10;

/// What a `SLOWLOG GET` asks for: `Some(n)` entries, `None` for all. `None` as a whole when the
/// count is not one redis takes (the request then goes to the nodes as it is, for their error).
pub(super) fn get_count(args: &[Bytes]) -> Option<Option<usize>> {
    let count = match args {
        [_, _] => DEFAULT_COUNT,
        [_, _, count] => string2ll(count)?,
        _ => return None,
    };
    match count {
        -1 => Some(None),
        n => Some(Some(usize::try_from(n).ok()?)),
    }
}

/// The request each primary gets: its whole log.
pub(super) fn node_request() -> Request {
    Request::from_args(vec![
        Bytes::from_static(b"SLOWLOG"),
        Bytes::from_static(b"GET"),
        Bytes::from_static(b"-1"),
    ])
}

/// The primaries' entries a client of slotproxy could have caused, newest first.
fn entries(replies: &[Reply]) -> Vec<&[u8]> {
    let mut entries: Vec<(i64, i64, &[u8])> = replies
        .iter()
        .flat_map(|reply| elements(reply.raw()))
        .filter_map(|entry| {
            let fields = elements(entry);
            let id = View::of(fields.first()?)?.integer()?;
            let time = View::of(fields.get(1)?)?.integer()?;
            let command = elements(fields.get(3)?);
            (!own(&command)).then_some((time, id, entry))
        })
        .collect();
    entries.sort_by_key(|&(time, id, _)| std::cmp::Reverse((time, id)));
    entries.into_iter().map(|(_, _, entry)| entry).collect()
}

/// Whether a logged command (its arguments' frames) is one slotproxy or a replica sent, not a
/// client of slotproxy: `PING` and `INFO replication` (health checks; slotproxy answers its
/// clients' `PING`s itself) and `REPLCONF`.
fn own(command: &[&[u8]]) -> bool {
    let arg = |i: usize| command.get(i).and_then(|raw| View::of(raw)?.bulk());
    let Some(name) = arg(0) else { return false };
    name.eq_ignore_ascii_case(b"ping")
        || name.eq_ignore_ascii_case(b"replconf")
        || (name.eq_ignore_ascii_case(b"info")
            && command.len() == 2
            && arg(1).is_some_and(|section| section.eq_ignore_ascii_case(b"replication")))
}

/// `SLOWLOG GET`'s reply: `count` entries (all for `None`), newest first.
pub(super) fn merge_get(count: Option<usize>, replies: &[Reply]) -> Bytes {
    let mut entries = entries(replies);
    if let Some(count) = count {
        entries.truncate(count);
    }
    let mut out = BytesMut::new();
    write_array_len(&mut out, entries.len());
    for entry in entries {
        out.extend_from_slice(entry);
    }
    out.freeze()
}

/// `SLOWLOG LEN`'s reply: the entries `SLOWLOG GET -1` returns.
pub(super) fn merge_len(replies: &[Reply]) -> Bytes {
    let mut out = BytesMut::new();
    write_integer(&mut out, entries(replies).len() as i64);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: i64, time: i64, command: &str) -> String {
        let args: Vec<&str> = command.split(' ').collect();
        let mut out = format!("*6\r\n:{id}\r\n:{time}\r\n:15\r\n*{}\r\n", args.len());
        for arg in args {
            out.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        out + "$15\r\n127.0.0.1:50000\r\n$0\r\n\r\n"
    }

    fn log(entries: &[String]) -> Reply {
        Reply::local(Bytes::from(format!(
            "*{}\r\n{}",
            entries.len(),
            entries.concat()
        )))
    }

    #[test]
    fn entries_merge_newest_first_without_slotproxys_own_commands() {
        let a = log(&[
            entry(2, 300, "SET"),
            entry(1, 100, "PING"),
            entry(0, 50, "GET"),
        ]);
        let b = log(&[
            entry(9, 250, "INFO replication"),
            entry(8, 220, "INFO memory"),
            entry(7, 200, "REPLCONF ACK 0"),
            entry(6, 200, "DEL"),
            entry(5, 10, "INCR"),
        ]);
        let want = [
            entry(2, 300, "SET"),
            entry(8, 220, "INFO memory"),
            entry(6, 200, "DEL"),
        ];
        assert_eq!(
            &merge_get(Some(3), &[a.clone(), b.clone()])[..],
            format!("*3\r\n{}", want.concat()).as_bytes()
        );
        let all = merge_get(None, &[a.clone(), b.clone()]);
        assert!(all.starts_with(b"*5\r\n"));
        assert_eq!(&merge_len(&[a, b])[..], b":5\r\n");
    }

    #[test]
    fn counts_are_read_as_redis_reads_them() {
        let args = |a: &[&'static str]| {
            a.iter()
                .map(|s| Bytes::from_static(s.as_bytes()))
                .collect::<Vec<_>>()
        };
        assert_eq!(get_count(&args(&["SLOWLOG", "GET"])), Some(Some(10)));
        assert_eq!(get_count(&args(&["SLOWLOG", "GET", "2"])), Some(Some(2)));
        assert_eq!(get_count(&args(&["SLOWLOG", "GET", "-1"])), Some(None));
        assert_eq!(get_count(&args(&["SLOWLOG", "GET", "-2"])), None);
        assert_eq!(get_count(&args(&["SLOWLOG", "GET", "x"])), None);
    }
}
