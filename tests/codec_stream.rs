//! Stream framing: many packets back to back, cut at every position and fed in pieces, decode
//! to the same packets in the same order; "incomplete" says exactly what is missing; and an
//! oversized packet is skipped by its announced length without losing step.

use shearwater::packet::{
    ConnAck, Connect, ConnectReturnCode, Decoded, Error, List, Needed, Packet, PacketId, PubAck,
    PubComp, PubRec, PubRel, Publish, PublishQos, QoS, SubAck, SubAckReturnCode, Subscribe,
    Subscription, UnsubAck, Unsubscribe, Will, decode, decode_fixed_header,
};

fn id(v: u16) -> PacketId {
    PacketId::new(v).expect("non-zero")
}

fn publish<'a>(topic: &'a str, payload: &'a [u8], qos: PublishQos) -> Packet<'a> {
    Packet::Publish(Publish {
        dup: qos != PublishQos::AtMostOnce,
        qos,
        retain: false,
        topic,
        payload,
    })
}

/// Owns what the stream's packets borrow.
struct Data {
    medium: Vec<u8>,
    large: Vec<u8>,
    subs: Vec<Subscription<'static>>,
    many_filters: Vec<&'static str>,
    codes: Vec<SubAckReturnCode>,
}

impl Data {
    fn new() -> Self {
        let filters = ["a/+/c", "#", "sport/tennis/#", "+", "$SYS/+/x", "ü/∑/😀"];
        Data {
            // Bodies past 127 bytes need two bytes of remaining length, past 16,383 three.
            medium: (0..200u8).collect(),
            large: (0..16_500u32).map(|i| (i % 251) as u8).collect(),
            subs: (0..40)
                .map(|i| Subscription {
                    filter: filters[i % filters.len()],
                    qos: QoS::from_bits((i % 3) as u8).expect("0..3"),
                })
                .collect(),
            many_filters: (0..30).map(|i| filters[i % filters.len()]).collect(),
            codes: [
                SubAckReturnCode::GrantedQos0,
                SubAckReturnCode::GrantedQos1,
                SubAckReturnCode::GrantedQos2,
                SubAckReturnCode::Failure,
            ]
            .into_iter()
            .cycle()
            .take(150)
            .collect(),
        }
    }

    /// All 14 types, in several sizes.
    fn packets(&self) -> Vec<Packet<'_>> {
        vec![
            Packet::Connect(Connect {
                clean_session: true,
                keep_alive: 20,
                client_id: "device-0042",
                will: Some(Will {
                    topic: "devices/0042/status",
                    payload: b"offline",
                    qos: QoS::AtLeastOnce,
                    retain: true,
                }),
                username: Some("user"),
                password: Some(b"secret"),
            }),
            Packet::ConnAck(ConnAck {
                session_present: false,
                code: ConnectReturnCode::Accepted,
            }),
            // Early in the stream: the cuts inside it each re-decode only what comes before.
            publish("big/one", &self.large, PublishQos::AtLeastOnce(id(4))),
            Packet::PingReq,
            Packet::PingResp,
            Packet::Subscribe(Subscribe {
                packet_id: id(1),
                filters: List::new(&self.subs[..2]),
            }),
            Packet::SubAck(SubAck {
                packet_id: id(1),
                codes: List::new(&self.codes[..2]),
            }),
            publish("t", b"", PublishQos::AtMostOnce),
            publish("a/b", b"hello", PublishQos::AtLeastOnce(id(2))),
            Packet::PubAck(PubAck::new(id(2))),
            publish("a/b", &self.medium, PublishQos::ExactlyOnce(id(3))),
            Packet::PubRec(PubRec::new(id(3))),
            Packet::PubRel(PubRel::new(id(3))),
            Packet::PubComp(PubComp::new(id(3))),
            publish("mid/one", &self.large[..2_000], PublishQos::AtMostOnce),
            Packet::PubAck(PubAck::new(id(4))),
            Packet::Subscribe(Subscribe {
                packet_id: id(5),
                filters: List::new(&self.subs),
            }),
            Packet::SubAck(SubAck {
                packet_id: id(5),
                codes: List::new(&self.codes),
            }),
            Packet::Unsubscribe(Unsubscribe {
                packet_id: id(6),
                filters: List::new(&self.many_filters),
            }),
            Packet::UnsubAck(UnsubAck::new(id(6))),
            publish("ü/∑", &self.medium[..100], PublishQos::AtMostOnce),
            Packet::Unsubscribe(Unsubscribe {
                packet_id: id(7),
                filters: List::new(&["x/#"]),
            }),
            Packet::UnsubAck(UnsubAck::new(id(7))),
            Packet::ConnAck(ConnAck {
                session_present: false,
                code: ConnectReturnCode::NotAuthorized,
            }),
            Packet::Connect(Connect {
                clean_session: true,
                keep_alive: 0,
                client_id: "",
                will: None,
                username: None,
                password: None,
            }),
            Packet::Disconnect,
        ]
    }
}

