//! `docs/commands.md` is generated from the command table and the session's routing rules, and
//! this test keeps it current: it builds the document and compares it with the file.
//!
//! To regenerate after changing the table, a route or a merge rule:
//!
//! ```text
//! UPDATE_DOCS=1 cargo test --test it commands_doc::
//! ```

use std::fmt::Write as _;
use std::path::PathBuf;

use slotproxy::command::route::{Local, Route, admin_route, route_of};
use slotproxy::command::{CommandSpec, CommandTable, Flags};
use slotproxy::session::{computed, fan_out_merge, split_merge};

const REGENERATE: &str = "UPDATE_DOCS=1 cargo test --test it commands_doc::";

/// How slotproxy handles one command, in the document's words.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Handling {
    Routed,
    Pinned(&'static str),
    Split(&'static str),
    Computed(&'static str),
    FannedOut(&'static str),
    Local,
    OnePrimary,
    PubSub(&'static str),
    Refused(String),
}

impl Handling {
    fn of(spec: &CommandSpec) -> Handling {
        match route_of(spec) {
            Route::Local(
                Local::Multi | Local::Exec | Local::Discard | Local::Watch | Local::Unwatch,
            ) => Handling::Pinned(
                "transaction: queued by slotproxy, run in one piece on the primary of its \
                     keys' slot; WATCH holds a connection of the session's own",
            ),
            Route::Local(Local::Subscribe) => Handling::PubSub(
                "confirmed by slotproxy from the client's own subscriptions; the hub holds each \
                 channel once (shard channels on their slot's primary, following it when it moves)",
            ),
            Route::Local(Local::Publish) => Handling::PubSub(
                "sent on the hub's connection to the node holding the channel (else to one \
                 primary, SPUBLISH to its slot's); the count includes the proxy's receivers",
            ),
            Route::Local(Local::PubSubCount) => Handling::PubSub(
                "asked of every node (SHARD*: every primary) and merged; the proxy's clients \
                 counted in place of its one node subscription",
            ),
            Route::Local(Local::Wait) => Handling::Pinned(
                "sent on the connections the client's writes went out on, to every node it wrote \
                 to; the smallest count wins. On a shared connection it waits in 10 ms slices, \
                 so it never stalls other clients",
            ),
            Route::Local(Local::Scan) => Handling::FannedOut(
                "one primary per call, in slot order; the cursor names the primary and survives \
                 resharding",
            ),
            Route::Local(_) => Handling::Local,
            Route::ByKeys if spec.flags.contains(Flags::BLOCKING) => Handling::Pinned(
                "routed by key on a connection of the session's own, so it never stalls others",
            ),
            Route::AnyNode => Handling::OnePrimary,
            Route::BySlotArgument => Handling::Routed,
            Route::ByKeys => match (split_merge(spec.name), computed(spec.name)) {
                (Some(kind), _) => Handling::Split(kind.describe()),
                (None, Some(op)) => Handling::Computed(op.describe()),
                (None, None) => Handling::Routed,
            },
            Route::AllPrimaries => match fan_out_merge(spec.name) {
                Some(merge) => Handling::FannedOut(merge.describe()),
                None => Handling::Refused(
                    "not supported by slotproxy yet (it needs every primary and has no merge \
                     rule)"
                        .to_string(),
                ),
            },
            // Only `admin_route` gives it, for a command the configuration allows.
            Route::AllNodes => unreachable!("route_of never sends a command to every node"),
            Route::Unsupported(reason) => {
                let mut text = reason.strip_prefix("is ").unwrap_or(reason).to_string();
                match admin_route(spec) {
                    Some(Route::AllNodes) => {
                        let merge = fan_out_merge(spec.name).expect("allowed admin commands merge");
                        text.push_str(&format!(
                            "; when listed, sent to every node (replicas too): {}",
                            merge.describe()
                        ));
                    }
                    Some(Route::AnyNode) => text.push_str("; when listed, sent to one primary"),
                    Some(Route::Local(_)) => text.push_str("; when listed, stops slotproxy"),
                    Some(Route::ByKeys) => text.push_str("; when listed, routed by key"),
                    _ => {}
                }
                if spec.name == "debug" {
                    text.push_str("; when listed, `DEBUG OBJECT key` is routed by its key");
                }
                if spec.name == "config|set" {
                    text.push_str(
                        "; never for paths, passwords, client limits or announced addresses",
                    );
                }
                Handling::Refused(text)
            }
        }
    }

    /// The class name used in the summary.
    fn class(&self) -> &'static str {
        match self {
            Handling::Routed => "routed by key",
            Handling::Pinned(_) => "pinned",
            Handling::Split(_) => "split by slot when keys span slots",
            Handling::Computed(_) => "computed by slotproxy when keys span slots",
            Handling::FannedOut(_) => "fanned out to every primary",
            Handling::Local => "answered by slotproxy",
            Handling::OnePrimary => "sent to one primary",
            Handling::PubSub(_) => "pub/sub hub",
            Handling::Refused(_) => "refused",
        }
    }

    fn cell(&self) -> String {
        match self {
            Handling::Pinned(how) => format!("{}: {how}", self.class()),
            Handling::Split(merge) => format!("{}; {merge}", self.class()),
            Handling::Computed(how) => format!("{}: {how}", self.class()),
            Handling::PubSub(how) => format!("{}: {how}", self.class()),
            Handling::FannedOut(merge) => format!("{}; {merge}", self.class()),
            Handling::Refused(reason) => format!("refused: {reason}"),
            other => other.class().to_string(),
        }
    }
}

/// Flags worth knowing when choosing how to call a command through slotproxy.
fn notes(spec: &CommandSpec, handling: &Handling) -> String {
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
        Handling::Routed | Handling::Split(_) | Handling::Computed(_) | Handling::Pinned(_)
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
    let rows: Vec<(&CommandSpec, Handling)> = commands(&table)
        .into_iter()
        .map(|spec| (spec, Handling::of(spec)))
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
            "Answered by the proxy itself, never sent to a node.",
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
    let handling = |name: &str| Handling::of(table.lookup(name).unwrap());
    assert_eq!(handling("get"), Handling::Routed);
    assert!(matches!(handling("mget"), Handling::Split(_)));
    assert!(matches!(handling("sunion"), Handling::Computed(_)));
    assert!(matches!(handling("pfcount"), Handling::Computed(_)));
    assert_eq!(handling("sunionstore"), Handling::Routed);
    assert!(matches!(handling("info"), Handling::FannedOut(_)));
    assert_eq!(handling("ping"), Handling::Local);
    assert_eq!(handling("time"), Handling::OnePrimary);
    assert!(matches!(handling("shutdown"), Handling::Refused(_)));
}
