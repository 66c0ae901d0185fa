//! An ACL user as redis 7.0 keeps one: flags, password hashes, and one selector (commands,
//! keys, channels), precomputed so a permission check is a few bit tests and glob matches.
//!
//! Rules change a user (`rules.rs`), `check.rs` asks it, `describe.rs` prints it back. No I/O.
//! Passwords are kept only as SHA-256 hashes, compared in constant time, and never printed by
//! `Debug`.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::command::{CommandId, CommandTable};

/// A password's SHA-256, as redis stores it (`#<hex>` in `ACL LIST`).
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash([u8; 32]);

impl PasswordHash {
    /// The hash of `password`.
    pub fn of(password: &[u8]) -> PasswordHash {
        PasswordHash(Sha256::digest(password).into())
    }

    /// Parses 64 lowercase hex digits (the form `#<hash>` rules and `ACL GETUSER` use).
    pub fn from_hex(hex: &[u8]) -> Option<PasswordHash> {
        if hex.len() != 64 {
            return None;
        }
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
            *byte = digit(pair[0])? << 4 | digit(pair[1])?;
        }
        Some(PasswordHash(out))
    }

    /// 64 lowercase hex digits.
    pub fn hex(&self) -> String {
        use std::fmt::Write;
        self.0.iter().fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }

    /// Whether both hashes are equal, in time independent of where they differ.
    pub fn matches(&self, other: &PasswordHash) -> bool {
        let diff = self
            .0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(..)")
    }
}

/// Allowed commands: one bit per command table row, plus whether rows the table did not have
/// when the rules were applied (commands learned later) are allowed (`+@all` allows them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandBits {
    words: Vec<u64>,
    /// Set by `+@all`/`allcommands`, cleared by `-@all`/`nocommands`.
    pub(super) future: bool,
}

impl CommandBits {
    /// No command allowed, sized for `rows` table rows.
    pub fn none(rows: usize) -> CommandBits {
        CommandBits {
            words: vec![0; rows.div_ceil(64)],
            future: false,
        }
    }

    /// Every command allowed, now and later.
    pub fn all(rows: usize) -> CommandBits {
        CommandBits {
            words: vec![u64::MAX; rows.div_ceil(64)],
            future: true,
        }
    }

    /// Whether the row `id` is allowed.
    #[inline]
    pub fn allows(&self, id: CommandId) -> bool {
        let id = usize::from(id.0);
        match self.words.get(id / 64) {
            Some(word) => word & (1 << (id % 64)) != 0,
            None => self.future,
        }
    }

    /// Allows or forbids the row `id`.
    pub fn set(&mut self, id: CommandId, allow: bool) {
        let id = usize::from(id.0);
        if id / 64 >= self.words.len() {
            let fill = if self.future { u64::MAX } else { 0 };
            self.words.resize(id / 64 + 1, fill);
        }
        let bit = 1 << (id % 64);
        if allow {
            self.words[id / 64] |= bit;
        } else {
            self.words[id / 64] &= !bit;
        }
    }
}

/// A key pattern with the access it grants (`~p` is read and write, `%R~p` read only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPattern {
    /// The glob.
    pub pattern: Box<[u8]>,
    /// Grants reading.
    pub read: bool,
    /// Grants writing.
    pub write: bool,
}

/// `sanitize-payload` / `skip-sanitize-payload` (RESTORE payload checks; shown, not enforced here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sanitize {
    /// `sanitize-payload`.
    Always,
    /// `skip-sanitize-payload`.
    Skip,
}

/// One user: who may log in as it, and what it may touch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The user name (binary-safe in redis; kept as given).
    pub name: String,
    /// `on`: the user may authenticate.
    pub enabled: bool,
    /// `nopass`: any password authenticates.
    pub nopass: bool,
    /// `skip-sanitize-payload` / `sanitize-payload`, if set.
    pub sanitize: Option<Sanitize>,
    /// Hashes of the accepted passwords, in the order they were added.
    pub passwords: Vec<PasswordHash>,
    /// Allowed commands.
    pub commands: CommandBits,
    /// First arguments allowed for otherwise forbidden commands (`+select|0`), lowercase.
    pub first_args: Vec<(CommandId, Vec<Box<[u8]>>)>,
    /// `allkeys` / `~*`: every key, whatever the patterns say.
    pub all_keys: bool,
    /// Key patterns, in the order they were added.
    pub keys: Vec<KeyPattern>,
    /// `allchannels` / `&*`: every channel.
    pub all_channels: bool,
    /// Channel patterns, in the order they were added.
    pub channels: Vec<Box<[u8]>>,
}

