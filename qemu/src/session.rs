//! The session scenarios of the host tests (`src/session/tests.rs`), with the same inputs and
//! the same assertions, on a 32-bit core with no allocator: what the session wrote is decoded
//! into fixed-capacity values instead of `String`s and `Vec`s.

use heapless::Vec;
use shearwater::packet::{
    ConnAck, ConnectReturnCode, Decoded, Packet, PacketId, PubAck, PubComp, PubRec, PubRel,
    Publish, PublishQos, QoS, decode,
};
pub use shearwater::rand::SplitMix64 as TestRng;
use shearwater::session::{
    CloseReason, Command, Config, Event, OutgoingMessage, PublishId, Session, State,
};
use shearwater::time::{Duration, Instant};

use crate::Scenario;

pub const SCENARIOS: &[Scenario] = &[
    ("connect_is_clean_by_default", connect_is_clean_by_default),
    ("connect_then_up", connect_then_up),
    ("pingreq_after_keepalive_of_silence", keepalive_pings),
    ("ping_timeout_declares_the_connection_dead", ping_timeout),
    (
        "qos1_resent_with_dup_after_reconnect",
        qos1_resend_after_reconnect,
    ),
    ("connack_then_silence_backoff_grows", backoff_bounds),
    ("backoff_resets_only_after_up", backoff_resets_only_after_up),
    (
        "inbound_qos2_delivered_exactly_once",
        inbound_qos2_exactly_once,
    ),
    (
        "qos2_pubrel_resent_after_reconnect",
        qos2_pubrel_resent_after_reconnect,
    ),
];

/// What the session wrote, reduced to what the assertions look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    Connect { clean: bool, keep_alive: u16 },
    PingReq,
    Publish { qos: u8, id: u16, dup: bool },
    PubAck(u16),
    PubRec(u16),
    PubRel(u16),
    PubComp(u16),
    Subscribe(u16),
    Unsubscribe(u16),
    Disconnect,
}

fn wire(packet: Packet<'_>) -> Wire {
    match packet {
        Packet::Connect(c) => Wire::Connect {
            clean: c.clean_session,
            keep_alive: c.keep_alive,
        },
        Packet::PingReq => Wire::PingReq,
        Packet::Publish(p) => Wire::Publish {
            qos: p.qos.qos() as u8,
            id: p.qos.packet_id().map_or(0, |id| id.get()),
            dup: p.dup,
        },
        Packet::PubAck(a) => Wire::PubAck(a.packet_id.get()),
        Packet::PubRec(a) => Wire::PubRec(a.packet_id.get()),
        Packet::PubRel(a) => Wire::PubRel(a.packet_id.get()),
        Packet::PubComp(a) => Wire::PubComp(a.packet_id.get()),
        Packet::Subscribe(s) => Wire::Subscribe(s.packet_id.get()),
        Packet::Unsubscribe(u) => Wire::Unsubscribe(u.packet_id.get()),
        Packet::Disconnect => Wire::Disconnect,
        other => panic!("a client never sends {:?}", other.packet_type()),
    }
}

fn id(v: u16) -> PacketId {
    PacketId::new(v).unwrap()
}

type TestSession<'b> = Session<'b, TestRng, 8, 4, 4>;

struct Rig<'b> {
    s: TestSession<'b>,
    now: Instant,
}

/// A rig over buffers on this stack frame.
macro_rules! rig {
    ($rig:ident) => {
        rig!($rig, Config::new("dev-1"))
    };
    ($rig:ident, $config:expr) => {
        let mut outbox = [0u8; 2048];
        let mut filters = [0u8; 256];
        let mut $rig = Rig {
            s: Session::new($config, &mut outbox, &mut filters, TestRng::new(1)).unwrap(),
            now: Instant::ZERO,
        };
    };
}

