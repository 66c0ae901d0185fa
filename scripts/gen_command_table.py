#!/usr/bin/env python3
"""Regenerate src/command/generated.rs from a live redis-server.

The command table of slotproxy is data, not hand-written code: this script asks a
redis-server for `COMMAND` (arity, flags, tips, key specs, subcommands) and
`COMMAND DOCS` (group), gives every row (subcommands included) a sequential id and its
ACL categories, merges the hand-kept entries of
src/command/extra_commands.json (commands newer than that node), and writes one
sorted Rust literal.

Usage (from the repository root):

    python3 scripts/gen_command_table.py             # starts a throwaway redis-server
    python3 scripts/gen_command_table.py --port 6379 # asks an already running node
    python3 scripts/gen_command_table.py --check     # exit 1 if generated.rs is stale

The table is pinned to one redis-server version, REDIS_VERSION below (the one
generated.rs names in its header): another version's COMMAND output is refused,
because it would silently change arities, flags and key specs. To move to a new
version on purpose, change REDIS_VERSION and regenerate (or pass --any-version to
try one without changing the pin; it warns, and --check still fails).
.ci/run runs --check, which costs about a second.

Only the Python standard library is used; the RESP client below is just enough
for COMMAND replies. The output is deterministic: running it twice against the
same redis-server version gives the same file.
"""

import argparse
import difflib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

# The redis-server version src/command/generated.rs is generated from.
REDIS_VERSION = "7.0.15"

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(ROOT, "src", "command", "generated.rs")
DEFAULT_EXTRA = os.path.join(ROOT, "src", "command", "extra_commands.json")

# COMMAND flag name -> Rust constant on `Flags`. Flags not listed here (redis 6's
# "random", "sort_for_script", ...) have no constant and are dropped.
COMMAND_FLAGS = {
    "write": "WRITE",
    "readonly": "READONLY",
    "denyoom": "DENYOOM",
    "module": "MODULE",
    "admin": "ADMIN",
    "pubsub": "PUBSUB",
    "noscript": "NOSCRIPT",
    "blocking": "BLOCKING",
    "loading": "LOADING",
    "stale": "STALE",
    "skip_monitor": "SKIP_MONITOR",
    "skip_slowlog": "SKIP_SLOWLOG",
    "asking": "ASKING",
    "fast": "FAST",
    "no_auth": "NO_AUTH",
    "may_replicate": "MAY_REPLICATE",
    "no_mandatory_keys": "NO_MANDATORY_KEYS",
    "no_async_loading": "NO_ASYNC_LOADING",
    "no_multi": "NO_MULTI",
    "movablekeys": "MOVABLE_KEYS",
    "allow_busy": "ALLOW_BUSY",
}

# ACL category (without the "@") -> Rust constant on `AclCategories`, in redis' own
# order (the order `ACL CAT` lists them in).
ACL_CATEGORIES = {
    "keyspace": "KEYSPACE",
    "read": "READ",
    "write": "WRITE",
    "set": "SET",
    "sortedset": "SORTEDSET",
    "list": "LIST",
    "hash": "HASH",
    "string": "STRING",
    "bitmap": "BITMAP",
    "hyperloglog": "HYPERLOGLOG",
    "geo": "GEO",
    "stream": "STREAM",
    "pubsub": "PUBSUB",
    "admin": "ADMIN",
    "fast": "FAST",
    "slow": "SLOW",
    "blocking": "BLOCKING",
    "dangerous": "DANGEROUS",
    "connection": "CONNECTION",
    "transaction": "TRANSACTION",
    "scripting": "SCRIPTING",
}

# Key spec flag name (any case) -> Rust constant on `KeySpecFlags`.
KEY_SPEC_FLAGS = {
    "ro": "RO",
    "rw": "RW",
    "ow": "OW",
    "rm": "RM",
    "access": "ACCESS",
    "update": "UPDATE",
    "insert": "INSERT",
    "delete": "DELETE",
    "not_key": "NOT_KEY",
    "incomplete": "INCOMPLETE",
    "variable_flags": "VARIABLE_FLAGS",
}


class RespError(Exception):
    """An error reply from the node, or a reply this client cannot read."""


