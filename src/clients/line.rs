//! One `CLIENT LIST` / `CLIENT INFO` line.

use std::net::SocketAddr;

use bytes::Bytes;

use super::entry::ClientEntry;

/// The line of the client behind `entry` (with its newline), whose last command is `command`
/// (`NULL` before the first, as redis prints it).
///
/// The fields are redis-server 7.0's, in its order, then 7.2's `lib-name`/`lib-ver` (slotproxy
/// accepts `CLIENT SETINFO`) and the totals later versions print (`tot-net-in`,
/// `tot-net-out`, `tot-cmds`). `omem` is the reply bytes slotproxy holds for the client (unread,
/// or on their way from the nodes) and `tot-mem` adds its input buffer: what
/// `max_output_buffer_bytes` and `max_client_memory_bytes` count. Other buffer fields, which
/// describe redis' own client structures, are 0.
pub fn client_line(entry: &ClientEntry, command: &str) -> String {
    let profile = entry.profile().clone();
    let text = |b: &Option<Bytes>| {
        b.as_ref()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default()
    };
    let addr = |a: Option<SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
    let (net_in, net_out, commands) = entry.totals();
    let [sub, psub, ssub] = profile.subscriptions;
    format!(
        "id={} addr={} laddr={} fd={} name={} age={} idle={} flags={} db=0 sub={sub} \
         psub={psub} ssub={ssub} multi={} qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 \
         obl=0 oll=0 omem={} tot-mem={} events=r cmd={command} user={} redir={} resp={} \
         lib-name={} lib-ver={} tot-net-in={net_in} tot-net-out={net_out} tot-cmds={commands}\n",
        entry.id,
        addr(entry.peer),
        addr(entry.local),
        entry.fd,
        text(&profile.name),
        entry.age_secs(),
        entry.idle_secs(),
        profile.flags.letters(),
        profile.multi,
        entry.memory().output(),
        entry.memory().usage(),
        profile.user,
        profile.redir,
        profile.resp,
        text(&profile.lib_name),
        text(&profile.lib_ver),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::{Flags, Profile};

    #[test]
    fn a_line_has_redis_fields_in_order() {
        let entry = ClientEntry::new(
            7,
            Some(([127, 0, 0, 1], 5000).into()),
            Some(([127, 0, 0, 1], 6379).into()),
            12,
            crate::clients::entry::tests::budget(),
        );
        entry.set_profile(Profile {
            name: Some(Bytes::from_static(b"worker")),
            user: "alice".into(),
            flags: Flags::default().with(Flags::PUBSUB, true),
            subscriptions: [2, 1, 0],
            multi: -1,
            resp: 3,
            redir: -1,
            ..Profile::default()
        });
        entry.read(10, std::time::Instant::now());
        entry.command(0);
        let line = client_line(&entry, "get");
        let keys: Vec<&str> = line
            .split_whitespace()
            .map(|f| f.split_once('=').map_or(f, |(k, _)| k))
            .collect();
        assert_eq!(
            keys.join(" "),
            "id addr laddr fd name age idle flags db sub psub ssub multi qbuf qbuf-free argv-mem \
             multi-mem rbs rbp obl oll omem tot-mem events cmd user redir resp lib-name lib-ver \
             tot-net-in tot-net-out tot-cmds"
        );
        assert!(line.starts_with(
            "id=7 addr=127.0.0.1:5000 laddr=127.0.0.1:6379 fd=12 name=worker age=0 idle=0 \
             flags=P db=0 sub=2 psub=1 ssub=0 multi=-1 "
        ));
        assert!(line.contains(" cmd=get user=alice redir=-1 resp=3 lib-name= lib-ver= "));
        assert!(line.ends_with(" tot-net-in=10 tot-net-out=0 tot-cmds=1\n"));
    }
}
