//! Property tests of the codec: every valid packet of the 14 types survives encode → decode
//! unchanged, with the length `encoded_len` announced; a buffer one byte short is refused with the
//! length needed; and no input at all makes the decoder panic or accept something the encoder
//! writes differently.

use proptest::collection::vec;
use proptest::prelude::*;
use shearwater::packet::{
    ConnAck, Connect, ConnectReturnCode, Decoded, Error, List, Needed, Packet, PacketId, PubAck,
    PubComp, PubRec, PubRel, Publish, PublishQos, QoS, SubAck, SubAckReturnCode, Subscribe,
    Subscription, UnsubAck, Unsubscribe, Will, check_topic_filter, check_topic_name, decode,
    decode_fixed_header,
};

/// Cases per property: enough to find rule slips, few enough to keep `cargo test` at seconds.
const CASES: u32 = 200;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Generators of valid fields
// ---------------------------------------------------------------------------------------------

/// Any character a string field may hold: mostly ASCII, sometimes any scalar value (multi-byte
/// UTF-8 included), never U+0000.
fn string_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => proptest::char::range(' ', '~'),
        1 => proptest::char::any(),
    ]
    .prop_filter("no U+0000", |&c| c != '\0')
}

/// A string field (client id, user name): any characters but U+0000.
fn mqtt_string(max_chars: usize) -> impl Strategy<Value = String> {
    vec(string_char(), 0..=max_chars).prop_map(|chars| chars.into_iter().collect())
}

/// One level of a topic name: no separator, no wildcard, no U+0000; may be empty.
fn topic_level() -> impl Strategy<Value = String> {
    vec(
        string_char().prop_filter("plain level character", |&c| !matches!(c, '/' | '+' | '#')),
        0..8,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

/// A valid topic name: non-empty, no wildcards; now and then long enough to need a two-byte
/// remaining length by itself.
fn topic_name() -> impl Strategy<Value = String> {
    fn short() -> impl Strategy<Value = String> {
        vec(topic_level(), 1..6)
            .prop_map(|levels| levels.join("/"))
            .prop_filter("non-empty", |t| !t.is_empty())
    }
    prop_oneof![
        9 => short(),
        1 => (short(), 100usize..400).prop_map(|(t, n)| format!("{}/{t}", "x".repeat(n))),
    ]
}

/// A valid topic filter: `+` as whole levels anywhere, `#` only as the whole last level.
fn topic_filter() -> impl Strategy<Value = String> {
    let level = prop_oneof![3 => topic_level(), 1 => Just("+".to_owned())];
    (vec(level, 0..6), any::<bool>())
        .prop_map(|(mut levels, multi)| {
            if multi {
                levels.push("#".to_owned());
            }
            levels.join("/")
        })
        .prop_filter("non-empty", |f| !f.is_empty())
}

/// A payload: usually small, sometimes big enough for a two- or three-byte remaining length.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => vec(any::<u8>(), 0..64),
        1 => vec(any::<u8>(), 100..300),
        1 => (16_384usize..20_000, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
    ]
}

fn packet_id() -> impl Strategy<Value = PacketId> {
    (1..=u16::MAX).prop_map(|v| PacketId::new(v).expect("range starts at 1"))
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

/// QoS with its packet id, and a DUP flag that is only ever set with QoS 1 or 2.
fn publish_qos_and_dup() -> impl Strategy<Value = (PublishQos, bool)> {
    prop_oneof![
        Just((PublishQos::AtMostOnce, false)),
        (packet_id(), any::<bool>()).prop_map(|(id, dup)| (PublishQos::AtLeastOnce(id), dup)),
        (packet_id(), any::<bool>()).prop_map(|(id, dup)| (PublishQos::ExactlyOnce(id), dup)),
    ]
}

fn return_code() -> impl Strategy<Value = ConnectReturnCode> {
    prop_oneof![
        Just(ConnectReturnCode::Accepted),
        Just(ConnectReturnCode::UnacceptableProtocolVersion),
        Just(ConnectReturnCode::IdentifierRejected),
        Just(ConnectReturnCode::ServerUnavailable),
        Just(ConnectReturnCode::BadUsernameOrPassword),
        Just(ConnectReturnCode::NotAuthorized),
    ]
}

fn suback_code() -> impl Strategy<Value = SubAckReturnCode> {
    prop_oneof![
        Just(SubAckReturnCode::GrantedQos0),
        Just(SubAckReturnCode::GrantedQos1),
        Just(SubAckReturnCode::GrantedQos2),
        Just(SubAckReturnCode::Failure),
    ]
}

// ---------------------------------------------------------------------------------------------
// Owned models of packets (a `Packet` borrows; these own what it borrows)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct OwnedWill {
    topic: String,
    payload: Vec<u8>,
    qos: QoS,
    retain: bool,
}

#[derive(Debug, Clone)]
struct OwnedConnect {
    clean_session: bool,
    keep_alive: u16,
    client_id: String,
    will: Option<OwnedWill>,
    username: Option<String>,
    password: Option<Vec<u8>>,
}

impl OwnedConnect {
    fn packet(&self) -> Packet<'_> {
        Packet::Connect(Connect {
            clean_session: self.clean_session,
            keep_alive: self.keep_alive,
            client_id: &self.client_id,
            will: self.will.as_ref().map(|w| Will {
                topic: &w.topic,
                payload: &w.payload,
                qos: w.qos,
                retain: w.retain,
            }),
            username: self.username.as_deref(),
            password: self.password.as_deref(),
        })
    }
}