class Resp:
    """A minimal blocking RESP2 client: enough for COMMAND and INFO."""

    def __init__(self, host, port, timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.reader = self.sock.makefile("rb")

    def close(self):
        self.reader.close()
        self.sock.close()

    def call(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg.encode() if isinstance(arg, str) else arg
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.sock.sendall(b"".join(out))
        reply = self._read()
        if isinstance(reply, RespError):
            raise reply
        return reply

    def _line(self):
        line = self.reader.readline()
        if not line.endswith(b"\r\n"):
            raise RespError("connection closed or torn reply")
        return line[:-2]

    def _read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RespError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            data = self.reader.read(size + 2)
            if len(data) != size + 2:
                raise RespError("torn bulk string")
            return data[:-2].decode()
        if kind == b"*":
            size = int(rest)
            if size < 0:
                return None
            return [self._read() for _ in range(size)]
        raise RespError("unexpected reply type %r" % line[:20])


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThrowawayNode:
    """A redis-server in a temp dir on a free port, stopped on exit."""

    def __init__(self, binary):
        self.binary = binary
        self.dir = None
        self.proc = None
        self.port = None

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="gen_command_table.")
        # The port can be taken between free_port() and the bind: retry a few times.
        for _ in range(5):
            self.port = free_port()
            self.proc = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--cluster-enabled", "no",
                 "--dir", self.dir, "--logfile", os.path.join(self.dir, "redis.log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if self._wait_ready():
                return self
            self._stop()
        raise SystemExit("could not start %s (see %s)" % (self.binary, self.dir))

    def _wait_ready(self):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                client = Resp("127.0.0.1", self.port, timeout=1)
                try:
                    if client.call("PING") == "PONG":
                        return True
                finally:
                    client.close()
            except (OSError, RespError):
                time.sleep(0.05)
        return False

    def _stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __exit__(self, *exc):
        self._stop()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)


def pairs(flat):
    """Turns a RESP2 flat map [k1, v1, k2, v2, ...] into a dict."""
    if not isinstance(flat, list) or len(flat) % 2:
        raise ValueError("not a flat map: %r" % (flat,))
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


def key_spec_from_reply(flat):
    """One COMMAND key spec (flat map) -> the dict shape extra_commands.json uses."""
    spec = pairs(flat)
    begin = pairs(spec["begin_search"])
    find = pairs(spec["find_keys"])
    return {
        "flags": list(spec.get("flags", [])),
        "begin_search": {"type": begin["type"], "spec": pairs(begin.get("spec") or [])},
        "find_keys": {"type": find["type"], "spec": pairs(find.get("spec") or [])},
    }


# Commands redis 7.0 flags `may_replicate` (its command files) though 7.0's COMMAND does not
# report that flag; CLIENT PAUSE WRITE holds them and a MONITOR client may not send them.
HIDDEN_MAY_REPLICATE = {"eval", "evalsha", "fcall", "publish", "spublish", "pfcount"}


def command_from_reply(entry):
    """One COMMAND entry (redis 7 shape, 10 elements) -> dict."""
    if len(entry) < 10:
        raise SystemExit("COMMAND entry for %r has %d elements; the generator needs "
                         "redis 7 (key specs, subcommands)" % (entry[0], len(entry)))
    return {
        "name": entry[0].lower(),
        "arity": entry[1],
        "flags": list(entry[2]) + (["may_replicate"] if entry[0].lower() in HIDDEN_MAY_REPLICATE
                                   and "may_replicate" not in entry[2] else []),
        "first_key": entry[3],
        "last_key": entry[4],
        "step": entry[5],
        "acl_categories": list(entry[6]),
        "tips": list(entry[7]),
        "key_specs": [key_spec_from_reply(ks) for ks in entry[8]],
        "subcommands": [command_from_reply(sub) for sub in entry[9]],
    }


def groups_from_docs(docs_reply):
    """COMMAND DOCS reply -> {full name: group}, including subcommands."""
    groups = {}

    def walk(flat):
        for name, doc in pairs(flat).items():
            doc = pairs(doc)
            groups[name.lower()] = doc.get("group", "module")
            if "subcommands" in doc:
                walk(doc["subcommands"])

    walk(docs_reply)
    return groups


def fetch(client):
    info = client.call("INFO", "server")
    version = "unknown"
    for line in info.splitlines():
        if line.startswith("redis_version:"):
            version = line.split(":", 1)[1].strip()
    commands = [command_from_reply(e) for e in client.call("COMMAND")]
    groups = groups_from_docs(client.call("COMMAND", "DOCS"))

    def set_group(cmd):
        cmd["group"] = groups.get(cmd["name"], "module")
        for sub in cmd["subcommands"]:
            set_group(sub)

    for cmd in commands:
        set_group(cmd)
    return version, commands


def merge_extras(commands, extras):
    """Adds the hand-kept entries the node lacks; returns the names added.

    An entry named "parent|sub" becomes a subcommand of "parent". An entry the
    node already knows is skipped: the node's own data wins.
    """
    by_name = {c["name"]: c for c in commands}
    added = []
    for extra in extras:
        name = extra["name"].lower()
        if "|" in name:
            parent = by_name.get(name.split("|", 1)[0])
            if parent is None:
                raise SystemExit("extra subcommand %s: parent command unknown" % name)
            if any(s["name"] == name for s in parent["subcommands"]):
                continue
            parent["subcommands"].append(extra)
        else:
            if name in by_name:
                continue
            commands.append(extra)
            by_name[name] = extra
        added.append(name)
    return added


def rust_str(value):
    return json.dumps(value)  # JSON string escapes are valid Rust string escapes here


def rust_flags(names, table, type_name, context):
    consts = []
    for name in names:
        const = table.get(name.lower().lstrip("@") if table is ACL_CATEGORIES else name.lower())
        if const is None:
            if table is KEY_SPEC_FLAGS or table is ACL_CATEGORIES:
                raise SystemExit("%s: unknown key spec flag %r" % (context, name))
            continue
        if const not in consts:
            consts.append(const)
    if not consts:
        return "%s::NONE" % type_name
    order = list(table.values())
    consts.sort(key=order.index)
    return "%s::%s" % (type_name, consts[0]) + "".join(
        ".union(%s::%s)" % (type_name, c) for c in consts[1:])


def rust_key_spec(ks, context):
    begin, find = ks["begin_search"], ks["find_keys"]
    if begin["type"] == "index":
        begin_rs = "BeginSearch::Index(%d)" % begin["spec"]["index"]
    elif begin["type"] == "keyword":
        begin_rs = "BeginSearch::Keyword { keyword: %s, start_from: %d }" % (
            rust_str(begin["spec"]["keyword"]), begin["spec"]["startfrom"])
    else:
        begin_rs = "BeginSearch::Unknown"
    if find["type"] == "range":
        spec = find["spec"]
        find_rs = "FindKeys::Range { last_key: %d, key_step: %d, limit: %d }" % (
            spec["lastkey"], spec["keystep"], spec["limit"])
    elif find["type"] == "keynum":
        spec = find["spec"]
        find_rs = "FindKeys::KeyNum { keynum_idx: %d, first_key: %d, key_step: %d }" % (
            spec["keynumidx"], spec["firstkey"], spec["keystep"])
    else:
        find_rs = "FindKeys::Unknown"
    flags = rust_flags(ks["flags"], KEY_SPEC_FLAGS, "KeySpecFlags", context)
    return "KeySpec { begin: %s, find: %s, flags: %s }" % (begin_rs, find_rs, flags)


def emit_command(cmd, indent, out, extra_names, ids):
    """Appends one row; `ids` is a one-element list holding the next row id."""
    pad = " " * indent
    name = cmd["name"]
    if name in extra_names:
        out.append("%s// hand-kept (since %s): src/command/extra_commands.json" % (
            pad, cmd.get("since", "?")))
    out.append("%sCommandSpec {" % pad)
    inner = pad + "    "
    out.append("%sname: %s," % (inner, rust_str(name)))
    out.append("%sid: CommandId(%d)," % (inner, ids[0]))
    ids[0] += 1
    out.append("%sarity: %d," % (inner, cmd["arity"]))
    out.append("%sflags: %s," % (inner, rust_flags(cmd["flags"], COMMAND_FLAGS, "Flags", name)))
    out.append("%sacl_categories: %s," % (inner, rust_flags(
        cmd.get("acl_categories", []), ACL_CATEGORIES, "AclCategories", name)))
    out.append("%sgroup: %s," % (inner, rust_str(cmd.get("group", "module"))))
    out.append("%stips: &[%s]," % (inner, ", ".join(rust_str(t) for t in sorted(cmd["tips"]))))
    if cmd["key_specs"]:
        out.append("%skey_specs: &[" % inner)
        for ks in cmd["key_specs"]:
            out.append("%s    %s," % (inner, rust_key_spec(ks, name)))
        out.append("%s]," % inner)
    else:
        out.append("%skey_specs: &[]," % inner)
    subs = sorted(cmd["subcommands"], key=lambda c: c["name"])
    if subs:
        out.append("%ssubcommands: &[" % inner)
        for sub in subs:
            emit_command(sub, indent + 8, out, extra_names, ids)
        out.append("%s]," % inner)
    else:
        out.append("%ssubcommands: &[]," % inner)
    out.append("%s}," % pad)


def render(version, commands, extra_names):
    count = len(commands)
    subs = sum(len(c["subcommands"]) for c in commands)
    out = [
        "// generated by scripts/gen_command_table.py from redis-server %s COMMAND output; do not edit"
        % version,
        "// (%d commands, %d subcommands; %d hand-kept entries from "
        "src/command/extra_commands.json)" % (count, subs, len(extra_names)),
        "",
        "use super::category::AclCategories;",
        "use super::table::{BeginSearch, CommandId, CommandSpec, FindKeys, Flags, KeySpec, KeySpecFlags};",
        "",
        "/// Every command the generating node knows, plus the hand-kept newer ones, sorted by name.",
        "#[rustfmt::skip]",
        "pub(super) static COMMANDS: &[CommandSpec] = &[",
    ]
    ids = [0]
    for cmd in sorted(commands, key=lambda c: c["name"]):
        emit_command(cmd, 4, out, extra_names, ids)
    out.append("];")
    out.append("")
    out.append("/// Rows in [`COMMANDS`], subcommands included: row ids run from 0 to this, exclusive.")
    out.append("pub(super) const ROW_COUNT: u16 = %d;" % ids[0])
    return "\n".join(out) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, help="ask a running node instead of starting one")
    parser.add_argument("--redis-server", default="redis-server",
                        help="binary to start when --port is not given")
    parser.add_argument("--extra", default=DEFAULT_EXTRA)
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if --out differs from what would be written")
    parser.add_argument("--any-version", action="store_true",
                        help="generate from a redis-server other than %s (warns)" % REDIS_VERSION)
    args = parser.parse_args()

    with open(args.extra, encoding="utf-8") as f:
        extras = json.load(f)

    if args.port is not None:
        client = Resp(args.host, args.port)
        try:
            version, commands = fetch(client)
        finally:
            client.close()
    else:
        if shutil.which(args.redis_server) is None:
            raise SystemExit("%s not found: install redis-server (apt-get install redis-server) "
                             "or pass --port" % args.redis_server)
        with ThrowawayNode(args.redis_server) as node:
            client = Resp("127.0.0.1", node.port)
            try:
                version, commands = fetch(client)
            finally:
                client.close()

    if version != REDIS_VERSION:
        message = ("redis-server %s answered, but the command table is pinned to %s "
                   "(REDIS_VERSION in %s)" % (version, REDIS_VERSION, os.path.relpath(__file__)))
        if args.check:
            print("%s: can't check against another version; install redis-server %s"
                  % (message, REDIS_VERSION), file=sys.stderr)
            return 1
        if not args.any_version:
            raise SystemExit("%s; install that version, or change the pin on purpose "
                             "(--any-version to try it anyway)" % message)
        print("warning: %s; generating anyway (--any-version)" % message, file=sys.stderr)

    added = set(merge_extras(commands, extras))
    text = render(version, commands, added)

    if args.check:
        try:
            with open(args.out, encoding="utf-8") as f:
                current = f.read()
        except FileNotFoundError:
            current = ""
        if current != text:
            diff = list(difflib.unified_diff(
                current.splitlines(), text.splitlines(),
                os.path.relpath(args.out), "regenerated from redis-server %s" % version,
                lineterm=""))
            print("\n".join(diff[:40] + (["..."] if len(diff) > 40 else [])), file=sys.stderr)
            print("%s is stale: run python3 scripts/gen_command_table.py" % args.out,
                  file=sys.stderr)
            return 1
        print("%s matches redis-server %s" % (os.path.relpath(args.out), version))
        return 0
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    print("wrote %s: %d commands from redis-server %s, %d hand-kept entries added"
          % (os.path.relpath(args.out), len(commands), version, len(added)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
