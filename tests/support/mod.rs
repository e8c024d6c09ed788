//! Building blocks of the session simulation: a seeded generator, owned packet summaries for
//! traces, and a simulated MQTT 3.1.1 broker built on the crate's own codec.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use rand_core::RngCore;
use shearwater::packet::{
    ConnAck, ConnectReturnCode, Decoded, Packet, PacketId, PubAck, PubComp, PubRec, PubRel,
    Publish, PublishQos, QoS, SubAck, SubAckReturnCode, UnsubAck, decode, topic_matches,
};

// ----- the generator -----

pub(crate) use shearwater::rand::SplitMix64;

/// The draws the scenarios make, on the crate's seeded generator.
pub(crate) trait Draw: RngCore {
    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A number in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `per_mille` / 1000.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    /// An independent generator derived from this one.
    fn fork(&mut self) -> SplitMix64 {
        SplitMix64::new(self.next_u64())
    }
}

impl Draw for SplitMix64 {}

// ----- payloads -----

/// The first byte of a payload the application published (then its sequence number).
pub(crate) const FROM_CLIENT: u8 = b'c';
/// The first byte of a payload another client published through the broker.
pub(crate) const FROM_OUTSIDE: u8 = b'x';

/// A payload that names its message: a tag, a sequence number, then `pad` filler bytes.
pub(crate) fn payload(tag: u8, seq: u64, pad: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(9 + pad);
    p.push(tag);
    p.extend_from_slice(&seq.to_be_bytes());
    p.resize(9 + pad, b'.');
    p
}

/// The sequence number of a payload made by [`payload`].
pub(crate) fn payload_seq(p: &[u8], tag: u8) -> Option<u64> {
    if p.first() != Some(&tag) {
        return None;
    }
    Some(u64::from_be_bytes(p.get(1..9)?.try_into().ok()?))
}

/// What the broker sends to the client: the delivery number, then the original payload.
fn delivery_payload(delivery: u64, original: &[u8]) -> Vec<u8> {
    let mut p = delivery.to_be_bytes().to_vec();
    p.extend_from_slice(original);
    p
}

/// The delivery number of a payload the broker sent.
pub(crate) fn delivery_of(p: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(p.get(..8)?.try_into().ok()?))
}

// ----- trace summaries -----

/// A packet reduced to what a trace line needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pk {
    pub(crate) kind: &'static str,
    /// The packet identifier, or 0.
    pub(crate) id: u16,
    /// For PUBLISH: QoS, DUP and the message's number (sequence or delivery); for CONNACK the
    /// return code and session present; for SUBSCRIBE/UNSUBSCRIBE the filter count.
    pub(crate) a: u64,
    pub(crate) b: u64,
}

impl Pk {
    pub(crate) fn of(p: &Packet<'_>) -> Pk {
        let id = |v: PacketId| v.get();
        let (kind, id, a, b) = match p {
            Packet::Connect(c) => ("CONNECT", 0, u64::from(c.clean_session), 0),
            Packet::ConnAck(c) => ("CONNACK", 0, c.code as u64, u64::from(c.session_present)),
            Packet::Publish(p) => {
                let number = payload_seq(p.payload, FROM_CLIENT)
                    .or_else(|| delivery_of(p.payload))
                    .unwrap_or(u64::MAX);
                (
                    "PUBLISH",
                    p.qos.packet_id().map_or(0, id),
                    p.qos.qos() as u64 * 10 + u64::from(p.dup),
                    number,
                )
            }
            Packet::PubAck(a) => ("PUBACK", id(a.packet_id), 0, 0),
            Packet::PubRec(a) => ("PUBREC", id(a.packet_id), 0, 0),
            Packet::PubRel(a) => ("PUBREL", id(a.packet_id), 0, 0),
            Packet::PubComp(a) => ("PUBCOMP", id(a.packet_id), 0, 0),
            Packet::Subscribe(s) => ("SUBSCRIBE", id(s.packet_id), s.filters.len() as u64, 0),
            Packet::SubAck(s) => ("SUBACK", id(s.packet_id), s.codes.len() as u64, 0),
            Packet::Unsubscribe(u) => ("UNSUBSCRIBE", id(u.packet_id), u.filters.len() as u64, 0),
            Packet::UnsubAck(u) => ("UNSUBACK", id(u.packet_id), 0, 0),
            Packet::PingReq => ("PINGREQ", 0, 0, 0),
            Packet::PingResp => ("PINGRESP", 0, 0, 0),
            Packet::Disconnect => ("DISCONNECT", 0, 0, 0),
        };
        Pk { kind, id, a, b }
    }
}

