//! `ScriptedTransport`: an in-memory connection with a scripted network behind it, and a small
//! broker that reads what the client writes and answers it.
//!
//! The transport and the test share one [`Net`] (through `Rc<RefCell<..>>`): the test scripts
//! connect results, received chunks, short writes and errors into it, and reads back every byte
//! the client wrote, decoded packet by packet.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use shearwater::packet::{
    ConnAck, ConnectReturnCode, Decoded, Packet, PacketId, PacketType, PubAck, PubComp, PubRec,
    PubRel, SubAck, SubAckReturnCode, UnsubAck, decode,
};
use shearwater::transport::{ErrorKind, ErrorType, Read, Transport, Write};

use crate::clock::Time;

/// What the next `connect` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectStep {
    /// The connection opens.
    Ok,
    /// The connection is refused.
    Fail,
    /// The connect never completes (the client's connect timeout must end it).
    Never,
}

/// One item of the receive script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rx {
    /// Bytes from the broker; a read returns at most `read_chunk` of them.
    Data(Vec<u8>),
    /// The peer closed the connection: reads return `Ok(0)`.
    Eof,
    /// The connection broke: reads fail.
    Error,
}

/// A packet the client wrote, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pkt {
    /// CONNECT.
    Connect {
        /// Clean-session flag.
        clean_session: bool,
        /// Keep alive in seconds.
        keep_alive: u16,
    },
    /// PUBLISH.
    Publish {
        /// DUP flag.
        dup: bool,
        /// QoS level.
        qos: u8,
        /// Packet identifier (QoS 1 and 2).
        id: Option<u16>,
        /// Topic name.
        topic: String,
        /// Payload.
        payload: Vec<u8>,
    },
    /// PUBACK.
    PubAck(u16),
    /// PUBREC.
    PubRec(u16),
    /// PUBREL.
    PubRel(u16),
    /// PUBCOMP.
    PubComp(u16),
    /// SUBSCRIBE with its filters.
    Subscribe {
        /// Packet identifier.
        id: u16,
        /// Filters.
        filters: Vec<String>,
    },
    /// UNSUBSCRIBE.
    Unsubscribe(u16),
    /// PINGREQ.
    PingReq,
    /// DISCONNECT.
    Disconnect,
    /// A packet a client never sends.
    Other(PacketType),
}

impl Pkt {
    fn from_packet(packet: &Packet<'_>) -> Self {
        match packet {
            Packet::Connect(c) => Pkt::Connect {
                clean_session: c.clean_session,
                keep_alive: c.keep_alive,
            },
            Packet::Publish(p) => Pkt::Publish {
                dup: p.dup,
                qos: p.qos.qos() as u8,
                id: p.qos.packet_id().map(PacketId::get),
                topic: p.topic.to_owned(),
                payload: p.payload.to_vec(),
            },
            Packet::PubAck(a) => Pkt::PubAck(a.packet_id.get()),
            Packet::PubRec(a) => Pkt::PubRec(a.packet_id.get()),
            Packet::PubRel(a) => Pkt::PubRel(a.packet_id.get()),
            Packet::PubComp(a) => Pkt::PubComp(a.packet_id.get()),
            Packet::Subscribe(s) => Pkt::Subscribe {
                id: s.packet_id.get(),
                filters: s.filters.iter().map(|f| f.filter.to_owned()).collect(),
            },
            Packet::Unsubscribe(u) => Pkt::Unsubscribe(u.packet_id.get()),
            Packet::PingReq => Pkt::PingReq,
            Packet::Disconnect => Pkt::Disconnect,
            other => Pkt::Other(other.packet_type()),
        }
    }
}

/// A packet the broker received, with the connection (1 for the first) and the virtual time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The connection it came on.
    pub conn: u32,
    /// Milliseconds of virtual time when its last byte was written.
    pub at: u64,
    /// The packet.
    pub packet: Pkt,
}

/// The bytes of `packet`.
pub fn encode(packet: &Packet<'_>) -> Vec<u8> {
    let mut buf = vec![0; packet.encoded_len().expect("valid packet")];
    let len = packet.encode(&mut buf).expect("fits");
    assert_eq!(len, buf.len());
    buf
}

fn id(v: u16) -> PacketId {
    PacketId::new(v).expect("non-zero packet id")
}

/// How the broker behind the transport answers.
#[derive(Debug)]
pub struct Broker {
    /// The CONNACK code it answers CONNECT with; `None`: it stays silent.
    pub connack: Option<ConnectReturnCode>,
    /// The session-present flag of an accepting CONNACK.
    pub session_present: bool,
    /// Answer PINGREQ with PINGRESP.
    pub answer_pings: bool,
    /// Answer QoS 1 PUBLISH with PUBACK (QoS 2 with PUBREC, PUBREL with PUBCOMP).
    pub ack_publishes: bool,
    /// Answer SUBSCRIBE with SUBACK (granting what was asked) and UNSUBSCRIBE with UNSUBACK.
    pub ack_subscribes: bool,
    /// Every whole packet the client wrote, in order.
    pub log: Vec<Sent>,
    /// Undecodable input in the client's stream (connection, error): must stay empty.
    pub stream_errors: Vec<(u32, String)>,
    /// Connections that closed with a partial packet written (connection, bytes left over).
    pub partial_at_close: Vec<(u32, usize)>,
    /// Bytes written on the current connection and not yet a whole packet.
    inbox: Vec<u8>,
    /// The current connection's stream could not be decoded: ignore the rest of it.
    corrupt: bool,
}

