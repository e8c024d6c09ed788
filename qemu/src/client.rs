//! The async client itself, driven on the core against a simulated broker on virtual time:
//! connect, up after the first PINGRESP, subscribe, a QoS 1 round trip echoed back by the
//! broker, keepalive pings, and a reconnect after the broker cuts the connection; then QoS 1
//! at least once under seeded cuts and stalls. The executor jumps the clock to the next
//! deadline whenever nothing else can make progress.

use core::cell::{Cell, RefCell};
use core::future::Future;
use core::pin::pin;
use core::sync::atomic::{AtomicUsize, Ordering};
use core::task::{Context, Poll, Waker};

use embedded_io_async::{ErrorKind, ErrorType, Read, Write};
use heapless::{Deque, Vec};
use rand_core::RngCore;
use shearwater::client::{Buffers, Client, ClientEvent, Clock};
use shearwater::packet::{
    ConnAck, ConnectReturnCode, Decoded, Packet, PacketId, PubAck, Publish, PublishQos, QoS,
    SubAck, SubAckReturnCode, Subscription, decode, topic_matches,
};
use shearwater::session::{Config, Event, OutgoingMessage, PublishId};
use shearwater::time::Instant;
use shearwater::transport::Transport;

use crate::Scenario;
use crate::session::TestRng;

pub const SCENARIOS: &[Scenario] = &[
    ("connect_subscribe_qos1_keepalive_reconnect", round_trip),
    ("qos1_at_least_once_under_seeded_faults", seeded_faults),
];

type SimClient<'b, 's> = Client<'b, SimNet<'s>, SimClock<'s>, TestRng, 8, 4, 4>;

/// The broker and the network between it and the client, on virtual time.
#[derive(Default)]
struct Sim {
    now: Cell<u64>,
    /// The earliest instant a pending sleep waits for, collected during one poll.
    wake_at: Cell<Option<u64>>,
    connected: Cell<bool>,
    /// The broker ends the connection at the client's next read.
    cut: Cell<bool>,
    /// Until this instant the broker reads and never answers (a half-open or stalled path).
    stalled_until: Cell<u64>,
    to_client: RefCell<Deque<u8, 1024>>,
    from_client: RefCell<Vec<u8, 1024>>,
    subscription: RefCell<Option<heapless::String<32>>>,
    connects: Cell<u32>,
    pings: Cell<u32>,
    pubacks: Cell<u32>,
    next_id: Cell<u16>,
}

impl Sim {
    fn send(&self, packet: &Packet<'_>) {
        let mut buf = [0u8; 256];
        let n = packet.encode(&mut buf).unwrap();
        let mut queue = self.to_client.borrow_mut();
        for &b in &buf[..n] {
            queue.push_back(b).unwrap();
        }
    }

    /// The broker's side: answers every whole packet the client wrote.
    fn serve(&self) {
        loop {
            let mut inbox = self.from_client.borrow_mut();
            let len = match decode(&inbox, 1024).unwrap() {
                Decoded::Incomplete(_) => return,
                Decoded::Complete { packet, len } => {
                    if self.now.get() >= self.stalled_until.get() {
                        self.answer(packet);
                    }
                    len
                }
            };
            inbox.copy_within(len.., 0);
            let rest = inbox.len() - len;
            inbox.truncate(rest);
        }
    }

    fn answer(&self, packet: Packet<'_>) {
        match packet {
            Packet::Connect(c) => {
                assert!(c.clean_session);
                self.connects.set(self.connects.get() + 1);
                self.send(&Packet::ConnAck(ConnAck {
                    session_present: false,
                    code: ConnectReturnCode::Accepted,
                }));
            }
            Packet::PingReq => {
                self.pings.set(self.pings.get() + 1);
                self.send(&Packet::PingResp);
            }
            Packet::Subscribe(s) => {
                let mut codes: Vec<SubAckReturnCode, 4> = Vec::new();
                for f in s.filters.iter() {
                    *self.subscription.borrow_mut() = Some(f.filter.try_into().unwrap());
                    codes.push(SubAckReturnCode::GrantedQos1).unwrap();
                }
                self.send(&Packet::SubAck(SubAck {
                    packet_id: s.packet_id,
                    codes: (&codes[..]).into(),
                }));
            }
            Packet::Publish(p) => {
                if let PublishQos::AtLeastOnce(id) = p.qos {
                    self.send(&Packet::PubAck(PubAck::new(id)));
                }
                let echo = self
                    .subscription
                    .borrow()
                    .as_ref()
                    .is_some_and(|f| topic_matches(f, p.topic));
                if echo {
                    let id = self.next_id.get().wrapping_add(1).max(1);
                    self.next_id.set(id);
                    self.send(&Packet::Publish(Publish {
                        dup: false,
                        qos: PublishQos::AtLeastOnce(PacketId::new(id).unwrap()),
                        retain: false,
                        topic: p.topic,
                        payload: p.payload,
                    }));
                }
            }
            Packet::PubAck(_) => self.pubacks.set(self.pubacks.get() + 1),
            Packet::Disconnect => {}
            other => panic!("unexpected {:?} from the client", other.packet_type()),
        }
    }
}

