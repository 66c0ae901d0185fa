//! Runs the generated commands against slotproxy and redis-server side by side and reports the
//! first difference with its context.

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use super::command::{Cmd, show, show_args};
use super::generator::{Gen, SCRIPTS};
use super::normalise::{Norm, normalise};
use crate::common::{
    RawClient, StandaloneRedis, TestCluster, TestProxy, encode_command, resp_frame_len,
};

/// Time allowed for each reply (blocking commands wait 10 ms at most).
const REPLY_TIMEOUT: Duration = Duration::from_secs(4);
/// Commands shown before a mismatch.
const HISTORY: usize = 10;
/// What the proxy answers for a multi-key command it can't serve across slots.
const CROSSSLOT: &[u8] = b"-CROSSSLOT Keys in request don't hash to the same slot\r\n";

/// Runs one pass and panics at the first difference.
pub(super) struct Runner<'a> {
    pub(super) proxy: &'a mut RawClient,
    pub(super) redis: &'a mut RawClient,
    /// Slot of each key, from `CLUSTER KEYSLOT`.
    pub(super) slots: &'a [u16],
    pub(super) seed: u64,
    pub(super) count: usize,
    pub(super) pass: &'static str,
    /// The last commands and replies, for the failure message.
    pub(super) history: VecDeque<String>,
    /// Commands sent to the proxy only (cross-slot, answered with CROSSSLOT).
    pub(super) crossslot: usize,
    /// Commands whose keys span slots that the proxy split or computed.
    pub(super) split_across_slots: usize,
    /// `DIFF_TRACE` set: print every command and both replies.
    pub(super) trace: bool,
    /// For the diagnosis after a difference.
    pub(super) proxy_addr: String,
    pub(super) redis_addr: String,
}

impl Runner<'_> {
    pub(super) async fn run(&mut self, gen_seed: u64, shas: Vec<Option<String>>) {
        let mut generator = Gen::new(gen_seed, shas);
        let mut done = 0;
        while done < self.count {
            let step = generator.step();
            // Each command, and whether only the proxy gets it (keys span slots, no split).
            let mut cmds = Vec::with_capacity(step.cmds.len());
            for mut cmd in step.cmds {
                let slots: BTreeSet<u16> = cmd.keys.iter().map(|&k| self.slots[k]).collect();
                let across_slots = slots.len() > 1;
                if !across_slots || cmd.split {
                    generator.mutate(&mut cmd);
                }
                if across_slots && cmd.split {
                    self.split_across_slots += 1;
                }
                let proxy_only = across_slots && !cmd.split;
                if proxy_only {
                    self.crossslot += 1;
                }
                cmds.push((cmd, proxy_only));
            }
            if step.pipelined {
                self.pipeline(done, &cmds).await;
                done += cmds.len();
                continue;
            }
            for (cmd, proxy_only) in &cmds {
                let args: Vec<&[u8]> = cmd.args.iter().map(Vec::as_slice).collect();
                let checked = if *proxy_only {
                    // A cluster can't run it: the proxy must refuse it (and so change nothing).
                    let got = within(self.proxy.request(&args)).await;
                    self.check(done, cmd, &got, CROSSSLOT, "(not sent: keys span slots)")
                } else {
                    let (got, want) = tokio::join!(
                        within(self.proxy.request(&args)),
                        within(self.redis.request(&args))
                    );
                    self.check(done, cmd, &got, &want, "")
                };
                self.fail_on(checked).await;
                done += 1;
            }
        }
    }

    /// Writes all of `cmds` at once to each side, then reads and compares the replies in order.
    async fn pipeline(&mut self, first: usize, cmds: &[(Cmd, bool)]) {
        let mut to_proxy = Vec::new();
        let mut to_redis = Vec::new();
        for (cmd, proxy_only) in cmds {
            let args: Vec<&[u8]> = cmd.args.iter().map(Vec::as_slice).collect();
            let bytes = encode_command(&args);
            if !proxy_only {
                to_redis.extend_from_slice(&bytes);
            }
            to_proxy.extend_from_slice(&bytes);
        }
        tokio::join!(self.proxy.send(&to_proxy), self.redis.send(&to_redis));
        for (i, (cmd, proxy_only)) in cmds.iter().enumerate() {
            let got = within(self.proxy.read_reply()).await;
            let checked = if *proxy_only {
                self.check(
                    first + i,
                    cmd,
                    &got,
                    CROSSSLOT,
                    "(pipelined; not sent: keys span slots)",
                )
            } else {
                let want = within(self.redis.read_reply()).await;
                self.check(first + i, cmd, &got, &want, "(pipelined)")
            };
            self.fail_on(checked).await;
        }
    }

    /// Panics with `checked`'s message and where the data differs, if there is a message.
    async fn fail_on(&self, checked: Result<(), String>) {
        if let Err(message) = checked {
            panic!("{message}\ndata: {}", self.data_differences().await);
        }
    }

    /// Compares one pair of replies and records the command; the failure message on a difference.
    fn check(
        &mut self,
        index: usize,
        cmd: &Cmd,
        got: &[u8],
        want: &[u8],
        note: &str,
    ) -> Result<(), String> {
        let norm = if want == CROSSSLOT {
            Norm::Exact
        } else {
            cmd.norm
        };
        if normalise(got, norm) != normalise(want, norm) {
            let compared = match norm {
                Norm::Exact => "",
                Norm::Unordered => " (compared with elements sorted)",
                Norm::UnorderedScan => " (compared with pairs sorted)",
                Norm::Deadline => " (compared as has-a-deadline)",
            };
            let history: Vec<String> = self.history.iter().cloned().collect();
            return Err(format!(
                "slotproxy and redis-server differ (rerun with DIFF_SEED={seed} \
                 DIFF_COMMANDS={count}; {pass} pass), command #{index}{compared}:\n  \
                 command:      {command}\n  slotproxy:    {got}\n  redis-server: {want} \
                 {note}\nprevious commands (newest last):\n  {history}",
                seed = self.seed,
                count = self.count,
                pass = self.pass,
                command = cmd.show(),
                got = show(got),
                want = show(want),
                history = history.join("\n  "),
            ));
        }
        let marker = if note.contains("pipelined") {
            " [pipelined]"
        } else {
            ""
        };
        let line = format!("#{index}{marker} {} -> {}", cmd.show(), show(got));
        if self.trace {
            eprintln!("{line} | {}", show(want));
        }
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(line);
        Ok(())
    }

    /// Keys present on one side only, or with different types: where the data diverged.
    async fn data_differences(&self) -> String {
        let mut proxy = RawClient::connect(self.proxy_addr.as_str()).await;
        let mut redis = RawClient::connect(self.redis_addr.as_str()).await;
        let in_proxy: BTreeSet<Vec<u8>> = bulk_elements(&proxy.request(&[b"KEYS", b"*"]).await)
            .into_iter()
            .collect();
        let in_redis: BTreeSet<Vec<u8>> = bulk_elements(&redis.request(&[b"KEYS", b"*"]).await)
            .into_iter()
            .collect();
        let mut out = Vec::new();
        for key in in_proxy.union(&in_redis) {
            let args: [&[u8]; 2] = [b"TYPE", key];
            let (got, want) = tokio::join!(proxy.request(&args), redis.request(&args));
            if got != want {
                out.push(format!("{}: {} vs {}", show(key), show(&got), show(&want)));
            }
        }
        if out.is_empty() {
            "same keys with the same types".to_string()
        } else {
            format!("TYPE via slotproxy vs redis-server: {}", out.join(", "))
        }
    }
}

