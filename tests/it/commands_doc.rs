//! `docs/commands.md` is generated from the command table and each row's policy
//! (`command/policy.rs`), and this test keeps it current: it prints every row's policy in the
//! document's words and compares the result with the file. It decides nothing itself.
//!
//! To regenerate after changing the table or a policy:
//!
//! ```text
//! UPDATE_DOCS=1 cargo test --test it commands_doc::
//! ```

use std::fmt::Write as _;
use std::path::PathBuf;

use slotproxy::command::policy::{Allowed, Handling, Local, Policy, Refusal};
use slotproxy::command::{CommandSpec, CommandTable, Flags};

const REGENERATE: &str = "UPDATE_DOCS=1 cargo test --test it commands_doc::";

/// How slotproxy handles one command, in the document's words.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Described {
    Routed,
    Pinned(&'static str),
    Split(&'static str),
    Computed(&'static str),
    FannedOut(&'static str),
    Local(Option<&'static str>),
    OnePrimary,
    PubSub(&'static str),
    Refused(String),
}

impl Described {
    /// The row's policy in the document's words.
    fn of(policy: &Policy) -> Described {
        match policy.handling {
            Handling::Local(
                Local::Multi | Local::Exec | Local::Discard | Local::Watch | Local::Unwatch,
            ) => Described::Pinned(
                "transaction: queued by slotproxy, run in one piece on the primary of its \
                     keys' slot; WATCH holds a connection of the session's own",
            ),
            Handling::Local(Local::Subscribe) => Described::PubSub(
                "confirmed by slotproxy from the client's own subscriptions; the hub holds each \
                 channel once (shard channels on their slot's primary, following it when it moves)",
            ),
            Handling::Local(Local::Publish) => Described::PubSub(
                "sent on the hub's connection to the node holding the channel (else to one \
                 primary, SPUBLISH to its slot's); the count includes the proxy's receivers",
            ),
            Handling::Local(Local::PubSubCount) => Described::PubSub(
                "asked of every node (SHARD*: every primary) and merged; the proxy's clients \
                 counted in place of its one node subscription",
            ),
            Handling::Local(Local::Wait) => Described::Pinned(
                "sent on the connections the client's writes went out on, to every node it wrote \
                 to; the smallest count wins. On a shared connection it waits in 10 ms slices, \
                 so it never stalls other clients",
            ),
            Handling::Local(Local::Scan) => Described::FannedOut(
                "one primary after another, in slot order, going on to the next within one call \
                 while the batch is below COUNT (a small keyspace comes whole, with cursor 0); the \
                 cursor names the primary and survives resharding",
            ),
            Handling::Local(Local::ClientList | Local::ClientKill) => {
                Described::Local(Some("every client of slotproxy, on any worker thread"))
            }
            Handling::Local(Local::ClientUnblock) => Described::Local(Some(
                "for slotproxy's clients; passed to the node the client is blocked on, for its \
                 connection",
            )),
            Handling::Local(_) | Handling::Acl => Described::Local(None),
            Handling::Single { blocking: true, .. } => Described::Pinned(
                "routed by key on a connection of the session's own, so it never stalls others",
            ),
            Handling::Single { .. } | Handling::BySlotArgument => Described::Routed,
            Handling::AnyNode => Described::OnePrimary,
            Handling::Split(kind) => Described::Split(kind.describe()),
            Handling::Computed(op) => Described::Computed(op.describe()),
            Handling::FanOut(merge) => Described::FannedOut(merge.describe()),
            Handling::AllNodes(_) => {
                unreachable!("only an allowed admin command is sent to every node")
            }
            Handling::Refused(Refusal::NoMerge) => Described::Refused(
                "not supported by slotproxy yet (it needs every primary and has no merge rule)"
                    .to_string(),
            ),
            Handling::Refused(refusal) => Described::Refused(reason(refusal)),
            Handling::Admin(allowed) => {
                let mut text = reason(Refusal::Admin);
                match allowed.handling() {
                    Handling::AllNodes(merge) => text.push_str(&format!(
                        "; when listed, sent to every node (replicas too): {}",
                        merge.describe()
                    )),
                    Handling::AnyNode => text.push_str("; when listed, sent to one primary"),
                    Handling::Local(Local::Shutdown) => {
                        text.push_str("; when listed, stops slotproxy")
                    }
                    Handling::Local(Local::Monitor) => text.push_str(
                        "; when listed, slotproxy's own stream of every client's commands, \
                         in the order it takes them",
                    ),
                    Handling::Single { .. } => text.push_str("; when listed, routed by key"),
                    other => unreachable!("no admin command is allowed as {other:?}"),
                }
                match allowed {
                    Allowed::Debug => {
                        text.push_str("; when listed, `DEBUG OBJECT key` is routed by its key")
                    }
                    Allowed::ConfigSet => text.push_str(
                        "; never for paths, passwords, client limits or announced addresses",
                    ),
                    _ => {}
                }
                Described::Refused(text)
            }
        }
    }

    /// The class name used in the summary.
    fn class(&self) -> &'static str {
        match self {
            Described::Routed => "routed by key",
            Described::Pinned(_) => "pinned",
            Described::Split(_) => "split by slot when keys span slots",
            Described::Computed(_) => "computed by slotproxy when keys span slots",
            Described::FannedOut(_) => "fanned out to every primary",
            Described::Local(_) => "answered by slotproxy",
            Described::OnePrimary => "sent to one primary",
            Described::PubSub(_) => "pub/sub hub",
            Described::Refused(_) => "refused",
        }
    }

    fn cell(&self) -> String {
        match self {
            Described::Pinned(how) => format!("{}: {how}", self.class()),
            Described::Split(merge) => format!("{}; {merge}", self.class()),
            Described::Computed(how) => format!("{}: {how}", self.class()),
            Described::PubSub(how) => format!("{}: {how}", self.class()),
            Described::FannedOut(merge) => format!("{}; {merge}", self.class()),
            Described::Refused(reason) => format!("refused: {reason}"),
            Described::Local(Some(how)) => format!("{}: {how}", self.class()),
            other => other.class().to_string(),
        }
    }
}

/// A refusal's reason as the document says it ("not allowed through slotproxy").
fn reason(refusal: Refusal) -> String {
    let reason = refusal.reason();
    reason.strip_prefix("is ").unwrap_or(reason).to_string()
}

/// Flags worth knowing when choosing how to call a command through slotproxy.
fn notes(spec: &CommandSpec, handling: &Described) -> String {
    let mut notes = Vec::new();
    for (flag, note) in [
        (Flags::WRITE, "write"),
        (Flags::BLOCKING, "blocking"),
        (Flags::ADMIN, "admin"),
        (Flags::PUBSUB, "pubsub"),
    ] {
        if spec.flags.contains(flag) {
            notes.push(note);
        }
    }
    if matches!(
        handling,
        Described::Routed | Described::Split(_) | Described::Computed(_) | Described::Pinned(_)
    ) && spec.flags.contains(Flags::NO_MANDATORY_KEYS)
    {
        notes.push("without keys: sent to one primary");
    }
    if spec.flags.contains(Flags::MODULE) {
        notes.push("module");
    }
    notes.join(", ")
}

/// Every command as clients call it: plain commands and each container's subcommands (a
/// container alone, such as `CLIENT`, only gets an arity error).
fn commands(table: &CommandTable) -> Vec<&'static CommandSpec> {
    let mut out: Vec<&'static CommandSpec> = Vec::new();
    for spec in table.iter() {
        if spec.is_container() {
            out.extend(spec.subcommands.iter());
        } else {
            out.push(spec);
        }
    }
    out.sort_by_key(|spec| spec.full_name_upper());
    out
}

fn generate() -> String {
    let table = CommandTable::builtin();
    let rows: Vec<(&CommandSpec, Described)> = commands(&table)
        .into_iter()
        .map(|spec| (spec, Described::of(table.policy(spec))))
        .collect();
    let count = |class: &str| rows.iter().filter(|(_, h)| h.class() == class).count();

    let mut doc = String::new();
    doc.push_str(&format!(
        "# Commands\n\
         \n\
         <!-- Generated by tests/it/commands_doc.rs from the command table; do not edit by hand.\n     \
         Regenerate with: {REGENERATE} -->\n\
         \n\
         How slotproxy handles each command of redis 7.0 (plus the newer commands the built-in\n\
         table knows), one row per command or subcommand, sorted by name. Commands a node\n\
         reports at startup beyond these (modules, a newer redis) are routed by their key specs,\n\
         like the rows here.\n\
         \n\
         | Handling | Commands | Meaning |\n\
         |---|---:|---|\n"
    ));
    let classes = [
        (
            "routed by key",
            "Sent to the primary that owns the slot of its keys. Keys in different slots get \
             `-CROSSSLOT`, as from a cluster node.",
        ),
        (
            "pinned",
            "Blocking commands and transactions: run on one node, on a connection (or in a \
             batch) no other client's command can interleave with.",
        ),
        (
            "split by slot when keys span slots",
            "Routed by key when all keys share a slot; otherwise split into one request per \
             slot, and the replies merged as the row says.",
        ),
        (
            "computed by slotproxy when keys span slots",
            "Read-only: routed by key when all keys share a slot; otherwise each key is read \
             from its node (a replica if the read policy allows) and slotproxy computes the \
             reply as redis-server would, with the same errors and reply types. The keys are \
             not read atomically.",
        ),
        (
            "fanned out to every primary",
            "Sent to every primary; the replies merged as the row says. The first error wins.",
        ),
        (
            "answered by slotproxy",
            "Answered by the proxy itself, never sent to a node as is (`CLIENT UNBLOCK` asks the \
             node a client is blocked on).",
        ),
        (
            "sent to one primary",
            "Keyless, and any node answers alike: sent to one primary.",
        ),
        (
            "pub/sub hub",
            "Pub/sub: one node subscription per channel for all clients, messages fanned out \
             by slotproxy in each client's protocol.",
        ),
        (
            "refused",
            "Answered with `-ERR` naming the command and why.",
        ),
    ];
    for (class, meaning) in classes {
        writeln!(doc, "| {class} | {} | {meaning} |", count(class)).unwrap();
    }
    doc.push_str(
        "\nNotes: `write` changes data, `blocking` may wait for data, `admin` and `pubsub` are\n\
         redis' own command flags.\n\
         \n\
         | Command | Group | Handling | Notes |\n\
         |---|---|---|---|\n",
    );
    for (spec, handling) in &rows {
        writeln!(
            doc,
            "| `{}` | {} | {} | {} |",
            spec.full_name_upper(),
            spec.group,
            handling.cell(),
            notes(spec, handling)
        )
        .unwrap();
    }
    doc
}

#[test]
fn commands_doc_matches_the_command_table() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/commands.md");
    let generated = generate();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    if current != generated {
        let first_difference = current
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || "one is a prefix of the other".to_string(),
                |i| {
                    format!(
                        "line {}: file has {:?}, table says {:?}",
                        i + 1,
                        current.lines().nth(i).unwrap_or_default(),
                        generated.lines().nth(i).unwrap_or_default()
                    )
                },
            );
        panic!(
            "docs/commands.md is out of date with the command table ({first_difference}).\n\
             Regenerate it with: {REGENERATE}"
        );
    }
}

#[test]
fn every_command_has_exactly_one_row() {
    let table = CommandTable::builtin();
    let rows = commands(&table);
    let mut names: Vec<String> = rows.iter().map(|s| s.full_name_upper()).collect();
    names.dedup();
    assert_eq!(names.len(), rows.len(), "duplicate rows");
    for name in [
        "GET",
        "MGET",
        "DBSIZE",
        "INFO",
        "PING",
        "CLIENT SETNAME",
        "SHUTDOWN",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} has no row");
    }
    let handling = |name: &str| Described::of(table.policy(table.lookup(name).unwrap()));
    assert_eq!(handling("get"), Described::Routed);
    assert!(matches!(handling("mget"), Described::Split(_)));
    assert!(matches!(handling("sunion"), Described::Computed(_)));
    assert!(matches!(handling("pfcount"), Described::Computed(_)));
    assert_eq!(handling("sunionstore"), Described::Routed);
    assert!(matches!(handling("info"), Described::FannedOut(_)));
    assert_eq!(handling("ping"), Described::Local(None));
    assert!(matches!(
        handling("client|unblock"),
        Described::Local(Some(_))
    ));
    assert_eq!(handling("time"), Described::OnePrimary);
    assert!(matches!(handling("shutdown"), Described::Refused(_)));
}
