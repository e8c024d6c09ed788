//! PUBLISH: an application message, in either direction (MQTT 3.3).

use super::fields::{Reader, Writer, prefixed_len};
use super::topic::{check_name, check_name_str};
use super::{Encode, Error, Field, PacketId, PacketType, QoS};

const FLAG_RETAIN: u8 = 0x01;
const QOS_SHIFT: u8 = 1;
const FLAG_DUP: u8 = 0x08;

/// The QoS of a PUBLISH together with its packet identifier, which QoS 1 and 2 have and QoS 0
/// has not: the type makes the other combinations impossible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PublishQos {
    /// QoS 0.
    AtMostOnce,
    /// QoS 1 with its packet identifier.
    AtLeastOnce(PacketId),
    /// QoS 2 with its packet identifier.
    ExactlyOnce(PacketId),
}

impl PublishQos {
    /// The QoS level.
    #[inline]
    pub const fn qos(self) -> QoS {
        match self {
            PublishQos::AtMostOnce => QoS::AtMostOnce,
            PublishQos::AtLeastOnce(_) => QoS::AtLeastOnce,
            PublishQos::ExactlyOnce(_) => QoS::ExactlyOnce,
        }
    }

    /// The packet identifier, for QoS 1 and 2.
    #[inline]
    pub const fn packet_id(self) -> Option<PacketId> {
        match self {
            PublishQos::AtMostOnce => None,
            PublishQos::AtLeastOnce(id) | PublishQos::ExactlyOnce(id) => Some(id),
        }
    }
}

/// PUBLISH. Topic and payload borrow from the buffer the packet was decoded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Publish<'a> {
    /// This is a re-delivery of an earlier attempt (never with QoS 0).
    pub dup: bool,
    /// QoS and, for QoS 1 and 2, the packet identifier.
    pub qos: PublishQos,
    /// The broker keeps this message for future subscribers.
    pub retain: bool,
    /// The topic name: non-empty, no wildcards.
    pub topic: &'a str,
    /// The application message.
    pub payload: &'a [u8],
}

impl<'a> Publish<'a> {
    // Always inlined on the 64-bit hosts: see `decode_body`.
    #[cfg_attr(any(target_arch = "x86_64", target_arch = "aarch64"), inline(always))]
    #[cfg_attr(not(any(target_arch = "x86_64", target_arch = "aarch64")), inline)]
    pub(crate) fn read(flags: u8, r: &mut Reader<'a>) -> Result<Self, Error> {
        let dup = flags & FLAG_DUP != 0;
        let retain = flags & FLAG_RETAIN != 0;
        let topic = check_name(r.binary(Field::TopicName)?, Field::TopicName)?;
        let qos = match (flags >> QOS_SHIFT) & 0x03 {
            0 if dup => return Err(Error::DupWithQos0),
            0 => PublishQos::AtMostOnce,
            1 => PublishQos::AtLeastOnce(r.packet_id()?),
            2 => PublishQos::ExactlyOnce(r.packet_id()?),
            // The fixed header check already refused QoS 3.
            _ => return Err(Error::InvalidQos(Field::Flags)),
        };
        // The payload is whatever is left: it cannot run past the packet.
        let payload = r.take_rest();
        Ok(Self {
            dup,
            qos,
            retain,
            topic,
            payload,
        })
    }
}

impl Publish<'static> {
    /// The head of a PUBLISH too large to hold (see `oversize.rs`): as far as it is known, with
    /// an empty topic and payload.
    pub(crate) const fn head(dup: bool, qos: PublishQos) -> Self {
        Publish {
            dup,
            qos,
            retain: false,
            topic: "",
            payload: &[],
        }
    }
}

/// The first byte of a PUBLISH with these flags.
#[inline]
pub(crate) const fn first_byte(dup: bool, qos: QoS, retain: bool) -> u8 {
    let mut first = ((PacketType::Publish as u8) << 4) | ((qos as u8) << QOS_SHIFT);
    if dup {
        first |= FLAG_DUP;
    }
    if retain {
        first |= FLAG_RETAIN;
    }
    first
}

impl Encode for Publish<'_> {
    #[inline]
    fn first_byte(&self) -> u8 {
        first_byte(self.dup, self.qos.qos(), self.retain)
    }

    #[inline]
    fn check(&self) -> Result<(), Error> {
        if self.dup && self.qos == PublishQos::AtMostOnce {
            return Err(Error::DupWithQos0);
        }
        check_name_str(self.topic, Field::TopicName)
    }

    #[inline]
    fn body_len(&self) -> usize {
        let id_len = if self.qos.packet_id().is_some() { 2 } else { 0 };
        prefixed_len(self.topic.len()) + id_len + self.payload.len()
    }

    #[inline]
    fn write_body(&self, w: &mut Writer<'_>) {
        w.binary(self.topic.as_bytes());
        if let Some(id) = self.qos.packet_id() {
            w.u16(id.get());
        }
        w.bytes(self.payload);
    }
}

#[cfg(test)]
mod test {
    use super::super::{Decoded, Packet, decode};
    use super::*;

    fn id(v: u16) -> PacketId {
        PacketId::new(v).unwrap()
    }

