//! Redis' ACL rule syntax (`on`, `>pass`, `~pattern`, `+@read`, ...), applied to a [`User`].
//!
//! A port of redis 7.0's `ACLSetUser`/`ACLSetSelector` without selectors: the same rules, the
//! same effects on the command bits (a container's rule covers its subcommands, a category
//! covers the commands and subcommands in it), and the same error texts, which `ACL SETUSER`
//! prints as `ERR Error in ACL SETUSER modifier '<rule>': <text>`. No I/O.

use super::user::{CommandBits, KeyPattern, PasswordHash, Sanitize, User};
use crate::command::{AclCategories, CommandSpec, CommandTable, Flags};

/// Why a rule was refused; the text is redis' own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// Not a rule.
    #[error("Syntax error")]
    Syntax,
    /// `+foo`, `+@foo` for an unknown command or category.
    #[error("Unknown command or category name in ACL")]
    UnknownCommand,
    /// A key pattern after `allkeys`.
    #[error(
        "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns"
    )]
    KeysAfterAll,
    /// A channel pattern after `allchannels`.
    #[error(
        "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not have any effect. Try 'resetchannels' to start with an empty list of channels"
    )]
    ChannelsAfterAll,
    /// `<pass` / `!hash` for a password the user does not have.
    #[error("The password you are trying to remove from the user does not exist")]
    NoSuchPassword,
    /// `#hash` that is not 64 lowercase hex digits.
    #[error(
        "The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters"
    )]
    BadHash,
    /// `+container|sub|arg`.
    #[error("Allowing first-arg of a subcommand is not supported")]
    FirstArgOfSubcommand,
    /// Selectors (`(...)`, `clearselectors`) are not supported by slotproxy.
    #[error("Selectors are not supported by slotproxy")]
    Selectors,
}

/// Applies each rule in turn to `user`; on the first bad rule, `user` is left unchanged.
///
/// # Errors
/// The bad rule (as given) and why.
pub fn apply_all<'r>(
    user: &mut User,
    rules: impl IntoIterator<Item = &'r [u8]>,
    table: &CommandTable,
) -> Result<(), (Vec<u8>, RuleError)> {
    let mut changed = user.clone();
    for rule in rules {
        apply(&mut changed, rule, table).map_err(|e| (rule.to_vec(), e))?;
    }
    *user = changed;
    Ok(())
}

/// Applies one rule to `user`.
///
/// # Errors
/// [`RuleError`] when the rule is not valid; `user` may then be half changed (use
/// [`apply_all`] for all-or-nothing).
pub fn apply(user: &mut User, rule: &[u8], table: &CommandTable) -> Result<(), RuleError> {
    let lower = rule.to_ascii_lowercase();
    match lower.as_slice() {
        b"on" => user.enabled = true,
        b"off" => user.enabled = false,
        b"skip-sanitize-payload" => user.sanitize = Some(Sanitize::Skip),
        b"sanitize-payload" => user.sanitize = Some(Sanitize::Always),
        b"nopass" => {
            user.nopass = true;
            user.passwords.clear();
        }
        b"resetpass" => {
            user.nopass = false;
            user.passwords.clear();
        }
        b"allkeys" => set_all_keys(user),
        b"resetkeys" => {
            user.all_keys = false;
            user.keys.clear();
        }
        b"allchannels" => set_all_channels(user),
        b"resetchannels" => {
            user.all_channels = false;
            user.channels.clear();
        }
        b"allcommands" | b"+@all" => {
            user.commands = CommandBits::all(table.rows());
            user.first_args.clear();
        }
        b"nocommands" | b"-@all" => {
            user.commands = CommandBits::none(table.rows());
            user.first_args.clear();
        }
        b"reset" => {
            let name = std::mem::take(&mut user.name);
            *user = User::new(&name, table);
        }
        b"clearselectors" => return Err(RuleError::Selectors),
        _ => return apply_prefixed(user, rule, &lower, table),
    }
    Ok(())
}

