//! `MONITOR`, made by slotproxy: every command its clients send, on any worker thread, in the
//! order slotproxy takes them, as redis-server 7.0 prints them
//! (`+<seconds>.<micros> [0 <ip:port>] "CMD" "arg"...`).
//!
//! Sessions decide *which* commands are shown (redis' rules, in `session/monitor.rs`); this
//! file keeps the monitoring clients and spells the lines. Nothing here costs a request anything
//! while nobody monitors: [`Monitors::active`] is one relaxed load.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::mpsc;

use crate::protocol::string2ll;

/// The clients in `MONITOR` mode.
#[derive(Debug, Default)]
pub struct Monitors {
    /// How many feeds are registered (a feed whose client left counts until the next line).
    count: AtomicUsize,
    feeds: Mutex<Vec<mpsc::UnboundedSender<Bytes>>>,
}

impl Monitors {
    /// Whether any client monitors: one relaxed load, for every request.
    pub fn active(&self) -> bool {
        self.count.load(Ordering::Relaxed) > 0
    }

    /// A new monitoring client: the lines of every command shown from now on arrive on the
    /// returned channel (dropping it ends the feed).
    pub fn watch(&self) -> mpsc::UnboundedReceiver<Bytes> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut feeds = self.feeds();
        feeds.push(tx);
        self.count.store(feeds.len(), Ordering::Relaxed);
        rx
    }

    /// Shows commands sent by the client at `peer` to every monitoring client, together (no
    /// other client's line comes between them); each comes with its table row's name, which
    /// says what to redact.
    ///
    /// The timestamps are taken under the lock, so every monitor sees the commands of all
    /// threads in one order, with times that never go back.
    pub fn show<'a>(&self, peer: &str, commands: impl IntoIterator<Item = (&'a str, &'a [Bytes])>) {
        let mut feeds = self.feeds();
        for (name, args) in commands {
            let line = line(SystemTime::now(), peer, name, args);
            feeds.retain(|feed| feed.send(line.clone()).is_ok());
        }
        self.count.store(feeds.len(), Ordering::Relaxed);
    }

    fn feeds(&self) -> std::sync::MutexGuard<'_, Vec<mpsc::UnboundedSender<Bytes>>> {
        // A list of senders is valid whatever a panicking holder did to it.
        self.feeds.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One `MONITOR` line, with the arguments redis redacts replaced by `(redacted)`.
pub fn line(now: SystemTime, peer: &str, name: &str, args: &[Bytes]) -> Bytes {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut out = BytesMut::with_capacity(48 + args.iter().map(|a| a.len() + 3).sum::<usize>());
    out.put_slice(
        format!(
            "+{}.{:06} [0 {peer}] ",
            since.as_secs(),
            since.subsec_micros()
        )
        .as_bytes(),
    );
    let redacted = redacted(name, args);
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            out.put_u8(b' ');
        }
        if redacted.contains(&i) {
            out.put_slice(b"\"(redacted)\"");
        } else {
            quote(&mut out, arg);
        }
    }
    out.put_slice(b"\r\n");
    out.freeze()
}

/// The positions of the arguments redis redacts before showing a command: `AUTH`'s password
/// (and user), `HELLO ... AUTH user password`, `MIGRATE ... AUTH password | AUTH2 user password`.
fn redacted(name: &str, args: &[Bytes]) -> Vec<usize> {
    let is = |i: usize, word: &[u8]| args.get(i).is_some_and(|a| a.eq_ignore_ascii_case(word));
    let mut positions = Vec::new();
    match name {
        "auth" => {
            // redis redacts the second argument always, the third only in the valid form.
            positions.push(1);
            if args.len() == 3 {
                positions.push(2);
            }
        }
        "hello" => {
            // Options are read only after a valid protocol version.
            if args.len() < 2 || !matches!(string2ll(&args[1]), Some(2 | 3)) {
                return positions;
            }
            let mut i = 2;
            while i < args.len() {
                let more = args.len() - 1 - i;
                if is(i, b"auth") && more >= 2 {
                    positions.extend([i + 1, i + 2]);
                    i += 3;
                } else if is(i, b"setname") && more >= 1 {
                    i += 2;
                } else {
                    break;
                }
            }
        }
        "migrate" => {
            let mut i = 6;
            while i < args.len() {
                let more = args.len() - 1 - i;
                if is(i, b"auth") && more >= 1 {
                    positions.push(i + 1);
                    i += 2;
                } else if is(i, b"auth2") && more >= 2 {
                    positions.extend([i + 1, i + 2]);
                    i += 3;
                } else if is(i, b"keys") {
                    break;
                } else {
                    i += 1;
                }
            }
        }
        _ => {}
    }
    positions
}

