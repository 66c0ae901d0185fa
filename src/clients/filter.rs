//! The filters of `CLIENT LIST` and `CLIENT KILL`, parsed as redis-server 7.0 parses them (same
//! errors, same order of checks).

use bytes::Bytes;

use super::entry::{ClientEntry, Flags};
use crate::error::ReplyError;
use crate::protocol::view::string2ll;

/// Redis' client types; slotproxy's clients are `normal` or `pubsub`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientType {
    /// Neither subscribed nor a replica.
    Normal,
    /// A replica (`replica` or `slave`): never a slotproxy client.
    Replica,
    /// Subscribed to a channel, pattern or shard channel.
    PubSub,
    /// A primary's replication link: never a slotproxy client.
    Master,
}

impl ClientType {
    /// The type `name` names (any case), as redis' `getClientTypeByName`.
    ///
    /// # Errors
    /// `UnknownClientType` for any other name.
    pub fn parse(name: &Bytes) -> Result<ClientType, ReplyError> {
        let lower = name.to_ascii_lowercase();
        Ok(match lower.as_slice() {
            b"normal" => ClientType::Normal,
            b"slave" | b"replica" => ClientType::Replica,
            b"pubsub" => ClientType::PubSub,
            b"master" => ClientType::Master,
            _ => return Err(ReplyError::UnknownClientType(name.clone())),
        })
    }

    /// The type of the client behind `entry`.
    pub fn of(entry: &ClientEntry) -> ClientType {
        if entry.profile().flags.contains(Flags::PUBSUB) {
            ClientType::PubSub
        } else {
            ClientType::Normal
        }
    }
}

/// Which clients `CLIENT LIST` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListFilter {
    /// Every client.
    All,
    /// Clients of one type.
    Type(ClientType),
    /// These ids, in this order (repeats repeat, as in redis).
    Ids(Vec<i64>),
}

impl ListFilter {
    /// Parses `CLIENT LIST`'s arguments after `LIST`.
    ///
    /// # Errors
    /// Redis' errors: unknown type, an id that is not an integer, anything else a syntax error.
    pub fn parse(args: &[Bytes]) -> Result<ListFilter, ReplyError> {
        match args {
            [] => Ok(ListFilter::All),
            [option, kind] if option.eq_ignore_ascii_case(b"type") => {
                ClientType::parse(kind).map(ListFilter::Type)
            }
            [option, ids @ ..] if !ids.is_empty() && option.eq_ignore_ascii_case(b"id") => ids
                .iter()
                .map(|id| string2ll(id).ok_or(ReplyError::InvalidClientId))
                .collect::<Result<Vec<_>, _>>()
                .map(ListFilter::Ids),
            _ => Err(ReplyError::Syntax),
        }
    }
}

/// Which clients `CLIENT KILL` closes: every given filter must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KillFilter {
    /// `ip:port` of the client (`ADDR`, or the old form's one argument).
    pub addr: Option<Bytes>,
    /// `ip:port` of slotproxy's side (`LADDR`).
    pub laddr: Option<Bytes>,
    /// `TYPE`.
    pub kind: Option<ClientType>,
    /// `ID`.
    pub id: Option<u64>,
    /// `USER`.
    pub user: Option<Bytes>,
    /// `SKIPME yes` (the default of the new form): never the caller.
    pub skip_me: bool,
}

impl KillFilter {
    /// The old form, `CLIENT KILL ip:port`: may kill the caller.
    pub fn old(addr: Bytes) -> KillFilter {
        KillFilter {
            addr: Some(addr),
            ..KillFilter::default()
        }
    }