fn connect() -> impl Strategy<Value = OwnedConnect> {
    let will = (topic_name(), vec(any::<u8>(), 0..40), qos(), any::<bool>()).prop_map(
        |(topic, payload, qos, retain)| OwnedWill {
            topic,
            payload,
            qos,
            retain,
        },
    );
    // User name and password in the three allowed combinations (a password needs a user name).
    let credentials = prop_oneof![
        Just((None, None)),
        mqtt_string(16).prop_map(|u| (Some(u), None)),
        (mqtt_string(16), vec(any::<u8>(), 0..24)).prop_map(|(u, p)| (Some(u), Some(p))),
    ];
    (
        any::<bool>(),
        any::<u16>(),
        mqtt_string(23),
        proptest::option::of(will),
        credentials,
    )
        .prop_map(
            |(clean_session, keep_alive, client_id, will, (username, password))| OwnedConnect {
                // An empty client id is only allowed with a clean session (MQTT-3.1.3-7).
                clean_session: clean_session || client_id.is_empty(),
                keep_alive,
                client_id,
                will,
                username,
                password,
            },
        )
}

#[derive(Debug, Clone)]
struct OwnedPublish {
    dup: bool,
    qos: PublishQos,
    retain: bool,
    topic: String,
    payload: Vec<u8>,
}

impl OwnedPublish {
    fn packet(&self) -> Packet<'_> {
        Packet::Publish(Publish {
            dup: self.dup,
            qos: self.qos,
            retain: self.retain,
            topic: &self.topic,
            payload: &self.payload,
        })
    }
}

fn publish() -> impl Strategy<Value = OwnedPublish> {
    (
        publish_qos_and_dup(),
        any::<bool>(),
        topic_name(),
        payload(),
    )
        .prop_map(|((qos, dup), retain, topic, payload)| OwnedPublish {
            dup,
            qos,
            retain,
            topic,
            payload,
        })
}

