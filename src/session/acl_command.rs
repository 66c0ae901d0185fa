//! `ACL ...` answered from slotproxy's own users, with redis-server 7.0's replies, and the
//! commands that are never forwarded because they would lock slotproxy out of its cluster
//! (`CONFIG SET requirepass|masterauth|masteruser`).

use bytes::{Bytes, BytesMut};
use tracing::info;

use super::Shared;
use super::acl::Login;
use crate::auth::{Denied, describe};
use crate::command::policy::{Allowed, Handling};
use crate::command::{AclCategories, CommandSpec, CommandTable, Resolved};
use crate::error::ReplyError;
use crate::protocol::reply::{
    write_array_len, write_bulk, write_integer, write_map_len, write_null, write_simple,
};
use crate::protocol::{Protocol, Request, string2ll};

/// The refusal for a request that must never reach a node, if this is one: a `CONFIG SET` of a
/// setting that could lock slotproxy out of its nodes (`requirepass`...), make them write files
/// or change what they announce (see `policy::config_set_refused`), whether or not the config
/// allows `CONFIG SET` otherwise. `handling` is the request's row's.
pub(super) fn never_forwarded(handling: Handling, args: &[Bytes]) -> Option<ReplyError> {
    if handling != Handling::Admin(Allowed::ConfigSet) {
        return None;
    }
    let param = crate::command::policy::config_set_refused(args)?;
    Some(ReplyError::ConfigSetRefused(param.clone()))
}

/// One `ACL` command being answered: what it reads, and the users it deleted.
pub(super) struct AclCommand<'a> {
    pub(super) shared: &'a Shared,
    /// The caller's identity (`ACL WHOAMI`; its scratch space serves `ACL DRYRUN`).
    pub(super) login: &'a mut Login,
    pub(super) protocol: Protocol,
    /// The caller's client id, for the log.
    pub(super) client: u64,
    /// Users `ACL DELUSER` removed: the session closes their clients after the reply.
    pub(super) deleted: Vec<Bytes>,
}

/// An `ACL` reply, or the error slotproxy answers instead.
pub(super) type Answer = Result<Bytes, ReplyError>;

/// Builds a reply with `build`.
fn reply(build: impl FnOnce(&mut BytesMut)) -> Answer {
    let mut out = BytesMut::new();
    build(&mut out);
    Ok(out.freeze())
}

