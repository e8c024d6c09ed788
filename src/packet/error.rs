//! The codec's error type: one variant per rule, so a caller (and a log line) can say exactly
//! what was wrong with a packet.

use core::fmt;

use super::PacketType;

/// Which field of a packet a [`Error`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Field {
    /// The protocol name of CONNECT.
    ProtocolName,
    /// The client identifier of CONNECT.
    ClientId,
    /// The will topic of CONNECT.
    WillTopic,
    /// The will message of CONNECT.
    WillPayload,
    /// The user name of CONNECT.
    Username,
    /// The password of CONNECT.
    Password,
    /// The topic name of PUBLISH.
    TopicName,
    /// A topic filter of SUBSCRIBE or UNSUBSCRIBE.
    TopicFilter,
    /// A packet identifier.
    PacketId,
    /// The flags in the low nibble of the fixed header.
    Flags,
    /// A fixed-size part of the variable header (flags, keep alive, return code, ...).
    VariableHeader,
    /// The requested QoS byte that follows a topic filter in SUBSCRIBE.
    RequestedQos,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::ProtocolName => "protocol name",
            Field::ClientId => "client identifier",
            Field::WillTopic => "will topic",
            Field::WillPayload => "will message",
            Field::Username => "user name",
            Field::Password => "password",
            Field::TopicName => "topic name",
            Field::TopicFilter => "topic filter",
            Field::PacketId => "packet identifier",
            Field::Flags => "fixed-header flags",
            Field::VariableHeader => "variable header",
            Field::RequestedQos => "requested QoS",
        })
    }
}

