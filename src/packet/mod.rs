//! The MQTT 3.1.1 wire format (OASIS standard, protocol level 4): all 14 control packets, both
//! directions.
//!
//! # Contract
//!
//! - [`decode`] reads one packet from the start of a byte slice. It answers with the packet and
//!   the number of bytes it used, or with [`Decoded::Incomplete`] and how many more bytes are
//!   needed, or with an [`Error`] that names the broken rule. Strings, topics, payloads and the
//!   filter lists of SUBSCRIBE/SUBACK/UNSUBSCRIBE are borrowed from the input: nothing is copied.
//! - A packet whose fixed header announces more than the caller's `max_packet_size` is refused
//!   from the fixed header alone with [`Error::PacketTooLarge`], which carries the packet's full
//!   length so the caller can skip exactly that many bytes and stay in step with the stream.
//! - [`Packet::encode`] writes into a caller's buffer and returns the length used;
//!   [`Packet::encoded_len`] tells that length beforehand. A buffer that is too small gives
//!   [`Error::BufferTooSmall`] with the length needed; nothing that looks like a whole packet is
//!   left behind. The encoder refuses every packet the decoder would refuse.
//! - [`decode_from_broker`] is the client's reader: it decodes what a broker may send and
//!   refuses the five types only a client sends (CONNECT, SUBSCRIBE, UNSUBSCRIBE, PINGREQ,
//!   DISCONNECT) from the fixed header with [`Error::UnexpectedDirection`], before their body
//!   arrives. A client links neither their decoding nor their field and filter checks; tools,
//!   tests and brokers use [`decode`], which reads all 14.
//! - No function here panics, allocates or keeps state.
//!
//! ```
//! use shearwater::packet::{decode, Decoded, Packet, Publish, PublishQos};
//!
//! let publish = Publish {
//!     dup: false,
//!     qos: PublishQos::AtLeastOnce(7.try_into().unwrap()),
//!     retain: false,
//!     topic: "sensors/t1",
//!     payload: b"21.5",
//! };
//! let mut buf = [0u8; 64];
//! let len = Packet::Publish(publish).encode(&mut buf).unwrap();
//! match decode(&buf[..len], 1024).unwrap() {
//!     Decoded::Complete { packet: Packet::Publish(p), len: used } => {
//!         assert_eq!(used, len);
//!         assert_eq!(p.topic, "sensors/t1");
//!         assert_eq!(p.payload, b"21.5");
//!     }
//!     other => panic!("unexpected {other:?}"),
//! }
//! ```

mod ack;
mod connack;
mod connect;
mod error;
mod fields;
mod header;
mod list;
mod oversize;
mod parts;
mod publish;
mod suback;
mod subscribe;
mod topic;
mod unsubscribe;

use core::fmt;

pub use ack::{PubAck, PubComp, PubRec, PubRel, UnsubAck};
pub use connack::{ConnAck, ConnectReturnCode};
pub use connect::{Connect, Will};
pub use error::{Error, Field};
pub use header::{FixedHeader, MAX_REMAINING_LENGTH};
pub use list::List;
pub(crate) use oversize::peek_publish_head;
pub(crate) use parts::{Part, encode_parts, first_byte};
pub(crate) use publish::first_byte as publish_first_byte;
pub use publish::{Publish, PublishQos};
pub use suback::{SubAck, SubAckCodes, SubAckReturnCode};
pub use subscribe::{Subscribe, SubscribeFilters, Subscription};
pub use topic::{check_topic_filter, check_topic_name, topic_matches};
pub use unsubscribe::{Unsubscribe, UnsubscribeFilters};

use fields::Reader;
pub(crate) use fields::Writer;
use header::HeaderStatus;

/// A packet identifier: never 0 (MQTT-2.3.1-1), so the type itself says so.
pub type PacketId = core::num::NonZeroU16;

