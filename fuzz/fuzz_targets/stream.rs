//! A client's receive loop: the input after its first byte is a byte stream that arrives in
//! chunks into a fixed buffer; whole packets are consumed from the front, and packets over the
//! limit are skipped by the length their fixed header announces, without being held. The first
//! byte picks the chunk size and the limit.
//!
//! Checked: no panic; the buffer never fills up with nothing to decode (the reader always makes
//! progress); every byte is accounted for; and the reader sees exactly what decoding the whole
//! stream at once sees: the same packets at the same offsets, the same skips, the same error.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shearwater::packet::{Decoded, Error, Needed, decode};

/// The receive buffer: every packet within the limit fits.
const BUF: usize = 4096;
const CHUNKS: [usize; 16] = [
    1, 2, 3, 4, 5, 7, 8, 13, 16, 31, 64, 100, 127, 128, 1000, 4096,
];
const LIMITS: [usize; 16] = [
    1, 2, 4, 5, 16, 64, 127, 128, 129, 130, 256, 1000, 2048, 4095, 4096, 4096,
];

/// What a reader sees, located in the stream.
#[derive(Debug, PartialEq, Eq)]
enum Event {
    /// A packet at this offset, this long.
    Packet { at: usize, len: usize },
    /// An oversized packet at this offset, this long, skipped.
    Skipped { at: usize, len: usize },
    /// A broken packet at this offset: the connection would be closed here.
    Broken { at: usize, error: Error },
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, stream)) = data.split_first() else {
        return;
    };
    let chunk = CHUNKS[usize::from(control & 0x0F)];
    let max = LIMITS[usize::from(control >> 4)];
    assert!(max <= BUF);

    let (expected, expected_next) = whole(stream, max);

    let mut reader = Reader::new(max);
    let mut fed = 0;
    for piece in stream.chunks(chunk) {
        if reader.broken {
            break;
        }
        reader.feed(piece);
        fed += piece.len();
        // Every byte fed is in the buffer, consumed by a packet or skipped.
        if !reader.broken {
            assert_eq!(reader.base + reader.filled() - reader.skip, fed);
        }
    }
    assert_eq!(reader.events, expected);
    if !reader.broken {
        assert_eq!(reader.base, expected_next, "offset of the next packet");
    }
});

/// Decodes the whole stream at once: the events, and the offset where the next packet would
/// start (past the end if a skip is still going on).
fn whole(stream: &[u8], max: usize) -> (Vec<Event>, usize) {
    let mut events = Vec::new();
    let mut at = 0;
    while at < stream.len() {
        match decode(&stream[at..], max) {
            Ok(Decoded::Complete { len, .. }) => {
                events.push(Event::Packet { at, len });
                at += len;
            }
            Ok(Decoded::Incomplete(_)) => break,
            Err(Error::PacketTooLarge { packet_len, .. }) => {
                events.push(Event::Skipped {
                    at,
                    len: packet_len,
                });
                at += packet_len;
            }
            Err(error) => {
                events.push(Event::Broken { at, error });
                break;
            }
        }
    }
    (events, at)
}

struct Reader {
    buf: [u8; BUF],
    /// The unread bytes are `buf[start..end]`; consumed ones are only moved out of the way when
    /// room is needed, as a receive buffer does.
    start: usize,
    end: usize,
    /// Where re-encoded packets are written.
    scratch: [u8; BUF],
    max: usize,
    /// Stream offset of `buf[start]` (while skipping: of the packet after the skipped one).
    base: usize,
    /// Bytes of a skipped packet yet to arrive.
    skip: usize,
    broken: bool,
    events: Vec<Event>,
}

impl Reader {
    fn new(max: usize) -> Self {
        Reader {
            buf: [0; BUF],
            start: 0,
            end: 0,
            scratch: [0; BUF],
            max,
            base: 0,
            skip: 0,
            broken: false,
            events: Vec::new(),
        }
    }

    /// Bytes received and not consumed yet.
    fn filled(&self) -> usize {
        self.end - self.start
    }

    fn feed(&mut self, mut input: &[u8]) {
        while !input.is_empty() && !self.broken {
            if self.skip > 0 {
                let n = self.skip.min(input.len());
                self.skip -= n;
                input = &input[n..];
                continue;
            }
            if self.end + input.len() > BUF && self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let room = BUF - self.end;
            assert!(room > 0, "buffer full of an undecodable prefix");
            let n = room.min(input.len());
            self.buf[self.end..self.end + n].copy_from_slice(&input[..n]);
            self.end += n;
            input = &input[n..];
            self.consume();
        }
    }

    fn consume(&mut self) {
        while self.start < self.end && !self.broken {
            let filled = self.filled();
            let used = match decode(&self.buf[self.start..self.end], self.max) {
                Ok(Decoded::Complete { packet, len }) => {
                    assert!(len <= filled && len <= self.max);
                    let n = packet
                        .encode(&mut self.scratch)
                        .expect("a decoded packet is encodable");
                    assert_eq!(
                        decode(&self.scratch[..n], n),
                        Ok(Decoded::Complete { packet, len: n })
                    );
                    self.events.push(Event::Packet { at: self.base, len });
                    len
                }
                Ok(Decoded::Incomplete(Needed::Exactly(n))) => {
                    // The rest of the packet fits: the reader can wait for it.
                    assert!(filled + n <= self.max);
                    return;
                }
                Ok(Decoded::Incomplete(Needed::AtLeast(n))) => {
                    assert!(n >= 1 && filled < 5);
                    return;
                }
                Err(Error::PacketTooLarge { packet_len, max }) => {
                    assert_eq!(max, self.max);
                    assert!(packet_len > max);
                    self.events.push(Event::Skipped {
                        at: self.base,
                        len: packet_len,
                    });
                    let held = packet_len.min(filled);
                    self.skip = packet_len - held;
                    held
                }
                Err(error) => {
                    self.events.push(Event::Broken {
                        at: self.base,
                        error,
                    });
                    self.broken = true;
                    return;
                }
            };
            self.start += used;
            self.base += used + self.skip;
            if self.start == self.end {
                (self.start, self.end) = (0, 0);
            }
        }
    }
}
