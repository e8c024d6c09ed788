//! The five packets that carry nothing but a packet identifier: PUBACK, PUBREC, PUBREL,
//! PUBCOMP and UNSUBACK (MQTT 3.4, 3.5, 3.6, 3.7, 3.11).

use super::fields::{Reader, Writer};
use super::{Encode, Error, PacketId, PacketType};

macro_rules! id_only_packet {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[cfg_attr(feature = "defmt", derive(defmt::Format))]
        pub struct $name {
            /// The identifier of the exchange this packet belongs to.
            pub packet_id: PacketId,
        }

        impl $name {
            /// A packet for the exchange `packet_id`.
            pub const fn new(packet_id: PacketId) -> Self {
                Self { packet_id }
            }

            #[inline]
            pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, Error> {
                Ok(Self { packet_id: r.packet_id()? })
            }
        }

        impl Encode for $name {
            #[inline]
            fn first_byte(&self) -> u8 {
                let t = PacketType::$name;
                ((t as u8) << 4) | t.fixed_flags()
            }
            #[inline]
            fn check(&self) -> Result<(), Error> {
                Ok(())
            }
            #[inline]
            fn body_len(&self) -> usize {
                2
            }
            #[inline]
            fn write_body(&self, w: &mut Writer<'_>) {
                w.u16(self.packet_id.get());
            }
        }
    };
}

id_only_packet!(
    /// PUBACK: the answer to a QoS 1 PUBLISH.
    PubAck
);
id_only_packet!(
    /// PUBREC: the first answer to a QoS 2 PUBLISH.
    PubRec
);
id_only_packet!(
    /// PUBREL: the sender's answer to PUBREC.
    PubRel
);
id_only_packet!(
    /// PUBCOMP: the last packet of a QoS 2 exchange.
    PubComp
);
id_only_packet!(
    /// UNSUBACK: the answer to UNSUBSCRIBE.
    UnsubAck
);

#[cfg(test)]
mod test {
    use super::super::{Decoded, Packet, decode};
    use super::*;

    fn id(v: u16) -> PacketId {
        PacketId::new(v).unwrap()
    }

    #[test]
    fn test_vectors() {
        let cases = [
            (Packet::PubAck(PubAck::new(id(10))), 0x40),
            (Packet::PubRec(PubRec::new(id(10))), 0x50),
            (Packet::PubRel(PubRel::new(id(10))), 0x62),
            (Packet::PubComp(PubComp::new(id(10))), 0x70),
            (Packet::UnsubAck(UnsubAck::new(id(10))), 0xB0),
        ];
        for (packet, first) in cases {
            let bytes = [
                first, // type and fixed flags
                0x02,  // remaining length
                0x00, 0x0A, // packet identifier 10
            ];
            let mut buf = [0u8; 4];
            assert_eq!(packet.encoded_len(), Ok(4));
            assert_eq!(packet.encode(&mut buf), Ok(4));
            assert_eq!(buf, bytes);
            assert_eq!(decode(&bytes, 4), Ok(Decoded::Complete { packet, len: 4 }));
        }
    }

    #[test]
    fn test_errors() {
        for first in [0x40, 0x50, 0x62, 0x70, 0xB0] {
            assert_eq!(
                decode(&[first, 0x02, 0x00, 0x00], 8),
                Err(Error::ZeroPacketId)
            );
            assert_eq!(
                decode(&[first, 0x01, 0x00], 8),
                Err(Error::Truncated(super::super::Field::PacketId))
            );
            let t = match first >> 4 {
                4 => PacketType::PubAck,
                5 => PacketType::PubRec,
                6 => PacketType::PubRel,
                7 => PacketType::PubComp,
                _ => PacketType::UnsubAck,
            };
            assert_eq!(
                decode(&[first, 0x03, 0x00, 0x01, 0x00], 8),
                Err(Error::TrailingBytes(t))
            );
            assert_eq!(
                decode(&[first ^ 0x02, 0x02, 0x00, 0x01], 8),
                Err(Error::InvalidFlags {
                    packet_type: t,
                    flags: (first ^ 0x02) & 0x0F
                })
            );
        }
    }
}