/// The reply, or a marker (which matches no reply) when none comes within [`REPLY_TIMEOUT`]:
/// shorter than `RawClient`'s own timeout, so the failure shows the command and its context.
pub(super) async fn within(reply: impl Future<Output = Vec<u8>>) -> Vec<u8> {
    tokio::time::timeout(REPLY_TIMEOUT, reply)
        .await
        .unwrap_or_else(|_| format!("<no reply within {REPLY_TIMEOUT:?}>").into_bytes())
}

/// The elements of an array of bulk strings.
pub(super) fn bulk_elements(reply: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut pos = reply.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
    while pos < reply.len() {
        let len = resp_frame_len(&reply[pos..]).unwrap().unwrap();
        let frame = &reply[pos..pos + len];
        let start = frame.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
        out.push(frame[start..len - 2].to_vec());
        pos += len;
    }
    out
}

/// `SCRIPT LOAD`s every one of [`SCRIPTS`] on both sides (so EVALSHA finds them on both); the
/// SHA1 of each that compiles.
pub(super) async fn load_scripts(
    proxy: &mut RawClient,
    redis: &mut RawClient,
) -> Vec<Option<String>> {
    let mut shas = Vec::new();
    for (text, _) in SCRIPTS {
        let args: [&[u8]; 3] = [b"SCRIPT", b"LOAD", text.as_bytes()];
        let (got, want) = tokio::join!(proxy.request(&args), redis.request(&args));
        assert_eq!(show(&got), show(&want), "SCRIPT LOAD {text:?}");
        shas.push(
            got.strip_prefix(b"$40\r\n")
                .map(|rest| String::from_utf8(rest[..40].to_vec()).unwrap()),
        );
    }
    shas
}

pub(super) fn env_number(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    let text = text.trim();
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    Some(parsed.unwrap_or_else(|e| panic!("{name}={text:?} is not a number: {e}")))
}

/// Sends `commands` one by one to a proxy (before a cluster without replicas) and to a
/// standalone redis-server; each command whose replies differ, with both replies.
pub(super) async fn replay(commands: &[&[&[u8]]]) -> Vec<String> {
    let batches: Vec<&[&[&[u8]]]> = commands.iter().map(std::slice::from_ref).collect();
    replay_pipelined(&batches).await
}

/// Like [`replay`], but each batch of commands goes out in one write before its replies are read.
pub(super) async fn replay_pipelined(batches: &[&[&[&[u8]]]]) -> Vec<String> {
    let cluster = TestCluster::start(3, 0);
    let standalone = StandaloneRedis::start();
    let proxy = TestProxy::start(&cluster).await;
    let mut via_proxy = proxy.raw_client().await;
    let mut direct = RawClient::connect(standalone.addr.as_str()).await;
    let mut differences = Vec::new();
    for batch in batches {
        let bytes: Vec<u8> = batch.iter().flat_map(|args| encode_command(args)).collect();
        tokio::join!(via_proxy.send(&bytes), direct.send(&bytes));
        for args in *batch {
            let (got, want) = tokio::join!(via_proxy.read_reply(), direct.read_reply());
            if got != want {
                let command: Vec<Vec<u8>> = args.iter().map(|a| a.to_vec()).collect();
                differences.push(format!(
                    "{}\n    slotproxy:    {}\n    redis-server: {}",
                    show_args(&command),
                    show(&got),
                    show(&want)
                ));
            }
        }
    }
    differences
}
