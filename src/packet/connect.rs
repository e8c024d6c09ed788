//! CONNECT: the first packet of every connection (MQTT 3.1).

use super::fields::{Reader, Writer, check_len, check_no_null, prefixed_len};
use super::parts::Part;
use super::topic::{check_name, check_name_str};
use super::{Encode, Error, Field, PacketType, QoS};

const PROTOCOL_NAME: &[u8] = b"MQTT";
const PROTOCOL_LEVEL: u8 = 4;

const FLAG_RESERVED: u8 = 0x01;
const FLAG_CLEAN_SESSION: u8 = 0x02;
const FLAG_WILL: u8 = 0x04;
const WILL_QOS_SHIFT: u8 = 3;
const FLAG_WILL_RETAIN: u8 = 0x20;
const FLAG_PASSWORD: u8 = 0x40;
const FLAG_USERNAME: u8 = 0x80;

/// The message the broker publishes when the client goes away without DISCONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Will<'a> {
    /// Where it is published: a topic name (no wildcards).
    pub topic: &'a str,
    /// What is published.
    pub payload: &'a [u8],
    /// With which QoS.
    pub qos: QoS,
    /// Whether the broker retains it.
    pub retain: bool,
}

/// CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Connect<'a> {
    /// Start from a fresh session, and drop it when the connection ends.
    pub clean_session: bool,
    /// Keep alive in seconds; 0 turns the broker's timer off.
    pub keep_alive: u16,
    /// The client identifier; may be empty only with `clean_session`.
    pub client_id: &'a str,
    /// The will message, if any.
    pub will: Option<Will<'a>>,
    /// The user name, if any.
    pub username: Option<&'a str>,
    /// The password, if any; only together with a user name.
    pub password: Option<&'a [u8]>,
}

impl<'a> Connect<'a> {
    #[inline]
    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Self, Error> {
        if r.binary(Field::ProtocolName)? != PROTOCOL_NAME {
            return Err(Error::InvalidProtocolName);
        }
        let level = r.u8(Field::VariableHeader)?;
        if level != PROTOCOL_LEVEL {
            return Err(Error::UnsupportedProtocolLevel(level));
        }
        let flags = r.u8(Field::VariableHeader)?;
        let keep_alive = r.u16(Field::VariableHeader)?;
        if flags & FLAG_RESERVED != 0 {
            return Err(Error::ReservedConnectFlag);
        }
        let has_will = flags & FLAG_WILL != 0;
        let will_qos = QoS::from_bits((flags >> WILL_QOS_SHIFT) & 0x03)
            .ok_or(Error::InvalidQos(Field::VariableHeader))?;
        let will_retain = flags & FLAG_WILL_RETAIN != 0;
        if !has_will && (will_qos != QoS::AtMostOnce || will_retain) {
            return Err(Error::InconsistentWillFlags);
        }
        let has_username = flags & FLAG_USERNAME != 0;
        let has_password = flags & FLAG_PASSWORD != 0;
        if has_password && !has_username {
            return Err(Error::PasswordWithoutUsername);
        }
        let clean_session = flags & FLAG_CLEAN_SESSION != 0;

        let client_id = r.string(Field::ClientId)?;
        if client_id.is_empty() && !clean_session {
            return Err(Error::EmptyClientIdWithPersistentSession);
        }
        let will = if has_will {
            let topic = check_name(r.binary(Field::WillTopic)?, Field::WillTopic)?;
            let payload = r.binary(Field::WillPayload)?;
            Some(Will {
                topic,
                payload,
                qos: will_qos,
                retain: will_retain,
            })
        } else {
            None
        };
        let username = if has_username {
            Some(r.string(Field::Username)?)
        } else {
            None
        };
        let password = if has_password {
            Some(r.binary(Field::Password)?)
        } else {
            None
        };
        Ok(Self {
            clean_session,
            keep_alive,
            client_id,
            will,
            username,
            password,
        })
    }

    fn flags(&self) -> u8 {
        let mut flags = 0;
        if self.clean_session {
            flags |= FLAG_CLEAN_SESSION;
        }
        if let Some(will) = &self.will {
            flags |= FLAG_WILL | ((will.qos as u8) << WILL_QOS_SHIFT);
            if will.retain {
                flags |= FLAG_WILL_RETAIN;
            }
        }
        if self.username.is_some() {
            flags |= FLAG_USERNAME;
        }
        if self.password.is_some() {
            flags |= FLAG_PASSWORD;
        }
        flags
    }
}