/// Rules that start with a sigil: passwords, patterns, commands.
fn apply_prefixed(
    user: &mut User,
    rule: &[u8],
    lower: &[u8],
    table: &CommandTable,
) -> Result<(), RuleError> {
    let Some((&sigil, rest)) = rule.split_first() else {
        return Err(RuleError::Syntax);
    };
    match sigil {
        b'>' => {
            let hash = PasswordHash::of(rest);
            add_password(user, hash);
        }
        b'#' => {
            let hash = PasswordHash::from_hex(rest).ok_or(RuleError::BadHash)?;
            add_password(user, hash);
        }
        b'<' => remove_password(user, &PasswordHash::of(rest))?,
        b'!' => {
            let hash = PasswordHash::from_hex(rest).ok_or(RuleError::BadHash)?;
            remove_password(user, &hash)?;
        }
        b'~' | b'%' => add_key_pattern(user, rule)?,
        b'&' => {
            if user.all_channels {
                return Err(RuleError::ChannelsAfterAll);
            }
            if rest == b"*" {
                set_all_channels(user);
            } else if !user.channels.iter().any(|c| **c == *rest) {
                user.channels.push(rest.into());
            }
        }
        b'+' | b'-' if rest.first() == Some(&b'@') => {
            let name = std::str::from_utf8(&lower[2..]).map_err(|_| RuleError::UnknownCommand)?;
            let category = AclCategories::from_name(name).ok_or(RuleError::UnknownCommand)?;
            set_category(user, table, category, sigil == b'+');
        }
        b'+' => allow_command(user, &lower[1..], table)?,
        b'-' => {
            let name = std::str::from_utf8(&lower[1..]).map_err(|_| RuleError::UnknownCommand)?;
            let spec = table.lookup(name).ok_or(RuleError::UnknownCommand)?;
            change_command(user, spec, false);
        }
        b'(' => return Err(RuleError::Selectors),
        _ => return Err(RuleError::Syntax),
    }
    Ok(())
}

fn add_password(user: &mut User, hash: PasswordHash) {
    if !user.passwords.contains(&hash) {
        user.passwords.push(hash);
    }
    user.nopass = false;
}

fn remove_password(user: &mut User, hash: &PasswordHash) -> Result<(), RuleError> {
    let before = user.passwords.len();
    user.passwords.retain(|h| h != hash);
    if user.passwords.len() == before {
        return Err(RuleError::NoSuchPassword);
    }
    Ok(())
}

fn set_all_keys(user: &mut User) {
    user.all_keys = true;
    user.keys.clear();
}

fn set_all_channels(user: &mut User) {
    user.all_channels = true;
    user.channels.clear();
}

/// `~pattern`, `%R~pattern`, `%W~pattern`, `%RW~pattern`.
fn add_key_pattern(user: &mut User, rule: &[u8]) -> Result<(), RuleError> {
    if user.all_keys {
        return Err(RuleError::KeysAfterAll);
    }
    let (read, write, pattern) = if rule[0] == b'%' {
        let (mut read, mut write) = (false, false);
        let mut at = 1;
        loop {
            match rule.get(at).map(u8::to_ascii_uppercase) {
                Some(b'R') if !read => read = true,
                Some(b'W') if !write => write = true,
                Some(b'~') => break,
                _ => return Err(RuleError::Syntax),
            }
            at += 1;
        }
        (read, write, &rule[at + 1..])
    } else {
        (true, true, &rule[1..])
    };
    if read && write && pattern == b"*" {
        set_all_keys(user);
        return Ok(());
    }
    match user.keys.iter_mut().find(|k| *k.pattern == *pattern) {
        Some(existing) => {
            existing.read |= read;
            existing.write |= write;
        }
        None => user.keys.push(KeyPattern {
            pattern: pattern.into(),
            read,
            write,
        }),
    }
    Ok(())
}