impl AclCommand<'_> {
    /// Answers `ACL <subcommand>` (all but HELP and GENPASS, which any node answers alike).
    pub(super) fn run(&mut self, spec: &CommandSpec, request: &Request) -> Answer {
        let args = request.args();
        let table = self.shared.commands.load_full();
        let protocol = self.protocol;
        match spec.name {
            "acl|whoami" => {
                let name = self.login.user.name.clone();
                reply(|out| write_bulk(out, name.as_bytes()))
            }
            "acl|users" => {
                let users = self.shared.acl.users.load();
                let names: Vec<String> = users.iter().map(|u| u.name.clone()).collect();
                reply(|out| {
                    write_array_len(out, names.len());
                    for name in &names {
                        write_bulk(out, name.as_bytes());
                    }
                })
            }
            "acl|list" => {
                let users = self.shared.acl.users.load();
                let lines: Vec<Vec<u8>> = users
                    .iter()
                    .map(|u| describe::acl_line(u, &table))
                    .collect();
                reply(|out| {
                    write_array_len(out, lines.len());
                    for line in &lines {
                        write_bulk(out, line);
                    }
                })
            }
            "acl|getuser" => {
                let users = self.shared.acl.users.load();
                let Some(user) = users.get(&args[2]).cloned() else {
                    return reply(|out| write_null(out, protocol));
                };
                reply(|out| {
                    write_map_len(out, protocol, 6);
                    write_bulk(out, b"flags");
                    let flags = describe::flags(&user);
                    // A set in RESP3, as redis 7.0 sends it.
                    match protocol {
                        Protocol::Resp2 => write_array_len(out, flags.len()),
                        Protocol::Resp3 => {
                            out.extend_from_slice(format!("~{}\r\n", flags.len()).as_bytes())
                        }
                    }
                    for flag in flags {
                        write_bulk(out, flag.as_bytes());
                    }
                    write_bulk(out, b"passwords");
                    write_array_len(out, user.passwords.len());
                    for hash in &user.passwords {
                        write_bulk(out, hash.hex().as_bytes());
                    }
                    write_bulk(out, b"commands");
                    write_bulk(out, describe::command_rules(&user, &table).as_bytes());
                    write_bulk(out, b"keys");
                    write_bulk(out, &describe::keys(&user));
                    write_bulk(out, b"channels");
                    write_bulk(out, &describe::channels(&user));
                    write_bulk(out, b"selectors");
                    write_array_len(out, 0);
                })
            }
            "acl|cat" => self.acl_cat(args, &table),
            "acl|dryrun" => self.acl_dryrun(args, &table),
            "acl|log" => self.acl_log(args),
            "acl|setuser" => self.acl_setuser(args, &table),
            "acl|deluser" => self.acl_deluser(args),
            "acl|load" => self.acl_load(&table),
            "acl|save" => self.acl_save(&table),
            _ => Err(ReplyError::NotSupportedYet(spec.full_name_upper())),
        }
    }

    fn acl_log(&mut self, args: &[Bytes]) -> Answer {
        let count = match args.len() {
            2 => 10,
            3 if args[2].eq_ignore_ascii_case(b"reset") => {
                self.shared
                    .acl
                    .log
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clear();
                return reply(|out| write_simple(out, "OK"));
            }
            3 => match string2ll(&args[2]) {
                Some(n) => usize::try_from(n).unwrap_or(0),
                None => return Err(ReplyError::NotInteger),
            },
            _ => {
                return Err(ReplyError::AclLogArguments);
            }
        };
        let now = super::acl::now_ms();
        let entries: Vec<crate::auth::log::Entry> = self
            .shared
            .acl
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .newest(count)
            .cloned()
            .collect();
        let protocol = self.protocol;
        reply(|out| {
            write_array_len(out, entries.len());
            for entry in &entries {
                write_map_len(out, protocol, 7);
                write_bulk(out, b"count");
                write_integer(out, i64::try_from(entry.count).unwrap_or(i64::MAX));
                write_bulk(out, b"reason");
                write_bulk(out, entry.reason.name().as_bytes());
                write_bulk(out, b"context");
                write_bulk(out, entry.context.as_bytes());
                write_bulk(out, b"object");
                write_bulk(out, &entry.object);
                write_bulk(out, b"username");
                write_bulk(out, &entry.username);
                write_bulk(out, b"age-seconds");
                let age = now.saturating_sub(entry.at_ms) as f64 / 1000.0;
                write_double(out, protocol, age);
                write_bulk(out, b"client-info");
                write_bulk(out, entry.client_info.as_bytes());
            }
        })
    }

    fn acl_cat(&mut self, args: &[Bytes], table: &CommandTable) -> Answer {
        let Some(name) = args.get(2) else {
            return reply(|out| {
                write_array_len(out, AclCategories::ALL.len());
                for (name, _) in AclCategories::ALL {
                    write_bulk(out, name.as_bytes());
                }
            });
        };
        let category = std::str::from_utf8(name)
            .ok()
            .and_then(AclCategories::from_name);
        let Some(category) = category else {
            let shown: Vec<u8> = name.iter().copied().take(128).collect();
            return Err(ReplyError::UnknownCategory(shown.into()));
        };
        let mut names = Vec::new();
        for spec in table.iter() {
            collect_category(spec, category, &mut names);
        }
        reply(|out| {
            write_array_len(out, names.len());
            for name in &names {
                write_bulk(out, name.as_bytes());
            }
        })
    }

    fn acl_dryrun(&mut self, args: &[Bytes], table: &CommandTable) -> Answer {
        let users = self.shared.acl.users.load();
        let Some(user) = users.get(&args[2]).cloned() else {
            return Err(ReplyError::UserNotFound(args[2].clone()));
        };
        let command = &args[3..];
        let spec = match table.resolve(command) {
            Resolved::Command(spec) => spec,
            Resolved::UnknownCommand | Resolved::UnknownSubcommand(_) => {
                return Err(ReplyError::CommandNotFound(args[3].clone()));
            }
        };
        if !spec.arity_ok(command.len()) {
            return Err(ReplyError::WrongArity(spec.name));
        }
        match self.login.dry_run(&user, spec, command) {
            Ok(()) => reply(|out| write_simple(out, "OK")),
            Err(denied) => {
                let text = match denied {
                    Denied::Command => format!(
                        "This user has no permissions to run the '{}' command",
                        spec.name
                    ),
                    Denied::Key(i) => format!(
                        "This user has no permissions to access the '{}' key",
                        String::from_utf8_lossy(&command[i])
                    ),
                    Denied::Channel(i) => format!(
                        "This user has no permissions to access the '{}' channel",
                        String::from_utf8_lossy(&command[i])
                    ),
                };
                reply(|out| write_bulk(out, text.as_bytes()))
            }
        }
    }

    fn acl_setuser(&mut self, args: &[Bytes], table: &CommandTable) -> Answer {
        let name = &args[2];
        if !crate::auth::users::valid_name(name) {
            return Err(ReplyError::BadUsername);
        }
        let acl = &self.shared.acl;
        let result = {
            let _change = acl.change.lock().unwrap_or_else(|e| e.into_inner());
            let mut users = crate::auth::Users::clone(&acl.users.load());
            let result = users.set_user(name, args[3..].iter().map(|a| &a[..]), table);
            if result.is_ok() {
                acl.publish(users);
            }
            result
        };
        match result {
            Ok(()) => reply(|out| write_simple(out, "OK")),
            Err((rule, error)) => Err(ReplyError::AclRule {
                rule: rule.into(),
                error: error.to_string(),
            }),
        }
    }

    fn acl_deluser(&mut self, args: &[Bytes]) -> Answer {
        if args[2..].iter().any(|n| &n[..] == b"default") {
            return Err(ReplyError::DefaultUserUndeletable);
        }
        let acl = &self.shared.acl;
        let removed: Vec<Bytes> = {
            let _change = acl.change.lock().unwrap_or_else(|e| e.into_inner());
            let mut users = crate::auth::Users::clone(&acl.users.load());
            let removed = args[2..]
                .iter()
                .filter(|n| users.remove(n))
                .cloned()
                .collect::<Vec<_>>();
            if !removed.is_empty() {
                acl.publish(users);
            }
            removed
        };
        let count = removed.len() as i64;
        self.deleted = removed;
        reply(|out| write_integer(out, count))
    }

    fn acl_load(&mut self, table: &CommandTable) -> Answer {
        let auth = &self.shared.config.auth;
        if auth.aclfile.is_none() {
            return Err(ReplyError::NoAclFile);
        }
        let acl = &self.shared.acl;
        let result = {
            let _change = acl.change.lock().unwrap_or_else(|e| e.into_inner());
            auth.with_aclfile(&acl.users.load(), table)
                .map(|users| acl.publish(users))
        };
        match result {
            Ok(()) => {
                info!(
                    client = self.client,
                    "ACL LOAD: users reloaded from the aclfile"
                );
                reply(|out| write_simple(out, "OK"))
            }
            Err(e) => Err(ReplyError::AclLoad(e.to_string())),
        }
    }

    fn acl_save(&mut self, table: &CommandTable) -> Answer {
        let Some(path) = self.shared.config.auth.aclfile.clone() else {
            return Err(ReplyError::NoAclFile);
        };
        let text = self.shared.acl.users.load().to_aclfile(table);
        // Write a temp file and rename it over, as redis does, so a crash leaves the old file.
        let temp = path.with_extension("slotproxy-tmp");
        let written = std::fs::write(&temp, &text).and_then(|()| std::fs::rename(&temp, &path));
        match written {
            Ok(()) => reply(|out| write_simple(out, "OK")),
            Err(e) => {
                let _ = std::fs::remove_file(&temp);
                Err(ReplyError::AclSave(e.to_string()))
            }
        }
    }
}