// ----- the broker -----

/// How the broker treats new connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Serves.
    Healthy,
    /// Restarting: TCP connects are refused.
    Down,
    /// Answers CONNECT with return code 3 (server unavailable) and closes.
    Refuse,
    /// Accepts TCP and reads CONNECT, but never answers it.
    MuteConnAck,
    /// Answers CONNECT, then never sends anything again on that connection.
    Zombie,
}

/// A message on its way from the broker to the client.
#[derive(Debug, Clone)]
struct OutMsg {
    delivery: u64,
    qos: QoS,
    topic: String,
    payload: Vec<u8>,
    /// The packet identifier, once sent.
    id: u16,
    stage: OutStage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutStage {
    /// Not sent on the current connection.
    Queued,
    /// PUBLISH sent, waiting for PUBACK or PUBREC. `sent` says whether it ever went out.
    AwaitAck,
    /// PUBREL sent (or owed), waiting for PUBCOMP.
    AwaitComp,
}

/// What the broker keeps for the client between connections.
#[derive(Debug, Default)]
pub(crate) struct BrokerSession {
    /// The client asked for a clean session: this state dies with the connection.
    clean: bool,
    /// Filter → granted QoS.
    pub(crate) subs: BTreeMap<String, QoS>,
    /// QoS 2 messages from the client: PUBREC sent, PUBREL not received.
    inbound_qos2: BTreeSet<u16>,
    /// Messages to the client not yet fully acknowledged, in order.
    outq: VecDeque<OutMsg>,
    /// Sent to the client at some point (resends carry DUP).
    sent_before: BTreeSet<u64>,
    next_id: u16,
}

impl BrokerSession {
    fn allocate_id(&mut self) -> u16 {
        loop {
            self.next_id = self.next_id.checked_add(1).unwrap_or(1);
            let candidate = self.next_id;
            if !self.outq.iter().any(|m| m.id == candidate) {
                return candidate;
            }
        }
    }

    fn in_flight(&self) -> usize {
        self.outq
            .iter()
            .filter(|m| m.stage != OutStage::Queued)
            .count()
    }

    /// QoS 1/2 messages still owed to the client.
    pub(crate) fn pending(&self) -> usize {
        self.outq.len()
    }
}

/// One TCP connection as the broker sees it.
#[derive(Debug)]
struct BrokerConn {
    rx: Vec<u8>,
    /// CONNECT processed (answered or not).
    connected: bool,
    /// Never sends again (a "zombie" after CONNACK, or a mute one).
    silent: bool,
    keep_alive_ms: u64,
    last_rx: u64,
    opened: u64,
}

/// What the broker asks of the network or reports to the checker.
#[derive(Debug)]
pub(crate) enum Out {
    /// Bytes to the client on a connection.
    Send(u32, Vec<u8>),
    /// The broker closes its side of a connection.
    Close(u32),
    /// The client acknowledged (PUBACK or PUBREC) the message of this delivery number.
    Acked(u64),
}

/// The client's application messages the broker received, by sequence number.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Received {
    /// PUBLISH packets that arrived (duplicates included).
    pub(crate) packets: u32,
    /// Times the broker passed it on (after QoS 2 deduplication): what "delivered" means.
    pub(crate) delivered: u32,
    pub(crate) qos: u8,
}

/// The filter a broker refuses, to exercise SUBACK failures.
pub(crate) const DENIED_FILTER: &str = "x/deny";
/// How many messages the broker keeps queued for the client at most.
const QUEUE_LIMIT: usize = 200;
/// How many QoS 1/2 messages the broker has in flight to the client at once.
pub(crate) const BROKER_WINDOW: usize = 8;