impl Encode for Connect<'_> {
    fn first_byte(&self) -> u8 {
        (PacketType::Connect as u8) << 4
    }

    fn check(&self) -> Result<(), Error> {
        check_len(self.client_id.len(), Field::ClientId)?;
        check_no_null(self.client_id, Field::ClientId)?;
        if self.client_id.is_empty() && !self.clean_session {
            return Err(Error::EmptyClientIdWithPersistentSession);
        }
        if let Some(will) = &self.will {
            check_name_str(will.topic, Field::WillTopic)?;
            check_len(will.payload.len(), Field::WillPayload)?;
        }
        if let Some(username) = self.username {
            check_len(username.len(), Field::Username)?;
            check_no_null(username, Field::Username)?;
        }
        if let Some(password) = self.password {
            if self.username.is_none() {
                return Err(Error::PasswordWithoutUsername);
            }
            check_len(password.len(), Field::Password)?;
        }
        Ok(())
    }

    fn body_len(&self) -> usize {
        // Protocol name, level, flags, keep alive.
        let mut len = prefixed_len(PROTOCOL_NAME.len()) + 1 + 1 + 2;
        len += prefixed_len(self.client_id.len());
        if let Some(will) = &self.will {
            len += prefixed_len(will.topic.len()) + prefixed_len(will.payload.len());
        }
        if let Some(username) = self.username {
            len += prefixed_len(username.len());
        }
        if let Some(password) = self.password {
            len += prefixed_len(password.len());
        }
        len
    }

    fn write_body(&self, w: &mut Writer<'_>) {
        w.binary(PROTOCOL_NAME);
        w.u8(PROTOCOL_LEVEL);
        w.u8(self.flags());
        w.u16(self.keep_alive);
        w.binary(self.client_id.as_bytes());
        if let Some(will) = &self.will {
            w.binary(will.topic.as_bytes());
            w.binary(will.payload);
        }
        if let Some(username) = self.username {
            w.binary(username.as_bytes());
        }
        if let Some(password) = self.password {
            w.binary(password);
        }
    }
}

impl<'a> Connect<'a> {
    /// The body as a list of fields, in order, for [`super::encode_parts`].
    pub(crate) fn parts(&self) -> [Option<Part<'a>>; 9] {
        let will = self.will.as_ref();
        [
            Some(Part::Prefixed(PROTOCOL_NAME)),
            Some(Part::U8(PROTOCOL_LEVEL)),
            Some(Part::U8(self.flags())),
            Some(Part::U16(self.keep_alive)),
            Some(Part::Prefixed(self.client_id.as_bytes())),
            will.map(|w| Part::Prefixed(w.topic.as_bytes())),
            will.map(|w| Part::Prefixed(w.payload)),
            self.username.map(|u| Part::Prefixed(u.as_bytes())),
            self.password.map(Part::Prefixed),
        ]
    }
}

#[cfg(test)]
mod test {
    use super::super::{Decoded, Packet, decode};
    use super::*;

    #[rustfmt::skip]
    const FULL: [u8; 43] = [
        0x10, 41,                         // CONNECT, remaining length 41
        0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name
        0x04,                             // protocol level 4
        0b1110_1110,                      // user, password, will retain, will QoS 1, will, clean
        0x00, 0x14,                       // keep alive 20 s
        0x00, 0x03, b'd', b'e', b'v',     // client id "dev"
        0x00, 0x04, b'l', b'w', b't', b'/', // will topic "lwt/"
        0x00, 0x04, b'g', b'o', b'n', b'e', // will message "gone"
        0x00, 0x04, b'u', b's', b'e', b'r', // user name "user"
        0x00, 0x06, b's', b'e', b'c', b'r', b'e', b't', // password "secret"
    ];