/// The packets written back to back, and where each one ends.
fn encode_all(packets: &[Packet<'_>]) -> (Vec<u8>, Vec<usize>) {
    let mut buf = Vec::new();
    let mut ends = Vec::new();
    for p in packets {
        let len = p.encoded_len().expect("valid packet");
        let start = buf.len();
        buf.resize(start + len, 0);
        assert_eq!(p.encode(&mut buf[start..]), Ok(len));
        ends.push(buf.len());
    }
    (buf, ends)
}

const MAX: usize = 64 * 1024;

#[test]
fn stream_covers_every_type_and_header_size() {
    let data = Data::new();
    let packets = data.packets();
    let (buf, ends) = encode_all(&packets);
    let mut types: Vec<u8> = packets.iter().map(|p| p.packet_type() as u8).collect();
    types.sort_unstable();
    types.dedup();
    assert_eq!(types, (1..=14).collect::<Vec<u8>>());
    let mut header_sizes: Vec<usize> = ends
        .iter()
        .scan(0, |start, &end| {
            let h = decode_fixed_header(&buf[*start..end])
                .expect("valid")
                .expect("complete");
            *start = end;
            Some(h.header_len)
        })
        .collect();
    header_sizes.sort_unstable();
    header_sizes.dedup();
    assert_eq!(header_sizes, [2, 3, 4]);
}

/// Decodes `buf` from `pos` as a stream reader does: packet after packet until the data runs
/// out. Checks each packet against `expected` (indexed by how many came before) and returns the
/// new position and what the decoder said it needs.
fn drain(
    buf: &[u8],
    mut pos: usize,
    expected: &[Packet<'_>],
    count: &mut usize,
) -> (usize, Needed) {
    loop {
        match decode(&buf[pos..], MAX) {
            Ok(Decoded::Complete { packet, len }) => {
                assert_eq!(packet, expected[*count], "packet #{count}");
                pos += len;
                *count += 1;
            }
            Ok(Decoded::Incomplete(needed)) => return (pos, needed),
            Err(e) => panic!("packet #{count} at {pos}: {e:?}"),
        }
    }
}

#[test]
fn every_cut_position_resumes_in_step() {
    let data = Data::new();
    let packets = data.packets();
    let (buf, ends) = encode_all(&packets);
    let starts: Vec<usize> = std::iter::once(0)
        .chain(ends.iter().copied())
        .take(ends.len())
        .collect();

    // Uncut, the stream decodes to the packets, in order, and nothing is left.
    let mut count = 0;
    assert_eq!(
        drain(&buf, 0, &packets, &mut count),
        (buf.len(), Needed::AtLeast(1))
    );
    assert_eq!(count, packets.len());

    for k in 0..=buf.len() {
        let mut count = 0;
        let (pos, needed) = drain(&buf[..k], 0, &packets, &mut count);

        // Exactly the packets that end at or before the cut are out.
        assert_eq!(count, ends.partition_point(|&end| end <= k), "cut {k}");
        if count < packets.len() {
            assert_eq!(pos, starts[count]);
            let header_len = decode_fixed_header(&buf[pos..])
                .expect("valid")
                .expect("complete")
                .header_len;
            let have = k - pos;
            if have < header_len {
                assert_eq!(needed, Needed::AtLeast(1), "cut {k} inside a fixed header");
            } else {
                assert_eq!(needed, Needed::Exactly(ends[count] - k), "cut {k}");
            }
        } else {
            assert_eq!(pos, buf.len());
            assert_eq!(needed, Needed::AtLeast(1), "nothing left");
        }

        // The rest arrives: the reader goes on from where it stopped, and the packet the cut
        // went through comes out whole. From its end on, the reader makes the very calls of the
        // uncut pass checked above, so the rest of the sequence is that pass's.
        if count < packets.len() {
            match decode(&buf[pos..], MAX) {
                Ok(Decoded::Complete { packet, len }) => {
                    assert_eq!(packet, packets[count], "cut {k}: packet #{count}");
                    assert_eq!(pos + len, ends[count], "cut {k}");
                }
                other => panic!("cut {k}: packet #{count} after the rest arrived: {other:?}"),
            }
        }
    }
}

/// A client's receive loop over a fixed buffer: bytes arrive in chunks, whole packets are
/// consumed from the front, and a packet over the limit is skipped by its announced length
/// without ever being held.
struct Reader<const N: usize> {
    buf: [u8; N],
    filled: usize,
    max: usize,
    /// Bytes of an oversized packet still to throw away.
    skip: usize,
}

/// What the reader saw, in order.
#[derive(Debug, PartialEq, Eq)]
enum Event {
    /// A packet, as its bytes on the wire.
    Packet(Vec<u8>),
    /// An oversized packet of this many bytes, skipped.
    Skipped(usize),
}

impl<const N: usize> Reader<N> {
    fn new(max: usize) -> Self {
        assert!(max <= N, "a packet within the limit must fit the buffer");
        Reader {
            buf: [0; N],
            filled: 0,
            max,
            skip: 0,
        }
    }

    fn feed(&mut self, mut input: &[u8], events: &mut Vec<Event>) {
        while !input.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(input.len());
                self.skip -= n;
                input = &input[n..];
                continue;
            }
            let room = N - self.filled;
            assert!(room > 0, "reader stuck with a full buffer");
            let n = room.min(input.len());
            self.buf[self.filled..self.filled + n].copy_from_slice(&input[..n]);
            self.filled += n;
            input = &input[n..];
            self.consume(events);
        }
    }

    fn consume(&mut self, events: &mut Vec<Event>) {
        loop {
            let used = match decode(&self.buf[..self.filled], self.max) {
                Ok(Decoded::Complete { packet, len }) => {
                    let mut bytes = vec![0; len];
                    assert_eq!(packet.encode(&mut bytes), Ok(len));
                    assert_eq!(bytes, &self.buf[..len]);
                    events.push(Event::Packet(bytes));
                    len
                }
                Ok(Decoded::Incomplete(Needed::Exactly(n))) => {
                    assert!(self.filled + n <= self.max);
                    return;
                }
                Ok(Decoded::Incomplete(Needed::AtLeast(_))) => return,
                Err(Error::PacketTooLarge { packet_len, max }) => {
                    assert_eq!(max, self.max);
                    assert!(packet_len > max);
                    events.push(Event::Skipped(packet_len));
                    let held = packet_len.min(self.filled);
                    self.skip = packet_len - held;
                    held
                }
                Err(e) => panic!("stream error {e:?}"),
            };
            self.buf.copy_within(used..self.filled, 0);
            self.filled -= used;
        }
    }
}