impl Default for Broker {
    fn default() -> Self {
        Self {
            connack: Some(ConnectReturnCode::Accepted),
            session_present: false,
            answer_pings: true,
            ack_publishes: true,
            ack_subscribes: true,
            log: Vec::new(),
            stream_errors: Vec::new(),
            partial_at_close: Vec::new(),
            inbox: Vec::new(),
            corrupt: false,
        }
    }
}

impl Broker {
    /// The packets of the whole log, without connection and time.
    pub fn packets(&self) -> Vec<Pkt> {
        self.log.iter().map(|s| s.packet.clone()).collect()
    }

    /// Reads the client's bytes; returns the answers to send back.
    fn receive(&mut self, conn: u32, at: u64, bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut answers = Vec::new();
        if self.corrupt {
            return answers;
        }
        self.inbox.extend_from_slice(bytes);
        loop {
            let (packet, len) = match decode(&self.inbox, 1 << 20) {
                Ok(Decoded::Complete { packet, len }) => (Pkt::from_packet(&packet), len),
                Ok(Decoded::Incomplete(_)) => break,
                Err(e) => {
                    self.stream_errors.push((conn, format!("{e:?}")));
                    self.corrupt = true;
                    self.inbox.clear();
                    break;
                }
            };
            self.inbox.drain(..len);
            if let Some(answer) = self.answer(&packet) {
                answers.push(answer);
            }
            self.log.push(Sent { conn, at, packet });
        }
        answers
    }

    fn answer(&self, packet: &Pkt) -> Option<Vec<u8>> {
        let answer = match *packet {
            Pkt::Connect { .. } => {
                let code = self.connack?;
                Packet::ConnAck(ConnAck {
                    session_present: self.session_present && code == ConnectReturnCode::Accepted,
                    code,
                })
            }
            Pkt::PingReq if self.answer_pings => Packet::PingResp,
            Pkt::Publish {
                qos: 1,
                id: Some(i),
                ..
            } if self.ack_publishes => Packet::PubAck(PubAck::new(id(i))),
            Pkt::Publish {
                qos: 2,
                id: Some(i),
                ..
            } if self.ack_publishes => Packet::PubRec(PubRec::new(id(i))),
            Pkt::PubRel(i) if self.ack_publishes => Packet::PubComp(PubComp::new(id(i))),
            // The client received a QoS 2 message and answered PUBREC: release it.
            Pkt::PubRec(i) if self.ack_publishes => Packet::PubRel(PubRel::new(id(i))),
            Pkt::Subscribe { id: i, ref filters } if self.ack_subscribes => {
                let codes = vec![SubAckReturnCode::GrantedQos1; filters.len()];
                return Some(encode(&Packet::SubAck(SubAck {
                    packet_id: id(i),
                    codes: codes.as_slice().into(),
                })));
            }
            Pkt::Unsubscribe(i) if self.ack_subscribes => Packet::UnsubAck(UnsubAck::new(id(i))),
            _ => return None,
        };
        Some(encode(&answer))
    }

    fn connection_ended(&mut self, conn: u32) {
        if !self.inbox.is_empty() {
            self.partial_at_close.push((conn, self.inbox.len()));
        }
        self.inbox.clear();
        self.corrupt = false;
    }
}

/// The network behind a [`ScriptedTransport`], shared with the test.
#[derive(Debug)]
pub struct Net {
    /// Results of the next connects, in order; when empty, connects succeed.
    pub connects: VecDeque<ConnectStep>,
    /// Virtual times at which `connect` was called.
    pub connect_attempts: Vec<u64>,
    /// Connections opened so far; the current one's number.
    pub connections: u32,
    /// A connection is open.
    pub connected: bool,
    /// Calls of `close`.
    pub closes: u32,
    /// What reads return, in order; when empty, reads stay pending.
    pub rx: VecDeque<Rx>,
    /// The most bytes one read returns.
    pub read_chunk: usize,
    /// The most bytes one write accepts; 0: writes stay pending (the peer stopped reading).
    pub write_chunk: usize,
    /// Virtual milliseconds each write takes before it returns (a slow uplink).
    pub write_ms: u64,
    /// The next write fails.
    pub fail_next_write: bool,
    /// Every other read, write and connect returns `Pending` once before doing its work, so
    /// that each of them is an await point at which a caller can drop the client's future.
    pub yield_every_other: bool,
    /// Lengths of the buffers the client offered to `write`, and what was accepted.
    pub writes: Vec<(usize, usize)>,
    /// The broker.
    pub broker: Broker,
    /// The virtual clock.
    time: Rc<Time>,
    ops: u64,
}

