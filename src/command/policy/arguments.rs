//! The policy decisions that depend on a request's arguments as well as its row: which
//! `CONFIG SET` parameters are never forwarded, and when `DEBUG` is `DEBUG OBJECT key`.

use bytes::Bytes;

/// `CONFIG SET` parameters never forwarded, even when `config set` is allowed: they would lock
/// slotproxy out of the nodes (passwords, client limits), make nodes write files where a client
/// says (paths), or make the cluster announce addresses slotproxy would then connect to.
const CONFIG_SET_NEVER: &[&str] = &[
    "requirepass",
    "masterauth",
    "masteruser",
    "primaryauth",
    "primaryuser",
    "dir",
    "dbfilename",
    "logfile",
    "appendfilename",
    "appenddirname",
    "aclfile",
    "pidfile",
    "unixsocket",
    "unixsocketperm",
    "cluster-config-file",
    "bind",
    "bind-source-addr",
    "port",
    "maxclients",
    "client-output-buffer-limit",
    "protected-mode",
];

/// Prefixes of `CONFIG SET` parameters never forwarded: TLS files and ports, and the addresses
/// nodes announce.
const CONFIG_SET_NEVER_PREFIXES: &[&str] = &[
    "tls-",
    "cluster-announce-",
    "replica-announce-",
    "slave-announce-",
];

/// The first parameter of a `CONFIG SET param value [param value ...]` that slotproxy never
/// forwards, if any.
pub fn config_set_refused(args: &[Bytes]) -> Option<&Bytes> {
    args.iter().skip(2).step_by(2).find(|param| {
        let param = String::from_utf8_lossy(param).to_ascii_lowercase();
        CONFIG_SET_NEVER.contains(&param.as_str())
            || CONFIG_SET_NEVER_PREFIXES
                .iter()
                .any(|prefix| param.starts_with(prefix))
    })
}

/// `DEBUG OBJECT key` (the arguments of an [`Allowed::Debug`](super::Allowed::Debug) row): about one key, so routed by
/// it like `OBJECT`.
pub fn is_debug_object(args: &[Bytes]) -> bool {
    args.len() == 3 && args[1].eq_ignore_ascii_case(b"object")
}
