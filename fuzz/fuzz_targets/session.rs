//! The session driven by arbitrary sequences of inputs: the bytes after the first few (the
//! configuration) are read as operations: move time (by a little, a lot, or to the session's
//! deadline), transport events (connected, connect failed, closed), a packet from the broker
//! built from the input, raw bytes through the decoder as a receive loop would feed them, and
//! application calls (publish, subscribe, unsubscribe, acknowledge, discard, disconnect,
//! restart). After every operation the driver drains commands, events and transmit output.
//!
//! Checked, besides "no panic": the session writes only whole, decodable packets within
//! `max_packet_size`, only on an open connection, CONNECT first and application traffic only
//! when up; Open only with no connection (and never after `disconnect` until `restart`), Close
//! only with one; "up" only right after a PINGRESP on a connection whose CONNACK was accepted;
//! no packet identifier in use twice; each message ends at most once (Published, Expired,
//! discarded), never expires before its time to live; the failure count resets only when up
//! or restarted; reconnect delays within the backoff bounds and never early; the in-flight
//! window holds; no event is lost; and once the driver has run the due timers and written
//! everything, the next deadline lies in the future (the session never asks to spin).

#![no_main]

use std::collections::HashMap;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use shearwater::packet::{
    ConnAck, ConnectReturnCode, Decoded, Packet, PacketId, PacketType, PubAck, PubComp, PubRec,
    PubRel, Publish, PublishQos, QoS, SubAck, SubAckReturnCode, Subscription, UnsubAck, decode,
};
use shearwater::rand::SplitMix64;
use shearwater::session::{
    CloseReason, Command, Config, Event, InboundAck, OutgoingMessage, PublishId, Session,
};
use shearwater::time::{Duration, Instant};

/// `SESSION_FUZZ_TRACE=1` prints every operation, packet, command and event (for a crash
/// input run by hand: `cargo fuzz run session <input>`).
static TRACE: LazyLock<bool> = LazyLock::new(|| std::env::var_os("SESSION_FUZZ_TRACE").is_some());

macro_rules! trace {
    ($($arg:tt)*) => {
        if *TRACE {
            eprintln!($($arg)*);
        }
    };
}

const TOPICS: [&str; 3] = ["t", "t/a", "u/b/c"];
const FILTERS: [&str; 5] = ["t", "t/#", "+/a", "u/+/c", "#"];

/// The input, read front to back; zeros once it runs out.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Outbound store entries, subscription entries, inbound QoS 2 exchanges: small, so the
/// fuzzer reaches every limit.
type Sut<'b> = Session<'b, SplitMix64, 4, 3, 2>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Idle,
    Opening,
    Open,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Message(u32),
    Request,
}

#[derive(Debug, Clone, Copy)]
struct Msg {
    id: PublishId,
    ttl_end: Option<u64>,
    done: bool,
}

struct Driver<'b> {
    s: Sut<'b>,
    config: Config<'static>,
    now: u64,
    transport: Transport,
    /// Nothing written yet on this connection.
    fresh: bool,
    connack: bool,
    pingresp: bool,
    up: bool,
    up_on_this_connection: bool,
    stopped: bool,
    disconnect_requested: bool,
    failures: u32,
    /// The last close: when, the drawn delay, the failure count.
    reconnect: Option<(u64, Duration, u32)>,
    last_fed: Option<PacketType>,
    ids: HashMap<u16, Owner>,
    /// Messages by the number their payload starts with (the publish id they were given).
    msgs: HashMap<u32, Msg>,
    next_pid: u32,
    /// Packet identifiers the session wrote lately, for acknowledgements that hit.
    recent_ids: Vec<u16>,
    /// The last SUBSCRIBE: identifier and filter count.
    last_subscribe: Option<(u16, usize)>,
    acks: Vec<InboundAck>,
    rx: Vec<u8>,
    tx: Vec<u8>,
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mut config = Config::new("fuzz");
    let a = input.u8();
    config.clean_session = a & 0x80 == 0;
    config.keep_alive_secs = 1 + u16::from(a & 0x7F) % 29;
    config.ping_timeout = Duration::from_millis(100 + u64::from(input.u8()) * 40);
    config.connect_timeout = Duration::from_millis(200 + u64::from(input.u8()) * 40);
    config.connack_timeout = Duration::from_millis(200 + u64::from(input.u8()) * 40);
    config.ack_timeout = Duration::from_millis(200 + u64::from(input.u8()) * 120);
    let c = input.u8();
    config.backoff.min = Duration::from_millis(50 + u64::from(c & 0x0F) * 100);
    config.backoff.max = config.backoff.min + Duration::from_millis(u64::from(c >> 4) * 4_000);
    config.inflight_window = 1 + u16::from(input.u8() % 4);
    config.max_packet_size = 64 + usize::from(input.u8()) * 2;
    let seed = u64::from(input.u8());

    let mut outbox = [0u8; 200];
    let mut filters = [0u8; 24];
    let Ok(s) = Sut::new(config, &mut outbox, &mut filters, SplitMix64::new(seed)) else {
        return;
    };
    let mut d = Driver {
        s,
        config,
        now: 0,
        transport: Transport::Idle,
        fresh: false,
        connack: false,
        pingresp: false,
        up: false,
        up_on_this_connection: false,
        stopped: false,
        disconnect_requested: false,
        failures: 0,
        reconnect: None,
        last_fed: None,
        ids: HashMap::new(),
        msgs: HashMap::new(),
        next_pid: 1,
        recent_ids: Vec::new(),
        last_subscribe: None,
        acks: Vec::new(),
        rx: Vec::new(),
        tx: vec![0; config.max_packet_size],
    };
    d.s.handle_timeout(d.t());
    d.settle(true);
    while !input.is_empty() {
        d.step(&mut input);
    }
});

