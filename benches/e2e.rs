//! End-to-end throughput against a local mosquitto: one publisher client and one subscriber
//! client on the same topic, both driven by one single-threaded tokio runtime, through a
//! mosquitto started for the run on a free loopback port.
//!
//! - `qos0`: the publisher sends 64-byte QoS 0 messages; a message counts once the subscriber
//!   has it.
//! - `qos1_window8`, `qos1_window32`: QoS 1 with that in-flight window (`Config::inflight_window`)
//!   and a QoS 1 subscription; a message counts once the subscriber has it and the publisher
//!   has its PUBACK (`Event::Published`).
//!
//! The publisher publishes until the outbound store is full and then polls: backpressure, as an
//! application would do it. One criterion iteration is one message, so the reported throughput
//! is messages per second end to end; broker start, connect and subscribe happen outside the
//! timing.
//!
//! Run with `cargo bench --bench e2e`. It needs `mosquitto` (Debian package `mosquitto`, or
//! `SHEARWATER_MOSQUITTO=/path/to/mosquitto`); without it the benchmark says so and fails. The
//! results are in `docs/throughput.md`.

#[path = "../tests/interop/processes.rs"]
mod processes;

use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use processes::Broker;
use rand_core::{OsRng, TryRngCore, UnwrapErr};
use shearwater::client::{Buffers, Client, ClientEvent, TokioClock};
use shearwater::packet::{QoS, Subscription};
use shearwater::session::{Config, Event, OutgoingMessage, PublishError};
use shearwater::transport::tokio::TokioTransport;
use tokio::runtime::Runtime;

/// The payload of every message.
const PAYLOAD: [u8; 64] = [0x5a; 64];
/// Buffer sizes of each client: receive, transmit, outbound store bytes.
const RX: usize = 16 * 1024;
const TX: usize = 8 * 1024;
const OUTBOX: usize = 16 * 1024;
/// No message received or acknowledged for this long: the run failed (a lost message, a
/// broken connection) and says so instead of hanging.
const STALL: Duration = Duration::from_secs(10);
/// How long connecting and subscribing may take.
const SETUP: Duration = Duration::from_secs(10);
/// mosquitto drops QoS 0 messages for a subscriber with more than `max_queued_messages`
/// (default 1000) waiting, and QoS 1 messages beyond that queue: a publisher faster than its
/// subscriber would lose some. Unlimited, so every message arrives and the run measures
/// delivery, not loss.
const BROKER_CONFIG: [&str; 1] = ["max_queued_messages 0"];

type BenchClient<'b, const OUT: usize> =
    Client<'b, TokioTransport, TokioClock, UnwrapErr<OsRng>, OUT>;

/// One client's memory.
struct Memory {
    rx: Vec<u8>,
    tx: Vec<u8>,
    outbox: Vec<u8>,
    filters: Vec<u8>,
}

impl Memory {
    fn new() -> Self {
        Self {
            rx: vec![0; RX],
            tx: vec![0; TX],
            outbox: vec![0; OUTBOX],
            filters: vec![0; 256],
        }
    }

    fn client<const OUT: usize>(
        &mut self,
        id: &'static str,
        window: u16,
        broker: SocketAddr,
    ) -> BenchClient<'_, OUT> {
        let mut config = Config::new(id);
        config.inflight_window = window;
        let buffers = Buffers {
            rx: &mut self.rx,
            tx: &mut self.tx,
            outbox: &mut self.outbox,
            filters: &mut self.filters,
        };
        Client::new(
            config,
            buffers,
            TokioTransport::new(broker),
            TokioClock::new(),
            OsRng.unwrap_err(),
        )
        .expect("a valid configuration")
    }
}