impl User {
    /// A new user as `ACL SETUSER name` creates it: off, no password, nothing allowed.
    pub fn new(name: &str, table: &CommandTable) -> User {
        User {
            name: name.to_owned(),
            enabled: false,
            nopass: false,
            sanitize: None,
            passwords: Vec::new(),
            commands: CommandBits::none(table.rows()),
            first_args: Vec::new(),
            all_keys: false,
            keys: Vec::new(),
            all_channels: false,
            channels: Vec::new(),
        }
    }

    /// The `default` user of a redis-server without configuration: `on nopass ~* &* +@all`.
    pub fn default_user(table: &CommandTable) -> User {
        User {
            enabled: true,
            nopass: true,
            commands: CommandBits::all(table.rows()),
            all_keys: true,
            all_channels: true,
            ..User::new("default", table)
        }
    }

    /// Whether `password` logs this user in (enabled, and nopass or a matching hash).
    ///
    /// Every stored hash is compared, so the time taken does not say which one matched.
    pub fn authenticates(&self, password: &[u8]) -> bool {
        if !self.enabled {
            return false;
        }
        if self.nopass {
            return true;
        }
        let given = PasswordHash::of(password);
        self.passwords
            .iter()
            .fold(false, |found, hash| hash.matches(&given) | found)
    }

    /// Whether clients of this user must authenticate (it is off, or needs a password).
    pub fn requires_auth(&self) -> bool {
        !self.enabled || !self.nopass
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hash_hex_round_trip() {
        let hash = PasswordHash::of(b"secret");
        // sha256("secret"), as `ACL LIST` of redis-server prints it for `>secret`.
        assert_eq!(
            hash.hex(),
            "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
        );
        assert_eq!(PasswordHash::from_hex(hash.hex().as_bytes()), Some(hash));
        for bad in ["", "abc", &"A".repeat(64), &"g".repeat(64), &"a".repeat(65)] {
            assert_eq!(PasswordHash::from_hex(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn debug_never_shows_passwords() {
        let table = CommandTable::builtin();
        let mut user = User::new("u", &table);
        user.passwords.push(PasswordHash::of(b"hunter2"));
        let shown = format!("{user:?}");
        assert!(!shown.contains("hunter2"));
        assert!(!shown.contains(&PasswordHash::of(b"hunter2").hex()));
    }

    #[test]
    fn authenticates_by_hash_nopass_and_enabled() {
        let table = CommandTable::builtin();
        let mut user = User::new("u", &table);
        user.passwords.push(PasswordHash::of(b"a"));
        user.passwords.push(PasswordHash::of(b"b"));
        assert!(!user.authenticates(b"a"), "off users never authenticate");
        user.enabled = true;
        assert!(user.authenticates(b"a"));
        assert!(user.authenticates(b"b"));
        assert!(!user.authenticates(b"c"));
        user.nopass = true;
        assert!(user.authenticates(b"anything"));
        assert!(!user.requires_auth());
    }

    #[test]
    fn command_bits_cover_future_rows() {
        let mut bits = CommandBits::none(70);
        assert!(!bits.allows(CommandId(3)));
        bits.set(CommandId(3), true);
        bits.set(CommandId(69), true);
        assert!(bits.allows(CommandId(3)) && bits.allows(CommandId(69)));
        assert!(!bits.allows(CommandId(500)), "unknown rows follow `future`");
        let mut all = CommandBits::all(70);
        assert!(all.allows(CommandId(500)));
        all.set(CommandId(200), false);
        assert!(!all.allows(CommandId(200)));
        assert!(all.allows(CommandId(199)));
    }
}