/// The client's end of the simulated network.
struct SimNet<'s>(&'s Sim);

impl ErrorType for SimNet<'_> {
    type Error = ErrorKind;
}

impl Read for SimNet<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        core::future::poll_fn(|_| {
            let sim = self.0;
            if !sim.connected.get() {
                return Poll::Ready(Err(ErrorKind::NotConnected));
            }
            if sim.cut.get() {
                sim.cut.set(false);
                sim.connected.set(false);
                return Poll::Ready(Ok(0));
            }
            let mut queue = sim.to_client.borrow_mut();
            if queue.is_empty() {
                return Poll::Pending;
            }
            let mut n = 0;
            while n < buf.len() {
                let Some(b) = queue.pop_front() else { break };
                buf[n] = b;
                n += 1;
            }
            Poll::Ready(Ok(n))
        })
        .await
    }
}

impl Write for SimNet<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        if !self.0.connected.get() {
            return Err(ErrorKind::NotConnected);
        }
        self.0
            .from_client
            .borrow_mut()
            .extend_from_slice(buf)
            .unwrap();
        self.0.serve();
        Ok(buf.len())
    }

    async fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

impl Transport for SimNet<'_> {
    async fn connect(&mut self) -> Result<(), ErrorKind> {
        let sim = self.0;
        sim.to_client.borrow_mut().clear();
        sim.from_client.borrow_mut().clear();
        sim.cut.set(false);
        sim.connected.set(true);
        Ok(())
    }

    async fn close(&mut self) {
        self.0.connected.set(false);
    }
}

/// Virtual time: a sleep registers its deadline and the executor jumps there.
struct SimClock<'s>(&'s Sim);

impl Clock for SimClock<'_> {
    fn now(&self) -> Instant {
        Instant::from_millis(self.0.now.get())
    }

    async fn sleep_until(&self, at: Instant) {
        core::future::poll_fn(|_| {
            let at = at.as_millis();
            if self.0.now.get() >= at {
                return Poll::Ready(());
            }
            let earliest = self.0.wake_at.get().map_or(at, |w| w.min(at));
            self.0.wake_at.set(Some(earliest));
            Poll::Pending
        })
        .await
    }
}

/// The deepest stack the client path took below `drive`'s caller, future included.
pub static CLIENT_STACK: AtomicUsize = AtomicUsize::new(0);

/// Polls `future` to completion; when it is stuck, moves virtual time to the next deadline.
/// Records the stack it took in [`CLIENT_STACK`].
#[inline(never)]
fn drive<F: Future>(sim: &Sim, future: F) -> F::Output {
    let caller = crate::stack_depth();
    crate::repaint_stack();
    let out = drive_inner(sim, future);
    CLIENT_STACK.fetch_max(crate::stack_peak() - caller, Ordering::Relaxed);
    out
}

#[inline(never)]
fn drive_inner<F: Future>(sim: &Sim, future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        sim.wake_at.set(None);
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        if !sim.to_client.borrow().is_empty() || sim.cut.get() {
            continue;
        }
        let at = sim
            .wake_at
            .get()
            .expect("stuck: no deadline and nothing to read");
        assert!(
            at < 3_600_000,
            "still running after an hour of virtual time"
        );
        sim.now.set(sim.now.get().max(at));
    }
}

