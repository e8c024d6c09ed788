//! UNSUBSCRIBE: one or more topic filters to forget (MQTT 3.10).

use super::fields::{Reader, Writer, prefixed_len};
use super::list::{List, sealed::Codec};
use super::topic::{check_filter, check_filter_str};
use super::{Encode, Error, Field, PacketId, PacketType};

impl<'a> Codec<'a> for &'a str {
    fn read(buf: &mut &'a [u8]) -> Result<Self, Error> {
        let mut r = Reader::new(buf);
        let filter = check_filter(r.binary(Field::TopicFilter)?)?;
        *buf = r.take_rest();
        Ok(filter)
    }
    fn check(&self) -> Result<(), Error> {
        check_filter_str(self)
    }
    fn wire_len(&self) -> usize {
        prefixed_len(self.len())
    }
    fn write(&self, w: &mut Writer<'_>) {
        w.binary(self.as_bytes());
    }
}

/// The topic filters of an UNSUBSCRIBE.
pub type UnsubscribeFilters<'a> = List<'a, &'a str>;

/// UNSUBSCRIBE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Unsubscribe<'a> {
    /// The identifier UNSUBACK will answer with.
    pub packet_id: PacketId,
    /// At least one topic filter.
    pub filters: UnsubscribeFilters<'a>,
}

impl<'a> Unsubscribe<'a> {
    #[inline]
    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Self, Error> {
        let packet_id = r.packet_id()?;
        let filters = List::read(
            r.take_rest(),
            Error::NoTopicFilters(PacketType::Unsubscribe),
        )?;
        Ok(Self { packet_id, filters })
    }
}

impl Encode for Unsubscribe<'_> {
    fn first_byte(&self) -> u8 {
        ((PacketType::Unsubscribe as u8) << 4) | PacketType::Unsubscribe.fixed_flags()
    }
    fn check(&self) -> Result<(), Error> {
        self.filters
            .check(Error::NoTopicFilters(PacketType::Unsubscribe))
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
    const BYTES: [u8; 13] = [
        0xA2, 11,                      // UNSUBSCRIBE (flags 0010), remaining length 11
        0x00, 0x07,                    // packet identifier 7
        0x00, 0x03, b'a', b'/', b'+',  // "a/+"
        0x00, 0x02, b'b', b'c',        // "bc"
    ];

    #[test]
    fn test_vectors() {
        let filters = ["a/+", "bc"];
        let packet = Packet::Unsubscribe(Unsubscribe {
            packet_id: PacketId::new(7).unwrap(),
            filters: (&filters).into(),
        });
        assert_eq!(
            decode(&BYTES, 64),
            Ok(Decoded::Complete { packet, len: 13 })
        );
        let mut buf = [0u8; 64];
        assert_eq!(packet.encode(&mut buf), Ok(13));
        assert_eq!(&buf[..13], &BYTES[..]);
        if let Ok(Decoded::Complete {
            packet: Packet::Unsubscribe(u),
            ..
        }) = decode(&BYTES, 64)
        {
            assert_eq!(u.filters.iter().collect::<Vec<_>>(), filters.to_vec());
            assert_eq!(u.filters.len(), 2);
        } else {
            panic!("did not decode");
        }
    }

    #[test]
    fn test_errors() {
        assert_eq!(
            decode(&[0xA2, 0x02, 0x00, 0x01], 64),
            Err(Error::NoTopicFilters(PacketType::Unsubscribe))
        );
        assert_eq!(
            decode(&[0xA2, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00], 64),
            Err(Error::Truncated(Field::TopicFilter))
        );
        assert_eq!(
            decode(&[0xA2, 0x05, 0x00, 0x01, 0x00, 0x01, b'#'], 64).map(|_| ()),
            Ok(())
        );
        assert_eq!(
            decode(&[0xA2, 0x06, 0x00, 0x01, 0x00, 0x02, b'a', b'+'], 64),
            Err(Error::InvalidTopicFilter)
        );
        assert_eq!(
            decode(&[0xA0, 0x00], 64),
            Err(Error::InvalidFlags {
                packet_type: PacketType::Unsubscribe,
                flags: 0
            })
        );
        let none: [&str; 0] = [];
        let u = Unsubscribe {
            packet_id: PacketId::new(1).unwrap(),
            filters: (&none).into(),
        };
        assert_eq!(
            Packet::Unsubscribe(u).encode(&mut [0u8; 16]),
            Err(Error::NoTopicFilters(PacketType::Unsubscribe))
        );
    }
}