/// `arg` in double quotes, escaped as redis' `sdscatrepr` does.
fn quote(out: &mut BytesMut, arg: &[u8]) {
    out.put_u8(b'"');
    for &byte in arg {
        match byte {
            b'\\' | b'"' => {
                out.put_u8(b'\\');
                out.put_u8(byte);
            }
            b'\n' => out.put_slice(b"\\n"),
            b'\r' => out.put_slice(b"\\r"),
            b'\t' => out.put_slice(b"\\t"),
            0x07 => out.put_slice(b"\\a"),
            0x08 => out.put_slice(b"\\b"),
            0x20..=0x7e => out.put_u8(byte),
            _ => out.put_slice(format!("\\x{byte:02x}").as_bytes()),
        }
    }
    out.put_u8(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn args(list: &[&[u8]]) -> Vec<Bytes> {
        list.iter().map(|a| Bytes::copy_from_slice(a)).collect()
    }

    fn show(name: &str, list: &[&[u8]]) -> String {
        let at = UNIX_EPOCH + Duration::from_micros(1_700_000_000_000_042);
        let line = line(at, "127.0.0.1:5000", name, &args(list));
        String::from_utf8(line.to_vec()).unwrap()
    }

    #[test]
    fn lines_are_spelled_and_escaped_as_redis_does() {
        assert_eq!(
            show("set", &[b"SET", b"a", b"x y\"\n\x01\xc3\xa9\\\t\r\x07\x08"]),
            "+1700000000.000042 [0 127.0.0.1:5000] \"SET\" \"a\" \
             \"x y\\\"\\n\\x01\\xc3\\xa9\\\\\\t\\r\\a\\b\"\r\n"
        );
        assert_eq!(
            show("ping", &[b"PING"]),
            "+1700000000.000042 [0 127.0.0.1:5000] \"PING\"\r\n"
        );
    }

    #[test]
    fn credentials_are_redacted_where_redis_redacts_them() {
        let cases: &[(&str, &[&[u8]], &str)] = &[
            ("auth", &[b"AUTH", b"pw"], r#""AUTH" "(redacted)""#),
            (
                "auth",
                &[b"auth", b"u", b"pw"],
                r#""auth" "(redacted)" "(redacted)""#,
            ),
            (
                "hello",
                &[b"HELLO", b"3", b"SETNAME", b"n", b"AUTH", b"u", b"pw"],
                r#""HELLO" "3" "SETNAME" "n" "AUTH" "(redacted)" "(redacted)""#,
            ),
            (
                "hello",
                &[b"HELLO", b"9", b"AUTH", b"u", b"pw"],
                r#""HELLO" "9" "AUTH" "u" "pw""#,
            ),
            (
                "migrate",
                &[
                    b"MIGRATE", b"h", b"1", b"", b"0", b"5", b"COPY", b"AUTH2", b"u", b"pw",
                    b"KEYS", b"auth",
                ],
                r#""MIGRATE" "h" "1" "" "0" "5" "COPY" "AUTH2" "(redacted)" "(redacted)" "KEYS" "auth""#,
            ),
            ("get", &[b"GET", b"auth"], r#""GET" "auth""#),
        ];
        for (name, list, want) in cases {
            let got = show(name, list);
            let got = got.split_once("] ").unwrap().1.trim_end();
            assert_eq!(got, *want);
        }
    }

    #[test]
    fn feeds_get_lines_until_they_close_and_then_stop_counting() {
        let monitors = Monitors::default();
        assert!(!monitors.active());
        let mut a = monitors.watch();
        let b = monitors.watch();
        assert!(monitors.active());
        drop(b);
        monitors.show("127.0.0.1:1", [("ping", &args(&[b"PING"])[..])]);
        assert!(a.try_recv().unwrap().ends_with(b"\"PING\"\r\n"));
        drop(a);
        assert!(monitors.active(), "counted until the next line");
        monitors.show("127.0.0.1:1", [("ping", &args(&[b"PING"])[..])]);
        assert!(!monitors.active());
    }
}
