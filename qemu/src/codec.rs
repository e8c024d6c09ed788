//! Spec vectors for all 14 MQTT 3.1.1 packet types, both ways: decode the bytes to the
//! expected packet, encode the packet to the same bytes, and every strict prefix is
//! "incomplete", never an error. Then a few malformed inputs with their exact errors.

use shearwater::packet::{
    ConnAck, Connect, ConnectReturnCode, Decoded, Error, Field, Packet, PacketId, PacketType,
    PubAck, PubComp, PubRec, PubRel, Publish, PublishQos, QoS, SubAck, SubAckReturnCode, Subscribe,
    Subscription, UnsubAck, Unsubscribe, Will, check_topic_name, decode, decode_from_broker,
};

use crate::Scenario;

pub const SCENARIOS: &[Scenario] = &[
    ("connect", connect),
    ("connack", connack),
    ("publish", publish),
    ("acks", acks),
    ("subscribe", subscribe),
    ("suback", suback),
    ("unsubscribe", unsubscribe),
    ("unsuback", unsuback),
    ("empty_packets", empty_packets),
    ("malformed", malformed),
    ("topic_names", topic_names),
];

fn id(v: u16) -> PacketId {
    PacketId::new(v).unwrap()
}

/// `bytes` and `packet` are the same thing on the wire, in both directions.
fn vector(bytes: &[u8], packet: Packet<'_>) {
    assert_eq!(
        decode(bytes, 256),
        Ok(Decoded::Complete {
            packet,
            len: bytes.len()
        })
    );
    for end in 0..bytes.len() {
        assert!(
            matches!(decode(&bytes[..end], 256), Ok(Decoded::Incomplete(_))),
            "prefix of {} bytes",
            end
        );
    }
    assert_eq!(packet.encoded_len(), Ok(bytes.len()));
    let mut buf = [0xA5u8; 64];
    assert_eq!(packet.encode(&mut buf), Ok(bytes.len()));
    assert_eq!(&buf[..bytes.len()], bytes);
    assert!(
        buf[bytes.len()..].iter().all(|&b| b == 0xA5),
        "wrote past the end"
    );
    // One byte short: refused, nothing panics.
    assert!(packet.encode(&mut buf[..bytes.len() - 1]).is_err());
}

fn connect() {
    #[rustfmt::skip]
    let full = [
        0x10, 30,                                   // CONNECT, remaining length 30
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04,   // protocol name, level 4
        0xEE,                                       // user, password, will retain, will QoS 1, will, clean
        0x00, 0x14,                                 // keep alive 20 s
        0x00, 0x05, b'd', b'e', b'v', b'-', b'1',   // client id
        0x00, 0x01, b'w',                           // will topic
        0x00, 0x01, b'x',                           // will payload
        0x00, 0x01, b'u',                           // user name
        0x00, 0x02, b'p', b'w',                     // password
    ];
    vector(
        &full,
        Packet::Connect(Connect {
            clean_session: true,
            keep_alive: 20,
            client_id: "dev-1",
            will: Some(Will {
                topic: "w",
                payload: b"x",
                qos: QoS::AtLeastOnce,
                retain: true,
            }),
            username: Some("u"),
            password: Some(b"pw"),
        }),
    );
    #[rustfmt::skip]
    let minimal = [
        0x10, 13,
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04,
        0x00,                                       // persistent session, nothing else
        0x00, 0x3C,                                 // keep alive 60 s
        0x00, 0x01, b'a',
    ];
    vector(
        &minimal,
        Packet::Connect(Connect {
            clean_session: false,
            keep_alive: 60,
            client_id: "a",
            will: None,
            username: None,
            password: None,
        }),
    );
}

fn connack() {
    vector(
        &[0x20, 0x02, 0x01, 0x00],
        Packet::ConnAck(ConnAck {
            session_present: true,
            code: ConnectReturnCode::Accepted,
        }),
    );
    vector(
        &[0x20, 0x02, 0x00, 0x05],
        Packet::ConnAck(ConnAck {
            session_present: false,
            code: ConnectReturnCode::NotAuthorized,
        }),
    );
}

fn publish() {
    #[rustfmt::skip]
    let qos1 = [
        0x3B, 10,                                   // PUBLISH, DUP, QoS 1, RETAIN
        0x00, 0x03, b'a', b'/', b'b',               // topic
        0x00, 0x0A,                                 // packet id 10
        b'h', b'i', b'!',                           // payload
    ];
    vector(
        &qos1,
        Packet::Publish(Publish {
            dup: true,
            qos: PublishQos::AtLeastOnce(id(10)),
            retain: true,
            topic: "a/b",
            payload: b"hi!",
        }),
    );
    vector(
        &[0x30, 7, 0x00, 0x03, b'a', b'/', b'b', b'x', b'y'],
        Packet::Publish(Publish {
            dup: false,
            qos: PublishQos::AtMostOnce,
            retain: false,
            topic: "a/b",
            payload: b"xy",
        }),
    );
    vector(
        &[0x34, 6, 0x00, 0x01, b'x', 0xFF, 0xFF, 0x00],
        Packet::Publish(Publish {
            dup: false,
            qos: PublishQos::ExactlyOnce(id(65535)),
            retain: false,
            topic: "x",
            payload: &[0],
        }),
    );
}