/// The quality of service of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum QoS {
    /// QoS 0: at most once, no acknowledgement.
    #[default]
    AtMostOnce = 0,
    /// QoS 1: at least once, acknowledged by PUBACK.
    AtLeastOnce = 1,
    /// QoS 2: exactly once, PUBREC / PUBREL / PUBCOMP.
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS of the two-bit value `bits`, or `None` for 3.
    #[inline]
    pub const fn from_bits(bits: u8) -> Option<Self> {
        match bits {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// The 14 packet types of MQTT 3.1.1, with their numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
#[allow(missing_docs, reason = "the names are the specification's")]
pub enum PacketType {
    Connect = 1,
    ConnAck = 2,
    Publish = 3,
    PubAck = 4,
    PubRec = 5,
    PubRel = 6,
    PubComp = 7,
    Subscribe = 8,
    SubAck = 9,
    Unsubscribe = 10,
    UnsubAck = 11,
    PingReq = 12,
    PingResp = 13,
    Disconnect = 14,
}

impl PacketType {
    #[inline]
    const fn from_nibble(nibble: u8) -> Result<Self, Error> {
        Ok(match nibble {
            1 => PacketType::Connect,
            2 => PacketType::ConnAck,
            3 => PacketType::Publish,
            4 => PacketType::PubAck,
            5 => PacketType::PubRec,
            6 => PacketType::PubRel,
            7 => PacketType::PubComp,
            8 => PacketType::Subscribe,
            9 => PacketType::SubAck,
            10 => PacketType::Unsubscribe,
            11 => PacketType::UnsubAck,
            12 => PacketType::PingReq,
            13 => PacketType::PingResp,
            14 => PacketType::Disconnect,
            other => return Err(Error::ReservedPacketType(other)),
        })
    }

    /// True for the types only a client sends: CONNECT, SUBSCRIBE, UNSUBSCRIBE, PINGREQ and
    /// DISCONNECT (MQTT 2.2.1). A broker never sends them.
    #[inline]
    pub const fn is_client_only(self) -> bool {
        matches!(
            self,
            PacketType::Connect
                | PacketType::Subscribe
                | PacketType::Unsubscribe
                | PacketType::PingReq
                | PacketType::Disconnect
        )
    }

    /// The flags MQTT-2.2.2 fixes for this type; PUBLISH has its own rules.
    #[inline]
    pub(crate) const fn fixed_flags(self) -> u8 {
        match self {
            PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => 0b0010,
            _ => 0,
        }
    }

    #[inline]
    const fn check_flags(self, flags: u8) -> Result<(), Error> {
        let ok = match self {
            // DUP, QoS and RETAIN are PUBLISH's own; of them only QoS 3 is unreadable here.
            PacketType::Publish if flags & 0b0110 == 0b0110 => {
                return Err(Error::InvalidQos(Field::Flags));
            }
            PacketType::Publish => true,
            _ => flags == self.fixed_flags(),
        };
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidFlags {
                packet_type: self,
                flags,
            })
        }
    }
}

impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PacketType::Connect => "CONNECT",
            PacketType::ConnAck => "CONNACK",
            PacketType::Publish => "PUBLISH",
            PacketType::PubAck => "PUBACK",
            PacketType::PubRec => "PUBREC",
            PacketType::PubRel => "PUBREL",
            PacketType::PubComp => "PUBCOMP",
            PacketType::Subscribe => "SUBSCRIBE",
            PacketType::SubAck => "SUBACK",
            PacketType::Unsubscribe => "UNSUBSCRIBE",
            PacketType::UnsubAck => "UNSUBACK",
            PacketType::PingReq => "PINGREQ",
            PacketType::PingResp => "PINGRESP",
            PacketType::Disconnect => "DISCONNECT",
        })
    }
}