    /// Parses the new form's `<filter> <value>` pairs (the arguments after `KILL`);
    /// `user_exists` says whether a `USER` names a user.
    ///
    /// # Errors
    /// Redis' errors, at the first bad pair: an id that is not a positive integer, an unknown
    /// type or user, a `SKIPME` other than yes/no, an unknown filter or a filter without value
    /// (syntax error).
    pub fn parse(
        args: &[Bytes],
        user_exists: impl Fn(&[u8]) -> bool,
    ) -> Result<KillFilter, ReplyError> {
        let mut filter = KillFilter {
            skip_me: true,
            ..KillFilter::default()
        };
        let mut pairs = args.chunks(2);
        for pair in &mut pairs {
            let [option, value] = pair else {
                return Err(ReplyError::Syntax);
            };
            let option = option.to_ascii_lowercase();
            match option.as_slice() {
                b"id" => match string2ll(value) {
                    Some(id) if id >= 1 => filter.id = Some(id as u64),
                    _ => return Err(ReplyError::ClientIdNotPositive),
                },
                b"type" => filter.kind = Some(ClientType::parse(value)?),
                b"addr" => filter.addr = Some(value.clone()),
                b"laddr" => filter.laddr = Some(value.clone()),
                b"user" => {
                    if !user_exists(value) {
                        return Err(ReplyError::NoSuchUser(value.clone()));
                    }
                    filter.user = Some(value.clone());
                }
                b"skipme" => {
                    filter.skip_me = if value.eq_ignore_ascii_case(b"yes") {
                        true
                    } else if value.eq_ignore_ascii_case(b"no") {
                        false
                    } else {
                        return Err(ReplyError::Syntax);
                    }
                }
                _ => return Err(ReplyError::Syntax),
            }
        }
        Ok(filter)
    }

    /// Whether the client behind `entry` matches every filter given.
    pub fn matches(&self, entry: &ClientEntry) -> bool {
        let addr = |a: Option<std::net::SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
        if self
            .addr
            .as_ref()
            .is_some_and(|want| want[..] != *addr(entry.peer).as_bytes())
        {
            return false;
        }
        if self
            .laddr
            .as_ref()
            .is_some_and(|want| want[..] != *addr(entry.local).as_bytes())
        {
            return false;
        }
        if self.kind.is_some_and(|kind| kind != ClientType::of(entry)) {
            return false;
        }
        if self.id.is_some_and(|id| id != entry.id) {
            return false;
        }
        if let Some(user) = &self.user
            && entry.profile().user.as_bytes() != &user[..]
        {
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<Bytes> {
        text.split(' ')
            .filter(|s| !s.is_empty())
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect()
    }

    fn kill(text: &str) -> Result<KillFilter, String> {
        KillFilter::parse(&args(text), |u| u == b"alice").map_err(|e| e.to_string())
    }

    #[test]
    fn kill_filters_fail_as_redis_does() {
        assert_eq!(
            kill("id x").unwrap_err(),
            "ERR client-id should be greater than 0"
        );
        assert_eq!(
            kill("id 0").unwrap_err(),
            "ERR client-id should be greater than 0"
        );
        assert_eq!(kill("id 5 skipme").unwrap_err(), "ERR syntax error");
        assert_eq!(kill("skipme maybe").unwrap_err(), "ERR syntax error");
        assert_eq!(kill("maxage 1").unwrap_err(), "ERR syntax error");
        assert_eq!(
            kill("type foo").unwrap_err(),
            "ERR Unknown client type 'foo'"
        );
        assert_eq!(kill("user bob").unwrap_err(), "ERR No such user 'bob'");
        // The first bad pair decides, as redis parses left to right.
        assert_eq!(
            kill("user bob type foo").unwrap_err(),
            "ERR No such user 'bob'"
        );
        let filter = kill("ID 7 USER alice SKIPME no TYPE pubsub").unwrap();
        assert_eq!(filter.id, Some(7));
        assert_eq!(filter.kind, Some(ClientType::PubSub));
        assert!(!filter.skip_me);
        assert!(kill("laddr 1.2.3.4:5").unwrap().skip_me);
    }

    #[test]
    fn list_filters_fail_as_redis_does() {
        let list = |text: &str| ListFilter::parse(&args(text)).map_err(|e| e.to_string());
        assert_eq!(list(""), Ok(ListFilter::All));
        assert_eq!(
            list("TYPE replica"),
            Ok(ListFilter::Type(ClientType::Replica))
        );
        assert_eq!(
            list("type foo"),
            Err("ERR Unknown client type 'foo'".into())
        );
        assert_eq!(list("id 3 x"), Err("ERR Invalid client ID".into()));
        assert_eq!(list("id 3 3 -1"), Ok(ListFilter::Ids(vec![3, 3, -1])));
        assert_eq!(list("foo"), Err("ERR syntax error".into()));
        assert_eq!(list("type normal extra"), Err("ERR syntax error".into()));
    }
}
