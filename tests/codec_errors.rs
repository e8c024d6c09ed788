//! Every variant of `packet::Error` produced through the public API, on the decoding side and,
//! where a caller can build the mistake, on the encoding side; plus an audit that no variant is
//! left without a test.

use std::collections::BTreeSet;

use shearwater::packet::{
    ConnAck, Connect, ConnectReturnCode, Decoded, Error, Field, List, MAX_REMAINING_LENGTH, Needed,
    Packet, PacketId, PacketType, Publish, PublishQos, QoS, SubAck, SubAckReturnCode, Subscribe,
    Subscription, Unsubscribe, Will, decode, decode_fixed_header, decode_from_broker,
};

/// A packet with first byte `first` and `body`, behind a minimal remaining length.
fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let mut byte = (len & 0x7F) as u8;
        len >>= 7;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// A length-prefixed field.
fn field(data: &[u8]) -> Vec<u8> {
    let mut out = u16::try_from(data.len())
        .expect("short field")
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(data);
    out
}

/// The variable header of a CONNECT with `flags`, keep alive 60.
fn connect_header(flags: u8) -> Vec<u8> {
    let mut out = field(b"MQTT");
    out.extend_from_slice(&[4, flags, 0, 60]);
    out
}

/// A CONNECT body: variable header, then `fields` length-prefixed, then `raw` as is.
fn connect(flags: u8, fields: &[&[u8]], raw: &[u8]) -> Vec<u8> {
    let mut body = connect_header(flags);
    for f in fields {
        body.extend(field(f));
    }
    body.extend_from_slice(raw);
    packet(0x10, &body)
}

fn decode_err(bytes: &[u8]) -> Result<Decoded<'_>, Error> {
    decode(bytes, usize::MAX)
}

fn id(v: u16) -> PacketId {
    PacketId::new(v).expect("non-zero")
}

fn minimal_connect() -> Connect<'static> {
    Connect {
        clean_session: true,
        keep_alive: 0,
        client_id: "c",
        will: None,
        username: None,
        password: None,
    }
}

fn publish(topic: &str) -> Publish<'_> {
    Publish {
        dup: false,
        qos: PublishQos::AtMostOnce,
        retain: false,
        topic,
        payload: b"",
    }
}

/// Encodes `p` into a roomy buffer, checking that `encoded_len` refuses it the same way.
fn encode_err(p: Packet<'_>) -> Result<usize, Error> {
    let mut buf = vec![0u8; 256];
    let r = p.encode(&mut buf);
    assert_eq!(
        r.err(),
        p.encoded_len().err(),
        "encode and encoded_len disagree on {p:?}"
    );
    r
}

const CLEAN: u8 = 0x02;
const WILL: u8 = 0x04;
const USER: u8 = 0x80;
const PASS: u8 = 0x40;

