//! Packets as a list of fields written by one loop: how the session encodes what it sends.
//!
//! The per-type encoders (`Encode`) are straight-line code for each packet type, which is
//! what a host wants for speed. A device sends six types from parts it has already validated,
//! and on a Cortex-M six straight-line encoders cost about 1.9 KiB of flash. As a list of
//! fields, each kind of field is written by the same few instructions whatever the packet.

use super::fields::{Writer, prefixed_len};
use super::header::{self, remaining_len_size};
use super::{MAX_REMAINING_LENGTH, PacketType};

/// One field of a packet's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part<'a> {
    /// One byte.
    U8(u8),
    /// A two-byte integer, big-endian.
    U16(u16),
    /// Bytes with a two-byte length prefix (strings, binary data); at most 65,535.
    Prefixed(&'a [u8]),
    /// Bytes as they are (a payload).
    Raw(&'a [u8]),
}

impl Part<'_> {
    fn len(self) -> usize {
        match self {
            Part::U8(_) => 1,
            Part::U16(_) => 2,
            Part::Prefixed(bytes) => prefixed_len(bytes.len()),
            Part::Raw(bytes) => bytes.len(),
        }
    }
}

/// The first byte of a packet whose flags are fixed by its type (all but PUBLISH).
pub(crate) const fn first_byte(packet_type: PacketType) -> u8 {
    ((packet_type as u8) << 4) | packet_type.fixed_flags()
}

/// Writes the packet with first byte `first` and the body `parts` (the `None`s left out) at
/// the start of `buf`. Returns its length, or `None` if it does not fit (`buf` may then be
/// partly written) or the body exceeds what a remaining length can say. The parts are not
/// checked against the protocol's rules: the caller built them from validated values.
pub(crate) fn encode_parts(first: u8, parts: &[Option<Part<'_>>], buf: &mut [u8]) -> Option<usize> {
    let body: usize = parts.iter().flatten().map(|p| p.len()).sum();
    if body > MAX_REMAINING_LENGTH {
        return None;
    }
    let total = 1 + remaining_len_size(body) + body;
    let mut w = Writer::new(buf.get_mut(..total)?);
    header::write(&mut w, first, body);
    for part in parts.iter().flatten() {
        match *part {
            Part::U8(byte) => w.u8(byte),
            Part::U16(value) => w.u16(value),
            Part::Prefixed(bytes) => w.binary(bytes),
            Part::Raw(bytes) => w.bytes(bytes),
        }
    }
    (!w.overflowed() && w.remaining() == 0).then_some(total)
}

#[cfg(test)]
mod test {
    use super::super::{Decoded, Packet, PacketId, PubAck, decode};
    use super::*;

    #[test]
    fn test_parts_make_the_packet_the_encoder_makes() {
        let mut buf = [0u8; 16];
        let id = PacketId::new(0x0102).unwrap();
        let n = encode_parts(
            first_byte(PacketType::PubAck),
            &[Some(Part::U16(id.get()))],
            &mut buf,
        );
        assert_eq!(n, Some(4));
        assert_eq!(buf[..4], [0x40, 0x02, 0x01, 0x02]);
        assert_eq!(
            decode(&buf[..4], 16),
            Ok(Decoded::Complete {
                packet: Packet::PubAck(PubAck::new(id)),
                len: 4
            })
        );
        let parts = [
            Some(Part::Prefixed(b"ab")),
            None,
            Some(Part::U8(7)),
            Some(Part::Raw(b"xyz")),
        ];
        assert_eq!(encode_parts(0x30, &parts, &mut buf), Some(10));
        assert_eq!(buf[..10], [0x30, 8, 0, 2, b'a', b'b', 7, b'x', b'y', b'z']);
    }

    #[test]
    fn test_too_small_a_buffer_is_none() {
        let mut buf = [0u8; 9];
        assert_eq!(
            encode_parts(0x30, &[Some(Part::Raw(&[0; 8]))], &mut buf),
            None
        );
        assert_eq!(
            encode_parts(0x30, &[Some(Part::Raw(&[0; 7]))], &mut buf),
            Some(9)
        );
    }
}
