//! Codec benchmarks: encode and decode of single packets, and decode of a 1 MiB stream of
//! back-to-back PUBLISH packets next to a plain copy of the same bytes (the physical limit).
//!
//! Run with `cargo bench --bench codec`; criterion's options go after `--`, for example
//! `cargo bench --bench codec -- --measurement-time 3 stream`.
//!
//! Every input goes through `black_box`, so that the compiler cannot validate constant topics
//! at compile time, and every result is returned from the measured closure (which criterion
//! passes through `black_box`) or folded into a sum that is, so nothing is optimised away.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use shearwater::packet::{
    Connect, Decoded, Packet, PacketId, PubAck, Publish, PublishQos, QoS, Subscribe, Subscription,
    Will, decode,
};

/// Large enough for every packet benchmarked here.
const MAX_PACKET: usize = 8 * 1024;
/// The size of the stream decoded at once.
const STREAM_BYTES: usize = 1024 * 1024;
/// The payload of each PUBLISH in the stream.
const STREAM_PAYLOAD: usize = 64;
/// Payload sizes for the single PUBLISH benchmarks.
const PAYLOAD_SIZES: [(usize, &str); 3] = [(16, "16B"), (256, "256B"), (4096, "4KiB")];

fn id(v: u16) -> PacketId {
    PacketId::new(v).expect("non-zero")
}

fn connect() -> Packet<'static> {
    Packet::Connect(Connect {
        clean_session: true,
        keep_alive: 20,
        client_id: "shearwater-device-0042",
        will: Some(Will {
            topic: "devices/0042/status",
            payload: b"offline",
            qos: QoS::AtLeastOnce,
            retain: true,
        }),
        username: Some("device-0042"),
        password: Some(b"correct horse battery staple"),
    })
}

fn publish(qos: PublishQos, payload: &[u8]) -> Packet<'_> {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: "sensors/building-7/floor-3/temperature",
        payload,
    })
}

const SUBSCRIPTIONS: [Subscription<'static>; 3] = [
    Subscription {
        filter: "devices/0042/commands/#",
        qos: QoS::AtLeastOnce,
    },
    Subscription {
        filter: "fleet/+/config",
        qos: QoS::AtLeastOnce,
    },
    Subscription {
        filter: "$SYS/broker/uptime",
        qos: QoS::AtMostOnce,
    },
];

fn subscribe() -> Packet<'static> {
    Packet::Subscribe(Subscribe {
        packet_id: id(7),
        filters: (&SUBSCRIPTIONS).into(),
    })
}

/// The packets benchmarked one at a time, with their names.
fn cases(payload: &[u8]) -> Vec<(String, Packet<'_>)> {
    let mut cases = vec![("connect".to_owned(), connect())];
    for (qos_name, qos) in [
        ("qos0", PublishQos::AtMostOnce),
        ("qos1", PublishQos::AtLeastOnce(id(1234))),
    ] {
        for (size, size_name) in PAYLOAD_SIZES {
            let packet = publish(qos, payload.get(..size).expect("payload buffer"));
            cases.push((format!("publish_{qos_name}_{size_name}"), packet));
        }
    }
    cases.push(("subscribe_3".to_owned(), subscribe()));
    cases.push(("puback".to_owned(), Packet::PubAck(PubAck::new(id(1234)))));
    cases.push(("pingreq".to_owned(), Packet::PingReq));
    cases
}

fn payload_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn bench_encode(c: &mut Criterion) {
    let payload = payload_bytes(4096);
    let mut group = c.benchmark_group("encode");
    let mut buf = vec![0u8; MAX_PACKET];
    for (name, packet) in cases(&payload) {
        let len = packet.encoded_len().expect("valid packet");
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(BenchmarkId::from_parameter(&name), |b| {
            // The packet is read through an opaque reference on every iteration (so its checks
            // cannot be done at compile time), and the buffer is handed out through
            // `black_box`, so the writes must all happen.
            b.iter(|| black_box(&packet).encode(black_box(&mut buf[..])))
        });
    }
    group.finish();
}

fn bench_decode(c: &mut Criterion) {
    let payload = payload_bytes(4096);
    let mut group = c.benchmark_group("decode");
    for (name, packet) in cases(&payload) {
        let mut bytes = vec![0u8; MAX_PACKET];
        let len = packet.encode(&mut bytes).expect("valid packet");
        bytes.truncate(len);
        // Check once, outside the measurement, that the bytes decode to the same packet.
        assert_eq!(
            decode(&bytes, MAX_PACKET),
            Ok(Decoded::Complete { packet, len })
        );
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(BenchmarkId::from_parameter(&name), |b| {
            // The whole decoded packet (borrowed slices included) is returned, so criterion's
            // `black_box` on the result keeps every field alive.
            b.iter(|| decode(black_box(&bytes[..]), black_box(MAX_PACKET)))
        });
    }
    group.finish();
}

/// Whole PUBLISH packets, back to back, filling as much of `STREAM_BYTES` as whole packets can.
fn stream() -> (Vec<u8>, u64) {
    let payload = payload_bytes(STREAM_PAYLOAD);
    let packet = Packet::Publish(Publish {
        dup: false,
        qos: PublishQos::AtMostOnce,
        retain: false,
        topic: "sensors/t1",
        payload: &payload,
    });
    let len = packet.encoded_len().expect("valid packet");
    let count = STREAM_BYTES / len;
    let mut bytes = vec![0u8; count * len];
    for chunk in bytes.chunks_exact_mut(len) {
        packet.encode(chunk).expect("sized chunk");
    }
    (bytes, count as u64)
}

/// Decodes every packet of `stream` and returns the sum of the payload lengths and the
/// number of packets.
#[inline(never)]
fn decode_stream(stream: &[u8]) -> (usize, usize) {
    let mut rest = stream;
    let mut payload_bytes = 0;
    let mut packets = 0;
    while !rest.is_empty() {
        match decode(rest, MAX_PACKET) {
            Ok(Decoded::Complete {
                packet: Packet::Publish(p),
                len,
            }) => {
                payload_bytes += p.payload.len();
                packets += 1;
                rest = &rest[len..];
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    (payload_bytes, packets)
}

fn bench_stream(c: &mut Criterion) {
    let (bytes, count) = stream();
    assert_eq!(
        decode_stream(&bytes),
        (STREAM_PAYLOAD * count as usize, count as usize)
    );
    let mut copy = vec![0u8; bytes.len()];
    let mut group = c.benchmark_group("stream_1MiB");
    group.throughput(Throughput::ElementsAndBytes {
        elements: count,
        bytes: bytes.len() as u64,
    });
    group.bench_function("decode_publish_64B", |b| {
        b.iter(|| decode_stream(black_box(&bytes[..])))
    });
    // The same bytes copied once: no decoder can beat this.
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("memcpy", |b| {
        b.iter(|| {
            black_box(&mut copy[..]).copy_from_slice(black_box(&bytes[..]));
            black_box(&copy);
        })
    });
    group.finish();
}

criterion_group!(benches, bench_encode, bench_decode, bench_stream);
criterion_main!(benches);