#[test]
fn chunked_reader_sees_every_packet() {
    let data = Data::new();
    let packets = data.packets();
    let (buf, ends) = encode_all(&packets);
    let expected: Vec<Event> = std::iter::once(0)
        .chain(ends.iter().copied())
        .zip(ends.iter())
        .map(|(start, &end)| Event::Packet(buf[start..end].to_vec()))
        .collect();
    for chunk in [1, 2, 3, 5, 7, 64, 127, 128, 1000, 4096, 16_385, buf.len()] {
        let mut reader = Reader::<{ 32 * 1024 }>::new(32 * 1024);
        let mut events = Vec::new();
        for piece in buf.chunks(chunk) {
            reader.feed(piece, &mut events);
        }
        assert_eq!(events, expected, "chunk {chunk}");
        assert_eq!((reader.filled, reader.skip), (0, 0));
    }
}

#[test]
fn oversized_packet_is_skipped_and_the_stream_stays_in_step() {
    let data = Data::new();
    let packets = data.packets();
    // Limit 1 KiB, buffer 1 KiB: the 200-byte PUBLISH fits, the big ones do not and are skipped.
    const LIMIT: usize = 1024;
    let (buf, ends) = encode_all(&packets);
    let expected: Vec<Event> = std::iter::once(0)
        .chain(ends.iter().copied())
        .zip(ends.iter())
        .map(|(start, &end)| {
            if end - start > LIMIT {
                Event::Skipped(end - start)
            } else {
                Event::Packet(buf[start..end].to_vec())
            }
        })
        .collect();
    let skipped = expected
        .iter()
        .filter(|e| matches!(e, Event::Skipped(_)))
        .count();
    assert!(skipped >= 2, "the stream must hold oversized packets");

    for chunk in [1, 2, 3, 4, 5, 100, 999, 1024, 5000, buf.len()] {
        let mut reader = Reader::<LIMIT>::new(LIMIT);
        let mut events = Vec::new();
        for piece in buf.chunks(chunk) {
            reader.feed(piece, &mut events);
        }
        assert_eq!(events, expected, "chunk {chunk}");
        assert_eq!((reader.filled, reader.skip), (0, 0));
    }
}

#[test]
fn packet_too_large_reports_the_length_to_skip() {
    // The decoder refuses an oversized packet from its fixed header alone: the body need not
    // have arrived, and the error says how many bytes to skip to reach the next packet.
    let data = Data::new();
    let big = publish("big/one", &data.large, PublishQos::AtMostOnce);
    let next = Packet::PingResp;
    let (buf, ends) = encode_all(&[big, next]);
    let header_len = decode_fixed_header(&buf)
        .expect("valid")
        .expect("complete")
        .header_len;
    assert_eq!(header_len, 4);
    for available in [header_len, header_len + 1, 100, ends[0], buf.len()] {
        assert_eq!(
            decode(&buf[..available], 1000),
            Err(Error::PacketTooLarge {
                packet_len: ends[0],
                max: 1000
            })
        );
    }
    // Before the header is complete the decoder cannot know, and asks for more.
    for available in 1..header_len {
        assert_eq!(
            decode(&buf[..available], 1000),
            Ok(Decoded::Incomplete(Needed::AtLeast(1)))
        );
    }
    // Skipping exactly `packet_len` bytes lands on the next packet.
    assert_eq!(
        decode(&buf[ends[0]..], 1000),
        Ok(Decoded::Complete {
            packet: next,
            len: 2
        })
    );
    // A limit equal to the packet's length admits it.
    assert!(matches!(
        decode(&buf, ends[0]),
        Ok(Decoded::Complete { len, .. }) if len == ends[0]
    ));
}