/// `+cmd`, `+container|sub`, `+cmd|firstarg`.
fn allow_command(user: &mut User, name: &[u8], table: &CommandTable) -> Result<(), RuleError> {
    let name = std::str::from_utf8(name).map_err(|_| RuleError::UnknownCommand)?;
    let Some((parent, sub)) = name.rsplit_once('|') else {
        let spec = table.lookup(name).ok_or(RuleError::UnknownCommand)?;
        change_command(user, spec, true);
        return Ok(());
    };
    let spec = table.lookup(parent).ok_or(RuleError::UnknownCommand)?;
    if spec.name.contains('|') {
        return Err(RuleError::FirstArgOfSubcommand);
    }
    if sub.is_empty() {
        return Err(RuleError::Syntax);
    }
    if spec.is_container() {
        let spec = table.lookup(name).ok_or(RuleError::UnknownCommand)?;
        change_command(user, spec, true);
        return Ok(());
    }
    // A first argument of an otherwise forbidden command (`+select|0`): redis keeps these
    // (deprecated) so SELECT 0 or DEBUG OBJECT can be allowed alone.
    match user.first_args.iter_mut().find(|(id, _)| *id == spec.id) {
        Some((_, args)) => {
            if !args.iter().any(|a| **a == *sub.as_bytes()) {
                args.push(sub.as_bytes().into());
            }
        }
        None => user.first_args.push((spec.id, vec![sub.as_bytes().into()])),
    }
    Ok(())
}

/// Allows or forbids one row; a container's rule also covers every subcommand.
pub(super) fn change_command(user: &mut User, spec: &CommandSpec, allow: bool) {
    user.commands.set(spec.id, allow);
    user.first_args.retain(|(id, _)| *id != spec.id);
    for sub in spec.subcommands {
        user.commands.set(sub.id, allow);
    }
}

/// `+@category` / `-@category`: every non-module row in the category, subcommands included.
pub(super) fn set_category(
    user: &mut User,
    table: &CommandTable,
    category: AclCategories,
    allow: bool,
) {
    for spec in table.iter() {
        set_category_row(user, spec, category, allow);
    }
}

fn set_category_row(user: &mut User, spec: &CommandSpec, category: AclCategories, allow: bool) {
    if spec.flags.contains(Flags::MODULE) {
        return;
    }
    if spec.acl_categories.intersects(category) {
        change_command(user, spec, allow);
    }
    for sub in spec.subcommands {
        set_category_row(user, sub, category, allow);
    }
}