impl Driver<'_> {
    fn t(&self) -> Instant {
        Instant::from_millis(self.now)
    }

    fn step(&mut self, input: &mut Input<'_>) {
        let op = input.u8();
        trace!("{:>8} op {} {:?}", self.now, op % 16, self.s.state());
        // One operation in four finds the transport busy: nothing is written after it.
        let write = op & 0xC0 != 0xC0;
        match op % 16 {
            0 => {
                self.now += u64::from(input.u8()) * 10;
                self.s.handle_timeout(self.t());
            }
            1 => {
                self.now += u64::from(input.u16());
                self.s.handle_timeout(self.t());
            }
            2 => {
                if let Some(t) = self.s.poll_timeout() {
                    self.now = self.now.max(t.as_millis());
                }
                self.s.handle_timeout(self.t());
            }
            3 => {
                if self.transport == Transport::Opening {
                    self.transport = Transport::Open;
                    self.fresh = true;
                    self.connack = false;
                    self.pingresp = false;
                    self.up_on_this_connection = false;
                    self.rx.clear();
                }
                self.s.connected(self.t());
            }
            4 => {
                if self.transport == Transport::Opening {
                    self.connection_over();
                }
                self.s.connect_failed(self.t());
            }
            5 => {
                if self.transport != Transport::Idle {
                    self.connection_over();
                }
                self.s.closed(self.t());
            }
            6 => self.feed_built(input),
            7 => {
                let n = usize::from(input.u8() % 64);
                let bytes = input.bytes(n);
                self.feed_raw(bytes);
            }
            8 => self.publish(input),
            9 => {
                let n = 1 + usize::from(input.u8() % 3);
                let subs: Vec<Subscription<'_>> = (0..n)
                    .map(|_| {
                        let x = input.u8();
                        Subscription {
                            filter: FILTERS[usize::from(x) % FILTERS.len()],
                            qos: QoS::from_bits(x >> 6).unwrap_or(QoS::AtLeastOnce),
                        }
                    })
                    .collect();
                let _ = self.s.subscribe(self.t(), &subs);
            }
            10 => {
                let n = 1 + usize::from(input.u8() % 2);
                let filters: Vec<&str> = (0..n)
                    .map(|_| FILTERS[usize::from(input.u8()) % FILTERS.len()])
                    .collect();
                let _ = self.s.unsubscribe(self.t(), &filters);
            }
            11 if !self.acks.is_empty() => {
                let i = usize::from(input.u8()) % self.acks.len();
                let ack = self.acks.swap_remove(i);
                self.s.acknowledge(self.t(), ack);
            }
            12 => {
                let pick = u32::from(input.u8());
                if self.next_pid > 1 {
                    let number = 1 + pick % (self.next_pid - 1);
                    if let Some(m) = self.msgs.get(&number).copied()
                        && self.s.discard(m.id)
                    {
                        self.finish(m.id, false);
                    }
                }
            }
            13 => {
                if !self.stopped {
                    self.disconnect_requested = true;
                    // Leaving (or stopped) is not up.
                    self.up = false;
                }
                self.s.disconnect(self.t());
            }
            14 => {
                if self.stopped {
                    // restart() only starts a stopped session.
                    self.stopped = false;
                    self.failures = 0;
                    self.reconnect = None;
                    self.disconnect_requested = false;
                }
                self.s.restart(self.t());
            }
            15 => {
                // The head of a PUBLISH too large for the receive buffer, which a driver skips.
                let x = input.u8();
                let id = PacketId::new(u16::from(input.u8() % 8) + 1);
                let qos = match (x % 3, id) {
                    (1, Some(id)) => PublishQos::AtLeastOnce(id),
                    (2, Some(id)) => PublishQos::ExactlyOnce(id),
                    _ => PublishQos::AtMostOnce,
                };
                let dup = x & 4 != 0 && qos != PublishQos::AtMostOnce;
                let len = 1024 + usize::from(input.u16());
                self.s.handle_oversize_publish(self.t(), dup, qos, len);
            }
            _ => {}
        }
        self.settle(write);
    }

    fn publish(&mut self, input: &mut Input<'_>) {
        let x = input.u8();
        let qos = QoS::from_bits(x & 3).unwrap_or(QoS::AtLeastOnce);
        let ttl = (x & 4 != 0).then(|| Duration::from_millis(u64::from(input.u16())));
        let len = usize::from(input.u8() % 80);
        let topic = TOPICS[usize::from(x >> 3) % TOPICS.len()];
        // The payload names the message by the publish id it will get: ids count up by one.
        let mut payload = self.next_pid.to_be_bytes().to_vec();
        payload.resize(4 + len, x);
        let mut message = OutgoingMessage::new(topic, &payload)
            .qos(qos)
            .retain(x & 0x40 != 0);
        if let Some(ttl) = ttl {
            message = message.ttl(ttl);
        }
        if let Ok(id) = self.s.publish(self.t(), &message) {
            assert_eq!(id.get(), self.next_pid, "publish ids count up by one");
            self.msgs.insert(
                id.get(),
                Msg {
                    id,
                    ttl_end: ttl.map(|t| self.now + t.as_millis()),
                    done: false,
                },
            );
            self.next_pid += 1;
        }
    }

    fn pick_id(&self, input: &mut Input<'_>) -> PacketId {
        let x = input.u8();
        let raw = if x & 0x80 != 0 || self.recent_ids.is_empty() {
            u16::from(x & 0x7F) << 8 | u16::from(input.u8())
        } else {
            self.recent_ids[usize::from(x) % self.recent_ids.len()]
        };
        PacketId::new(raw).unwrap_or(PacketId::MIN)
    }

    /// A packet from the broker, built from the input.
    fn feed_built(&mut self, input: &mut Input<'_>) {
        let kind = input.u8();
        let codes_buf;
        let packet = match kind % 12 {
            0 => {
                let x = input.u8();
                let code = match x % 8 {
                    1 => ConnectReturnCode::ServerUnavailable,
                    2 => ConnectReturnCode::NotAuthorized,
                    _ => ConnectReturnCode::Accepted,
                };
                Packet::ConnAck(ConnAck {
                    session_present: x & 0x80 != 0,
                    code,
                })
            }
            1 => Packet::PingResp,
            2 => Packet::PubAck(PubAck::new(self.pick_id(input))),
            3 => Packet::PubRec(PubRec::new(self.pick_id(input))),
            4 => Packet::PubComp(PubComp::new(self.pick_id(input))),
            5 => Packet::PubRel(PubRel::new(self.pick_id(input))),
            6 | 11 => {
                let (id, n) = match self.last_subscribe {
                    Some((id, n)) if kind % 12 == 11 => {
                        (PacketId::new(id).unwrap_or(PacketId::MIN), n)
                    }
                    _ => (self.pick_id(input), 1 + usize::from(input.u8() % 4)),
                };
                let all = [
                    SubAckReturnCode::GrantedQos0,
                    SubAckReturnCode::GrantedQos1,
                    SubAckReturnCode::GrantedQos2,
                    SubAckReturnCode::Failure,
                ];
                codes_buf = (0..n)
                    .map(|_| all[usize::from(input.u8()) % 4])
                    .collect::<Vec<_>>();
                Packet::SubAck(SubAck {
                    packet_id: id,
                    codes: codes_buf.as_slice().into(),
                })
            }
            7 => Packet::UnsubAck(UnsubAck::new(self.pick_id(input))),
            8 => {
                let x = input.u8();
                let qos = match x % 3 {
                    0 => PublishQos::AtMostOnce,
                    1 => PublishQos::AtLeastOnce(self.pick_id(input)),
                    _ => PublishQos::ExactlyOnce(self.pick_id(input)),
                };
                Packet::Publish(Publish {
                    dup: x & 0x40 != 0,
                    qos,
                    retain: x & 0x80 != 0,
                    topic: TOPICS[usize::from(x >> 2) % TOPICS.len()],
                    payload: b"in",
                })
            }
            9 => Packet::PingReq,
            _ => Packet::Disconnect,
        };
        self.feed(packet);
    }

    /// Bytes from the network, through the decoder, as a receive loop feeds them.
    fn feed_raw(&mut self, bytes: &[u8]) {
        let mut rx = std::mem::take(&mut self.rx);
        rx.extend_from_slice(bytes);
        let mut at = 0;
        loop {
            match decode(&rx[at..], 1024) {
                Ok(Decoded::Complete { packet, len }) => {
                    at += len;
                    self.feed(packet);
                }
                Ok(Decoded::Incomplete(_)) => break,
                Err(e) => {
                    self.s.handle_decode_error(self.t(), e);
                    at = rx.len();
                    break;
                }
            }
        }
        self.rx = rx.split_off(at);
    }

    fn feed(&mut self, packet: Packet<'_>) {
        if self.transport == Transport::Open {
            match packet {
                Packet::ConnAck(a) if a.code == ConnectReturnCode::Accepted && !self.connack => {
                    self.connack = true;
                }
                Packet::PingResp if self.connack => self.pingresp = true,
                Packet::SubAck(SubAck { packet_id: id, .. })
                | Packet::UnsubAck(UnsubAck { packet_id: id })
                    if self.ids.get(&id.get()) == Some(&Owner::Request) =>
                {
                    // Answered or a protocol error: either way the request is over.
                    self.ids.remove(&id.get());
                }
                _ => {}
            }
        }
        trace!("{:>8}   <- {:?}", self.now, packet);
        self.last_fed = Some(packet.packet_type());
        let message = self.s.handle_packet(self.t(), packet);
        if let Some(m) = message
            && let Some(ack) = m.ack
        {
            self.acks.push(ack);
            if self.acks.len() > 32 {
                self.acks.remove(0);
            }
        }
        self.drain(true);
        self.last_fed = None;
    }

    /// Runs due timers and drains everything; then the next deadline must lie ahead.
    fn settle(&mut self, write: bool) {
        for _ in 0..64 {
            self.drain(write);
            let due = self
                .s
                .poll_timeout()
                .is_some_and(|t| t.as_millis() <= self.now);
            if !due || !write {
                break;
            }
            self.s.handle_timeout(self.t());
        }
        if write {
            self.drain(true);
            let next = self.s.poll_timeout();
            assert!(
                next.is_none_or(|t| t.as_millis() > self.now),
                "deadline {next:?} at or before now {} with nothing left to do ({:?})",
                self.now,
                self.s.state()
            );
        }
        assert_eq!(self.s.failures(), self.failures, "failure count");
        assert_eq!(self.s.is_up(), self.up, "is_up() against the events");
        assert!(self.s.in_flight() <= usize::from(self.config.inflight_window));
        assert!(self.s.stored_messages() <= 4);
    }

    fn drain(&mut self, write: bool) {
        loop {
            let mut any = false;
            while let Some(c) = self.s.poll_command() {
                any = true;
                self.command(c);
            }
            while let Some(e) = self.s.poll_event() {
                any = true;
                self.event(e);
            }
            if write {
                loop {
                    let n = self.s.poll_transmit(self.t(), &mut self.tx);
                    if n == 0 {
                        break;
                    }
                    any = true;
                    let bytes = self.tx[..n].to_vec();
                    self.transmitted(&bytes);
                }
            }
            if !any {
                return;
            }
        }
    }

    fn connection_over(&mut self) {
        self.transport = Transport::Idle;
        self.ids.retain(|_, o| *o != Owner::Request);
        self.rx.clear();
        self.last_subscribe = None;
    }

    fn command(&mut self, c: Command) {
        trace!("{:>8}   command {c:?}", self.now);
        match c {
            Command::Open => {
                assert_eq!(self.transport, Transport::Idle, "Open with a connection");
                assert!(
                    !self.disconnect_requested,
                    "Open after disconnect() without restart()"
                );
                if let Some((closed_at, delay, _)) = self.reconnect.take() {
                    assert!(
                        self.now >= closed_at + delay.as_millis(),
                        "reconnect before its delay"
                    );
                }
                self.transport = Transport::Opening;
            }
            Command::Close => {
                assert_ne!(
                    self.transport,
                    Transport::Idle,
                    "Close without a connection"
                );
                self.connection_over();
            }
        }
    }

    fn finish(&mut self, id: PublishId, expired: bool) {
        let m = self.msgs.get_mut(&id.get()).expect("a known message");
        assert!(!m.done, "{id} ended twice");
        m.done = true;
        if expired {
            let end = m.ttl_end.expect("expired without a time to live");
            assert!(self.now >= end, "{id} expired early");
        }
        let number = id.get();
        self.ids.retain(|_, o| *o != Owner::Message(number));
    }

    fn event(&mut self, e: Event) {
        trace!("{:>8}   event {e:?}", self.now);
        match e {
            Event::Up { .. } => {
                assert!(
                    self.pingresp && self.last_fed == Some(PacketType::PingResp),
                    "up without a PINGRESP after an accepted CONNACK on this connection"
                );
                assert!(!self.up_on_this_connection, "up twice on one connection");
                self.up_on_this_connection = true;
                self.up = true;
                self.failures = 0;
            }
            Event::Down { reason, was_up } => {
                assert_eq!(was_up, self.up, "Down's was_up");
                self.up = false;
                self.failures += 1;
                if matches!(
                    reason,
                    CloseReason::ConnectFailed | CloseReason::ClosedByPeer
                ) {
                    // The transport reported it: no Close follows.
                    self.connection_over();
                }
            }
            Event::Reconnecting { failures, delay } => {
                assert_eq!(failures, self.failures, "failure count in Reconnecting");
                let b = self.config.backoff;
                assert!(
                    delay >= b.min && delay <= b.ceiling(failures),
                    "delay {delay}"
                );
                self.reconnect = Some((self.now, delay, failures));
            }
            Event::Disconnected | Event::GaveUp => {
                self.up = false;
                self.stopped = true;
                self.reconnect = None;
            }
            Event::Published(id) => self.finish(id, false),
            Event::Expired(id) => self.finish(id, true),
            Event::EventsLost(n) => panic!("{n} events lost"),
            _ => {}
        }
    }

    fn transmitted(&mut self, bytes: &[u8]) {
        assert_eq!(
            self.transport,
            Transport::Open,
            "bytes written without a connection"
        );
        let mut at = 0;
        while at < bytes.len() {
            let Ok(Decoded::Complete { packet, len }) = decode(&bytes[at..], usize::MAX) else {
                panic!("the session wrote a broken packet");
            };
            trace!("{:>8}   -> {:?}", self.now, packet);
            assert!(
                len <= self.config.max_packet_size,
                "packet over max_packet_size"
            );
            at += len;
            let first = std::mem::take(&mut self.fresh);
            assert_eq!(
                first,
                matches!(packet, Packet::Connect(_)),
                "CONNECT first on a connection, and only then"
            );
            let needs_up = matches!(
                packet,
                Packet::Publish(_)
                    | Packet::Subscribe(_)
                    | Packet::Unsubscribe(_)
                    | Packet::PubRel(_)
            );
            assert!(!needs_up || self.up, "{:?} before up", packet.packet_type());
            let acks_inbound = matches!(
                packet,
                Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubComp(_)
            );
            assert!(
                !acks_inbound || self.connack,
                "acknowledgement before CONNACK"
            );
            match packet {
                Packet::Publish(p) => {
                    let number = p
                        .payload
                        .get(..4)
                        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                        .expect("our payloads carry their number");
                    let m = self.msgs.get(&number).copied().expect("a known message");
                    assert!(!m.done, "PUBLISH of a finished message");
                    if let Some(id) = p.qos.packet_id() {
                        self.take(id.get(), Owner::Message(number), true);
                    }
                }
                Packet::Subscribe(s) => {
                    self.take(s.packet_id.get(), Owner::Request, false);
                    self.last_subscribe = Some((s.packet_id.get(), s.filters.len()));
                }
                Packet::Unsubscribe(u) => self.take(u.packet_id.get(), Owner::Request, false),
                Packet::PubRel(r) => {
                    let owner = self.ids.get(&r.packet_id.get());
                    assert!(
                        matches!(owner, Some(Owner::Message(_))),
                        "PUBREL {} for no message",
                        r.packet_id
                    );
                    self.remember(r.packet_id.get());
                }
                _ => {}
            }
        }
    }

    fn take(&mut self, id: u16, owner: Owner, same_ok: bool) {
        match self.ids.get(&id) {
            Some(&o) if same_ok && o == owner => {}
            Some(o) => panic!("packet id {id} used by {owner:?} while {o:?} holds it"),
            None => {
                self.ids.insert(id, owner);
            }
        }
        self.remember(id);
    }

    fn remember(&mut self, id: u16) {
        if !self.recent_ids.contains(&id) {
            self.recent_ids.push(id);
            if self.recent_ids.len() > 16 {
                self.recent_ids.remove(0);
            }
        }
    }
}
