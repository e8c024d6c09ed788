//! SUBACK: one return code per filter of the SUBSCRIBE it answers (MQTT 3.9).

use super::fields::{Reader, Writer};
use super::list::{List, sealed::Codec};
use super::{Encode, Error, Field, PacketId, PacketType, QoS};

/// The broker's answer for one topic filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum SubAckReturnCode {
    /// Subscribed; messages come with at most QoS 0.
    GrantedQos0 = 0x00,
    /// Subscribed; messages come with at most QoS 1.
    GrantedQos1 = 0x01,
    /// Subscribed; messages come with at most QoS 2.
    GrantedQos2 = 0x02,
    /// Refused.
    Failure = 0x80,
}

impl SubAckReturnCode {
    /// The granted QoS, or `None` for a refusal.
    pub const fn granted(self) -> Option<QoS> {
        match self {
            Self::GrantedQos0 => Some(QoS::AtMostOnce),
            Self::GrantedQos1 => Some(QoS::AtLeastOnce),
            Self::GrantedQos2 => Some(QoS::ExactlyOnce),
            Self::Failure => None,
        }
    }

    /// The success code for `qos`.
    pub const fn from_qos(qos: QoS) -> Self {
        match qos {
            QoS::AtMostOnce => Self::GrantedQos0,
            QoS::AtLeastOnce => Self::GrantedQos1,
            QoS::ExactlyOnce => Self::GrantedQos2,
        }
    }

    /// The code a SUBACK byte stands for, or `None` for a byte no code has.
    #[inline]
    const fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0x00 => Some(Self::GrantedQos0),
            0x01 => Some(Self::GrantedQos1),
            0x02 => Some(Self::GrantedQos2),
            0x80 => Some(Self::Failure),
            _ => None,
        }
    }
}

impl<'a> Codec<'a> for SubAckReturnCode {
    fn read(buf: &mut &'a [u8]) -> Result<Self, Error> {
        let mut r = Reader::new(buf);
        let byte = r.u8(Field::VariableHeader)?;
        let code = Self::from_byte(byte).ok_or(Error::InvalidSubAckReturnCode(byte))?;
        *buf = r.take_rest();
        Ok(code)
    }
    // The byte and nothing else: no `Error` is built only to be dropped by `ok()`, which
    // saves a third of the iterator's code on an MCU.
    fn next(buf: &mut &'a [u8]) -> Option<Self> {
        let (&byte, rest) = buf.split_first()?;
        let code = Self::from_byte(byte)?;
        *buf = rest;
        Some(code)
    }
    fn check(&self) -> Result<(), Error> {
        Ok(())
    }
    fn wire_len(&self) -> usize {
        1
    }
    fn write(&self, w: &mut Writer<'_>) {
        w.u8(*self as u8);
    }
}

/// The return codes of a SUBACK, in the order of the SUBSCRIBE's filters.
pub type SubAckCodes<'a> = List<'a, SubAckReturnCode>;

/// SUBACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SubAck<'a> {
    /// The identifier of the SUBSCRIBE this answers.
    pub packet_id: PacketId,
    /// At least one return code.
    pub codes: SubAckCodes<'a>,
}

impl<'a> SubAck<'a> {
    #[inline]
    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Self, Error> {
        let packet_id = r.packet_id()?;
        let codes = List::read(r.take_rest(), Error::NoSubAckReturnCodes)?;
        Ok(Self { packet_id, codes })
    }
}

impl Encode for SubAck<'_> {
    fn first_byte(&self) -> u8 {
        (PacketType::SubAck as u8) << 4
    }
    fn check(&self) -> Result<(), Error> {
        self.codes.check(Error::NoSubAckReturnCodes)
    }
    fn body_len(&self) -> usize {
        2 + self.codes.wire_len()
    }
    fn write_body(&self, w: &mut Writer<'_>) {
        w.u16(self.packet_id.get());
        self.codes.write(w);
    }
}

#[cfg(test)]
mod test {
    use super::super::{Decoded, Packet, decode};
    use super::*;

    #[test]
    fn test_vectors() {
        #[rustfmt::skip]
        let bytes = [
            0x90, 0x06,             // SUBACK, remaining length 6
            0x00, 0x2A,             // packet identifier 42
            0x00, 0x01, 0x02, 0x80, // granted 0, 1, 2, failure
        ];
        let codes = [
            SubAckReturnCode::GrantedQos0,
            SubAckReturnCode::GrantedQos1,
            SubAckReturnCode::GrantedQos2,
            SubAckReturnCode::Failure,
        ];
        let packet = Packet::SubAck(SubAck {
            packet_id: PacketId::new(42).unwrap(),
            codes: (&codes).into(),
        });
        assert_eq!(decode(&bytes, 16), Ok(Decoded::Complete { packet, len: 8 }));
        let mut buf = [0u8; 16];
        assert_eq!(packet.encode(&mut buf), Ok(8));
        assert_eq!(&buf[..8], &bytes[..]);
        assert_eq!(
            codes.iter().map(|c| c.granted()).collect::<Vec<_>>(),
            vec![
                Some(QoS::AtMostOnce),
                Some(QoS::AtLeastOnce),
                Some(QoS::ExactlyOnce),
                None
            ]
        );
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            assert_eq!(SubAckReturnCode::from_qos(qos).granted(), Some(qos));
        }
    }

    #[test]
    fn test_errors() {
        assert_eq!(
            decode(&[0x90, 0x02, 0x00, 0x01], 16),
            Err(Error::NoSubAckReturnCodes)
        );
        assert_eq!(
            decode(&[0x90, 0x03, 0x00, 0x01, 0x03], 16),
            Err(Error::InvalidSubAckReturnCode(0x03))
        );
        assert_eq!(
            decode(&[0x90, 0x03, 0x00, 0x01, 0x81], 16),
            Err(Error::InvalidSubAckReturnCode(0x81))
        );
        assert_eq!(
            decode(&[0x90, 0x03, 0x00, 0x00, 0x00], 16),
            Err(Error::ZeroPacketId)
        );
        let none: [SubAckReturnCode; 0] = [];
        let s = SubAck {
            packet_id: PacketId::new(1).unwrap(),
            codes: (&none).into(),
        };
        assert_eq!(
            Packet::SubAck(s).encode(&mut [0u8; 8]),
            Err(Error::NoSubAckReturnCodes)
        );
    }
}