/// Splits an ACL rule list as the config and aclfile give it (spaces between rules).
pub fn split_rules(line: &str) -> impl Iterator<Item = &[u8]> {
    line.split_ascii_whitespace().map(str::as_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::CommandTable;

    fn user(rules: &str) -> (User, CommandTable) {
        let table = CommandTable::builtin();
        let mut user = User::new("u", &table);
        apply_all(&mut user, split_rules(rules), &table).expect("valid rules");
        (user, table)
    }

    fn allows(user: &User, table: &CommandTable, name: &str) -> bool {
        user.commands
            .allows(table.lookup(name).expect("known command").id)
    }

    #[test]
    fn flags_and_passwords() {
        let (u, _) = user("on >a >b >a");
        assert!(u.enabled && !u.nopass);
        assert_eq!(u.passwords.len(), 2);
        let (u, _) = user("on >a nopass");
        assert!(u.nopass && u.passwords.is_empty());
        let (u, _) = user("nopass >a");
        assert!(!u.nopass, ">pass clears nopass");
        let (u, _) = user(">a >b <a");
        assert_eq!(u.passwords, vec![PasswordHash::of(b"b")]);
        let hex = PasswordHash::of(b"x").hex();
        let (u, _) = user(&format!("#{hex} off resetpass"));
        assert!(u.passwords.is_empty() && !u.enabled && !u.nopass);
    }

    #[test]
    fn bad_rules_name_redis_errors() {
        let table = CommandTable::builtin();
        let cases: &[(&str, RuleError)] = &[
            ("foo", RuleError::Syntax),
            ("+nocmd", RuleError::UnknownCommand),
            ("-nocmd", RuleError::UnknownCommand),
            ("+@nocat", RuleError::UnknownCommand),
            ("#abc", RuleError::BadHash),
            ("<nope", RuleError::NoSuchPassword),
            ("+client|nope", RuleError::UnknownCommand),
            ("+client|id|x", RuleError::FirstArgOfSubcommand),
            ("+get|", RuleError::Syntax),
            ("%X~a", RuleError::Syntax),
            ("%R", RuleError::Syntax),
            ("(~a +get)", RuleError::Selectors),
        ];
        for (rule, want) in cases {
            let mut u = User::new("u", &table);
            assert_eq!(apply(&mut u, rule.as_bytes(), &table), Err(*want), "{rule}");
        }
        let mut u = User::new("u", &table);
        apply(&mut u, b"allkeys", &table).expect("allkeys");
        assert_eq!(apply(&mut u, b"~a", &table), Err(RuleError::KeysAfterAll));
        assert_eq!(apply(&mut u, b"%R~a", &table), Err(RuleError::KeysAfterAll));
        apply(&mut u, b"&*", &table).expect("&*");
        assert_eq!(
            apply(&mut u, b"&a", &table),
            Err(RuleError::ChannelsAfterAll)
        );
    }

    #[test]
    fn apply_all_is_all_or_nothing() {
        let table = CommandTable::builtin();
        let mut u = User::new("u", &table);
        let err = apply_all(&mut u, split_rules("on >x +nocmd"), &table).unwrap_err();
        assert_eq!(err, (b"+nocmd".to_vec(), RuleError::UnknownCommand));
        assert_eq!(u, User::new("u", &table));
    }

    #[test]
    fn key_patterns_merge_access() {
        let (u, _) = user("%R~a ~b %W~a %RW~c");
        let shown: Vec<(&[u8], bool, bool)> = u
            .keys
            .iter()
            .map(|k| (&*k.pattern, k.read, k.write))
            .collect();
        assert_eq!(
            shown,
            vec![
                (&b"a"[..], true, true),
                (&b"b"[..], true, true),
                (&b"c"[..], true, true)
            ]
        );
        let (u, _) = user("~a ~*");
        assert!(u.all_keys && u.keys.is_empty());
        let (u, _) = user("%R~*");
        assert!(!u.all_keys && u.keys.len() == 1);
        let (u, _) = user("allkeys resetkeys ~x");
        assert!(!u.all_keys && u.keys.len() == 1);
    }

    #[test]
    fn commands_categories_and_subcommands() {
        let (u, t) = user("+@all -@dangerous");
        assert!(allows(&u, &t, "get") && allows(&u, &t, "set"));
        assert!(!allows(&u, &t, "flushall") && !allows(&u, &t, "keys"));
        assert!(!allows(&u, &t, "client|kill") && allows(&u, &t, "client|id"));
        assert!(u.commands.future);

        let (u, t) = user("+@read -get");
        assert!(allows(&u, &t, "mget") && !allows(&u, &t, "get") && !allows(&u, &t, "set"));

        let (u, t) = user("+client -client|kill");
        assert!(allows(&u, &t, "client|id") && !allows(&u, &t, "client|kill"));

        let (u, t) = user("+config|get");
        assert!(allows(&u, &t, "config|get") && !allows(&u, &t, "config|set"));
        assert!(!allows(&u, &t, "config"));

        let (u, t) = user("allcommands nocommands +select|0");
        assert!(!allows(&u, &t, "select"));
        assert_eq!(u.first_args.len(), 1);
        let (u, _) = user("+select|0 +select");
        assert!(u.first_args.is_empty(), "+cmd drops its first args");
    }

    #[test]
    fn reset_keeps_name_only() {
        let (mut u, t) = user("on >a ~* &* +@all");
        apply(&mut u, b"reset", &t).expect("reset");
        assert_eq!(u, User::new("u", &t));
    }
}