/// One MQTT control packet, borrowing its variable-length fields from a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[allow(
    missing_docs,
    reason = "each variant is documented by its payload type"
)]
pub enum Packet<'a> {
    Connect(Connect<'a>),
    ConnAck(ConnAck),
    Publish(Publish<'a>),
    PubAck(PubAck),
    PubRec(PubRec),
    PubRel(PubRel),
    PubComp(PubComp),
    Subscribe(Subscribe<'a>),
    SubAck(SubAck<'a>),
    Unsubscribe(Unsubscribe<'a>),
    UnsubAck(UnsubAck),
    /// PINGREQ: no variable header, no payload.
    PingReq,
    /// PINGRESP: no variable header, no payload.
    PingResp,
    /// DISCONNECT: no variable header, no payload.
    Disconnect,
}

/// The outcome of [`decode`] on a buffer that breaks no rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Decoded<'a> {
    /// A whole packet starts the buffer.
    Complete {
        /// The packet, borrowing from the buffer.
        packet: Packet<'a>,
        /// How many bytes of the buffer it took.
        len: usize,
    },
    /// The buffer holds only the start of a packet (or nothing).
    Incomplete(Needed),
}

/// How many more bytes an incomplete packet needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Needed {
    /// The fixed header is not complete yet: at least this many more bytes.
    AtLeast(usize),
    /// The fixed header is complete: exactly this many more bytes finish the packet.
    Exactly(usize),
}

/// Reads the fixed header at the start of `buf`: `Ok(None)` until it is complete.
///
/// The type and flags are checked from the first byte alone.
pub fn decode_fixed_header(buf: &[u8]) -> Result<Option<FixedHeader>, Error> {
    Ok(match header::parse(buf)? {
        HeaderStatus::Complete(h) => Some(h),
        HeaderStatus::Incomplete => None,
    })
}

/// Decodes the packet at the start of `buf`, refusing any packet longer than
/// `max_packet_size` bytes (fixed header included) before reading its body.
#[inline]
pub fn decode(buf: &[u8], max_packet_size: usize) -> Result<Decoded<'_>, Error> {
    decode_as::<false>(buf, max_packet_size)
}

/// Decodes a packet a broker sent, as [`decode`] does, except that the types only a client
/// sends (see [`PacketType::is_client_only`]) are refused from the fixed header with
/// [`Error::UnexpectedDirection`]. A client links only the decoding of what it can receive.
#[inline]
pub fn decode_from_broker(buf: &[u8], max_packet_size: usize) -> Result<Decoded<'_>, Error> {
    decode_as::<true>(buf, max_packet_size)
}

/// [`decode`], or with `FROM_BROKER` [`decode_from_broker`].
#[inline(always)]
fn decode_as<const FROM_BROKER: bool>(
    buf: &[u8],
    max_packet_size: usize,
) -> Result<Decoded<'_>, Error> {
    let h = match header::parse(buf)? {
        HeaderStatus::Complete(h) => h,
        HeaderStatus::Incomplete => return Ok(Decoded::Incomplete(Needed::AtLeast(1))),
    };
    if FROM_BROKER && h.packet_type.is_client_only() {
        return Err(Error::UnexpectedDirection(h.packet_type));
    }
    let packet_len = h.packet_len();
    if packet_len > max_packet_size {
        return Err(Error::PacketTooLarge {
            packet_len,
            max: max_packet_size,
        });
    }
    let Some(body) = buf.get(h.header_len..packet_len) else {
        return Ok(Decoded::Incomplete(Needed::Exactly(
            packet_len.saturating_sub(buf.len()),
        )));
    };
    let packet = decode_body::<FROM_BROKER>(h.packet_type, h.flags, body)?;
    Ok(Decoded::Complete {
        packet,
        len: packet_len,
    })
}

/// Decodes the body of a packet whose fixed header has been read and checked; with
/// `FROM_BROKER`, the types only a client sends are not decoded (the caller refused them).
///
/// On the 64-bit hosts it is always inlined into `decode_as`, with PUBLISH's reader: left to
/// itself the compiler keeps both out of line there, and decoding a stream of PUBLISH packets
/// takes about 1.5 times as long (benches/codec.rs). On an MCU it stays a hint, which keeps the
/// client's flash as it was.
#[cfg_attr(any(target_arch = "x86_64", target_arch = "aarch64"), inline(always))]
#[cfg_attr(not(any(target_arch = "x86_64", target_arch = "aarch64")), inline)]
fn decode_body<const FROM_BROKER: bool>(
    packet_type: PacketType,
    flags: u8,
    body: &[u8],
) -> Result<Packet<'_>, Error> {
    let mut r = Reader::new(body);
    let packet = match packet_type {
        PacketType::Publish => Packet::Publish(Publish::read(flags, &mut r)?),
        PacketType::PubAck => Packet::PubAck(PubAck::read(&mut r)?),
        PacketType::ConnAck => Packet::ConnAck(ConnAck::read(&mut r)?),
        PacketType::PubRec => Packet::PubRec(PubRec::read(&mut r)?),
        PacketType::PubRel => Packet::PubRel(PubRel::read(&mut r)?),
        PacketType::PubComp => Packet::PubComp(PubComp::read(&mut r)?),
        PacketType::SubAck => Packet::SubAck(SubAck::read(&mut r)?),
        PacketType::UnsubAck => Packet::UnsubAck(UnsubAck::read(&mut r)?),
        PacketType::PingResp => Packet::PingResp,
        t if FROM_BROKER && t.is_client_only() => return Err(Error::UnexpectedDirection(t)),
        PacketType::Connect => Packet::Connect(Connect::read(&mut r)?),
        PacketType::Subscribe => Packet::Subscribe(Subscribe::read(&mut r)?),
        PacketType::Unsubscribe => Packet::Unsubscribe(Unsubscribe::read(&mut r)?),
        PacketType::PingReq => Packet::PingReq,
        PacketType::Disconnect => Packet::Disconnect,
    };
    r.finish(packet_type)?;
    Ok(packet)
}

