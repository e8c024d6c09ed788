//! Decoding any bytes: never a panic, always a coherent answer, and whatever decodes is written
//! back by the encoder to the same bytes (but for a non-minimal remaining length) and decodes
//! back equal.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shearwater::packet::{Decoded, Error, Needed, decode, decode_fixed_header};

fuzz_target!(|data: &[u8]| {
    check(data, usize::MAX);
    // A limit below most packets in the input, so the oversize path runs too.
    check(data, data.len() / 2);
});

fn check(bytes: &[u8], max: usize) {
    let header = decode_fixed_header(bytes);
    match decode(bytes, max) {
        Ok(Decoded::Complete { packet, len }) => {
            let Ok(Some(h)) = header else {
                panic!("complete packet, but header {header:?}");
            };
            assert!(len <= bytes.len() && len <= max);
            assert_eq!(h.packet_len(), len);
            assert_eq!(h.packet_type, packet.packet_type());

            // Re-encode: same first byte and body, remaining length possibly shorter.
            let n = packet.encoded_len().expect("a decoded packet is encodable");
            assert!(n <= len);
            let minimal_header = n - h.remaining_len;
            assert!(minimal_header <= h.header_len);
            let mut out = vec![0u8; n];
            assert_eq!(packet.encode(&mut out), Ok(n));
            assert_eq!(out[0], bytes[0]);
            assert_eq!(&out[minimal_header..], &bytes[h.header_len..len]);
            assert_eq!(decode(&out, n), Ok(Decoded::Complete { packet, len: n }));
            if n > 0 {
                assert_eq!(
                    packet.encode(&mut out[..n - 1]),
                    Err(Error::BufferTooSmall { needed: n })
                );
            }

            // Without its last byte, the packet is one byte short (or its header is).
            let short = decode(&bytes[..len - 1], max);
            let expected = if len > h.header_len {
                Needed::Exactly(1)
            } else {
                Needed::AtLeast(1)
            };
            assert_eq!(short, Ok(Decoded::Incomplete(expected)));
        }
        Ok(Decoded::Incomplete(Needed::AtLeast(n))) => {
            assert!(n >= 1);
            assert_eq!(header, Ok(None));
            assert!(bytes.len() < 5);
        }
        Ok(Decoded::Incomplete(Needed::Exactly(n))) => {
            let Ok(Some(h)) = header else {
                panic!("exact need, but header {header:?}");
            };
            assert!(n >= 1);
            assert_eq!(bytes.len() + n, h.packet_len());
            assert!(h.packet_len() <= max);
        }
        Err(Error::PacketTooLarge {
            packet_len,
            max: limit,
        }) => {
            assert_eq!(limit, max);
            assert!(packet_len > max);
            assert_eq!(
                header.map(|h| h.map(|h| h.packet_len())),
                Ok(Some(packet_len))
            );
        }
        Err(e) => {
            if let Err(he) = header {
                assert_eq!(e, he, "header and packet errors differ");
            }
            assert!(!e.to_string().is_empty());
        }
    }
}