    #[test]
    fn test_vectors() {
        #[rustfmt::skip]
        let qos1: &[u8] = &[
            0x3B, 10,                   // PUBLISH, DUP, QoS 1, RETAIN; remaining length 10
            0x00, 0x03, b'a', b'/', b'b', // topic "a/b"
            0x00, 0x0A,                 // packet identifier 10
            b'h', b'i', b'!',           // payload
        ];
        let p = Publish {
            dup: true,
            qos: PublishQos::AtLeastOnce(id(10)),
            retain: true,
            topic: "a/b",
            payload: b"hi!",
        };
        #[rustfmt::skip]
        let qos0: &[u8] = &[
            0x30, 5,                    // PUBLISH, QoS 0; remaining length 5
            0x00, 0x03, b'a', b'/', b'b', // topic "a/b", empty payload
        ];
        let p0 = Publish {
            dup: false,
            qos: PublishQos::AtMostOnce,
            retain: false,
            topic: "a/b",
            payload: b"",
        };
        #[rustfmt::skip]
        let qos2: &[u8] = &[
            0x34, 6,                    // PUBLISH, QoS 2; remaining length 6
            0x00, 0x01, b'x',           // topic "x"
            0xFF, 0xFF,                 // packet identifier 65535
            0x00,                       // one payload byte (payloads may hold zeros)
        ];
        let p2 = Publish {
            dup: false,
            qos: PublishQos::ExactlyOnce(id(65_535)),
            retain: false,
            topic: "x",
            payload: &[0],
        };
        for (bytes, publish) in [(qos1, p), (qos0, p0), (qos2, p2)] {
            let packet = Packet::Publish(publish);
            assert_eq!(
                decode(bytes, 64),
                Ok(Decoded::Complete {
                    packet,
                    len: bytes.len()
                })
            );
            let mut buf = [0u8; 64];
            assert_eq!(packet.encoded_len(), Ok(bytes.len()));
            assert_eq!(packet.encode(&mut buf), Ok(bytes.len()));
            assert_eq!(&buf[..bytes.len()], bytes);
        }
    }

    #[test]
    fn test_errors() {
        assert_eq!(
            decode(&[0x36, 0x00], 64),
            Err(Error::InvalidQos(Field::Flags))
        );
        assert_eq!(
            decode(&[0x38, 0x03, 0x00, 0x01, b'a'], 64),
            Err(Error::DupWithQos0)
        );
        assert_eq!(
            decode(&[0x30, 0x02, 0x00, 0x00], 64),
            Err(Error::EmptyTopic(Field::TopicName))
        );
        assert_eq!(
            decode(&[0x30, 0x03, 0x00, 0x01, b'+'], 64),
            Err(Error::WildcardInTopicName(Field::TopicName))
        );
        assert_eq!(
            decode(&[0x30, 0x03, 0x00, 0x01, 0xC0], 64),
            Err(Error::InvalidUtf8(Field::TopicName))
        );
        assert_eq!(
            decode(&[0x30, 0x03, 0x00, 0x01, 0x00], 64),
            Err(Error::NullCharacter(Field::TopicName))
        );
        assert_eq!(
            decode(&[0x30, 0x03, 0x00, 0x05, b'a'], 64),
            Err(Error::Truncated(Field::TopicName))
        );
        assert_eq!(
            decode(&[0x32, 0x04, 0x00, 0x01, b'a', 0x00], 64),
            Err(Error::Truncated(Field::PacketId))
        );
        assert_eq!(
            decode(&[0x32, 0x05, 0x00, 0x01, b'a', 0x00, 0x00], 64),
            Err(Error::ZeroPacketId)
        );
    }

    #[test]
    fn test_encoder_refuses_what_decoder_refuses() {
        let mut buf = [0u8; 64];
        let base = Publish {
            dup: false,
            qos: PublishQos::AtMostOnce,
            retain: false,
            topic: "t",
            payload: b"",
        };
        let cases = [
            (Publish { dup: true, ..base }, Error::DupWithQos0),
            (
                Publish { topic: "", ..base },
                Error::EmptyTopic(Field::TopicName),
            ),
            (
                Publish {
                    topic: "a/#",
                    ..base
                },
                Error::WildcardInTopicName(Field::TopicName),
            ),
            (
                Publish {
                    topic: "a\0",
                    ..base
                },
                Error::NullCharacter(Field::TopicName),
            ),
        ];
        for (p, err) in cases {
            assert_eq!(Packet::Publish(p).encode(&mut buf), Err(err));
            assert_eq!(Packet::Publish(p).encoded_len(), Err(err));
        }
        let long_topic = "a".repeat(65_536);
        let p = Publish {
            topic: &long_topic,
            ..base
        };
        assert_eq!(
            Packet::Publish(p).encoded_len(),
            Err(Error::FieldTooLong(Field::TopicName))
        );
        let p = Publish {
            payload: &[1; 100],
            ..base
        };
        assert_eq!(
            Packet::Publish(p).encode(&mut buf),
            Err(Error::BufferTooSmall { needed: 105 })
        );
    }

    #[test]
    fn test_large_payload_header() {
        // 200 bytes of payload: a two-byte remaining length.
        let payload = [7u8; 200];
        let p = Publish {
            dup: false,
            qos: PublishQos::AtMostOnce,
            retain: false,
            topic: "t",
            payload: &payload,
        };
        let mut buf = [0u8; 256];
        let len = Packet::Publish(p).encode(&mut buf).unwrap();
        assert_eq!(&buf[..3], &[0x30, 0xCB, 0x01]); // 203 = 0x4B | 0x80, then 1
        assert_eq!(
            decode(&buf[..len], 256),
            Ok(Decoded::Complete {
                packet: Packet::Publish(p),
                len
            })
        );
    }
}
