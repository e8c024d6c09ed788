//! SUBSCRIBE: one or more topic filters, each with its requested QoS (MQTT 3.8).

use super::fields::{Reader, Writer, prefixed_len};
use super::list::{List, sealed::Codec};
use super::topic::{check_filter, check_filter_str};
use super::{Encode, Error, Field, PacketId, PacketType, QoS};

/// One topic filter with the maximum QoS the client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Subscription<'a> {
    /// The topic filter; `+` and `#` allowed as whole levels.
    pub filter: &'a str,
    /// The requested QoS.
    pub qos: QoS,
}

impl<'a> Codec<'a> for Subscription<'a> {
    fn read(buf: &mut &'a [u8]) -> Result<Self, Error> {
        let mut r = Reader::new(buf);
        let filter = check_filter(r.binary(Field::TopicFilter)?)?;
        // The upper six bits are reserved (MQTT-3.8.3-4).
        let qos = QoS::from_bits(r.u8(Field::RequestedQos)?)
            .ok_or(Error::InvalidQos(Field::RequestedQos))?;
        *buf = r.take_rest();
        Ok(Self { filter, qos })
    }
    fn check(&self) -> Result<(), Error> {
        check_filter_str(self.filter)
    }
    fn wire_len(&self) -> usize {
        prefixed_len(self.filter.len()) + 1
    }
    fn write(&self, w: &mut Writer<'_>) {
        w.binary(self.filter.as_bytes());
        w.u8(self.qos as u8);
    }
}

/// The filters of a SUBSCRIBE.
pub type SubscribeFilters<'a> = List<'a, Subscription<'a>>;

/// SUBSCRIBE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Subscribe<'a> {
    /// The identifier SUBACK will answer with.
    pub packet_id: PacketId,
    /// At least one filter.
    pub filters: SubscribeFilters<'a>,
}

impl<'a> Subscribe<'a> {
    #[inline]
    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Self, Error> {
        let packet_id = r.packet_id()?;
        let filters = List::read(r.take_rest(), Error::NoTopicFilters(PacketType::Subscribe))?;
        Ok(Self { packet_id, filters })
    }
}

impl Encode for Subscribe<'_> {
    fn first_byte(&self) -> u8 {
        ((PacketType::Subscribe as u8) << 4) | PacketType::Subscribe.fixed_flags()
    }
    fn check(&self) -> Result<(), Error> {
        self.filters
            .check(Error::NoTopicFilters(PacketType::Subscribe))
    }
    fn body_len(&self) -> usize {
        2 + self.filters.wire_len()
    }
    fn write_body(&self, w: &mut Writer<'_>) {
        w.u16(self.packet_id.get());
        self.filters.write(w);
    }
}

#[cfg(test)]
mod test {
    use super::super::{Decoded, Packet, decode};
    use super::*;

    #[rustfmt::skip]
    const BYTES: [u8; 18] = [
        0x82, 16,                           // SUBSCRIBE (flags 0010), remaining length 16
        0x00, 0x2A,                         // packet identifier 42
        0x00, 0x03, b'a', b'/', b'b', 0x01, // "a/b" at QoS 1
        0x00, 0x01, b'#', 0x00,             // "#" at QoS 0
        0x00, 0x01, b'+', 0x02,             // "+" at QoS 2
    ];

    #[test]
    fn test_vectors() {
        let subs = [
            Subscription {
                filter: "a/b",
                qos: QoS::AtLeastOnce,
            },
            Subscription {
                filter: "#",
                qos: QoS::AtMostOnce,
            },
            Subscription {
                filter: "+",
                qos: QoS::ExactlyOnce,
            },
        ];
        let packet = Packet::Subscribe(Subscribe {
            packet_id: PacketId::new(42).unwrap(),
            filters: (&subs).into(),
        });
        let bytes = BYTES;
        let decoded = decode(&bytes, 64).unwrap();
        assert_eq!(
            decoded,
            Decoded::Complete {
                packet,
                len: bytes.len()
            }
        );
        let Decoded::Complete {
            packet: Packet::Subscribe(s),
            ..
        } = decoded
        else {
            panic!()
        };
        assert_eq!(s.filters.len(), 3);
        assert_eq!(s.filters.iter().collect::<Vec<_>>(), subs.to_vec());
        let mut buf = [0u8; 64];
        assert_eq!(packet.encode(&mut buf), Ok(bytes.len()));
        assert_eq!(&buf[..bytes.len()], &bytes[..]);
        // A decoded packet re-encodes to the same bytes.
        assert_eq!(Packet::Subscribe(s).encode(&mut buf), Ok(bytes.len()));
        assert_eq!(&buf[..bytes.len()], &bytes[..]);
    }

    #[test]
    fn test_errors() {
        assert_eq!(
            decode(&[0x82, 0x02, 0x00, 0x01], 64),
            Err(Error::NoTopicFilters(PacketType::Subscribe))
        );
        assert_eq!(
            decode(&[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x03], 64),
            Err(Error::InvalidQos(Field::RequestedQos))
        );
        assert_eq!(
            decode(&[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x41], 64),
            Err(Error::InvalidQos(Field::RequestedQos))
        );
        assert_eq!(
            decode(&[0x82, 0x05, 0x00, 0x01, 0x00, 0x01, b'a'], 64),
            Err(Error::Truncated(Field::RequestedQos))
        );
        assert_eq!(
            decode(&[0x82, 0x07, 0x00, 0x01, 0x00, 0x02, b'a', b'#', 0x00], 64),
            Err(Error::InvalidTopicFilter)
        );
        assert_eq!(
            decode(&[0x82, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00], 64),
            Err(Error::EmptyTopic(Field::TopicFilter))
        );
        assert_eq!(
            decode(&[0x82, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00], 64),
            Err(Error::ZeroPacketId)
        );
        assert_eq!(
            decode(&[0x80, 0x00], 64),
            Err(Error::InvalidFlags {
                packet_type: PacketType::Subscribe,
                flags: 0
            })
        );
    }

    #[test]
    fn test_encoder_refuses_what_decoder_refuses() {
        let mut buf = [0u8; 64];
        let id = PacketId::new(1).unwrap();
        let none: [Subscription<'_>; 0] = [];
        let s = Subscribe {
            packet_id: id,
            filters: (&none).into(),
        };
        assert_eq!(
            Packet::Subscribe(s).encode(&mut buf),
            Err(Error::NoTopicFilters(PacketType::Subscribe))
        );
        let bad = [Subscription {
            filter: "a/#/b",
            qos: QoS::AtMostOnce,
        }];
        let s = Subscribe {
            packet_id: id,
            filters: (&bad).into(),
        };
        assert_eq!(
            Packet::Subscribe(s).encode(&mut buf),
            Err(Error::InvalidTopicFilter)
        );
    }
}
