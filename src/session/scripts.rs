//! The proxy's own copy of the Lua scripts clients have sent, so a node's `NOSCRIPT` can be
//! answered without the client seeing it.
//!
//! A node forgets its scripts when it restarts, when a replica is promoted (`SCRIPT LOAD` is not
//! replicated) or when a slot moves to a node that never saw them; the client only knows it
//! loaded the script through one address. Every session records the bodies of `SCRIPT LOAD` and
//! `EVAL`/`EVAL_RO` here, keyed by SHA-1 as redis keys them; when `EVALSHA` gets `NOSCRIPT`, the
//! session loads the body on that node and sends the command again (see `settler.rs`). Inside a
//! transaction that would be too late (the commands before it have run), so `EXEC`'s job loads
//! the scripts its `EVALSHA`s name first (see `transaction.rs`).
//!
//! `SCRIPT FLUSH` through the proxy empties the cache too: after it a standalone redis-server
//! answers `NOSCRIPT`, and so must the proxy. A flush sent to a node directly looks like a restart
//! and is recovered from.
//!
//! The cache is bounded by `MAX_SCRIPTS` and `MAX_BYTES`. Eviction is second chance (CLOCK): a
//! script seen again (`EVAL` of the same body, `EVALSHA` of its SHA-1) since it was last looked at
//! is kept for another round, so scripts in use survive a client generating one-off scripts. An
//! evicted script is only a lost chance to recover: the client gets `NOSCRIPT`, as from redis.
//!
//! This module knows nothing about nodes or sessions: bodies in, bodies out.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{PoisonError, RwLock};

use bytes::Bytes;

use crate::command::policy::ScriptUse;

/// Scripts kept at most.
const MAX_SCRIPTS: usize = 10_000;
/// Bytes of script bodies kept at most (64 MiB); a larger body is not cached at all.
const MAX_BYTES: usize = 64 << 20;

/// A script's SHA-1, as `EVALSHA` names it (in hex, any case).
type Sha = [u8; 20];

/// Script bodies by SHA-1, shared by every session.
pub struct ScriptCache {
    inner: RwLock<Inner>,
    max_scripts: usize,
    max_bytes: usize,
}

#[derive(Default)]
struct Inner {
    scripts: HashMap<Sha, Entry>,
    /// Eviction order: oldest first; a script given a second chance moves to the back.
    order: VecDeque<Sha>,
    bytes: usize,
}

struct Entry {
    body: Bytes,
    /// Seen again since eviction last looked at it.
    used: AtomicBool,
}

impl Default for ScriptCache {
    fn default() -> Self {
        Self::with_limits(MAX_SCRIPTS, MAX_BYTES)
    }
}

impl std::fmt::Debug for ScriptCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.read();
        f.debug_struct("ScriptCache")
            .field("scripts", &inner.scripts.len())
            .field("bytes", &inner.bytes)
            .finish()
    }
}

impl ScriptCache {
    /// An empty cache holding at most `max_scripts` scripts and `max_bytes` bytes of bodies.
    pub fn with_limits(max_scripts: usize, max_bytes: usize) -> Self {
        Self {
            inner: RwLock::new(Inner::default()),
            max_scripts,
            max_bytes,
        }
    }

    /// Updates the cache for a client request: records the body of `SCRIPT LOAD`, `EVAL` and
    /// `EVAL_RO`, marks the script of `EVALSHA`/`EVALSHA_RO` as in use, and forgets everything
    /// on `SCRIPT FLUSH`. `script` is the command's row's [`ScriptUse`], `args` the request's
    /// arguments, name first.
    pub fn observe(&self, script: ScriptUse, args: &[Bytes]) {
        match script {
            ScriptUse::Body(at) => {
                if let Some(body) = args.get(at) {
                    self.remember(body);
                }
            }
            ScriptUse::Sha => {
                if let Some(sha) = args.get(1).and_then(|sha| parse_sha(sha)) {
                    self.touch(&sha);
                }
            }
            ScriptUse::Flush => self.clear(),
        }
    }

    /// Records `body` under its SHA-1, evicting older scripts if the cache is full.
    pub fn remember(&self, body: &[u8]) {
        if body.len() > self.max_bytes || self.max_scripts == 0 {
            return;
        }
        let sha = sha1(body);
        if self.touch(&sha) {
            return;
        }
        let mut inner = self.write();
        if inner.scripts.contains_key(&sha) {
            return; // another session added it since the read above
        }
        // A second chance clears a flag, so after at most two rounds something is evicted.
        let mut budget = 2 * inner.order.len();
        while inner.scripts.len() >= self.max_scripts || inner.bytes + body.len() > self.max_bytes {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            let keep = budget > 0
                && inner
                    .scripts
                    .get(&oldest)
                    .is_some_and(|e| e.used.swap(false, Ordering::Relaxed));
            budget = budget.saturating_sub(1);
            if keep {
                inner.order.push_back(oldest);
            } else if let Some(evicted) = inner.scripts.remove(&oldest) {
                inner.bytes -= evicted.body.len();
            }
        }
        // A copy: the request's arguments are slices of the client's read buffer, which a
        // cached slice would keep alive whole.
        let body = Bytes::copy_from_slice(body);
        inner.bytes += body.len();
        inner.order.push_back(sha);
        inner.scripts.insert(
            sha,
            Entry {
                body,
                used: AtomicBool::new(false),
            },
        );
    }