fn collect_category(spec: &CommandSpec, category: AclCategories, out: &mut Vec<&'static str>) {
    if spec.acl_categories.intersects(category) {
        out.push(spec.name);
    }
    for sub in spec.subcommands {
        collect_category(sub, category, out);
    }
}

/// A double as redis' `addReplyDouble` writes it: `%.17g`, a bulk string in RESP2.
fn write_double(out: &mut bytes::BytesMut, protocol: Protocol, value: f64) {
    let text = g17(value);
    match protocol {
        Protocol::Resp2 => write_bulk(out, text.as_bytes()),
        Protocol::Resp3 => {
            out.extend_from_slice(b",");
            out.extend_from_slice(text.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// C's `%.17g` for a finite double.
fn g17(value: f64) -> String {
    if value == 0.0 {
        return "0".to_owned();
    }
    let sci = format!("{value:.16e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s.to_owned()
        }
    };
    if !(-4..17).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{}e{sign}{:02}", trim(mantissa), exp.abs());
    }
    let decimals = usize::try_from(16 - exp).unwrap_or(0);
    trim(&format!("{value:.decimals$}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g17_matches_c() {
        let cases: &[(f64, &str)] = &[
            (2.495, "2.4950000000000001"),
            (2.242, "2.242"),
            (0.0, "0"),
            (1.5, "1.5"),
            (100.0, "100"),
            (0.0001, "0.0001"),
            (0.00001, "1.0000000000000001e-05"),
        ];
        for &(value, want) in cases {
            assert_eq!(g17(value), want, "{value}");
        }
    }

    #[test]
    fn config_sets_of_passwords_files_and_addresses_are_refused() {
        let table = crate::command::CommandTable::builtin();
        let spec = table
            .policy(table.lookup("config|set").expect("known"))
            .handling;
        let args = |line: &str| -> Vec<Bytes> {
            line.split(' ')
                .map(|a| Bytes::copy_from_slice(a.as_bytes()))
                .collect()
        };
        assert!(never_forwarded(spec, &args("CONFIG SET maxmemory 1 requirepass x")).is_some());
        assert!(never_forwarded(spec, &args("CONFIG SET MASTERAUTH x")).is_some());
        assert!(never_forwarded(spec, &args("CONFIG SET dir /tmp")).is_some());
        assert!(never_forwarded(spec, &args("CONFIG SET maxmemory 1")).is_none());
        let get = table
            .policy(table.lookup("config|get").expect("known"))
            .handling;
        assert!(never_forwarded(get, &args("CONFIG GET requirepass")).is_none());
    }
}