/// Builds a SUBSCRIBE over `filters` and hands it to `f` (the list borrows a local slice).
fn with_subscribe<R>(
    id: PacketId,
    filters: &[(String, QoS)],
    f: impl FnOnce(Packet<'_>) -> R,
) -> R {
    let subs: Vec<Subscription<'_>> = filters
        .iter()
        .map(|(filter, qos)| Subscription { filter, qos: *qos })
        .collect();
    f(Packet::Subscribe(Subscribe {
        packet_id: id,
        filters: List::new(&subs),
    }))
}

/// Builds an UNSUBSCRIBE over `filters` and hands it to `f`.
fn with_unsubscribe<R>(id: PacketId, filters: &[String], f: impl FnOnce(Packet<'_>) -> R) -> R {
    let filters: Vec<&str> = filters.iter().map(String::as_str).collect();
    f(Packet::Unsubscribe(Unsubscribe {
        packet_id: id,
        filters: List::new(&filters),
    }))
}

/// Any valid packet of any type, built and handed to a check.
#[derive(Debug, Clone)]
enum Model {
    Connect(OwnedConnect),
    ConnAck(ConnAck),
    Publish(OwnedPublish),
    PubAck(PacketId),
    PubRec(PacketId),
    PubRel(PacketId),
    PubComp(PacketId),
    Subscribe(PacketId, Vec<(String, QoS)>),
    SubAck(PacketId, Vec<SubAckReturnCode>),
    Unsubscribe(PacketId, Vec<String>),
    UnsubAck(PacketId),
    PingReq,
    PingResp,
    Disconnect,
}

impl Model {
    fn with_packet<R>(&self, f: impl FnOnce(Packet<'_>) -> R) -> R {
        match self {
            Model::Connect(c) => f(c.packet()),
            Model::ConnAck(a) => f(Packet::ConnAck(*a)),
            Model::Publish(p) => f(p.packet()),
            Model::PubAck(id) => f(Packet::PubAck(PubAck::new(*id))),
            Model::PubRec(id) => f(Packet::PubRec(PubRec::new(*id))),
            Model::PubRel(id) => f(Packet::PubRel(PubRel::new(*id))),
            Model::PubComp(id) => f(Packet::PubComp(PubComp::new(*id))),
            Model::Subscribe(id, filters) => with_subscribe(*id, filters, f),
            Model::SubAck(id, codes) => f(Packet::SubAck(SubAck {
                packet_id: *id,
                codes: List::new(codes),
            })),
            Model::Unsubscribe(id, filters) => with_unsubscribe(*id, filters, f),
            Model::UnsubAck(id) => f(Packet::UnsubAck(UnsubAck::new(*id))),
            Model::PingReq => f(Packet::PingReq),
            Model::PingResp => f(Packet::PingResp),
            Model::Disconnect => f(Packet::Disconnect),
        }
    }
}

fn connack() -> impl Strategy<Value = ConnAck> {
    (any::<bool>(), return_code()).prop_map(|(session_present, code)| ConnAck {
        // Session present only on an accepted connection (MQTT-3.2.2-4).
        session_present: session_present && code == ConnectReturnCode::Accepted,
        code,
    })
}

fn subscribe_filters() -> impl Strategy<Value = Vec<(String, QoS)>> {
    prop_oneof![
        9 => vec((topic_filter(), qos()), 1..8),
        // Enough filters for a two-byte remaining length.
        1 => vec((topic_filter(), qos()), 40..80),
    ]
}

fn unsubscribe_filters() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        9 => vec(topic_filter(), 1..8),
        1 => vec(topic_filter(), 40..80),
    ]
}

fn suback_codes() -> impl Strategy<Value = Vec<SubAckReturnCode>> {
    prop_oneof![
        9 => vec(suback_code(), 1..8),
        1 => vec(suback_code(), 128..300),
    ]
}

fn any_model() -> impl Strategy<Value = Model> {
    prop_oneof![
        connect().prop_map(Model::Connect),
        connack().prop_map(Model::ConnAck),
        publish().prop_map(Model::Publish),
        packet_id().prop_map(Model::PubAck),
        packet_id().prop_map(Model::PubRec),
        packet_id().prop_map(Model::PubRel),
        packet_id().prop_map(Model::PubComp),
        (packet_id(), subscribe_filters()).prop_map(|(id, f)| Model::Subscribe(id, f)),
        (packet_id(), suback_codes()).prop_map(|(id, c)| Model::SubAck(id, c)),
        (packet_id(), unsubscribe_filters()).prop_map(|(id, f)| Model::Unsubscribe(id, f)),
        packet_id().prop_map(Model::UnsubAck),
        Just(Model::PingReq),
        Just(Model::PingResp),
        Just(Model::Disconnect),
    ]
}

// ---------------------------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------------------------

/// Encodes `packet`, and checks everything a valid packet promises.
fn check_roundtrip(packet: Packet<'_>) -> Result<(), TestCaseError> {
    let len = packet
        .encoded_len()
        .map_err(|e| TestCaseError::fail(format!("valid packet refused: {e:?}")))?;
    // Room to spare, filled with a marker, so a write past `len` would show.
    let mut buf = vec![0xA5; len + 16];
    prop_assert_eq!(packet.encode(&mut buf), Ok(len));
    prop_assert!(buf[len..].iter().all(|&b| b == 0xA5), "wrote past len");
    let wire = &buf[..len];

    // The fixed header says what the packet is and how long.
    let header = decode_fixed_header(wire)
        .map_err(|e| TestCaseError::fail(format!("header refused: {e:?}")))?
        .ok_or_else(|| TestCaseError::fail("header incomplete"))?;
    prop_assert_eq!(header.packet_type, packet.packet_type());
    prop_assert_eq!(header.packet_len(), len);

    // Decoding gives the same packet back, using exactly `len` bytes, even with more behind it.
    prop_assert_eq!(
        decode(wire, len),
        Ok(Decoded::Complete { packet, len }),
        "exact buffer"
    );
    prop_assert_eq!(
        decode(&buf, usize::MAX),
        Ok(Decoded::Complete { packet, len }),
        "buffer with bytes after the packet"
    );

    // A decoded packet (its lists borrowed from the wire) re-encodes to the same bytes.
    if let Ok(Decoded::Complete {
        packet: decoded, ..
    }) = decode(wire, len)
    {
        prop_assert_eq!(decoded.encoded_len(), Ok(len));
        let mut again = vec![0u8; len];
        prop_assert_eq!(decoded.encode(&mut again), Ok(len));
        prop_assert_eq!(&again[..], wire);
    }

    // A limit one below the packet refuses it from the header, with the length to skip.
    prop_assert_eq!(
        decode(wire, len - 1),
        Err(Error::PacketTooLarge {
            packet_len: len,
            max: len - 1
        })
    );

    // One byte short: refused, with the length needed.
    let mut short = vec![0u8; len - 1];
    prop_assert_eq!(
        packet.encode(&mut short),
        Err(Error::BufferTooSmall { needed: len })
    );

    // Without its last byte the packet is incomplete, and exactly one byte is missing.
    prop_assert_eq!(
        decode(&wire[..len - 1], len),
        Ok(Decoded::Incomplete(if len > header.header_len {
            Needed::Exactly(1)
        } else {
            Needed::AtLeast(1)
        }))
    );
    Ok(())
}

/// What the decoder promises for any input at all: no panic, a coherent answer, and a decoded
/// packet that the encoder writes back to the same bytes (up to a non-minimal remaining length).
fn check_any_input(bytes: &[u8], max: usize) -> Result<(), TestCaseError> {
    let header = decode_fixed_header(bytes);
    match decode(bytes, max) {
        Ok(Decoded::Complete { packet, len }) => {
            prop_assert!(len <= bytes.len() && len <= max);
            let Ok(Some(h)) = header else {
                return Err(TestCaseError::fail(
                    "complete packet without a complete header",
                ));
            };
            prop_assert_eq!(h.packet_len(), len);
            prop_assert_eq!(h.packet_type, packet.packet_type());

            let n = packet
                .encoded_len()
                .map_err(|e| TestCaseError::fail(format!("decoded but not encodable: {e:?}")))?;
            let minimal_header = n - h.remaining_len;
            prop_assert!(minimal_header <= h.header_len);
            let mut out = vec![0u8; n];
            prop_assert_eq!(packet.encode(&mut out), Ok(n));
            // Same type, flags and body; only the remaining length may be written shorter.
            prop_assert_eq!(out[0], bytes[0]);
            prop_assert_eq!(&out[minimal_header..], &bytes[h.header_len..len]);
            prop_assert_eq!(decode(&out, n), Ok(Decoded::Complete { packet, len: n }));
        }
        Ok(Decoded::Incomplete(Needed::AtLeast(n))) => {
            prop_assert!(n >= 1);
            prop_assert_eq!(header, Ok(None));
            prop_assert!(bytes.len() < 5);
        }
        Ok(Decoded::Incomplete(Needed::Exactly(n))) => {
            prop_assert!(n >= 1);
            let Ok(Some(h)) = header else {
                return Err(TestCaseError::fail("exact need without a complete header"));
            };
            prop_assert_eq!(bytes.len() + n, h.packet_len());
            prop_assert!(h.packet_len() <= max);
        }
        Err(Error::PacketTooLarge {
            packet_len,
            max: limit,
        }) => {
            prop_assert_eq!(limit, max);
            prop_assert!(packet_len > max);
            let h = header.ok().flatten();
            prop_assert_eq!(h.map(|h| h.packet_len()), Some(packet_len));
        }
        Err(e) => {
            // A broken fixed header is reported the same by both functions.
            if let Err(he) = header {
                prop_assert_eq!(e, he);
            }
            prop_assert!(!e.to_string().is_empty());
        }
    }
    Ok(())
}

macro_rules! roundtrip_props {
    ($($name:ident: $strategy:expr;)*) => {
        proptest! {
            #![proptest_config(config())]
            $(
                #[test]
                fn $name(model in $strategy) {
                    model.with_packet(check_roundtrip)?;
                }
            )*
        }
    };
}

roundtrip_props! {
    roundtrip_connect: connect().prop_map(Model::Connect);
    roundtrip_connack: connack().prop_map(Model::ConnAck);
    roundtrip_publish: publish().prop_map(Model::Publish);
    roundtrip_puback: packet_id().prop_map(Model::PubAck);
    roundtrip_pubrec: packet_id().prop_map(Model::PubRec);
    roundtrip_pubrel: packet_id().prop_map(Model::PubRel);
    roundtrip_pubcomp: packet_id().prop_map(Model::PubComp);
    roundtrip_subscribe:
        (packet_id(), subscribe_filters()).prop_map(|(id, f)| Model::Subscribe(id, f));
    roundtrip_suback: (packet_id(), suback_codes()).prop_map(|(id, c)| Model::SubAck(id, c));
    roundtrip_unsubscribe:
        (packet_id(), unsubscribe_filters()).prop_map(|(id, f)| Model::Unsubscribe(id, f));
    roundtrip_unsuback: packet_id().prop_map(Model::UnsubAck);
    roundtrip_pingreq: Just(Model::PingReq);
    roundtrip_pingresp: Just(Model::PingResp);
    roundtrip_disconnect: Just(Model::Disconnect);
}

/// A valid encoding, then a few bytes overwritten and the end maybe cut: inputs near the valid
/// ones, where the decoder's rules are actually exercised.
fn mutated_encoding() -> impl Strategy<Value = Vec<u8>> {
    (
        any_model(),
        vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(|(model, edits, cut, do_cut)| {
            let mut bytes = model.with_packet(|p| {
                let mut buf = vec![0u8; p.encoded_len().unwrap_or(0)];
                let n = p.encode(&mut buf).unwrap_or(0);
                buf.truncate(n);
                buf
            });
            for (at, byte) in edits {
                if !bytes.is_empty() {
                    let i = at.index(bytes.len());
                    bytes[i] = byte;
                }
            }
            if do_cut && !bytes.is_empty() {
                bytes.truncate(cut.index(bytes.len()));
            }
            bytes
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn generated_fields_are_valid(name in topic_name(), filter in topic_filter()) {
        prop_assert_eq!(check_topic_name(&name), Ok(()));
        prop_assert_eq!(check_topic_filter(&filter), Ok(()));
    }

    #[test]
    fn roundtrip_any_packet(model in any_model()) {
        model.with_packet(check_roundtrip)?;
    }

    #[test]
    fn decode_arbitrary_bytes(bytes in vec(any::<u8>(), 0..64), max in 0usize..80) {
        check_any_input(&bytes, max)?;
        check_any_input(&bytes, usize::MAX)?;
    }

    #[test]
    fn decode_mutated_packets(bytes in mutated_encoding(), max in prop_oneof![Just(usize::MAX), 0usize..300]) {
        check_any_input(&bytes, max)?;
        check_any_input(&bytes, usize::MAX)?;
    }

    /// A PUBLISH-type first byte (the only type with free flags) followed by anything.
    #[test]
    fn decode_publish_shaped_bytes(first in 0x30u8..0x40, rest in vec(any::<u8>(), 0..40)) {
        let mut bytes = vec![first, u8::try_from(rest.len()).unwrap_or(0)];
        bytes.extend_from_slice(&rest);
        check_any_input(&bytes, usize::MAX)?;
    }
}