/// A broker for one client identifier, with faults.
#[derive(Debug)]
pub(crate) struct Broker {
    pub(crate) mode: Mode,
    pub(crate) mode_until: u64,
    pub(crate) session: Option<BrokerSession>,
    /// The connection the session is bound to.
    owner: Option<u32>,
    conns: BTreeMap<u32, BrokerConn>,
    /// The client's messages, by sequence number.
    pub(crate) received: HashMap<u64, Received>,
    next_delivery: u64,
    /// Deliveries dropped because the queue was full or the session went away.
    pub(crate) dropped_deliveries: u64,
    pub(crate) out: Vec<Out>,
}

impl Broker {
    pub(crate) fn new() -> Self {
        Broker {
            mode: Mode::Healthy,
            mode_until: 0,
            session: None,
            owner: None,
            conns: BTreeMap::new(),
            received: HashMap::new(),
            next_delivery: 1,
            dropped_deliveries: 0,
            out: Vec::new(),
        }
    }

    /// The next instant at which [`tick`](Self::tick) has work.
    pub(crate) fn next_deadline(&self) -> Option<u64> {
        let modes = (self.mode != Mode::Healthy).then_some(self.mode_until);
        let conns = self
            .conns
            .values()
            .map(|c| {
                if c.connected {
                    c.last_rx + c.keep_alive_ms * 3 / 2
                } else {
                    c.opened + 10_000
                }
            })
            .min();
        [modes, conns].into_iter().flatten().min()
    }

