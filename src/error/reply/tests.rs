//! Every ReplyError variant: distinct texts, one RESP line each, redis' bytes.
use std::collections::HashMap;

use super::*;

/// One value of every variant.
fn every_variant() -> Vec<ReplyError> {
    use ReplyError::*;
    let b = |s: &'static str| Bytes::from_static(s.as_bytes());
    let lost = BackendError::Lost {
        node: "127.0.0.1:7000".into(),
        reason: "read: reset".into(),
    };
    vec![
        Protocol(ProtocolError("invalid bulk length".into())),
        UnknownCommand(vec![b("FOO"), b("a")]),
        UnknownSubcommand {
            container: "CONFIG".into(),
            subcommand: b("x"),
        },
        Syntax,
        NotInteger,
        WrongArity("get"),
        CrossSlot,
        CrossSlotTransaction,
        SelectInCluster,
        BadClientName,
        UnrecognizedOption(b("x")),
        BadClientInfo("lib-name".into()),
        NoProto,
        ProtocolVersionNotInteger,
        HelloOption(b("x")),
        NoShutdown,
        NoAuth,
        NoAuthHello,
        WrongPass,
        AuthWithoutPassword,
        NoPermCommand("get"),
        NoPermKey,
        NoPermChannel,
        NestedMulti,
        DiscardWithoutMulti,
        WatchInMulti,
        ExecWithoutMulti,
        ExecAbort,
        ExecAbortBecause("OOM command not allowed when used memory > 'maxmemory'.".into()),
        NotAllowedInTransaction,
        PauseMode,
        TimeoutNegative,
        TimeoutNotInteger,
        Subscribed("get"),
        UnknownClientType(b("x")),
        InvalidClientId,
        NoSuchClient,
        ClientIdNotPositive,
        NoSuchUser(b("x")),
        UnblockReason,
        ClientSubcommandArity(b("UnBlock")),
        Unblocked,
        InvalidCursor,
        NumkeysNotPositive,
        NumkeysTooLarge,
        NegativeLimit,
        NoInputKey("zunion".into()),
        WeightNotFloat,
        NotHyperLogLog,
        CorruptedHyperLogLog,
        ProtectedMode,
        MaxClients,
        PrefixWithoutBcast,
        BcastSwitch,
        OptWithBcast,
        OptinAndOptout,
        OptSwitch,
        PrefixOverlapsExisting {
            prefix: b("a"),
            existing: b("ab"),
        },
        PrefixOverlapsProvided {
            first: b("a"),
            second: b("ab"),
        },
        CachingWithoutOpt,
        CachingYesWithoutOptin,
        CachingNoWithoutOptout,
        AclLogArguments,
        UnknownCategory(b("x")),
        UserNotFound(b("x")),
        CommandNotFound(b("x")),
        BadUsername,
        AclRule {
            rule: b("x"),
            error: "Syntax error".into(),
        },
        DefaultUserUndeletable,
        NoAclFile,
        AclLoad("x".into()),
        AclSave("x".into()),
        NotSupportedYet("X".into()),
        Unsupported {
            command: "X".into(),
            reason: "is refused",
        },
        NotInMulti("X".into()),
        AclInMulti,
        ConfigSetRefused(b("x")),
        RedirectTargetMissing,
        RedirectTwice,
        ReplicaKeyspace,
        TooManyPrefixes(3),
        NoNodeKnown,
        ClusterSilent(3),
        ClusterSilentSinceStart,
        SlotNotServed(3),
        ReplicaGone(3),
        PrimaryDown("127.0.0.1:7000".into()),
        NoReplicaToRead {
            primary: "127.0.0.1:7000".into(),
            why: "x".into(),
        },
        NodeUnreachable(lost.clone()),
        NodeBusy(BackendError::Busy {
            node: "127.0.0.1:7000".into(),
            queued: 3,
        }),
        NodeStopped("127.0.0.1:7000".into()),
        WatchedSlotMoving,
        TooManyRedirects {
            max: 3,
            last: "MOVED 1 127.0.0.1:7000".into(),
        },
        NodeAuth(lost.clone()),
        HeldNotSent,
        Lost(lost.clone()),
        PublishLost(lost),
        PublishLinkStopped,
        NoReplicaToAck,
        NotReplicated(3),
        SlotPartNotRun,
        TransactionReplyMissing,
        NoPrimaryAnswered,
        PrimariesDiffer,
        PrimariesDifferInLength,
        ScanParts,
        ScanReply,
        ScanCursorTooWide { cursor: 3, bits: 3 },
        InfoReply,
        KeyReadMissing,
        GetReply,
        KeyReadReply,
        PubSubReply,
        PubSubHubStopped,
        PrefixCheckStopped,
        InvalidationsLate,
        NotLocal,
        NotIntrospection,
    ]
}