fn round_trip() {
    let sim = Sim::default();
    let mut rx = [0u8; 512];
    let mut tx = [0u8; 512];
    let mut outbox = [0u8; 1024];
    let mut filters = [0u8; 64];
    let buffers = Buffers {
        rx: &mut rx,
        tx: &mut tx,
        outbox: &mut outbox,
        filters: &mut filters,
    };
    let mut config = Config::new("dev-1");
    config.keep_alive_secs = 5;
    let mut client: Client<'_, SimNet<'_>, SimClock<'_>, TestRng, 8, 4, 4> = Client::new(
        config,
        buffers,
        SimNet(&sim),
        SimClock(&sim),
        TestRng::new(7),
    )
    .unwrap();
    client
        .subscribe(&[Subscription {
            filter: "echo/#",
            qos: QoS::AtLeastOnce,
        }])
        .unwrap();

    // Connect; up only after the first PINGRESP; the subscription goes out and is granted.
    drive(&sim, async {
        let mut subscribed = false;
        while !subscribed {
            match client.poll().await.unwrap() {
                ClientEvent::Session(Event::Up { session_present }) => {
                    assert!(!session_present);
                    assert_eq!(
                        sim.pings.get(),
                        1,
                        "up means the first PINGREQ was answered"
                    );
                }
                ClientEvent::Session(Event::Subscribed { code, .. }) => {
                    assert_eq!(code, SubAckReturnCode::GrantedQos1);
                    subscribed = true;
                }
                _ => {}
            }
        }
    });
    assert_eq!(sim.connects.get(), 1);

    // QoS 1 out, PUBACK back, and the broker's echo delivered and acknowledged.
    let sent = client
        .publish(&OutgoingMessage::new("echo/1", b"hello").qos(QoS::AtLeastOnce))
        .unwrap();
    drive(&sim, async {
        let (mut acked, mut echoed) = (false, false);
        while !(acked && echoed) {
            match client.poll().await.unwrap() {
                ClientEvent::Session(Event::Published(id)) => {
                    assert_eq!(id, sent);
                    acked = true;
                }
                ClientEvent::Message(m) => {
                    assert_eq!(
                        (m.topic, m.payload, m.qos),
                        ("echo/1", &b"hello"[..], QoS::AtLeastOnce)
                    );
                    echoed = true;
                }
                _ => {}
            }
        }
    });

    // Keepalive: silence for three intervals means three more PINGREQs, and the PUBACK for
    // the echo went out on the way (when `poll` was called again after the message).
    let pings = sim.pings.get();
    let until = sim.now.get() + 15_500;
    drive(&sim, async {
        run_for(&mut client, &sim, until, |_| {
            panic!("nothing but pings while idle")
        })
        .await;
    });
    assert_eq!(sim.pings.get(), pings + 3);
    assert_eq!(sim.pubacks.get(), 1);

    // The broker cuts the connection: down, backoff, and up again with the subscription
    // renewed (the broker kept no session).
    sim.cut.set(true);
    drive(&sim, async {
        let (mut down, mut up, mut renewed) = (false, false, false);
        while !(down && up && renewed) {
            match client.poll().await.unwrap() {
                ClientEvent::Session(Event::Down { was_up, .. }) => {
                    assert!(was_up);
                    down = true;
                }
                ClientEvent::Session(Event::Reconnecting { failures, delay }) => {
                    assert_eq!(failures, 1);
                    let ceiling = client.session().config().backoff.ceiling(1);
                    assert!(delay >= client.session().config().backoff.min && delay <= ceiling);
                }
                ClientEvent::Session(Event::Up { .. }) => up = true,
                ClientEvent::Session(Event::Subscribed { .. }) => renewed = true,
                _ => {}
            }
        }
    });
    assert_eq!(sim.connects.get(), 2);
}

