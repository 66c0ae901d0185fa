//! A [`User`] printed back as rules, as redis 7.0's `ACL LIST` and `ACL GETUSER` print it.
//!
//! The command rules are rebuilt from the bits with redis' own heuristic
//! (`ACLDescribeSelectorCommandRules`): start from `+@all` or `-@all`, add the best-fitting
//! categories in redis' category order, then the single commands that still differ. Redis
//! lists those single commands in its hash table's order, which is random per process;
//! here they come in table order. No I/O.

use super::rules::{change_command, set_category};
use super::user::{CommandBits, KeyPattern, Sanitize, User};
use crate::command::{AclCategories, CommandSpec, CommandTable};

/// The flags `ACL GETUSER` lists (`on`/`off`, `nopass`, the sanitize flag).
pub fn flags(user: &User) -> Vec<&'static str> {
    let mut flags = vec![if user.enabled { "on" } else { "off" }];
    if user.nopass {
        flags.push("nopass");
    }
    match user.sanitize {
        Some(Sanitize::Skip) => flags.push("skip-sanitize-payload"),
        Some(Sanitize::Always) => flags.push("sanitize-payload"),
        None => {}
    }
    flags
}

/// The user as one `ACL LIST` line (`user <name> <rules>`), also the aclfile format.
pub fn acl_line(user: &User, table: &CommandTable) -> Vec<u8> {
    let mut line = format!("user {} ", user.name).into_bytes();
    for flag in flags(user) {
        line.extend_from_slice(flag.as_bytes());
        line.push(b' ');
    }
    for hash in &user.passwords {
        line.push(b'#');
        line.extend_from_slice(hash.hex().as_bytes());
        line.push(b' ');
    }
    if user.all_keys {
        line.extend_from_slice(b"~* ");
    } else {
        for key in &user.keys {
            push_key_pattern(&mut line, key);
            line.push(b' ');
        }
    }
    if user.all_channels {
        line.extend_from_slice(b"&* ");
    } else {
        line.extend_from_slice(b"resetchannels ");
        for channel in &user.channels {
            line.push(b'&');
            line.extend_from_slice(channel);
            line.push(b' ');
        }
    }
    line.extend_from_slice(command_rules(user, table).as_bytes());
    line
}

/// The `keys` field of `ACL GETUSER`: `~*`, or the patterns separated by spaces.
pub fn keys(user: &User) -> Vec<u8> {
    if user.all_keys {
        return b"~*".to_vec();
    }
    let mut out = Vec::new();
    for (i, key) in user.keys.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        push_key_pattern(&mut out, key);
    }
    out
}

/// The `channels` field of `ACL GETUSER`: `&*`, or the patterns separated by spaces.
pub fn channels(user: &User) -> Vec<u8> {
    if user.all_channels {
        return b"&*".to_vec();
    }
    let mut out = Vec::new();
    for (i, channel) in user.channels.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.push(b'&');
        out.extend_from_slice(channel);
    }
    out
}

fn push_key_pattern(out: &mut Vec<u8>, key: &KeyPattern) {
    if !(key.read && key.write) {
        out.push(b'%');
        if key.read {
            out.push(b'R');
        }
        if key.write {
            out.push(b'W');
        }
    }
    out.push(b'~');
    out.extend_from_slice(&key.pattern);
}

/// The command rules (`+@all -@dangerous`), as `ACL GETUSER`'s `commands` field.
pub fn command_rules(user: &User, table: &CommandTable) -> String {
    let rows = table.rows();
    let additive = !user.commands.future;
    let mut rules = String::from(if additive { "-@all" } else { "+@all" });
    // `fake` replays the rules emitted so far; `temp` is the user with the applied categories
    // undone, so each category is judged on the commands not yet explained.
    let mut fake = User::new("", table);
    fake.commands = if additive {
        CommandBits::none(rows)
    } else {
        CommandBits::all(rows)
    };
    let mut temp = user.clone();
    let mut applied = [false; AclCategories::ALL.len()];
    loop {
        let mut best = None;
        let (mut min_diff, mut max_same) = (usize::MAX, 0);
        for (i, &(_, category)) in AclCategories::ALL.iter().enumerate() {
            if applied[i] {
                continue;
            }
            let (on, off) = count_category(&temp.commands, table, category);
            let (diff, same) = if additive { (off, on) } else { (on, off) };
            if same > diff && (diff < min_diff || (diff == min_diff && same > max_same)) {
                best = Some(i);
                min_diff = diff;
                max_same = same;
            }
        }
        let Some(i) = best else { break };
        let (name, category) = AclCategories::ALL[i];
        set_category(&mut fake, table, category, additive);
        set_category(&mut temp, table, category, !additive);
        rules.push_str(if additive { " +@" } else { " -@" });
        rules.push_str(name);
        applied[i] = true;
    }
    for spec in table.iter() {
        single_commands(user, &mut fake, spec, &mut rules);
    }
    rules
}