#[test]
fn no_two_variants_render_the_same_text() {
    let mut seen = HashMap::new();
    for error in every_variant() {
        let text = error.to_string();
        if let Some(other) = seen.insert(text.clone(), format!("{error:?}")) {
            panic!("{error:?} and {other} both render {text:?}");
        }
    }
}

#[test]
fn every_reply_is_one_resp_error_line_with_a_code() {
    for error in every_variant() {
        let raw = error.to_bytes();
        let text = error.to_string();
        assert_eq!(&raw[..], format!("-{text}\r\n").as_bytes(), "{error:?}");
        let code = text.split(' ').next().unwrap_or_default();
        assert!(
            !code.is_empty() && code.bytes().all(|b| b.is_ascii_uppercase()),
            "{error:?}: {text:?} must start with an upper-case error code"
        );
        assert!(!text.contains(['\r', '\n']), "{error:?}");
    }
}

#[test]
fn texts_match_redis_and_what_clients_were_told() {
    let cases = [
        (
            ReplyError::WrongArity("ping"),
            "ERR wrong number of arguments for 'ping' command",
        ),
        (
            ReplyError::CrossSlotTransaction,
            "CROSSSLOT Keys in request don't hash to the same slot (slotproxy runs a \
             transaction on one slot: put its keys under one {hash tag}, or set \
             session.cross_slot_transactions = \"per-slot\")",
        ),
        (
            ReplyError::UnknownCategory(Bytes::from_static(b"a\xffb")),
            "ERR Unknown category 'a\u{fffd}b'",
        ),
        (
            ReplyError::NotReplicated(250),
            "NOREPLICAS slotproxy: the primary applied the write but no replica confirmed it \
             within 250 ms (ack = replicated); it may be lost if the primary fails",
        ),
    ];
    for (error, want) in cases {
        assert_eq!(error.to_string(), want);
    }
}

#[test]
fn unknown_command_message_matches_redis() {
    let args = |args: &[&'static [u8]]| -> Vec<Bytes> {
        args.iter().map(|a| Bytes::from_static(a)).collect()
    };
    assert_eq!(
        unknown_command(&args(&[b"FOO", b"a", b"b"])),
        b"ERR unknown command 'FOO', with args beginning with: 'a' 'b' "
    );
    assert_eq!(
        unknown_command(&args(&[b"nope"])),
        b"ERR unknown command 'nope', with args beginning with: "
    );
    // Bytes are copied as they are, up to a NUL, as C's %s does.
    assert_eq!(
        unknown_command(&args(&[b"x\xff", b"a\x00b", b"\xc3"])),
        b"ERR unknown command 'x\xff', with args beginning with: 'a' '\xc3' "
    );
    let error = ReplyError::UnknownCommand(args(&[b"x\xff"]));
    assert_eq!(
        &error.to_bytes()[..],
        b"-ERR unknown command 'x\xff', with args beginning with: \r\n"
    );
    let error = ReplyError::UnknownSubcommand {
        container: "CONFIG".into(),
        subcommand: Bytes::from_static(b"n\xffo\x00pe"),
    };
    assert_eq!(
        &error.to_bytes()[..],
        b"-ERR unknown subcommand 'n\xffo'. Try CONFIG HELP.\r\n"
    );
}

#[test]
fn protocol_errors_echo_the_client_byte() {
    let error = ReplyError::Protocol(ProtocolError("expected '$', got '\u{ff}'".into()));
    assert_eq!(
        &error.to_bytes()[..],
        b"-ERR Protocol error: expected '$', got '\xff'\r\n"
    );
}

#[test]
fn retry_classes_follow_what_was_applied() {
    let lost = BackendError::Lost {
        node: "n:1".into(),
        reason: "r".into(),
    };
    assert_eq!(ReplyError::Syntax.retry(), Retry::ClientError);
    assert_eq!(ReplyError::CrossSlot.retry(), Retry::ClientError);
    assert_eq!(ReplyError::NoNodeKnown.retry(), Retry::SafeToRetry);
    assert_eq!(ReplyError::WatchedSlotMoving.retry(), Retry::SafeToRetry);
    assert_eq!(ReplyError::Lost(lost).retry(), Retry::OutcomeUnknown);
    assert_eq!(ReplyError::NotReplicated(1).retry(), Retry::OutcomeUnknown);
}

#[test]
fn a_refused_exec_aborts_with_the_refusal_as_redis_words_it() {
    let text = |error: &ReplyError| {
        String::from_utf8_lossy(&ReplyError::exec_refused(error).to_bytes()).into_owned()
    };
    assert_eq!(
        text(&ReplyError::WrongArity("exec")),
        "-EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' command\r\n"
    );
    assert_eq!(
        text(&ReplyError::NoAuth),
        "-EXECABORT Transaction discarded because of: NOAUTH Authentication required.\r\n"
    );
}