    fn full() -> Connect<'static> {
        Connect {
            clean_session: true,
            keep_alive: 20,
            client_id: "dev",
            will: Some(Will {
                topic: "lwt/",
                payload: b"gone",
                qos: QoS::AtLeastOnce,
                retain: true,
            }),
            username: Some("user"),
            password: Some(b"secret"),
        }
    }

    fn minimal() -> Connect<'static> {
        Connect {
            clean_session: true,
            keep_alive: 0,
            client_id: "",
            will: None,
            username: None,
            password: None,
        }
    }

    #[test]
    fn test_parse_and_emit_full() {
        let packet = Packet::Connect(full());
        assert_eq!(
            decode(&FULL, 64),
            Ok(Decoded::Complete {
                packet,
                len: FULL.len()
            })
        );
        let mut buf = [0u8; 64];
        assert_eq!(packet.encoded_len(), Ok(FULL.len()));
        assert_eq!(packet.encode(&mut buf), Ok(FULL.len()));
        assert_eq!(&buf[..FULL.len()], &FULL[..]);
    }

    #[test]
    fn test_parse_minimal() {
        #[rustfmt::skip]
        let bytes = [
            0x10, 12,                            // CONNECT, remaining length 12
            0x00, 0x04, b'M', b'Q', b'T', b'T',  // protocol name
            0x04, 0x02,                          // level 4, clean session
            0x00, 0x00,                          // keep alive off
            0x00, 0x00,                          // empty client id
        ];
        let packet = Packet::Connect(minimal());
        assert_eq!(
            decode(&bytes, 64),
            Ok(Decoded::Complete { packet, len: 14 })
        );
    }

    fn with_flags(flags: u8) -> [u8; 43] {
        let mut bytes = FULL;
        bytes[9] = flags;
        bytes
    }

    #[test]
    fn test_header_errors() {
        let mut bytes = FULL;
        bytes[4] = b'X';
        assert_eq!(decode(&bytes, 64), Err(Error::InvalidProtocolName));
        let mut bytes = FULL;
        bytes[8] = 3;
        assert_eq!(decode(&bytes, 64), Err(Error::UnsupportedProtocolLevel(3)));
        assert_eq!(
            decode(&with_flags(0b1110_1111), 64),
            Err(Error::ReservedConnectFlag)
        );
        assert_eq!(
            decode(&with_flags(0b1111_1110), 64),
            Err(Error::InvalidQos(Field::VariableHeader))
        );
        assert_eq!(
            decode(&with_flags(0b0000_1010), 64),
            Err(Error::InconsistentWillFlags)
        );
        assert_eq!(
            decode(&with_flags(0b0010_0010), 64),
            Err(Error::InconsistentWillFlags)
        );
        assert_eq!(
            decode(&with_flags(0b0100_0010), 64),
            Err(Error::PasswordWithoutUsername)
        );
        assert_eq!(
            decode(&[0x10, 0x03, 0x00, 0x04, b'M'], 64),
            Err(Error::Truncated(Field::ProtocolName))
        );
    }

    #[test]
    fn test_payload_errors() {
        // Flags say will, but the packet ends after the client id.
        #[rustfmt::skip]
        let bytes = [0x10, 15, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x06, 0x00, 0x00, 0x00, 0x01, b'a', 0x00, 0x05];
        assert_eq!(decode(&bytes, 64), Err(Error::Truncated(Field::WillTopic)));
        // Will topic with a wildcard.
        let mut bytes = FULL;
        bytes[22] = b'#';
        assert_eq!(
            decode(&bytes, 64),
            Err(Error::WildcardInTopicName(Field::WillTopic))
        );
        // Client id with U+0000, user name with broken UTF-8.
        let mut bytes = FULL;
        bytes[15] = 0;
        assert_eq!(
            decode(&bytes, 64),
            Err(Error::NullCharacter(Field::ClientId))
        );
        let mut bytes = FULL;
        bytes[31] = 0xFF;
        assert_eq!(decode(&bytes, 64), Err(Error::InvalidUtf8(Field::Username)));
        // Empty client id without clean session.
        #[rustfmt::skip]
        let bytes = [0x10, 12, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x00, 0x00, 0x00, 0x00, 0x00];
        assert_eq!(
            decode(&bytes, 64),
            Err(Error::EmptyClientIdWithPersistentSession)
        );
        // One byte too many.
        let mut bytes = [0u8; 44];
        bytes[..43].copy_from_slice(&FULL);
        bytes[1] = 42;
        assert_eq!(
            decode(&bytes, 64),
            Err(Error::TrailingBytes(PacketType::Connect))
        );
    }

    #[test]
    fn test_encoder_refuses_what_decoder_refuses() {
        let mut buf = [0u8; 128];
        let c = Connect {
            password: Some(b"x"),
            ..minimal()
        };
        assert_eq!(
            Packet::Connect(c).encode(&mut buf),
            Err(Error::PasswordWithoutUsername)
        );
        let c = Connect {
            clean_session: false,
            ..minimal()
        };
        assert_eq!(
            Packet::Connect(c).encode(&mut buf),
            Err(Error::EmptyClientIdWithPersistentSession)
        );
        let c = Connect {
            client_id: "a\0",
            ..minimal()
        };
        assert_eq!(
            Packet::Connect(c).encode(&mut buf),
            Err(Error::NullCharacter(Field::ClientId))
        );
        let will = Will {
            topic: "a/+",
            payload: b"",
            qos: QoS::AtMostOnce,
            retain: false,
        };
        let c = Connect {
            will: Some(will),
            ..minimal()
        };
        assert_eq!(
            Packet::Connect(c).encode(&mut buf),
            Err(Error::WildcardInTopicName(Field::WillTopic))
        );
        let big = [0u8; 65_536];
        let c = Connect {
            username: Some("u"),
            password: Some(&big),
            ..minimal()
        };
        assert_eq!(
            Packet::Connect(c).encode(&mut buf),
            Err(Error::FieldTooLong(Field::Password))
        );
        assert_eq!(
            Packet::Connect(full()).encode(&mut buf[..42]),
            Err(Error::BufferTooSmall { needed: 43 })
        );
    }
}
