//! A split request on its way (`Pending::Split` at the front of the queue): replies that
//! arrived are settled part by part (MOVED, ASK, retries, as for a single request), parts whose
//! backoff is over are sent again, a per-slot transaction's held parts go once its first part
//! ran, and when every part is done their replies are merged into the client's one reply
//! (`split.rs`). A SCAN batch (`scan_batch.rs`) continues here too: the client's next call is
//! made as a new one-part split.

use bytes::Bytes;
use tokio::time::Instant;

use super::attempt::{Attempt, Split, Step, placeholder};
use super::client_info::ClientInfo;
use super::introspect;
use super::scan_batch;
use super::send::Sender;
use super::split::{self, Merge};
use super::target::Target;
use crate::protocol::Reply;

/// Moves `split` forward without waiting: its merged reply once every part is done, else the
/// split back with what is still outstanding. `info` is the client's (for `INFO`'s merge).
pub(super) fn advance(
    sender: &mut Sender<'_>,
    info: &ClientInfo,
    mut split: Box<Split>,
) -> Result<Bytes, Box<Split>> {
    loop {
        release_held(sender, &mut split);
        let now = Instant::now();
        for part in split.parts.iter_mut() {
            loop {
                let next = match std::mem::replace(part, Step::Done(placeholder())) {
                    Step::Waiting(mut in_flight) => match in_flight.try_reply() {
                        Some(result) => sender.answer(in_flight, result),
                        None => {
                            *part = Step::Waiting(in_flight);
                            break;
                        }
                    },
                    Step::Backoff(retry) if retry.until <= now => {
                        let map = sender.shared.topology.slot_map();
                        sender.send(&map, retry.request, retry.target, retry.attempt)
                    }
                    other => {
                        *part = other;
                        break;
                    }
                };
                *part = next;
            }
        }
        if !split.parts.iter().all(|p| matches!(p, Step::Done(_))) {
            return Err(split);
        }
        let Split { merge, parts } = *split;
        let replies: Vec<Reply> = parts
            .into_iter()
            .filter_map(|p| match p {
                Step::Done(reply) => Some(reply),
                _ => None,
            })
            .collect();
        let protocol = sender.protocol;
        match merge {
            Merge::Info => {
                let shared = sender.shared;
                let facts =
                    introspect::proxy_facts(shared, info.cluster_addr(&shared.config.listen));
                return Ok(split::merge_info_with(&replies, protocol, &facts));
            }
            Merge::Scan(batch) if replies.len() == 1 && replies[0].error_text().is_none() => {
                let map = sender.shared.topology.slot_map();
                match batch.next(replies[0].raw(), map.layout()) {
                    scan_batch::Next::Reply(reply) => return Ok(reply),
                    scan_batch::Next::Step(batch, slot, request) => {
                        // The client's next call, made now (`scan_batch.rs`).
                        let part =
                            sender.send(&map, request, Target::Slot(slot), Attempt::default());
                        let merge = Merge::Scan(Box::new(batch));
                        split = Box::new(Split {
                            merge,
                            parts: vec![part],
                        });
                    }
                }
            }
            other => return Ok(split::merge(&other, &replies, protocol)),
        }
    }
}

/// Sends a split's held parts once its first part has settled and ran (an array reply);
/// if it did not (nil: a watched key changed; an error), they are never sent.
fn release_held(sender: &mut Sender<'_>, split: &mut Split) {
    let first_ran = match split.parts.first() {
        Some(Step::Done(reply)) => Some(super::per_slot::ran(reply)),
        _ => None,
    };
    let Some(ran) = first_ran else { return };
    for part in split.parts.iter_mut().skip(1) {
        if matches!(part, Step::Held(..))
            && let Step::Held(request, target, attempt) =
                std::mem::replace(part, Step::Done(placeholder()))
            && ran
        {
            let map = sender.shared.topology.slot_map();
            *part = sender.send(&map, request, target, attempt);
        }
    }
}