impl Rig<'_> {
    fn advance(&mut self, ms: u64) {
        self.now = self.now + Duration::from_millis(ms);
        self.s.handle_timeout(self.now);
    }

    fn run_until(&mut self, t: u64) {
        let end = Instant::from_millis(t);
        while let Some(next) = self.s.poll_timeout() {
            if next > end {
                break;
            }
            self.now = next.max(self.now);
            self.s.handle_timeout(self.now);
            if self.s.poll_timeout() == Some(next) && next <= self.now {
                break;
            }
        }
        self.now = end.max(self.now);
        self.s.handle_timeout(self.now);
    }

    fn sent(&mut self) -> Vec<Wire, 16> {
        let mut buf = [0u8; 1024];
        let mut out = Vec::new();
        loop {
            let n = self.s.poll_transmit(self.now, &mut buf);
            if n == 0 {
                return out;
            }
            let mut at = 0;
            while at < n {
                match decode(&buf[at..n], 1024).unwrap() {
                    Decoded::Complete { packet, len } => {
                        out.push(wire(packet)).unwrap();
                        at += len;
                    }
                    Decoded::Incomplete(_) => panic!("partial packet written"),
                }
            }
        }
    }

    fn events(&mut self) -> Vec<Event, 40> {
        let mut out = Vec::new();
        while let Some(e) = self.s.poll_event() {
            out.push(e).unwrap();
        }
        out
    }

    fn commands(&mut self) -> Vec<Command, 8> {
        let mut out = Vec::new();
        while let Some(c) = self.s.poll_command() {
            out.push(c).unwrap();
        }
        out
    }

    fn recv(&mut self, packet: Packet<'_>) {
        assert!(self.s.handle_packet(self.now, packet).is_none());
    }

    fn connack(&mut self, session_present: bool) {
        self.recv(Packet::ConnAck(ConnAck {
            session_present,
            code: ConnectReturnCode::Accepted,
        }));
    }

    fn up(&mut self, session_present: bool) {
        self.s.handle_timeout(self.now);
        assert_eq!(self.commands(), [Command::Open]);
        self.s.connected(self.now);
        assert!(matches!(self.sent().as_slice(), [Wire::Connect { .. }]));
        self.connack(session_present);
        assert_eq!(self.sent(), [Wire::PingReq]);
        assert!(!self.s.is_up());
        self.recv(Packet::PingResp);
        assert!(self.s.is_up());
        assert!(self.events().contains(&Event::Up { session_present }));
    }

    fn publish(&mut self, topic: &str, qos: QoS) -> PublishId {
        self.s
            .publish(self.now, &OutgoingMessage::new(topic, b"data").qos(qos))
            .unwrap()
    }

    fn reconnect(&mut self, session_present: bool) {
        self.now = self.s.poll_timeout().unwrap();
        self.up(session_present);
    }
}

fn connect_is_clean_by_default() {
    rig!(rig);
    rig.s.handle_timeout(rig.now);
    assert_eq!(rig.commands(), [Command::Open]);
    rig.s.connected(rig.now);
    let mut buf = [0u8; 256];
    let n = rig.s.poll_transmit(rig.now, &mut buf);
    let Ok(Decoded::Complete {
        packet: Packet::Connect(c),
        len,
    }) = decode(&buf[..n], 256)
    else {
        panic!("no CONNECT");
    };
    assert_eq!(len, n);
    assert!(c.clean_session);
    assert_eq!(c.keep_alive, 20);
    assert_eq!(c.client_id, "dev-1");
}

fn connect_then_up() {
    rig!(rig);
    rig.up(false);
    assert_eq!(rig.s.state(), State::Up);
    assert_eq!(rig.s.failures(), 0);
}

fn keepalive_pings() {
    rig!(rig);
    rig.up(false);
    let up_at = rig.now.as_millis();
    rig.run_until(up_at + 19_999);
    assert_eq!(rig.sent(), []);
    rig.run_until(up_at + 20_000);
    assert_eq!(rig.sent(), [Wire::PingReq]);
    rig.advance(100);
    rig.recv(Packet::PingResp);
    rig.run_until(up_at + 39_999);
    assert_eq!(rig.sent(), []);
    rig.run_until(up_at + 40_000);
    assert_eq!(rig.sent(), [Wire::PingReq]);
}

fn ping_timeout() {
    rig!(rig);
    rig.up(false);
    rig.advance(20_000);
    assert_eq!(rig.sent(), [Wire::PingReq]);
    rig.advance(4_999);
    assert_eq!(rig.commands(), []);
    rig.advance(1);
    assert_eq!(rig.commands(), [Command::Close]);
    let events = rig.events();
    assert!(events.contains(&Event::Down {
        reason: CloseReason::PingTimeout,
        was_up: true
    }));
    assert!(matches!(
        events.last(),
        Some(Event::Reconnecting { failures: 1, .. })
    ));
    assert_eq!(rig.s.state(), State::Waiting);
}

