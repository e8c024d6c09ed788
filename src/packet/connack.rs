//! CONNACK: the broker's answer to CONNECT (MQTT 3.2).

use super::fields::{Reader, Writer};
use super::{Encode, Error, Field, PacketType};

/// The return code of CONNACK (MQTT 3.2.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum ConnectReturnCode {
    /// 0: connection accepted.
    Accepted = 0,
    /// 1: the broker does not support protocol level 4.
    UnacceptableProtocolVersion = 1,
    /// 2: the client identifier is not allowed.
    IdentifierRejected = 2,
    /// 3: the MQTT service is unavailable.
    ServerUnavailable = 3,
    /// 4: the user name or password is malformed.
    BadUsernameOrPassword = 4,
    /// 5: the client is not authorized to connect.
    NotAuthorized = 5,
}

impl ConnectReturnCode {
    const fn from_u8(code: u8) -> Result<Self, Error> {
        Ok(match code {
            0 => Self::Accepted,
            1 => Self::UnacceptableProtocolVersion,
            2 => Self::IdentifierRejected,
            3 => Self::ServerUnavailable,
            4 => Self::BadUsernameOrPassword,
            5 => Self::NotAuthorized,
            other => return Err(Error::InvalidConnAckReturnCode(other)),
        })
    }
}

/// CONNACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ConnAck {
    /// The broker kept a session for this client (only with [`ConnectReturnCode::Accepted`]).
    pub session_present: bool,
    /// Accepted, or why not.
    pub code: ConnectReturnCode,
}

impl ConnAck {
    #[inline]
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, Error> {
        let flags = r.u8(Field::VariableHeader)?;
        let code = r.u8(Field::VariableHeader)?;
        if flags & 0xFE != 0 {
            return Err(Error::ReservedConnAckFlags(flags));
        }
        let ack = Self {
            session_present: flags == 1,
            code: ConnectReturnCode::from_u8(code)?,
        };
        ack.check()?;
        Ok(ack)
    }
}

impl Encode for ConnAck {
    fn first_byte(&self) -> u8 {
        (PacketType::ConnAck as u8) << 4
    }
    fn check(&self) -> Result<(), Error> {
        if self.session_present && self.code != ConnectReturnCode::Accepted {
            return Err(Error::SessionPresentWithRefusal);
        }
        Ok(())
    }
    fn body_len(&self) -> usize {
        2
    }
    fn write_body(&self, w: &mut Writer<'_>) {
        w.u8(u8::from(self.session_present));
        w.u8(self.code as u8);
    }
}

#[cfg(test)]
mod test {
    use super::super::{Decoded, Packet, decode};
    use super::*;

    #[test]
    fn test_vectors() {
        let cases = [
            (
                [0x20, 0x02, 0x01, 0x00], // CONNACK, length 2, session present, accepted
                ConnAck {
                    session_present: true,
                    code: ConnectReturnCode::Accepted,
                },
            ),
            (
                [0x20, 0x02, 0x00, 0x05], // CONNACK, length 2, no session, not authorized
                ConnAck {
                    session_present: false,
                    code: ConnectReturnCode::NotAuthorized,
                },
            ),
        ];
        for (bytes, ack) in cases {
            let packet = Packet::ConnAck(ack);
            assert_eq!(decode(&bytes, 8), Ok(Decoded::Complete { packet, len: 4 }));
            let mut buf = [0u8; 4];
            assert_eq!(packet.encode(&mut buf), Ok(4));
            assert_eq!(buf, bytes);
        }
        for code in 0..=5u8 {
            assert!(decode(&[0x20, 0x02, 0x00, code], 8).is_ok());
        }
    }

    #[test]
    fn test_errors() {
        assert_eq!(
            decode(&[0x20, 0x02, 0x00, 0x06], 8),
            Err(Error::InvalidConnAckReturnCode(6))
        );
        assert_eq!(
            decode(&[0x20, 0x02, 0x02, 0x00], 8),
            Err(Error::ReservedConnAckFlags(2))
        );
        assert_eq!(
            decode(&[0x20, 0x02, 0x01, 0x03], 8),
            Err(Error::SessionPresentWithRefusal)
        );
        assert_eq!(
            decode(&[0x20, 0x01, 0x00], 8),
            Err(Error::Truncated(Field::VariableHeader))
        );
        assert_eq!(
            decode(&[0x20, 0x03, 0x00, 0x00, 0x00], 8),
            Err(Error::TrailingBytes(PacketType::ConnAck))
        );
        let refused = ConnAck {
            session_present: true,
            code: ConnectReturnCode::ServerUnavailable,
        };
        assert_eq!(
            Packet::ConnAck(refused).encode(&mut [0u8; 4]),
            Err(Error::SessionPresentWithRefusal)
        );
    }
}