/// Runs `client.poll()` until `until` (virtual ms), handing every event to `on`.
async fn run_for(
    client: &mut SimClient<'_, '_>,
    sim: &Sim,
    until: u64,
    mut on: impl FnMut(&ClientEvent<'_>),
) {
    use core::future::poll_fn;
    loop {
        let mut poll = pin!(client.poll());
        let done = poll_fn(|cx| {
            if let Poll::Ready(event) = poll.as_mut().poll(cx) {
                on(&event.unwrap());
                return Poll::Ready(false);
            }
            if sim.now.get() >= until {
                return Poll::Ready(true);
            }
            let earliest = sim.wake_at.get().map_or(until, |w| w.min(until));
            sim.wake_at.set(Some(earliest));
            Poll::Pending
        })
        .await;
        if done {
            return;
        }
    }
}

/// Eight seeds of random publishes, connection cuts and stalls (the broker reads and stops
/// answering: PINGRESP, PUBACK and CONNACK all go missing) on virtual time. Whatever happens,
/// every QoS 1 message the client accepted is reported published exactly once, and the client
/// ends up again.
fn seeded_faults() {
    for seed in 1..=8 {
        faults(seed);
    }
}

fn faults(seed: u64) {
    let sim = Sim::default();
    let mut rx = [0u8; 512];
    let mut tx = [0u8; 512];
    let mut outbox = [0u8; 1024];
    let mut filters = [0u8; 64];
    let buffers = Buffers {
        rx: &mut rx,
        tx: &mut tx,
        outbox: &mut outbox,
        filters: &mut filters,
    };
    let mut config = Config::new("dev-1");
    config.keep_alive_secs = 5;
    config.backoff.max = shearwater::time::Duration::from_secs(8);
    let mut client: SimClient<'_, '_> = Client::new(
        config,
        buffers,
        SimNet(&sim),
        SimClock(&sim),
        TestRng::new(seed),
    )
    .unwrap();
    client
        .subscribe(&[Subscription {
            filter: "echo/#",
            qos: QoS::AtLeastOnce,
        }])
        .unwrap();
    let mut dice = TestRng::new(seed.wrapping_mul(0x9E37_79B9));
    // Accepted QoS 1 messages not reported published yet.
    let mut pending: Vec<PublishId, 8> = Vec::new();
    let (mut published, mut ups, mut downs, mut messages) = (0u32, 0u32, 0u32, 0u32);
    let mut on = |event: &ClientEvent<'_>, pending: &mut Vec<PublishId, 8>| match event {
        ClientEvent::Session(Event::Published(id)) => {
            let at = pending.iter().position(|p| p == id);
            assert!(
                at.is_some(),
                "seed {}: {:?} reported twice or never sent",
                seed,
                id
            );
            pending.swap_remove(at.unwrap());
            published += 1;
        }
        ClientEvent::Session(Event::Expired(id)) => panic!("seed {}: {:?} expired", seed, id),
        ClientEvent::Session(Event::Up { .. }) => ups += 1,
        ClientEvent::Session(Event::Down { .. }) => downs += 1,
        ClientEvent::Message(_) => messages += 1,
        _ => {}
    };
    for _ in 0..150 {
        let now = sim.now.get();
        match dice.next_u32() % 10 {
            0..=3 if pending.len() < 8 => {
                let message = OutgoingMessage::new("echo/f", b"x").qos(QoS::AtLeastOnce);
                if let Ok(id) = client.publish(&message) {
                    pending.push(id).unwrap();
                }
            }
            4 => sim.cut.set(sim.connected.get()),
            5 => sim
                .stalled_until
                .set(now + u64::from(dice.next_u32() % 20_000)),
            _ => {}
        }
        let until = now + u64::from(dice.next_u32() % 4_000);
        // Not `drive`: this scaffolding would inflate the client path's stack figure.
        drive_inner(
            &sim,
            run_for(&mut client, &sim, until, |e| on(e, &mut pending)),
        );
    }
    // Faults over: everything accepted gets through.
    sim.stalled_until.set(0);
    let end = sim.now.get() + 120_000;
    drive_inner(&sim, async {
        while (!pending.is_empty() || !client.session().is_up()) && sim.now.get() < end {
            let until = sim.now.get() + 1_000;
            run_for(&mut client, &sim, until, |e| on(e, &mut pending)).await;
        }
    });
    assert!(
        pending.is_empty(),
        "seed {}: {} messages never published",
        seed,
        pending.len()
    );
    assert!(client.session().is_up(), "seed {}: not up at the end", seed);
    assert!(
        ups >= 1 && published > 0 && messages > 0,
        "seed {}: nothing happened",
        seed
    );
    cortex_m_semihosting::hprintln!(
        "    seed {}: {} published, {} echoes received, {} connections lost, {} up, {} s virtual",
        seed,
        published,
        messages,
        downs,
        ups,
        sim.now.get() / 1000
    );
}