fn acks() {
    vector(&[0x40, 2, 0, 7], Packet::PubAck(PubAck::new(id(7))));
    vector(&[0x50, 2, 0, 7], Packet::PubRec(PubRec::new(id(7))));
    vector(&[0x62, 2, 0, 7], Packet::PubRel(PubRel::new(id(7))));
    vector(
        &[0x70, 2, 0x12, 0x34],
        Packet::PubComp(PubComp::new(id(0x1234))),
    );
}

fn subscribe() {
    #[rustfmt::skip]
    let bytes = [
        0x82, 14,
        0x00, 0x01,                                 // packet id 1
        0x00, 0x03, b'a', b'/', b'#', 0x01,         // "a/#" at QoS 1
        0x00, 0x03, b'b', b'/', b'+', 0x00,         // "b/+" at QoS 0
    ];
    let filters = [
        Subscription {
            filter: "a/#",
            qos: QoS::AtLeastOnce,
        },
        Subscription {
            filter: "b/+",
            qos: QoS::AtMostOnce,
        },
    ];
    vector(
        &bytes,
        Packet::Subscribe(Subscribe {
            packet_id: id(1),
            filters: (&filters).into(),
        }),
    );
}

fn suback() {
    let codes = [SubAckReturnCode::GrantedQos1, SubAckReturnCode::Failure];
    vector(
        &[0x90, 4, 0x00, 0x01, 0x01, 0x80],
        Packet::SubAck(SubAck {
            packet_id: id(1),
            codes: (&codes).into(),
        }),
    );
}

fn unsubscribe() {
    let filters = ["a/#"];
    vector(
        &[0xA2, 7, 0x00, 0x02, 0x00, 0x03, b'a', b'/', b'#'],
        Packet::Unsubscribe(Unsubscribe {
            packet_id: id(2),
            filters: (&filters).into(),
        }),
    );
}

fn unsuback() {
    vector(&[0xB0, 2, 0, 2], Packet::UnsubAck(UnsubAck::new(id(2))));
}

fn empty_packets() {
    vector(&[0xC0, 0], Packet::PingReq);
    vector(&[0xD0, 0], Packet::PingResp);
    vector(&[0xE0, 0], Packet::Disconnect);
}

fn malformed() {
    assert_eq!(
        decode(&[0x60, 2, 0, 7], 256),
        Err(Error::InvalidFlags {
            packet_type: PacketType::PubRel,
            flags: 0
        })
    );
    assert_eq!(
        decode(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF], 256),
        Err(Error::MalformedRemainingLength)
    );
    assert_eq!(
        decode(&[0x00, 0x00], 256),
        Err(Error::ReservedPacketType(0))
    );
    assert_eq!(decode(&[0x40, 2, 0, 0], 256), Err(Error::ZeroPacketId));
    assert!(matches!(
        decode(&[0x30, 0x7F], 16),
        Err(Error::PacketTooLarge { .. })
    ));
    assert!(matches!(
        decode(&[0x30, 3, 0x00, 0x01, b'+'], 256),
        Err(Error::WildcardInTopicName(_))
    ));
    assert_eq!(
        decode(&[0xC0, 1, 0], 256),
        Err(Error::TrailingBytes(PacketType::PingReq))
    );
}

/// The byte rules of a topic name, which the MCU checks in its own loop (the hosts scan with
/// vector compares): U+0000 anywhere wins over a wildcard anywhere, in either order, and both
/// win over ill-formed UTF-8.
fn topic_names() {
    let field = Field::TopicName;
    let cases: [(&[u8], Result<(), Error>); 10] = [
        (b"a/b", Ok(())),
        (b"", Err(Error::EmptyTopic(field))),
        (b"+", Err(Error::WildcardInTopicName(field))),
        (b"a/#", Err(Error::WildcardInTopicName(field))),
        (b"\0", Err(Error::NullCharacter(field))),
        (b"+/\0", Err(Error::NullCharacter(field))),
        (b"\0/#", Err(Error::NullCharacter(field))),
        (b"a/+/b/c/d/e/f/g/h/\0", Err(Error::NullCharacter(field))),
        (b"\xFF/#", Err(Error::WildcardInTopicName(field))),
        (b"\xFF/a", Err(Error::InvalidUtf8(field))),
    ];
    for (topic, expected) in cases {
        let mut buf = [0u8; 32];
        let len = u8::try_from(topic.len()).unwrap();
        buf[0] = 0x30;
        buf[1] = len + 2;
        buf[3] = len;
        buf[4..4 + topic.len()].copy_from_slice(topic);
        let packet = &buf[..4 + topic.len()];
        let decoded = decode(packet, 256).map(|_| ());
        assert_eq!(decoded, expected);
        assert_eq!(decode_from_broker(packet, 256).map(|_| ()), expected);
        if let Ok(s) = core::str::from_utf8(topic) {
            assert_eq!(check_topic_name(s), expected);
        }
    }
}