    /// Mode changes and the broker's own keep-alive enforcement.
    pub(crate) fn tick(&mut self, now: u64) {
        if self.mode != Mode::Healthy && now >= self.mode_until {
            self.mode = Mode::Healthy;
        }
        let expired: Vec<u32> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                if c.connected {
                    now >= c.last_rx + c.keep_alive_ms * 3 / 2
                } else {
                    now >= c.opened + 10_000
                }
            })
            .map(|(&id, _)| id)
            .collect();
        for id in expired {
            self.close(id);
        }
    }

    /// A TCP connection attempt; false if the broker is down.
    pub(crate) fn accept(&mut self, now: u64, conn: u32) -> bool {
        if self.mode == Mode::Down {
            return false;
        }
        self.conns.insert(
            conn,
            BrokerConn {
                rx: Vec::new(),
                connected: false,
                silent: false,
                keep_alive_ms: 0,
                last_rx: now,
                opened: now,
            },
        );
        true
    }

    /// The broker crashes and comes back after `down_ms`, with or without its sessions.
    pub(crate) fn restart(&mut self, now: u64, down_ms: u64, keep_sessions: bool) {
        let ids: Vec<u32> = self.conns.keys().copied().collect();
        for id in ids {
            self.close(id);
        }
        if !keep_sessions {
            self.drop_session();
        }
        self.mode = Mode::Down;
        self.mode_until = now + down_ms;
    }

    fn drop_session(&mut self) {
        if let Some(s) = self.session.take() {
            self.dropped_deliveries += s.outq.len() as u64;
        }
    }

    /// The broker closes a connection.
    fn close(&mut self, conn: u32) {
        if self.conns.remove(&conn).is_some() {
            self.out.push(Out::Close(conn));
            self.connection_gone(conn);
        }
    }

    /// The client's side of a connection closed (the broker saw FIN or RST).
    pub(crate) fn peer_closed(&mut self, conn: u32) {
        if self.conns.remove(&conn).is_some() {
            self.connection_gone(conn);
        }
    }

    fn connection_gone(&mut self, conn: u32) {
        if self.owner == Some(conn) {
            self.owner = None;
            if self.session.as_ref().is_some_and(|s| s.clean) {
                self.drop_session();
            }
        }
    }

    /// Writes garbage that can never decode as a packet (a reserved packet type first).
    pub(crate) fn garbage(&mut self, rng: &mut SplitMix64) {
        let Some(conn) = self.owner else { return };
        let mut bytes = vec![0u8; rng.range(1, 40) as usize];
        rng.fill_bytes(&mut bytes);
        bytes[0] = if rng.chance(500) { 0x00 } else { 0xF0 } | (bytes[0] & 0x0F);
        self.out.push(Out::Send(conn, bytes));
    }

    fn send(&mut self, conn: u32, packet: &Packet<'_>) {
        if self.conns.get(&conn).is_none_or(|c| c.silent) {
            return;
        }
        let mut buf = vec![0u8; packet.encoded_len().expect("broker packets encode")];
        packet.encode(&mut buf).expect("broker packets encode");
        self.out.push(Out::Send(conn, buf));
    }

    /// Bytes from the client. An error is a client bug (it wrote something no broker accepts).
    pub(crate) fn receive(&mut self, now: u64, conn: u32, bytes: &[u8]) -> Result<(), String> {
        let Some(c) = self.conns.get_mut(&conn) else {
            return Ok(());
        };
        c.rx.extend_from_slice(bytes);
        let rx = std::mem::take(&mut c.rx);
        let mut at = 0;
        let result = loop {
            match decode(&rx[at..], 1 << 20) {
                Ok(Decoded::Complete { packet, len }) => {
                    at += len;
                    if let Err(e) = self.handle(now, conn, packet) {
                        break Err(e);
                    }
                    if !self.conns.contains_key(&conn) {
                        break Ok(());
                    }
                }
                Ok(Decoded::Incomplete(_)) => break Ok(()),
                Err(e) => break Err(format!("client wrote undecodable bytes: {e:?}")),
            }
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.rx = rx[at..].to_vec();
        }
        result
    }

    fn handle(&mut self, now: u64, conn: u32, packet: Packet<'_>) -> Result<(), String> {
        let mode = self.mode;
        let Some(c) = self.conns.get_mut(&conn) else {
            return Ok(());
        };
        c.last_rx = now;
        if c.silent {
            return Ok(());
        }
        let connected = c.connected;
        match packet {
            Packet::Connect(connect) => {
                if connected {
                    return Err("second CONNECT on one connection".into());
                }
                c.connected = true;
                c.keep_alive_ms = u64::from(connect.keep_alive) * 1000;
                match mode {
                    Mode::Refuse => {
                        self.send(
                            conn,
                            &Packet::ConnAck(ConnAck {
                                session_present: false,
                                code: ConnectReturnCode::ServerUnavailable,
                            }),
                        );
                        self.close(conn);
                    }
                    Mode::MuteConnAck => {
                        if let Some(c) = self.conns.get_mut(&conn) {
                            c.silent = true;
                        }
                    }
                    Mode::Healthy | Mode::Zombie | Mode::Down => {
                        self.connect(conn, connect.clean_session, mode == Mode::Zombie);
                    }
                }
                return Ok(());
            }
            _ if !connected => {
                return Err(format!("{:?} before CONNECT", packet.packet_type()));
            }
            Packet::PingReq => self.send(conn, &Packet::PingResp),
            Packet::Disconnect => self.close(conn),
            Packet::Publish(p) => self.on_publish(conn, p)?,
            Packet::PubRel(r) => {
                if let Some(s) = self.session.as_mut() {
                    s.inbound_qos2.remove(&r.packet_id.get());
                }
                self.send(conn, &Packet::PubComp(PubComp::new(r.packet_id)));
            }
            Packet::PubAck(a) => self.on_ack(conn, a.packet_id, QoS::AtLeastOnce)?,
            Packet::PubRec(a) => self.on_ack(conn, a.packet_id, QoS::ExactlyOnce)?,
            Packet::PubComp(a) => {
                let id = a.packet_id.get();
                let s = self.session.as_mut().ok_or("PUBCOMP without a session")?;
                let i = s
                    .outq
                    .iter()
                    .position(|m| m.id == id && m.stage == OutStage::AwaitComp)
                    .ok_or_else(|| format!("PUBCOMP for unknown id {id}"))?;
                s.outq.remove(i);
                self.pump(conn);
            }
            Packet::Subscribe(sub) => {
                let mut codes = Vec::new();
                let s = self.session.as_mut().ok_or("SUBSCRIBE without a session")?;
                for f in sub.filters.iter() {
                    if f.filter == DENIED_FILTER {
                        codes.push(SubAckReturnCode::Failure);
                    } else {
                        s.subs.insert(f.filter.to_string(), f.qos);
                        codes.push(SubAckReturnCode::from_qos(f.qos));
                    }
                }
                self.send(
                    conn,
                    &Packet::SubAck(SubAck {
                        packet_id: sub.packet_id,
                        codes: codes.as_slice().into(),
                    }),
                );
            }
            Packet::Unsubscribe(u) => {
                let s = self
                    .session
                    .as_mut()
                    .ok_or("UNSUBSCRIBE without a session")?;
                for f in u.filters.iter() {
                    s.subs.remove(f);
                }
                self.send(conn, &Packet::UnsubAck(UnsubAck::new(u.packet_id)));
            }
            other => return Err(format!("a client never sends {:?}", other.packet_type())),
        }
        Ok(())
    }

    fn connect(&mut self, conn: u32, clean: bool, zombie: bool) {
        if let Some(old) = self.owner.filter(|&o| o != conn) {
            // Session takeover: the older connection of the same client is closed.
            self.close(old);
        }
        if clean {
            self.drop_session();
        }
        let session_present = self.session.is_some();
        let s = self.session.get_or_insert_with(BrokerSession::default);
        s.clean = clean;
        self.owner = Some(conn);
        self.send(
            conn,
            &Packet::ConnAck(ConnAck {
                session_present,
                code: ConnectReturnCode::Accepted,
            }),
        );
        if zombie {
            // CONNACK, then nothing ever again on this connection.
            if let Some(c) = self.conns.get_mut(&conn) {
                c.silent = true;
            }
            return;
        }
        // Resend what is unacknowledged, in order, then what is queued.
        if let Some(s) = self.session.as_mut() {
            for m in s.outq.iter_mut() {
                if m.stage == OutStage::AwaitAck {
                    m.stage = OutStage::Queued;
                }
            }
        }
        let rels: Vec<u16> = self
            .session
            .as_ref()
            .map(|s| {
                s.outq
                    .iter()
                    .filter(|m| m.stage == OutStage::AwaitComp)
                    .map(|m| m.id)
                    .collect()
            })
            .unwrap_or_default();
        for id in rels {
            self.send(conn, &Packet::PubRel(PubRel::new(pid(id))));
        }
        self.pump(conn);
    }

    fn on_publish(&mut self, conn: u32, p: Publish<'_>) -> Result<(), String> {
        let seq = payload_seq(p.payload, FROM_CLIENT).ok_or("PUBLISH with a foreign payload")?;
        let qos = p.qos.qos();
        let r = self.received.entry(seq).or_default();
        if r.packets > 0 && !p.dup && qos != QoS::AtMostOnce {
            return Err(format!("message c{seq} sent again without DUP"));
        }
        if p.dup && qos == QoS::AtMostOnce {
            return Err(format!("QoS 0 message c{seq} with DUP"));
        }
        if r.packets > 0 && r.qos != qos as u8 {
            return Err(format!("message c{seq} changed QoS"));
        }
        r.packets += 1;
        r.qos = qos as u8;
        let deliver = match p.qos {
            PublishQos::AtMostOnce => true,
            PublishQos::AtLeastOnce(id) => {
                self.send(conn, &Packet::PubAck(PubAck::new(id)));
                true
            }
            PublishQos::ExactlyOnce(id) => {
                let s = self.session.as_mut().ok_or("PUBLISH without a session")?;
                let new = s.inbound_qos2.insert(id.get());
                self.send(conn, &Packet::PubRec(PubRec::new(id)));
                new
            }
        };
        if deliver {
            if let Some(r) = self.received.get_mut(&seq) {
                r.delivered += 1;
            }
            self.route(p.topic, qos, p.payload);
        }
        Ok(())
    }

    fn on_ack(&mut self, conn: u32, id: PacketId, qos: QoS) -> Result<(), String> {
        let id = id.get();
        let s = self
            .session
            .as_mut()
            .ok_or("acknowledgement without a session")?;
        let Some(i) = s.outq.iter().position(|m| m.id == id && m.qos == qos) else {
            return Err(format!("{qos:?} acknowledgement for unknown id {id}"));
        };
        let m = &mut s.outq[i];
        match (qos, m.stage) {
            (QoS::AtLeastOnce, OutStage::AwaitAck) => {
                let delivery = m.delivery;
                s.outq.remove(i);
                self.out.push(Out::Acked(delivery));
            }
            (QoS::ExactlyOnce, OutStage::AwaitAck | OutStage::AwaitComp) => {
                let delivery = m.delivery;
                m.stage = OutStage::AwaitComp;
                self.out.push(Out::Acked(delivery));
                self.send(conn, &Packet::PubRel(PubRel::new(pid(id))));
            }
            _ => return Err(format!("{qos:?} acknowledgement for id {id} out of turn")),
        }
        self.pump(conn);
        Ok(())
    }

    /// Another client publishes through the broker.
    pub(crate) fn external_publish(&mut self, topic: &str, qos: QoS, seq: u64) {
        let p = payload(FROM_OUTSIDE, seq, 0);
        self.route(topic, qos, &p);
    }

    /// Passes a message on to the client if it subscribed to the topic.
    fn route(&mut self, topic: &str, qos: QoS, original: &[u8]) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let Some(granted) = s
            .subs
            .iter()
            .filter(|(f, _)| topic_matches(f, topic))
            .map(|(_, q)| *q)
            .max()
        else {
            return;
        };
        let qos = qos.min(granted);
        let delivery = self.next_delivery;
        self.next_delivery += 1;
        let payload = delivery_payload(delivery, original);
        if qos == QoS::AtMostOnce {
            if let Some(conn) = self.owner {
                let p = Publish {
                    dup: false,
                    qos: PublishQos::AtMostOnce,
                    retain: false,
                    topic,
                    payload: &payload,
                };
                self.send(conn, &Packet::Publish(p));
            }
            return;
        }
        if s.outq.len() >= QUEUE_LIMIT {
            self.dropped_deliveries += 1;
            return;
        }
        s.outq.push_back(OutMsg {
            delivery,
            qos,
            topic: topic.to_string(),
            payload,
            id: 0,
            stage: OutStage::Queued,
        });
        if let Some(conn) = self.owner {
            self.pump(conn);
        }
    }

    /// Sends queued messages to the client while the window allows.
    fn pump(&mut self, conn: u32) {
        if self.owner != Some(conn) || self.conns.get(&conn).is_none_or(|c| c.silent) {
            return;
        }
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let mut sends = Vec::new();
        let mut in_flight = s.in_flight();
        for i in 0..s.outq.len() {
            if in_flight >= BROKER_WINDOW {
                break;
            }
            if s.outq[i].stage != OutStage::Queued {
                continue;
            }
            if s.outq[i].id == 0 {
                s.outq[i].id = s.allocate_id();
            }
            let m = &mut s.outq[i];
            m.stage = OutStage::AwaitAck;
            in_flight += 1;
            let dup = !s.sent_before.insert(m.delivery);
            sends.push((m.id, m.qos, dup, m.topic.clone(), m.payload.clone()));
        }
        for (id, qos, dup, topic, payload) in sends {
            let qos = match qos {
                QoS::AtLeastOnce => PublishQos::AtLeastOnce(pid(id)),
                _ => PublishQos::ExactlyOnce(pid(id)),
            };
            let p = Publish {
                dup,
                qos,
                retain: false,
                topic: &topic,
                payload: &payload,
            };
            self.send(conn, &Packet::Publish(p));
        }
    }

    /// The filters the broker holds for the client.
    pub(crate) fn subscriptions(&self) -> Option<&BTreeMap<String, QoS>> {
        self.session.as_ref().map(|s| &s.subs)
    }
}

fn pid(v: u16) -> PacketId {
    PacketId::new(v).expect("non-zero packet id")
}