/// Counts the rows of `category` that `bits` allows (on) and forbids (off).
fn count_category(
    bits: &CommandBits,
    table: &CommandTable,
    category: AclCategories,
) -> (usize, usize) {
    fn walk(
        bits: &CommandBits,
        spec: &CommandSpec,
        category: AclCategories,
        on: &mut usize,
        off: &mut usize,
    ) {
        if spec.acl_categories.intersects(category) {
            if bits.allows(spec.id) {
                *on += 1;
            } else {
                *off += 1;
            }
        }
        for sub in spec.subcommands {
            walk(bits, sub, category, on, off);
        }
    }
    let (mut on, mut off) = (0, 0);
    for spec in table.iter() {
        walk(bits, spec, category, &mut on, &mut off);
    }
    (on, off)
}

/// Emits `+cmd`/`-cmd` where `fake` still differs from `user`, then first-arg rules.
fn single_commands(user: &User, fake: &mut User, spec: &CommandSpec, rules: &mut String) {
    let wanted = user.commands.allows(spec.id);
    if wanted != fake.commands.allows(spec.id) {
        rules.push_str(if wanted { " +" } else { " -" });
        rules.push_str(spec.name);
        change_command(fake, spec, wanted);
    }
    for sub in spec.subcommands {
        single_commands(user, fake, sub, rules);
    }
    if !wanted && let Some((_, args)) = user.first_args.iter().find(|(id, _)| *id == spec.id) {
        for arg in args {
            rules.push_str(" +");
            rules.push_str(spec.name);
            rules.push('|');
            rules.push_str(&String::from_utf8_lossy(arg));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::rules::{apply_all, split_rules};

    fn described(rules: &str) -> String {
        let table = CommandTable::builtin();
        let mut user = User::new("u", &table);
        apply_all(&mut user, split_rules(rules), &table).expect("valid rules");
        String::from_utf8(acl_line(&user, &table)).expect("utf-8")
    }

    /// Expected lines are what redis-server 7.0.15 printed for the same rules.
    #[test]
    fn acl_list_lines_match_redis() {
        let cases: &[(&str, &str)] = &[
            (
                "on >secret ~revenue:* &alerts +@all -@dangerous",
                "user u on #2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b ~revenue:* resetchannels &alerts +@all -@dangerous",
            ),
            ("on nopass ~* &* +@all", "user u on nopass ~* &* +@all"),
            ("", "user u off resetchannels -@all"),
            (
                "allkeys +get|x +select|0",
                "user u off ~* resetchannels -@all +get|x +select|0",
            ),
            (
                "skip-sanitize-payload &* +@all -client +client|id resetkeys %RW~a %R~b ~c %W~c",
                "user u off skip-sanitize-payload ~a %R~b ~c &* +@all -client +client|id",
            ),
            (
                "+@hash -hset",
                "user u off resetchannels -@all +@hash -hset",
            ),
            (
                "%R~r:* %W~w:* +get",
                "user u off %R~r:* %W~w:* resetchannels -@all +get",
            ),
        ];
        for (rules, want) in cases {
            assert_eq!(described(rules), *want, "{rules}");
        }
    }

    #[test]
    fn getuser_fields() {
        let table = CommandTable::builtin();
        let mut user = User::new("u", &table);
        apply_all(
            &mut user,
            split_rules("on nopass %R~r:* %W~w:* &a &b"),
            &table,
        )
        .expect("rules");
        assert_eq!(flags(&user), ["on", "nopass"]);
        assert_eq!(keys(&user), b"%R~r:* %W~w:*");
        assert_eq!(channels(&user), b"&a &b");
        assert_eq!(command_rules(&user, &table), "-@all");
    }
}
