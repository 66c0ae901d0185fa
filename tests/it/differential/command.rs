//! One generated command (`Cmd`): its arguments, keys and how its reply is compared.

use super::key_name;
use super::normalise::Norm;

/// One generated command and what the runner needs to know about it.
#[derive(Debug, Clone)]
pub(super) struct Cmd {
    pub(super) args: Vec<Vec<u8>>,
    /// Indices of the keys among `args` (for the slot check).
    pub(super) keys: Vec<usize>,
    /// Served by the proxy when its keys span slots: split by slot (MGET, MSET, DEL, EXISTS,
    /// TOUCH, UNLINK) or computed from the keys' values (SUNION, ZUNION, PFCOUNT...).
    pub(super) split: bool,
    pub(super) norm: Norm,
    /// May be queued inside MULTI: not keyspace-wide, and its reply needs no normalising.
    pub(super) in_tx: bool,
    /// May get its last argument dropped or repeated, or its name's case changed.
    pub(super) mutable: bool,
    /// Repeating the last argument would make it a key (`BLPOP key... timeout`): a cluster
    /// would answer CROSSSLOT where redis-server does not, so only drop it.
    pub(super) keys_before_last: bool,
}

impl Cmd {
    pub(super) fn new(name: &str) -> Cmd {
        Cmd {
            args: vec![name.as_bytes().to_vec()],
            keys: Vec::new(),
            split: false,
            norm: Norm::Exact,
            in_tx: true,
            mutable: true,
            keys_before_last: false,
        }
    }

    pub(super) fn arg(mut self, arg: impl AsRef<[u8]>) -> Cmd {
        self.args.push(arg.as_ref().to_vec());
        self
    }

    pub(super) fn key(mut self, key: usize) -> Cmd {
        self.args.push(key_name(key).into_bytes());
        self.keys.push(key);
        self
    }

    pub(super) fn keys(mut self, keys: &[usize]) -> Cmd {
        for &key in keys {
            self = self.key(key);
        }
        self
    }

    /// `numkeys key...`.
    pub(super) fn numkeys(self, keys: &[usize]) -> Cmd {
        self.arg(keys.len().to_string()).keys(keys)
    }

    pub(super) fn split(mut self) -> Cmd {
        self.split = true;
        self
    }

    /// Computed by the proxy from each key's value when its keys span slots.
    pub(super) fn computed(self) -> Cmd {
        self.split()
    }

    pub(super) fn unordered_scan(mut self) -> Cmd {
        self.norm = Norm::UnorderedScan;
        self.in_tx = false;
        self
    }

    pub(super) fn unordered(mut self) -> Cmd {
        self.norm = Norm::Unordered;
        self.in_tx = false;
        self
    }

    pub(super) fn deadline(mut self) -> Cmd {
        self.norm = Norm::Deadline;
        // Inside EXEC's reply the value could not be normalised.
        self.in_tx = false;
        self
    }

    pub(super) fn keyspace_wide(mut self) -> Cmd {
        self.in_tx = false;
        self
    }

    pub(super) fn keys_before_last(mut self) -> Cmd {
        self.keys_before_last = true;
        self
    }

    pub(super) fn fixed(mut self) -> Cmd {
        self.mutable = false;
        self
    }

    pub(super) fn show(&self) -> String {
        show_args(&self.args)
    }
}

pub(super) fn show_args(args: &[Vec<u8>]) -> String {
    args.iter()
        .map(|arg| {
            let text = arg.escape_ascii().to_string();
            if text.is_empty() || text.contains(' ') || text.contains('"') {
                format!("\"{}\"", text.replace('"', "\\\""))
            } else {
                text
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}