/// Everything that can be wrong with a packet, on the way in (decoding) or on the way out
/// (encoding). The encoder refuses exactly what the decoder refuses, plus a buffer that is too
/// small.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    /// The packet type nibble is 0 or 15, which MQTT 3.1.1 reserves.
    ReservedPacketType(u8),
    /// The low nibble of the first byte is not what the specification fixes for this type
    /// (MQTT-2.2.2-1, MQTT-2.2.2-2).
    InvalidFlags {
        /// The packet type.
        packet_type: PacketType,
        /// The flags that were received.
        flags: u8,
    },
    /// The remaining length field runs past four bytes (MQTT 2.2.3).
    MalformedRemainingLength,
    /// The packet is longer than the caller's limit. `packet_len` is its full length (fixed
    /// header included), known from the fixed header alone: a reader can skip that many bytes
    /// and stay in step with the stream.
    PacketTooLarge {
        /// The full length of the packet in bytes, fixed header included.
        packet_len: usize,
        /// The limit in force.
        max: usize,
    },
    /// A field runs past the end of the packet, or a fixed-size field is missing.
    Truncated(Field),
    /// Bytes are left over after the last field the packet can hold.
    TrailingBytes(PacketType),
    /// A string is not well-formed UTF-8 (MQTT-1.5.3-1).
    InvalidUtf8(Field),
    /// A string contains U+0000 (MQTT-1.5.3-2).
    NullCharacter(Field),
    /// A string or binary field is longer than the 65,535 bytes its length prefix can say.
    FieldTooLong(Field),
    /// CONNECT names a protocol other than "MQTT" (MQTT-3.1.2-1).
    InvalidProtocolName,
    /// CONNECT names a protocol level other than 4, i.e. not MQTT 3.1.1 (MQTT-3.1.2-2).
    UnsupportedProtocolLevel(u8),
    /// The reserved bit of the CONNECT flags is set (MQTT-3.1.2-3).
    ReservedConnectFlag,
    /// Will QoS or will retain is set although the will flag is not (MQTT-3.1.2-11, -13, -15).
    InconsistentWillFlags,
    /// The password flag is set although the user name flag is not (MQTT-3.1.2-22).
    PasswordWithoutUsername,
    /// A zero-length client identifier with clean session 0 (MQTT-3.1.3-7).
    EmptyClientIdWithPersistentSession,
    /// A QoS field holds 3 (MQTT-3.3.1-4), or a requested QoS byte has reserved bits set
    /// (MQTT-3.8.3-4).
    InvalidQos(Field),
    /// DUP is set on a QoS 0 PUBLISH (MQTT-3.3.1-2).
    DupWithQos0,
    /// A packet identifier is 0 (MQTT-2.3.1-1).
    ZeroPacketId,
    /// A topic name or filter is empty (MQTT-4.7.3-1).
    EmptyTopic(Field),
    /// A topic name contains `+` or `#` (MQTT-3.3.2-2).
    WildcardInTopicName(Field),
    /// A topic filter uses `+` or `#` where they are not allowed (MQTT-4.7.1-2, -3).
    InvalidTopicFilter,
    /// SUBSCRIBE or UNSUBSCRIBE carries no topic filter (MQTT-3.8.3-3, MQTT-3.10.3-2).
    NoTopicFilters(PacketType),
    /// SUBACK carries no return code, or a code other than 0, 1, 2 or 0x80 (MQTT-3.9.3-2).
    InvalidSubAckReturnCode(u8),
    /// SUBACK carries no return code at all.
    NoSubAckReturnCodes,
    /// CONNACK carries a return code above 5 (MQTT-3.2.2.3).
    InvalidConnAckReturnCode(u8),
    /// Reserved bits of the CONNACK acknowledge flags are set (MQTT-3.2.2.1).
    ReservedConnAckFlags(u8),
    /// CONNACK says session present with a non-zero return code (MQTT-3.2.2-4).
    SessionPresentWithRefusal,
    /// [`decode_from_broker`](super::decode_from_broker): a packet type only a client sends
    /// (CONNECT, SUBSCRIBE, UNSUBSCRIBE, PINGREQ, DISCONNECT), refused from the fixed header.
    UnexpectedDirection(PacketType),
    /// Encoding: the output buffer is too small. `needed` is the full packet length.
    BufferTooSmall {
        /// The number of bytes the packet needs.
        needed: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::ReservedPacketType(t) => write!(f, "reserved packet type {t}"),
            Error::InvalidFlags { packet_type, flags } => {
                write!(
                    f,
                    "invalid fixed-header flags {flags:#06b} for {packet_type}"
                )
            }
            Error::MalformedRemainingLength => f.write_str("remaining length longer than 4 bytes"),
            Error::PacketTooLarge { packet_len, max } => {
                write!(f, "packet of {packet_len} bytes exceeds the limit of {max}")
            }
            Error::Truncated(field) => write!(f, "{field} runs past the end of the packet"),
            Error::TrailingBytes(t) => write!(f, "bytes left over at the end of {t}"),
            Error::InvalidUtf8(field) => write!(f, "{field} is not valid UTF-8"),
            Error::NullCharacter(field) => write!(f, "{field} contains U+0000"),
            Error::FieldTooLong(field) => write!(f, "{field} is longer than 65535 bytes"),
            Error::InvalidProtocolName => f.write_str("protocol name is not \"MQTT\""),
            Error::UnsupportedProtocolLevel(l) => {
                write!(f, "protocol level {l} is not 4 (MQTT 3.1.1)")
            }
            Error::ReservedConnectFlag => f.write_str("reserved CONNECT flag is set"),
            Error::InconsistentWillFlags => {
                f.write_str("will QoS or will retain set without the will flag")
            }
            Error::PasswordWithoutUsername => f.write_str("password without a user name"),
            Error::EmptyClientIdWithPersistentSession => {
                f.write_str("empty client identifier requires clean session")
            }
            Error::InvalidQos(field) => write!(f, "invalid QoS in {field}"),
            Error::DupWithQos0 => f.write_str("DUP set on a QoS 0 PUBLISH"),
            Error::ZeroPacketId => f.write_str("packet identifier 0"),
            Error::EmptyTopic(field) => write!(f, "empty {field}"),
            Error::WildcardInTopicName(field) => write!(f, "wildcard in {field}"),
            Error::InvalidTopicFilter => f.write_str("misplaced wildcard in topic filter"),
            Error::NoTopicFilters(t) => write!(f, "{t} without a topic filter"),
            Error::InvalidSubAckReturnCode(c) => write!(f, "invalid SUBACK return code {c:#04x}"),
            Error::NoSubAckReturnCodes => f.write_str("SUBACK without a return code"),
            Error::InvalidConnAckReturnCode(c) => write!(f, "invalid CONNACK return code {c}"),
            Error::ReservedConnAckFlags(b) => write!(f, "reserved CONNACK flags {b:#04x}"),
            Error::SessionPresentWithRefusal => {
                f.write_str("session present set on a refused connection")
            }
            Error::UnexpectedDirection(t) => write!(f, "{t} from a broker (only clients send it)"),
            Error::BufferTooSmall { needed } => {
                write!(f, "output buffer too small: {needed} bytes needed")
            }
        }
    }
}

impl core::error::Error for Error {}