    /// The body of the script `EVALSHA` names by `sha` (40 hex digits, any case), if known.
    pub fn body(&self, sha: &[u8]) -> Option<Bytes> {
        let sha = parse_sha(sha)?;
        let inner = self.read();
        let entry = inner.scripts.get(&sha)?;
        entry.used.store(true, Ordering::Relaxed);
        Some(entry.body.clone())
    }

    /// Whether the script `sha` names (40 hex digits, any case) is known, without counting
    /// it as used.
    pub fn knows(&self, sha: &[u8]) -> bool {
        parse_sha(sha).is_some_and(|sha| self.read().scripts.contains_key(&sha))
    }

    /// Forgets every script (`SCRIPT FLUSH`).
    pub fn clear(&self) {
        let mut inner = self.write();
        inner.scripts.clear();
        inner.order.clear();
        inner.bytes = 0;
    }

    /// Scripts cached now.
    pub fn len(&self) -> usize {
        self.read().scripts.len()
    }

    /// True when no script is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Marks the script in use; false when it is not cached.
    fn touch(&self, sha: &Sha) -> bool {
        match self.read().scripts.get(sha) {
            Some(entry) => {
                entry.used.store(true, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    // No lock is held across a call that can panic, so a poisoned lock still holds a
    // consistent cache.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The SHA-1 of `body`, which redis uses as the script's name.
fn sha1(body: &[u8]) -> Sha {
    sha1_smol::Sha1::from(body).digest().bytes()
}

/// 40 hex digits, either case (redis lowercases `EVALSHA`'s argument), as a SHA-1.
fn parse_sha(hex: &[u8]) -> Option<Sha> {
    if hex.len() != 40 {
        return None;
    }
    let mut sha = [0; 20];
    for (byte, pair) in sha.iter_mut().zip(hex.chunks_exact(2)) {
        let digit = |c: u8| char::from(c).to_digit(16);
        *byte = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
    }
    Some(sha)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = b"return 1";
    /// `redis-cli SCRIPT LOAD "return 1"`.
    const BODY_SHA: &[u8] = b"e0e1f9fabfc9d4800c877a703b823ac0578ff8db";

    fn args(list: &[&'static str]) -> Vec<Bytes> {
        list.iter()
            .map(|a| Bytes::from_static(a.as_bytes()))
            .collect()
    }

    /// Observes a request as the session does: through its row's policy.
    fn observe(cache: &ScriptCache, name: &str, args: &[Bytes]) {
        let table = crate::command::CommandTable::builtin();
        let spec = table.lookup(name).expect("command in table");
        if let Some(script) = table.policy(spec).scripts {
            cache.observe(script, args);
        }
    }

    #[test]
    fn sha1_names_scripts_as_redis_does() {
        assert_eq!(parse_sha(BODY_SHA), Some(sha1(BODY)));
        // FIPS 180 test vector.
        assert_eq!(
            parse_sha(b"A9993E364706816ABA3E25717850C26C9CD0D89D"),
            Some(sha1(b"abc"))
        );
        assert_eq!(parse_sha(b"e0e1"), None);
        assert_eq!(parse_sha(&[b'g'; 40]), None);
    }

    #[test]
    fn eval_and_script_load_record_bodies_and_flush_forgets_them() {
        let cache = ScriptCache::default();
        observe(&cache, "eval", &args(&["EVAL", "return 1", "0"]));
        assert_eq!(cache.body(BODY_SHA).as_deref(), Some(BODY));
        assert_eq!(
            cache.body(&BODY_SHA.to_ascii_uppercase()).as_deref(),
            Some(BODY)
        );
        observe(
            &cache,
            "script|load",
            &args(&["SCRIPT", "LOAD", "return 2"]),
        );
        observe(&cache, "eval_ro", &args(&["EVAL_RO", "return 1", "0"]));
        assert_eq!(cache.len(), 2);
        observe(&cache, "get", &args(&["GET", "return 3"]));
        assert_eq!(cache.len(), 2);
        observe(&cache, "script|flush", &args(&["SCRIPT", "FLUSH"]));
        assert!(cache.is_empty());
        assert_eq!(cache.body(BODY_SHA), None);
    }

    #[test]
    fn full_cache_evicts_the_oldest_unused_script() {
        let cache = ScriptCache::with_limits(2, 1024);
        cache.remember(b"return 1");
        cache.remember(b"return 2");
        // `return 1` is used again, so `return 2` goes when a third arrives.
        observe(
            &cache,
            "evalsha",
            &args(&["EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "0"]),
        );
        cache.remember(b"return 3");
        assert_eq!(cache.len(), 2);
        assert!(cache.body(BODY_SHA).is_some());
        let hex = |body: &[u8]| {
            sha1(body)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        assert!(cache.body(hex(b"return 2").as_bytes()).is_none());
        assert!(cache.body(hex(b"return 3").as_bytes()).is_some());
        // Every script used: eviction still makes room.
        cache.remember(b"return 4");
        assert_eq!(cache.len(), 2);
        assert!(cache.body(hex(b"return 4").as_bytes()).is_some());
    }

    #[test]
    fn byte_limit_bounds_the_cache() {
        let cache = ScriptCache::with_limits(100, 20);
        cache.remember(&[b'x'; 21]);
        assert!(cache.is_empty(), "a body over the limit is not cached");
        cache.remember(&[b'a'; 12]);
        cache.remember(&[b'b'; 12]);
        assert_eq!(cache.len(), 1, "the older body made room");
    }
}