/// Polls until the session is up.
async fn connect<const OUT: usize>(client: &mut BenchClient<'_, OUT>) -> Result<(), String> {
    loop {
        match client.poll().await {
            Ok(ClientEvent::Session(Event::Up { .. })) => return Ok(()),
            Ok(ClientEvent::Session(Event::Down { reason, .. })) => {
                return Err(format!("cannot connect: {reason}"));
            }
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Subscribes to `topic` and polls until the broker granted `qos`.
async fn subscribe<const OUT: usize>(
    client: &mut BenchClient<'_, OUT>,
    topic: &str,
    qos: QoS,
) -> Result<(), String> {
    client
        .subscribe(&[Subscription { filter: topic, qos }])
        .map_err(|e| format!("subscribe refused: {e}"))?;
    loop {
        match client.poll().await {
            Ok(ClientEvent::Session(Event::Subscribed { code, .. }))
                if code.granted() == Some(qos) =>
            {
                return Ok(());
            }
            Ok(ClientEvent::Session(Event::Subscribed { code, .. })) => {
                return Err(format!("the broker granted {code:?} instead of {qos:?}"));
            }
            Ok(ClientEvent::Session(Event::Down { reason, .. })) => {
                return Err(format!("connection lost while subscribing: {reason}"));
            }
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Disconnects gracefully (best effort: the numbers are in by then).
async fn disconnect<const OUT: usize>(client: &mut BenchClient<'_, OUT>) {
    client.disconnect();
    let done = async {
        while let Ok(event) = client.poll().await {
            if event == ClientEvent::Session(Event::Disconnected) {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(SETUP, done).await;
}

/// Sends `n` messages through the broker and returns how long it took until the subscriber had
/// all of them and, for QoS 1, the publisher had all acknowledgements.
async fn transfer<const OUT: usize>(
    publisher: &mut BenchClient<'_, OUT>,
    subscriber: &mut BenchClient<'_, OUT>,
    message: &OutgoingMessage<'_>,
    n: u64,
) -> Result<Duration, String> {
    let confirm = message.qos != QoS::AtMostOnce;
    let (mut accepted, mut confirmed, mut received) = (0u64, 0u64, 0u64);
    let mut stall = pin!(tokio::time::sleep(STALL));
    let mut progress = 0u64;
    let start = std::time::Instant::now();
    while received < n || (confirm && confirmed < n) {
        while accepted < n {
            match publisher.publish(message) {
                Ok(_) => accepted += 1,
                // Backpressure: the store is full until messages go out (QoS 0) or are
                // acknowledged (QoS 1).
                Err(PublishError::StoreFull | PublishError::StoreBytesFull) => break,
                Err(e) => return Err(format!("publish refused: {e}")),
            }
        }
        tokio::select! {
            event = publisher.poll() => match event {
                Ok(ClientEvent::Session(Event::Published(_))) => confirmed += 1,
                Ok(ClientEvent::Session(Event::Down { reason, .. })) => {
                    return Err(format!("publisher connection lost: {reason}"));
                }
                Ok(_) => {}
                Err(e) => return Err(format!("publisher: {e}")),
            },
            event = subscriber.poll() => match event {
                Ok(ClientEvent::Message(m)) if m.payload == PAYLOAD && m.qos == message.qos => {
                    received += 1;
                }
                Ok(ClientEvent::Message(m)) => {
                    return Err(format!("unexpected message on {}: {:?}", m.topic, m.qos));
                }
                Ok(ClientEvent::Session(Event::Down { reason, .. })) => {
                    return Err(format!("subscriber connection lost: {reason}"));
                }
                Ok(_) => {}
                Err(e) => return Err(format!("subscriber: {e}")),
            },
            () = &mut stall => {
                return Err(format!(
                    "no progress for {STALL:?}: {received} of {n} messages received, \
                     {confirmed} confirmed"
                ));
            }
        }
        if received + confirmed >= progress + 256 {
            progress = received + confirmed;
            stall.as_mut().reset(tokio::time::Instant::now() + STALL);
        }
    }
    Ok(start.elapsed())
}

/// Benchmarks one case on its own pair of clients.
fn bench_case<const OUT: usize>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    runtime: &Runtime,
    broker: SocketAddr,
    name: &'static str,
    qos: QoS,
    window: u16,
) {
    let topic = format!("shearwater/bench/{name}");
    let topic = topic.as_str();
    let (mut pub_memory, mut sub_memory) = (Memory::new(), Memory::new());
    let mut publisher = pub_memory.client::<OUT>("shearwater-e2e-pub", window, broker);
    let mut subscriber = sub_memory.client::<OUT>("shearwater-e2e-sub", window, broker);
    let setup = async {
        connect(&mut publisher).await?;
        connect(&mut subscriber).await?;
        subscribe(&mut subscriber, topic, qos).await
    };
    match runtime.block_on(async { tokio::time::timeout(SETUP, setup).await }) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{name}: setup failed: {e}"),
        Err(_) => panic!("{name}: setup took longer than {SETUP:?}"),
    }
    let message = OutgoingMessage::new(topic, &PAYLOAD).qos(qos);
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            runtime
                .block_on(transfer(&mut publisher, &mut subscriber, &message, iters))
                .unwrap_or_else(|e| panic!("{name}: {e}"))
        })
    });
    runtime.block_on(async {
        disconnect(&mut publisher).await;
        disconnect(&mut subscriber).await;
    });
}

fn bench_e2e(c: &mut Criterion) {
    let broker = match Broker::mosquitto(&BROKER_CONFIG) {
        Ok(broker) => broker,
        Err(e) => {
            eprintln!("e2e benchmark: cannot start mosquitto, so there is nothing to measure: {e}");
            std::process::exit(1);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let addr = broker.addr();
    let mut group = c.benchmark_group("e2e_mosquitto_64B");
    group.throughput(Throughput::Elements(1));
    // QoS 0: at most 32 messages per transmit buffer fill, the size of the session's event
    // queue, so that no `Published` event is lost.
    bench_case::<32>(&mut group, &runtime, addr, "qos0", QoS::AtMostOnce, 8);
    // QoS 1: a store larger than the window, so that the window stays full.
    bench_case::<64>(
        &mut group,
        &runtime,
        addr,
        "qos1_window8",
        QoS::AtLeastOnce,
        8,
    );
    bench_case::<64>(
        &mut group,
        &runtime,
        addr,
        "qos1_window32",
        QoS::AtLeastOnce,
        32,
    );
    group.finish();
    drop(broker);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8));
    targets = bench_e2e
}
criterion_main!(benches);
