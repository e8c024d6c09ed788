//! The fixed header: packet type, flags and the variable-length "remaining length".

use super::fields::Writer;
use super::{Error, PacketType};

/// The largest remaining length four bytes can encode (MQTT 2.2.3).
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// A parsed fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FixedHeader {
    /// The packet type from the high nibble of the first byte.
    pub packet_type: PacketType,
    /// The low nibble of the first byte.
    pub flags: u8,
    /// The length of the fixed header itself: 2 to 5 bytes.
    pub header_len: usize,
    /// The length of everything after the fixed header.
    pub remaining_len: usize,
}

impl FixedHeader {
    /// The full length of the packet, fixed header included.
    pub const fn packet_len(&self) -> usize {
        self.header_len + self.remaining_len
    }
}

/// Result of reading a fixed header from the start of a buffer.
pub(crate) enum HeaderStatus {
    /// The header is complete.
    Complete(FixedHeader),
    /// The buffer ends inside the header: at least this many more bytes are needed.
    Incomplete,
}

/// Reads a fixed header. The packet type and its flags are checked from the first byte, before
/// the length is complete, so a bad stream is refused as early as possible.
#[inline]
pub(crate) fn parse(buf: &[u8]) -> Result<HeaderStatus, Error> {
    let Some((&first, rest)) = buf.split_first() else {
        return Ok(HeaderStatus::Incomplete);
    };
    let packet_type = PacketType::from_nibble(first >> 4)?;
    let flags = first & 0x0F;
    packet_type.check_flags(flags)?;

    let mut remaining_len = 0usize;
    for (i, &byte) in rest.iter().take(4).enumerate() {
        remaining_len |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(HeaderStatus::Complete(FixedHeader {
                packet_type,
                flags,
                header_len: i + 2,
                remaining_len,
            }));
        }
    }
    if rest.len() >= 4 {
        Err(Error::MalformedRemainingLength)
    } else {
        Ok(HeaderStatus::Incomplete)
    }
}

/// Number of bytes the remaining length `len` takes on the wire.
#[inline]
pub(crate) const fn remaining_len_size(len: usize) -> usize {
    if len < 128 {
        1
    } else if len < 16_384 {
        2
    } else if len < 2_097_152 {
        3
    } else {
        4
    }
}

/// Writes a fixed header: the first byte, then the remaining length in one to four bytes.
#[inline]
pub(crate) fn write(w: &mut Writer<'_>, first: u8, remaining_len: usize) {
    w.u8(first);
    let mut len = remaining_len;
    for _ in 0..4 {
        // Masked to 7 bits, so the cast keeps every bit.
        let byte = (len & 0x7F) as u8;
        len >>= 7;
        if len == 0 {
            w.u8(byte);
            return;
        }
        w.u8(byte | 0x80);
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn complete(buf: &[u8]) -> FixedHeader {
        match parse(buf) {
            Ok(HeaderStatus::Complete(h)) => h,
            _ => panic!("header of {buf:?} did not parse"),
        }
    }

    #[test]
    fn test_parse_remaining_length_boundaries() {
        // (bytes after the first, expected remaining length), from the table in MQTT 2.2.3.
        let cases: [(&[u8], usize); 8] = [
            (&[0x00], 0),
            (&[0x7F], 127),
            (&[0x80, 0x01], 128),
            (&[0xFF, 0x7F], 16_383),
            (&[0x80, 0x80, 0x01], 16_384),
            (&[0xFF, 0xFF, 0x7F], 2_097_151),
            (&[0x80, 0x80, 0x80, 0x01], 2_097_152),
            (&[0xFF, 0xFF, 0xFF, 0x7F], MAX_REMAINING_LENGTH),
        ];
        for (len_bytes, expected) in cases {
            let mut buf = vec![0xC0]; // PINGREQ
            buf.extend_from_slice(len_bytes);
            let h = complete(&buf);
            assert_eq!(h.remaining_len, expected);
            assert_eq!(h.header_len, 1 + len_bytes.len());
            assert_eq!(remaining_len_size(expected), len_bytes.len());
            let mut out = [0u8; 5];
            let mut w = Writer::new(&mut out);
            write(&mut w, 0xC0, expected);
            assert!(!w.overflowed());
            let n = 5 - w.remaining();
            assert_eq!(&out[..n], &buf[..]);
        }
    }

    #[test]
    fn test_parse_incomplete() {
        assert!(matches!(parse(&[]), Ok(HeaderStatus::Incomplete)));
        assert!(matches!(parse(&[0x30]), Ok(HeaderStatus::Incomplete)));
        assert!(matches!(
            parse(&[0x30, 0x80, 0x80]),
            Ok(HeaderStatus::Incomplete)
        ));
    }

    #[test]
    fn test_impossible_len() {
        assert_eq!(
            parse(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF]).err(),
            Some(Error::MalformedRemainingLength)
        );
    }

    #[test]
    fn test_type_checked_before_length() {
        assert_eq!(parse(&[0x00]).err(), Some(Error::ReservedPacketType(0)));
        assert_eq!(parse(&[0xF0]).err(), Some(Error::ReservedPacketType(15)));
        assert_eq!(
            parse(&[0x82]).map(|_| ()).err(),
            None,
            "SUBSCRIBE with flags 0b0010 is valid"
        );
        assert_eq!(
            parse(&[0x80]).err(),
            Some(Error::InvalidFlags {
                packet_type: PacketType::Subscribe,
                flags: 0
            })
        );
    }
}
