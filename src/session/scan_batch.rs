//! One client `SCAN` call that may visit several primaries: when a primary's `SCAN` comes back
//! with cursor 0 (that primary is done) and the keys gathered so far are fewer than the call's
//! `COUNT` (10 by default), the proxy makes the next call of the iteration itself, on the next
//! primary, and adds its keys to the same reply. A client that calls `SCAN 0` once on a small
//! keyspace then sees every key, as from one redis-server (which returns a tiny database whole,
//! with cursor 0).
//!
//! The cursor design of [`super::scan`] is untouched: each step is exactly the call the client
//! would have made with the cursor the previous step returned (`Phase::cursor(0)`), planned
//! under the slot map current at that step, so the guarantee and its proof there hold as they
//! are. The client's cursor is the last step's. Pure (reply in, next step out): the session
//! sends the steps (`settle.rs`, as the front split advances).

use bytes::{Bytes, BytesMut};

use super::scan::{self, Phase};
use crate::cluster::{ShardLayout, Slot};
use crate::error::ReplyError;
use crate::protocol::reply::{write_array_len, write_bulk};
use crate::protocol::view::elements;
use crate::protocol::{Request, string2ll};

/// `SCAN`'s default `COUNT`.
const DEFAULT_COUNT: usize = 10;

/// A `SCAN` call in progress: the step now sent, the client's arguments, the keys the
/// primaries finished earlier in this call returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanBatch {
    /// The phase of the step in flight (its reply's cursor becomes the client's).
    pub(super) phase: Phase,
    args: Vec<Bytes>,
    /// Raw key frames gathered so far, in the order the primaries returned them.
    gathered: Vec<Bytes>,
    /// Steps taken after the first: at most one per shard, so a flapping topology can't make
    /// one call run on.
    steps: usize,
}

/// What a `SCAN` step's reply leads to.
pub(super) enum Next {
    /// The client's reply.
    Reply(Bytes),
    /// Send this request to the primary of this slot, and settle its reply with the batch.
    Step(ScanBatch, Slot, Request),
}

impl ScanBatch {
    /// The first step of a call with the client's `args`.
    pub(super) fn new(phase: Phase, args: &[Bytes]) -> Self {
        Self {
            phase,
            args: args.to_vec(),
            gathered: Vec::new(),
            steps: 0,
        }
    }

    /// Settles a step's reply (not an error) under `layout`: the client's reply, or the next
    /// step when the primary is done and the batch is still below `COUNT`.
    pub(super) fn next(mut self, raw: &[u8], layout: &[ShardLayout]) -> Next {
        let Some((node, keys)) = scan::split_reply(raw) else {
            return Next::Reply(ReplyError::ScanReply.to_bytes());
        };
        let cursor = match self.phase.cursor(node) {
            Ok(cursor) => cursor,
            Err(error) => return Next::Reply(error.to_bytes()),
        };
        self.gathered
            .extend(elements(keys).into_iter().map(Bytes::copy_from_slice));
        if node != 0 || self.gathered.len() >= count(&self.args) || self.steps >= layout.len() {
            return Next::Reply(self.reply(cursor));
        }
        match scan::call_at(&self.args, cursor, layout) {
            Ok(scan::Call::Node(phase, slot, request)) => {
                self.phase = phase;
                self.steps += 1;
                Next::Step(self, slot, request)
            }
            Ok(scan::Call::Finished) => Next::Reply(self.reply(0)),
            Ok(scan::Call::NoTopology) | Err(_) => Next::Reply(self.reply(cursor)),
        }
    }

    /// `[cursor, [keys...]]` with every key gathered.
    fn reply(&self, cursor: u64) -> Bytes {
        let mut out =
            BytesMut::with_capacity(32 + self.gathered.iter().map(Bytes::len).sum::<usize>());
        write_array_len(&mut out, 2);
        write_bulk(&mut out, cursor.to_string().as_bytes());
        write_array_len(&mut out, self.gathered.len());
        for key in &self.gathered {
            out.extend_from_slice(key);
        }
        out.freeze()
    }
}

/// The call's `COUNT` (the last one given, as redis reads it), or the default.
fn count(args: &[Bytes]) -> usize {
    let mut count = DEFAULT_COUNT;
    let mut options = args.get(2..).unwrap_or_default().chunks_exact(2);
    for pair in options.by_ref() {
        if pair[0].eq_ignore_ascii_case(b"COUNT")
            && let Some(n) = string2ll(&pair[1]).and_then(|v| usize::try_from(v).ok())
        {
            count = n;
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    // The same three-shard layouts the cursor's own tests use.
    use crate::session::scan::tests::three;

    fn args(a: &[&'static str]) -> Vec<Bytes> {
        a.iter().map(|s| Bytes::from_static(s.as_bytes())).collect()
    }

    fn first(layout: &[ShardLayout], a: &[Bytes]) -> (ScanBatch, Slot) {
        match scan::call(a, layout) {
            Ok(scan::Call::Node(phase, slot, _)) => (ScanBatch::new(phase, a), slot),
            _ => panic!("a first step"),
        }
    }

    #[test]
    fn a_finished_primary_leads_to_the_next_until_the_last_answers_cursor_0() {
        let layout = three();
        let a = args(&["SCAN", "0"]);
        let (batch, slot) = first(&layout, &a);
        assert_eq!(slot, Slot(0));
        let Next::Step(batch, slot, request) =
            batch.next(b"*2\r\n$1\r\n0\r\n*1\r\n$1\r\nx\r\n", &layout)
        else {
            panic!("continues")
        };
        assert_eq!(slot, Slot(5461));
        assert_eq!(request.args()[1], "0", "the next primary from its start");
        let Next::Step(batch, slot, _) = batch.next(b"*2\r\n$1\r\n0\r\n*0\r\n", &layout) else {
            panic!("continues")
        };
        assert_eq!(slot, Slot(10923));
        let Next::Reply(reply) = batch.next(b"*2\r\n$1\r\n0\r\n*1\r\n$1\r\ny\r\n", &layout) else {
            panic!("the last primary ends the iteration")
        };
        assert_eq!(&reply[..], b"*2\r\n$1\r\n0\r\n*2\r\n$1\r\nx\r\n$1\r\ny\r\n");
    }

    #[test]
    fn a_primary_not_done_or_a_full_batch_answers_with_that_steps_cursor() {
        let layout = three();
        let a = args(&["SCAN", "0", "COUNT", "2"]);
        let (batch, _) = first(&layout, &a);
        let Next::Reply(reply) = batch.clone().next(b"*2\r\n$1\r\n7\r\n*0\r\n", &layout) else {
            panic!("the primary is not done")
        };
        let cursor = batch.phase.cursor(7).expect("fits").to_string();
        assert!(
            reply.starts_with(format!("*2\r\n${}\r\n{cursor}\r\n*0\r\n", cursor.len()).as_bytes())
        );
        let Next::Reply(reply) = batch
            .clone()
            .next(b"*2\r\n$1\r\n0\r\n*2\r\n$1\r\nx\r\n$1\r\ny\r\n", &layout)
        else {
            panic!("COUNT keys: the batch is full")
        };
        let done = batch.phase.cursor(0).expect("fits").to_string();
        assert!(reply.starts_with(format!("*2\r\n${}\r\n{done}\r\n*2\r\n", done.len()).as_bytes()));
        assert_eq!(count(&args(&["SCAN", "0", "MATCH", "*", "COUNT", "3"])), 3);
        assert_eq!(count(&args(&["SCAN", "0"])), DEFAULT_COUNT);
    }
}