/// What every packet type provides to the shared encoder ([`Packet::encode`]). The session
/// encodes what it sends through [`encode_parts`] instead.
pub(crate) trait Encode {
    /// The first byte: type and flags.
    fn first_byte(&self) -> u8;
    /// Applies the rules the decoder applies, so that nothing undecodable is written.
    fn check(&self) -> Result<(), Error>;
    /// The remaining length; valid once `check` passed.
    fn body_len(&self) -> usize;
    /// Writes the body; `w` has room for exactly `body_len` bytes more.
    fn write_body(&self, w: &mut Writer<'_>);
}

/// A packet with no body (PINGREQ, PINGRESP, DISCONNECT).
pub(crate) struct Empty(PacketType);

impl Encode for Empty {
    fn first_byte(&self) -> u8 {
        (self.0 as u8) << 4
    }
    fn check(&self) -> Result<(), Error> {
        Ok(())
    }
    fn body_len(&self) -> usize {
        0
    }
    fn write_body(&self, _: &mut Writer<'_>) {}
}

/// The full encoded length of `p`, after checking it.
#[inline]
fn encoded_len_of(p: &impl Encode) -> Result<(usize, usize), Error> {
    p.check()?;
    let body = p.body_len();
    let total = 1 + header::remaining_len_size(body) + body;
    if body > MAX_REMAINING_LENGTH {
        return Err(Error::PacketTooLarge {
            packet_len: total,
            max: MAX_REMAINING_LENGTH + 5,
        });
    }
    Ok((body, total))
}

/// Checks `p` and writes it at the start of `buf`.
#[inline]
fn encode_into(p: &impl Encode, buf: &mut [u8]) -> Result<usize, Error> {
    let (body, total) = encoded_len_of(p)?;
    let Some(out) = buf.get_mut(..total) else {
        return Err(Error::BufferTooSmall { needed: total });
    };
    let mut w = Writer::new(out);
    header::write(&mut w, p.first_byte(), body);
    p.write_body(&mut w);
    if w.overflowed() || w.remaining() != 0 {
        // Unreachable while `body_len` is right; reported rather than trusted.
        return Err(Error::BufferTooSmall { needed: total });
    }
    Ok(total)
}

macro_rules! dispatch {
    ($packet:expr, $p:ident => $body:expr) => {
        match $packet {
            Packet::Connect($p) => $body,
            Packet::ConnAck($p) => $body,
            Packet::Publish($p) => $body,
            Packet::PubAck($p) => $body,
            Packet::PubRec($p) => $body,
            Packet::PubRel($p) => $body,
            Packet::PubComp($p) => $body,
            Packet::Subscribe($p) => $body,
            Packet::SubAck($p) => $body,
            Packet::Unsubscribe($p) => $body,
            Packet::UnsubAck($p) => $body,
            Packet::PingReq => {
                let $p = &Empty(PacketType::PingReq);
                $body
            }
            Packet::PingResp => {
                let $p = &Empty(PacketType::PingResp);
                $body
            }
            Packet::Disconnect => {
                let $p = &Empty(PacketType::Disconnect);
                $body
            }
        }
    };
}

impl Packet<'_> {
    /// The type of this packet.
    pub const fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect => PacketType::Disconnect,
        }
    }

    /// The exact number of bytes [`encode`](Self::encode) will write, or the rule the packet
    /// breaks.
    #[inline]
    pub fn encoded_len(&self) -> Result<usize, Error> {
        dispatch!(self, p => encoded_len_of(p).map(|(_, total)| total))
    }

    /// Writes the packet at the start of `buf` and returns its length.
    #[inline]
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, Error> {
        dispatch!(self, p => encode_into(p, buf))
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_empty_packets() {
        // PINGREQ, PINGRESP, DISCONNECT: first byte, remaining length 0.
        for (packet, first) in [
            (Packet::PingReq, 0xC0),
            (Packet::PingResp, 0xD0),
            (Packet::Disconnect, 0xE0),
        ] {
            let mut buf = [0u8; 2];
            assert_eq!(packet.encode(&mut buf), Ok(2));
            assert_eq!(buf, [first, 0x00]);
            assert_eq!(decode(&buf, 16), Ok(Decoded::Complete { packet, len: 2 }));
            assert_eq!(
                decode(&[first, 0x01, 0x00], 16),
                Err(Error::TrailingBytes(packet.packet_type()))
            );
            assert_eq!(
                decode(&[first | 1, 0x00], 16),
                Err(Error::InvalidFlags {
                    packet_type: packet.packet_type(),
                    flags: 1
                })
            );
        }
    }

    #[test]
    fn test_incomplete_reports_what_is_missing() {
        assert_eq!(decode(&[], 16), Ok(Decoded::Incomplete(Needed::AtLeast(1))));
        assert_eq!(
            decode(&[0x40], 16),
            Ok(Decoded::Incomplete(Needed::AtLeast(1)))
        );
        assert_eq!(
            decode(&[0x40, 0x02, 0x00], 16),
            Ok(Decoded::Incomplete(Needed::Exactly(1)))
        );
    }

    #[test]
    fn test_oversize_refused_from_header() {
        // A PUBLISH announcing 200 bytes of body: refused before any body byte arrives.
        assert_eq!(
            decode(&[0x30, 0xC8, 0x01], 100),
            Err(Error::PacketTooLarge {
                packet_len: 203,
                max: 100
            })
        );
        assert_eq!(
            decode_fixed_header(&[0x30, 0xC8, 0x01]),
            Ok(Some(FixedHeader {
                packet_type: PacketType::Publish,
                flags: 0,
                header_len: 3,
                remaining_len: 200
            }))
        );
        assert_eq!(decode_fixed_header(&[0x30, 0xC8]), Ok(None));
    }

    #[test]
    fn test_buffer_too_small() {
        let mut buf = [0u8; 1];
        assert_eq!(
            Packet::PingReq.encode(&mut buf),
            Err(Error::BufferTooSmall { needed: 2 })
        );
        assert_eq!(Packet::PingReq.encoded_len(), Ok(2));
    }

    #[test]
    fn test_broker_decoder_refuses_client_only_types_from_the_header() {
        // CONNECT, SUBSCRIBE, UNSUBSCRIBE, PINGREQ, DISCONNECT: refused once the fixed header is
        // complete, before any body byte (or the size limit) matters.
        for (first, t) in [
            (0x10, PacketType::Connect),
            (0x82, PacketType::Subscribe),
            (0xA2, PacketType::Unsubscribe),
            (0xC0, PacketType::PingReq),
            (0xE0, PacketType::Disconnect),
        ] {
            assert!(t.is_client_only());
            assert_eq!(
                decode_from_broker(&[first, 0x7F], 16),
                Err(Error::UnexpectedDirection(t))
            );
            assert_eq!(
                decode_from_broker(&[first], 16),
                Ok(Decoded::Incomplete(Needed::AtLeast(1)))
            );
        }
        assert_eq!(
            decode_from_broker(&[0xC0, 0x00], 16),
            Err(Error::UnexpectedDirection(PacketType::PingReq))
        );
        assert_eq!(decode(&[0xC0, 0x00], 16).map(|_| ()), Ok(()));
        // What a broker sends decodes as with `decode`, errors included.
        for buf in [
            &[0x20, 0x02, 0x01, 0x00][..],
            &[0x30, 0x05, 0x00, 0x01, b'a', b'h', b'i'],
            &[0x40, 0x02, 0x00, 0x07],
            &[0x50, 0x02, 0x00, 0x07],
            &[0x62, 0x02, 0x00, 0x07],
            &[0x70, 0x02, 0x00, 0x07],
            &[0x90, 0x03, 0x00, 0x07, 0x01],
            &[0xB0, 0x02, 0x00, 0x07],
            &[0xD0, 0x00],
            &[0x40, 0x02, 0x00, 0x00],
            &[0x90, 0x03, 0x00, 0x07, 0x03],
            &[0x30, 0xC8, 0x01],
            &[0x61, 0x02, 0x00, 0x07],
        ] {
            assert_eq!(decode_from_broker(buf, 100), decode(buf, 100), "{buf:02x?}");
        }
    }

    #[test]
    fn test_reserved_types() {
        assert_eq!(decode(&[0x00, 0x00], 16), Err(Error::ReservedPacketType(0)));
        assert_eq!(
            decode(&[0xF0, 0x00], 16),
            Err(Error::ReservedPacketType(15))
        );
    }
}