impl Net {
    /// A network where every connect succeeds and the broker answers everything.
    pub fn new(time: Rc<Time>) -> Self {
        Self {
            connects: VecDeque::new(),
            connect_attempts: Vec::new(),
            connections: 0,
            connected: false,
            closes: 0,
            rx: VecDeque::new(),
            read_chunk: usize::MAX,
            write_chunk: usize::MAX,
            write_ms: 0,
            fail_next_write: false,
            yield_every_other: false,
            writes: Vec::new(),
            broker: Broker::default(),
            time,
            ops: 0,
        }
    }

    /// Queues `packet` for the client to read.
    pub fn send(&mut self, packet: &Packet<'_>) {
        self.rx.push_back(Rx::Data(encode(packet)));
    }

    /// Whether the next I/O call should yield once first.
    fn take_yield(&mut self) -> bool {
        self.ops += 1;
        self.yield_every_other && self.ops % 2 == 1
    }

    fn try_read(&mut self, buf: &mut [u8]) -> Poll<Result<usize, ErrorKind>> {
        assert!(!buf.is_empty(), "the client read into an empty buffer");
        if !self.connected {
            return Poll::Ready(Err(ErrorKind::NotConnected));
        }
        let chunk = self.read_chunk;
        match self.rx.front_mut() {
            None => Poll::Pending,
            Some(Rx::Eof) => Poll::Ready(Ok(0)),
            Some(Rx::Error) => Poll::Ready(Err(ErrorKind::ConnectionReset)),
            Some(Rx::Data(data)) => {
                let n = data.len().min(buf.len()).min(chunk);
                buf[..n].copy_from_slice(&data[..n]);
                data.drain(..n);
                if data.is_empty() {
                    self.rx.pop_front();
                }
                Poll::Ready(Ok(n))
            }
        }
    }

    fn try_write(&mut self, buf: &[u8]) -> Poll<Result<usize, ErrorKind>> {
        if !self.connected {
            return Poll::Ready(Err(ErrorKind::NotConnected));
        }
        if std::mem::take(&mut self.fail_next_write) {
            return Poll::Ready(Err(ErrorKind::ConnectionReset));
        }
        if self.write_chunk == 0 {
            return Poll::Pending;
        }
        let n = buf.len().min(self.write_chunk);
        self.writes.push((buf.len(), n));
        let answers = self
            .broker
            .receive(self.connections, self.time.now(), &buf[..n]);
        self.rx.extend(answers.into_iter().map(Rx::Data));
        Poll::Ready(Ok(n))
    }

    fn try_connect(&mut self) -> Poll<Result<(), ErrorKind>> {
        self.connect_attempts.push(self.time.now());
        if self.connected {
            self.end_connection();
        }
        match self.connects.pop_front().unwrap_or(ConnectStep::Ok) {
            ConnectStep::Ok => {
                self.connections += 1;
                self.connected = true;
                self.rx.clear();
                Poll::Ready(Ok(()))
            }
            ConnectStep::Fail => Poll::Ready(Err(ErrorKind::ConnectionRefused)),
            ConnectStep::Never => Poll::Pending,
        }
    }

    fn end_connection(&mut self) {
        self.connected = false;
        self.broker.connection_ended(self.connections);
    }
}

/// Returns `Pending` once (waking itself), then `Ready`.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// The test double: a [`Transport`] over the shared [`Net`].
#[derive(Debug, Clone)]
pub struct ScriptedTransport {
    net: Rc<RefCell<Net>>,
}

impl ScriptedTransport {
    /// A transport over `net`.
    pub fn new(net: Rc<RefCell<Net>>) -> Self {
        Self { net }
    }

    async fn maybe_yield(&self) {
        let yield_now = self.net.borrow_mut().take_yield();
        if yield_now {
            YieldOnce(false).await;
        }
    }
}

impl ErrorType for ScriptedTransport {
    type Error = ErrorKind;
}

impl Read for ScriptedTransport {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        self.maybe_yield().await;
        poll_fn(|_| self.net.borrow_mut().try_read(buf)).await
    }
}

impl Write for ScriptedTransport {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        self.maybe_yield().await;
        let (time, write_ms) = {
            let net = self.net.borrow();
            (Rc::clone(&net.time), net.write_ms)
        };
        let done_at = time.now() + write_ms;
        poll_fn(|_| {
            if time.now() < done_at {
                time.register(done_at);
                return Poll::Pending;
            }
            self.net.borrow_mut().try_write(buf)
        })
        .await
    }

    async fn flush(&mut self) -> Result<(), ErrorKind> {
        if self.net.borrow().connected {
            Ok(())
        } else {
            Err(ErrorKind::NotConnected)
        }
    }
}

impl Transport for ScriptedTransport {
    async fn connect(&mut self) -> Result<(), ErrorKind> {
        self.maybe_yield().await;
        // The step is taken once per call, not once per poll.
        let mut first = Some(self.net.borrow_mut().try_connect());
        poll_fn(|_| first.take().unwrap_or(Poll::Pending)).await
    }

    async fn close(&mut self) {
        let mut net = self.net.borrow_mut();
        net.closes += 1;
        if net.connected {
            net.end_connection();
        }
    }
}