/// Each case: what the codec answered, and the error it must be.
fn cases() -> Vec<(&'static str, Result<(), Error>, Error)> {
    let long = "a".repeat(65_536);
    let long_bytes = vec![0u8; 65_536];
    let subs_empty: [Subscription<'_>; 0] = [];
    let unsubs_empty: [&str; 0] = [];
    let codes_empty: [SubAckReturnCode; 0] = [];
    let will = |topic: &'static str, payload: &'static [u8]| Will {
        topic,
        payload,
        qos: QoS::AtLeastOnce,
        retain: false,
    };
    let d = |bytes: Vec<u8>| decode_err(&bytes).map(|_| ());
    let e = |p: Packet<'_>| encode_err(p).map(|_| ());

    vec![
        // --- fixed header
        (
            "reserved type 0",
            d(vec![0x00, 0x00]),
            Error::ReservedPacketType(0),
        ),
        (
            "reserved type 15",
            d(vec![0xF0]),
            Error::ReservedPacketType(15),
        ),
        (
            "PUBREL flags 0",
            d(vec![0x60, 0x02, 0x00, 0x01]),
            Error::InvalidFlags {
                packet_type: PacketType::PubRel,
                flags: 0,
            },
        ),
        (
            "PINGREQ flags 1",
            d(vec![0xC1]),
            Error::InvalidFlags {
                packet_type: PacketType::PingReq,
                flags: 1,
            },
        ),
        (
            "five length bytes",
            d(vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
            Error::MalformedRemainingLength,
        ),
        (
            "four continuation bytes",
            d(vec![0xC0, 0x80, 0x80, 0x80, 0x80]),
            Error::MalformedRemainingLength,
        ),
        (
            "over the limit",
            decode(&[0x30, 0xC8, 0x01], 100).map(|_| ()),
            Error::PacketTooLarge {
                packet_len: 203,
                max: 100,
            },
        ),
        // --- truncation, one per field that can run short
        (
            "protocol name",
            d(packet(0x10, &[0x00, 0x04, b'M', b'Q'])),
            Error::Truncated(Field::ProtocolName),
        ),
        (
            "CONNECT variable header",
            d(packet(
                0x10,
                &[0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, CLEAN],
            )),
            Error::Truncated(Field::VariableHeader),
        ),
        (
            "client id",
            d(connect(CLEAN, &[], &[])),
            Error::Truncated(Field::ClientId),
        ),
        (
            "will topic",
            d(connect(CLEAN | WILL, &[b"c"], &[0x00])),
            Error::Truncated(Field::WillTopic),
        ),
        (
            "will message",
            d(connect(CLEAN | WILL, &[b"c", b"t"], &[0x00, 0x05, b'x'])),
            Error::Truncated(Field::WillPayload),
        ),
        (
            "user name",
            d(connect(CLEAN | USER, &[b"c"], &[])),
            Error::Truncated(Field::Username),
        ),
        (
            "password",
            d(connect(
                CLEAN | USER | PASS,
                &[b"c", b"u"],
                &[0x00, 0x02, b'p'],
            )),
            Error::Truncated(Field::Password),
        ),
        (
            "topic name",
            d(packet(0x30, &[0x00, 0x03, b'a'])),
            Error::Truncated(Field::TopicName),
        ),
        (
            "packet id",
            d(packet(0x40, &[0x01])),
            Error::Truncated(Field::PacketId),
        ),
        (
            "topic filter",
            d(packet(0x82, &[0x00, 0x01, 0x00])),
            Error::Truncated(Field::TopicFilter),
        ),
        (
            "requested QoS",
            d(packet(0x82, &[0x00, 0x01, 0x00, 0x01, b'a'])),
            Error::Truncated(Field::RequestedQos),
        ),
        (
            "CONNACK",
            d(packet(0x20, &[0x00])),
            Error::Truncated(Field::VariableHeader),
        ),
        // --- leftovers
        (
            "PINGRESP with a body",
            d(packet(0xD0, &[0x00])),
            Error::TrailingBytes(PacketType::PingResp),
        ),
        (
            "CONNECT with a byte after the password",
            d(connect(CLEAN | USER | PASS, &[b"c", b"u", b"p"], &[0x00])),
            Error::TrailingBytes(PacketType::Connect),
        ),
        (
            "UNSUBACK with a byte after the id",
            d(packet(0xB0, &[0x00, 0x01, 0x00])),
            Error::TrailingBytes(PacketType::UnsubAck),
        ),
        // --- strings
        (
            "broken UTF-8 in a filter",
            d(packet(0xA2, &[0x00, 0x01, 0x00, 0x02, b'a', 0xC3])),
            Error::InvalidUtf8(Field::TopicFilter),
        ),
        (
            "surrogate in a client id",
            d(connect(CLEAN, &[&[0xED, 0xB0, 0x80]], &[])),
            Error::InvalidUtf8(Field::ClientId),
        ),
        (
            "NUL in a user name",
            d(connect(CLEAN | USER, &[b"c", b"u\0"], &[])),
            Error::NullCharacter(Field::Username),
        ),
        (
            "NUL in a will topic",
            d(connect(CLEAN | WILL, &[b"c", b"t\0", b""], &[])),
            Error::NullCharacter(Field::WillTopic),
        ),
        (
            "NUL in a filter",
            d(packet(0x82, &[0x00, 0x01, 0x00, 0x02, b'a', 0x00, 0x00])),
            Error::NullCharacter(Field::TopicFilter),
        ),
        (
            "encode: NUL in a filter",
            e(Packet::Unsubscribe(Unsubscribe {
                packet_id: id(1),
                filters: List::new(&["a\0"]),
            })),
            Error::NullCharacter(Field::TopicFilter),
        ),
        (
            "encode: NUL in a user name",
            e(Packet::Connect(Connect {
                username: Some("\0"),
                ..minimal_connect()
            })),
            Error::NullCharacter(Field::Username),
        ),
        // --- field lengths (only an encoder can be asked for more than 65,535 bytes)
        (
            "encode: client id",
            e(Packet::Connect(Connect {
                client_id: &long,
                ..minimal_connect()
            })),
            Error::FieldTooLong(Field::ClientId),
        ),
        (
            "encode: user name",
            e(Packet::Connect(Connect {
                username: Some(&long),
                ..minimal_connect()
            })),
            Error::FieldTooLong(Field::Username),
        ),
        (
            "encode: will topic",
            e(Packet::Connect(Connect {
                will: Some(Will {
                    topic: &long,
                    ..will("t", b"")
                }),
                ..minimal_connect()
            })),
            Error::FieldTooLong(Field::WillTopic),
        ),
        (
            "encode: will message",
            e(Packet::Connect(Connect {
                will: Some(Will {
                    payload: &long_bytes,
                    ..will("t", b"")
                }),
                ..minimal_connect()
            })),
            Error::FieldTooLong(Field::WillPayload),
        ),
        (
            "encode: topic name",
            e(Packet::Publish(publish(&long))),
            Error::FieldTooLong(Field::TopicName),
        ),
        (
            "encode: topic filter",
            e(Packet::Subscribe(Subscribe {
                packet_id: id(1),
                filters: List::new(&[Subscription {
                    filter: &long,
                    qos: QoS::AtMostOnce,
                }]),
            })),
            Error::FieldTooLong(Field::TopicFilter),
        ),
        // --- CONNECT rules
        (
            "MQTT 3.1's protocol name",
            d(packet(
                0x10,
                &[&field(b"MQIsdp")[..], &[3, CLEAN, 0, 60], &field(b"c")].concat(),
            )),
            Error::InvalidProtocolName,
        ),
        (
            "protocol level 5",
            d(packet(
                0x10,
                &[&field(b"MQTT")[..], &[5, CLEAN, 0, 60], &field(b"c")].concat(),
            )),
            Error::UnsupportedProtocolLevel(5),
        ),
        (
            "reserved CONNECT flag",
            d(connect(CLEAN | 0x01, &[b"c"], &[])),
            Error::ReservedConnectFlag,
        ),
        (
            "will QoS without will",
            d(connect(CLEAN | 0x10, &[b"c"], &[])),
            Error::InconsistentWillFlags,
        ),
        (
            "will retain without will",
            d(connect(CLEAN | 0x20, &[b"c"], &[])),
            Error::InconsistentWillFlags,
        ),
        (
            "password without user name",
            d(connect(CLEAN | PASS, &[b"c", b"p"], &[])),
            Error::PasswordWithoutUsername,
        ),
        (
            "encode: password without user name",
            e(Packet::Connect(Connect {
                password: Some(b"p"),
                ..minimal_connect()
            })),
            Error::PasswordWithoutUsername,
        ),
        (
            "empty client id, persistent session",
            d(connect(0, &[b""], &[])),
            Error::EmptyClientIdWithPersistentSession,
        ),
        (
            "encode: empty client id, persistent session",
            e(Packet::Connect(Connect {
                clean_session: false,
                client_id: "",
                ..minimal_connect()
            })),
            Error::EmptyClientIdWithPersistentSession,
        ),
        // --- QoS, DUP and packet ids
        (
            "PUBLISH QoS 3",
            d(packet(0x36, &[0x00, 0x01, b'a', 0x00, 0x01])),
            Error::InvalidQos(Field::Flags),
        ),
        (
            "will QoS 3",
            d(connect(CLEAN | WILL | 0x18, &[b"c", b"t", b""], &[])),
            Error::InvalidQos(Field::VariableHeader),
        ),
        (
            "requested QoS with reserved bits",
            d(packet(0x82, &[0x00, 0x01, 0x00, 0x01, b'a', 0x80])),
            Error::InvalidQos(Field::RequestedQos),
        ),
        (
            "DUP on QoS 0",
            d(packet(0x38, &[0x00, 0x01, b'a'])),
            Error::DupWithQos0,
        ),
        (
            "encode: DUP on QoS 0",
            e(Packet::Publish(Publish {
                dup: true,
                ..publish("a")
            })),
            Error::DupWithQos0,
        ),
        (
            "PUBLISH QoS 1 with id 0",
            d(packet(0x32, &[0x00, 0x01, b'a', 0x00, 0x00])),
            Error::ZeroPacketId,
        ),
        (
            "UNSUBSCRIBE with id 0",
            d(packet(0xA2, &[0x00, 0x00, 0x00, 0x01, b'a'])),
            Error::ZeroPacketId,
        ),
        // --- topics
        (
            "empty topic name",
            d(packet(0x30, &[0x00, 0x00])),
            Error::EmptyTopic(Field::TopicName),
        ),
        (
            "empty will topic",
            d(connect(CLEAN | WILL, &[b"c", b"", b""], &[])),
            Error::EmptyTopic(Field::WillTopic),
        ),
        (
            "empty filter",
            d(packet(0xA2, &[0x00, 0x01, 0x00, 0x00])),
            Error::EmptyTopic(Field::TopicFilter),
        ),
        (
            "encode: empty will topic",
            e(Packet::Connect(Connect {
                will: Some(will("", b"")),
                ..minimal_connect()
            })),
            Error::EmptyTopic(Field::WillTopic),
        ),
        (
            "encode: empty filter",
            e(Packet::Subscribe(Subscribe {
                packet_id: id(1),
                filters: List::new(&[Subscription {
                    filter: "",
                    qos: QoS::AtMostOnce,
                }]),
            })),
            Error::EmptyTopic(Field::TopicFilter),
        ),
        (
            "+ in a topic name",
            d(packet(0x30, &[0x00, 0x03, b'a', b'/', b'+'])),
            Error::WildcardInTopicName(Field::TopicName),
        ),
        (
            "encode: # in a will topic",
            e(Packet::Connect(Connect {
                will: Some(will("#", b"")),
                ..minimal_connect()
            })),
            Error::WildcardInTopicName(Field::WillTopic),
        ),
        (
            "# not last",
            d(packet(
                0x82,
                &[0x00, 0x01, 0x00, 0x03, b'#', b'/', b'a', 0x00],
            )),
            Error::InvalidTopicFilter,
        ),
        (
            "encode: + inside a level",
            e(Packet::Unsubscribe(Unsubscribe {
                packet_id: id(1),
                filters: List::new(&["a/b+"]),
            })),
            Error::InvalidTopicFilter,
        ),
        // --- lists
        (
            "SUBSCRIBE without filters",
            d(packet(0x82, &[0x00, 0x01])),
            Error::NoTopicFilters(PacketType::Subscribe),
        ),
        (
            "UNSUBSCRIBE without filters",
            d(packet(0xA2, &[0x00, 0x01])),
            Error::NoTopicFilters(PacketType::Unsubscribe),
        ),
        (
            "encode: SUBSCRIBE without filters",
            e(Packet::Subscribe(Subscribe {
                packet_id: id(1),
                filters: List::new(&subs_empty),
            })),
            Error::NoTopicFilters(PacketType::Subscribe),
        ),
        (
            "encode: UNSUBSCRIBE without filters",
            e(Packet::Unsubscribe(Unsubscribe {
                packet_id: id(1),
                filters: List::new(&unsubs_empty),
            })),
            Error::NoTopicFilters(PacketType::Unsubscribe),
        ),
        (
            "SUBACK code 3",
            d(packet(0x90, &[0x00, 0x01, 0x00, 0x03])),
            Error::InvalidSubAckReturnCode(0x03),
        ),
        (
            "SUBACK code 0xFF",
            d(packet(0x90, &[0x00, 0x01, 0xFF])),
            Error::InvalidSubAckReturnCode(0xFF),
        ),
        (
            "SUBACK without codes",
            d(packet(0x90, &[0x00, 0x01])),
            Error::NoSubAckReturnCodes,
        ),
        (
            "encode: SUBACK without codes",
            e(Packet::SubAck(SubAck {
                packet_id: id(1),
                codes: List::new(&codes_empty),
            })),
            Error::NoSubAckReturnCodes,
        ),
        // --- CONNACK
        (
            "CONNACK code 6",
            d(packet(0x20, &[0x00, 0x06])),
            Error::InvalidConnAckReturnCode(6),
        ),
        (
            "CONNACK reserved flags",
            d(packet(0x20, &[0x80, 0x00])),
            Error::ReservedConnAckFlags(0x80),
        ),
        (
            "CONNACK session present on refusal",
            d(packet(0x20, &[0x01, 0x04])),
            Error::SessionPresentWithRefusal,
        ),
        (
            "encode: CONNACK session present on refusal",
            e(Packet::ConnAck(ConnAck {
                session_present: true,
                code: ConnectReturnCode::IdentifierRejected,
            })),
            Error::SessionPresentWithRefusal,
        ),
        // --- the client's reader
        (
            "from a broker: CONNECT",
            decode_from_broker(&packet(0x10, &[]), 1024).map(|_| ()),
            Error::UnexpectedDirection(PacketType::Connect),
        ),
        (
            "from a broker: SUBSCRIBE, refused before its body arrives",
            decode_from_broker(&[0x82, 0x10], 1024).map(|_| ()),
            Error::UnexpectedDirection(PacketType::Subscribe),
        ),
        // --- output buffer
        (
            "encode: buffer one byte short",
            Packet::Publish(publish("a/b"))
                .encode(&mut [0u8; 6])
                .map(|_| ()),
            Error::BufferTooSmall { needed: 7 },
        ),
        (
            "encode: empty buffer",
            Packet::Disconnect.encode(&mut []).map(|_| ()),
            Error::BufferTooSmall { needed: 2 },
        ),
    ]
}

#[test]
fn every_case_gives_its_error() {
    for (what, got, expected) in cases() {
        assert_eq!(got, Err(expected), "{what}");
    }
}

/// The variant name of an error, from its `Debug` form.
fn variant(e: &Error) -> String {
    format!("{e:?}")
        .split(['(', ' ', '{'])
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Every variant of `Error` (the enum is `#[non_exhaustive]`, so this list is kept by hand: a new
/// variant belongs here and in a test).
const ALL_VARIANTS: [&str; 29] = [
    "ReservedPacketType",
    "InvalidFlags",
    "MalformedRemainingLength",
    "PacketTooLarge",
    "Truncated",
    "TrailingBytes",
    "InvalidUtf8",
    "NullCharacter",
    "FieldTooLong",
    "InvalidProtocolName",
    "UnsupportedProtocolLevel",
    "ReservedConnectFlag",
    "InconsistentWillFlags",
    "PasswordWithoutUsername",
    "EmptyClientIdWithPersistentSession",
    "InvalidQos",
    "DupWithQos0",
    "ZeroPacketId",
    "EmptyTopic",
    "WildcardInTopicName",
    "InvalidTopicFilter",
    "NoTopicFilters",
    "InvalidSubAckReturnCode",
    "NoSubAckReturnCodes",
    "InvalidConnAckReturnCode",
    "ReservedConnAckFlags",
    "SessionPresentWithRefusal",
    "UnexpectedDirection",
    "BufferTooSmall",
];

#[test]
fn every_variant_is_tested() {
    let tested: BTreeSet<String> = cases().iter().map(|(_, _, e)| variant(e)).collect();
    let all: BTreeSet<String> = ALL_VARIANTS.iter().map(|s| (*s).to_owned()).collect();
    let missing: Vec<_> = all.difference(&tested).collect();
    let unknown: Vec<_> = tested.difference(&all).collect();
    assert!(missing.is_empty(), "variants without a test: {missing:?}");
    assert!(
        unknown.is_empty(),
        "variants missing from ALL_VARIANTS: {unknown:?}"
    );
}

/// Every `Field`, each of which some error above must name.
const ALL_FIELDS: [&str; 12] = [
    "ProtocolName",
    "ClientId",
    "WillTopic",
    "WillPayload",
    "Username",
    "Password",
    "TopicName",
    "TopicFilter",
    "PacketId",
    "Flags",
    "VariableHeader",
    "RequestedQos",
];

#[test]
fn every_field_is_named_by_some_test() {
    let debug: Vec<String> = cases().iter().map(|(_, _, e)| format!("{e:?}")).collect();
    for field in ALL_FIELDS {
        let needle = format!("({field})");
        assert!(
            debug.iter().any(|d| d.contains(&needle)),
            "no test names the field {field}"
        );
    }
}

#[test]
fn every_error_displays_a_message() {
    for (what, _, e) in cases() {
        assert!(!e.to_string().is_empty(), "{what}");
    }
    // Each field names itself in messages.
    assert_eq!(
        Error::Truncated(Field::RequestedQos).to_string(),
        "requested QoS runs past the end of the packet"
    );
}

#[test]
fn remaining_length_limits() {
    // Three continuation bytes: still waiting for the fourth length byte.
    assert_eq!(
        decode(&[0x30, 0x80, 0x80, 0x80], usize::MAX),
        Ok(Decoded::Incomplete(Needed::AtLeast(1)))
    );
    assert_eq!(decode_fixed_header(&[0x30, 0x80, 0x80, 0x80]), Ok(None));
    // The fourth byte must end the length.
    assert_eq!(
        decode_fixed_header(&[0x30, 0x80, 0x80, 0x80, 0x80]),
        Err(Error::MalformedRemainingLength)
    );
    // The largest length four bytes say, refused by a limit, with its full length.
    assert_eq!(
        decode(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F], 1 << 20),
        Err(Error::PacketTooLarge {
            packet_len: MAX_REMAINING_LENGTH + 5,
            max: 1 << 20
        })
    );
    // A non-minimal length (0 written in two bytes) is read, and counts its bytes.
    assert_eq!(
        decode(&[0xC0, 0x80, 0x00], usize::MAX),
        Ok(Decoded::Complete {
            packet: Packet::PingReq,
            len: 3
        })
    );
}

#[test]
fn encoder_refuses_a_body_over_the_remaining_length_limit() {
    // Topic "t" (3 bytes on the wire), so this payload makes a body of exactly the limit.
    let payload_at_limit = MAX_REMAINING_LENGTH - 3;
    // Zeroed allocations this large are mapped lazily: no page is touched by `encoded_len`.
    let payload = vec![0u8; payload_at_limit + 1];
    let at_limit = Packet::Publish(Publish {
        payload: &payload[..payload_at_limit],
        ..publish("t")
    });
    assert_eq!(at_limit.encoded_len(), Ok(MAX_REMAINING_LENGTH + 5));
    assert_eq!(
        at_limit.encode(&mut [0u8; 64]),
        Err(Error::BufferTooSmall {
            needed: MAX_REMAINING_LENGTH + 5
        })
    );

    let over = Packet::Publish(Publish {
        payload: &payload,
        ..publish("t")
    });
    let too_large = Error::PacketTooLarge {
        packet_len: MAX_REMAINING_LENGTH + 6,
        max: MAX_REMAINING_LENGTH + 5,
    };
    assert_eq!(over.encoded_len(), Err(too_large));
    // Refused for its size before the buffer is even looked at.
    assert_eq!(over.encode(&mut [0u8; 64]), Err(too_large));
}

#[test]
fn largest_packet_round_trips() {
    // The biggest packet MQTT can frame: remaining length 268,435,455 in four bytes.
    let payload = vec![0x5Au8; MAX_REMAINING_LENGTH - 3];
    let p = Packet::Publish(Publish {
        payload: &payload,
        ..publish("t")
    });
    let mut buf = vec![0u8; MAX_REMAINING_LENGTH + 5];
    assert_eq!(p.encode(&mut buf), Ok(buf.len()));
    assert_eq!(&buf[..5], &[0x30, 0xFF, 0xFF, 0xFF, 0x7F]);
    // Compared without `assert_eq!`, whose message would print the 256 MiB payload.
    match decode(&buf, buf.len()) {
        Ok(Decoded::Complete { packet, len }) => {
            assert_eq!(len, buf.len());
            assert!(packet == p, "decoded packet differs");
        }
        other => panic!("not decoded: {:?}", other.map(|_| ())),
    }
}