fn qos1_resend_after_reconnect() {
    rig!(rig);
    rig.up(true);
    let pid = rig.publish("a", QoS::AtLeastOnce);
    let first = rig.sent();
    let [
        Wire::Publish {
            id,
            dup: false,
            qos: 1,
        },
    ] = first.as_slice()
    else {
        panic!("{:?}", first)
    };
    let id = *id;
    rig.s.closed(rig.now);
    assert_eq!(rig.s.stored_messages(), 1);
    rig.reconnect(true);
    assert_eq!(
        rig.sent(),
        [Wire::Publish {
            qos: 1,
            id,
            dup: true
        }]
    );
    rig.recv(Packet::PubAck(PubAck::new(self::id(id))));
    assert!(rig.events().contains(&Event::Published(pid)));
    assert_eq!(rig.s.stored_messages(), 0);
}

fn backoff_bounds() {
    rig!(rig);
    let mut delays: Vec<Duration, 8> = Vec::new();
    for attempt in 1..=8u32 {
        rig.s.handle_timeout(rig.now);
        assert_eq!(rig.commands(), [Command::Open]);
        rig.s.connected(rig.now);
        rig.sent();
        rig.connack(false);
        assert_eq!(rig.sent(), [Wire::PingReq]);
        rig.advance(5_000);
        assert_eq!(rig.commands(), [Command::Close]);
        let events = rig.events();
        assert!(
            !events.iter().any(|e| matches!(e, Event::Up { .. })),
            "never up"
        );
        let Some(Event::Reconnecting { failures, delay }) = events.last().copied() else {
            panic!("no backoff");
        };
        assert_eq!(failures, attempt);
        let ceiling = rig.s.config().backoff.ceiling(failures);
        assert!(
            delay >= Duration::from_secs(1) && delay <= ceiling,
            "{} > {}",
            delay.as_millis(),
            ceiling.as_millis()
        );
        delays.push(delay).unwrap();
        rig.now = rig.now + delay;
    }
    assert!(delays[6] > Duration::from_secs(2) || delays[7] > Duration::from_secs(2));
}

fn backoff_resets_only_after_up() {
    rig!(rig);
    rig.s.handle_timeout(rig.now);
    rig.commands();
    rig.s.connect_failed(rig.now);
    rig.now = rig.s.poll_timeout().unwrap();
    rig.s.handle_timeout(rig.now);
    rig.s.connected(rig.now);
    rig.sent();
    rig.connack(false);
    assert_eq!(rig.s.failures(), 1);
    rig.sent();
    rig.recv(Packet::PingResp);
    assert_eq!(rig.s.failures(), 0);
}

fn inbound_qos2_exactly_once() {
    rig!(rig);
    rig.up(true);
    let publish = Publish {
        dup: false,
        qos: PublishQos::ExactlyOnce(id(9)),
        retain: false,
        topic: "in",
        payload: b"m",
    };
    let msg = rig
        .s
        .handle_packet(rig.now, Packet::Publish(publish))
        .unwrap();
    rig.s.acknowledge(rig.now, msg.ack.unwrap());
    assert_eq!(rig.sent(), [Wire::PubRec(9)]);
    rig.s.closed(rig.now);
    rig.reconnect(true);
    let again = Publish {
        dup: true,
        ..publish
    };
    assert!(
        rig.s
            .handle_packet(rig.now, Packet::Publish(again))
            .is_none(),
        "not delivered twice"
    );
    assert_eq!(rig.sent(), [Wire::PubRec(9)]);
    rig.recv(Packet::PubRel(PubRel::new(id(9))));
    assert_eq!(rig.sent(), [Wire::PubComp(9)]);
    assert!(
        rig.s
            .handle_packet(rig.now, Packet::Publish(publish))
            .is_some()
    );
}

fn qos2_pubrel_resent_after_reconnect() {
    rig!(rig);
    rig.up(true);
    let pid = rig.publish("q2", QoS::ExactlyOnce);
    let sent = rig.sent();
    let [Wire::Publish { id, qos: 2, .. }] = sent.as_slice() else {
        panic!("{:?}", sent)
    };
    let id = *id;
    rig.recv(Packet::PubRec(PubRec::new(self::id(id))));
    assert_eq!(rig.sent(), [Wire::PubRel(id)]);
    rig.s.closed(rig.now);
    rig.reconnect(true);
    assert_eq!(
        rig.sent(),
        [Wire::PubRel(id)],
        "PUBREL again, not the PUBLISH"
    );
    rig.recv(Packet::PubComp(PubComp::new(self::id(id))));
    assert!(rig.events().contains(&Event::Published(pid)));
    assert_eq!(rig.s.stored_messages(), 0);
}
