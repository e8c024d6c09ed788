//! The sans-IO session: every protocol and fleet rule of the client, as a deterministic
//! function of its inputs.
//!
//! The session owns no socket and reads no clock. The caller (the client's driver, a test, a
//! simulation, a fuzzer) feeds it
//!
//! - decoded packets from the broker ([`Session::handle_packet`]) and decode errors
//!   ([`Session::handle_decode_error`]),
//! - transport events ([`Session::connected`], [`Session::connect_failed`], [`Session::closed`]),
//! - application requests ([`Session::publish`], [`Session::subscribe`], ...),
//! - the current time `now` with every call, and a random number generator at construction
//!   (for reconnect jitter),
//!
//! and pulls out bytes to send ([`Session::poll_transmit`]), transport commands
//! ([`Session::poll_command`]), events ([`Session::poll_event`]) and the next instant at which it
//! wants [`Session::handle_timeout`] ([`Session::poll_timeout`]).
//!
//! # States
//!
//! ```text
//!            start / restart()
//!                  │
//!                  ▼
//!   ┌────────► Waiting ──── retry_at reached: Command::Open ────► Opening
//!   │              ▲                                               │ connected()
//!   │              │ fail(reason): Command::Close,                 ▼
//!   │              │ backoff delay drawn              AwaitConnAck (CONNECT sent)
//!   │              │                                               │ CONNACK accepted
//!   │   any failure┴─ connect failed / timeouts /                  ▼
//!   │                 refused / ping timeout /        AwaitFirstPong (PINGREQ sent)
//!   │                 ack timeout / protocol error                 │ PINGRESP: Event::Up,
//!   │                 / closed by peer                             ▼ backoff reset
//!   │                                                              Up ◄─ keepalive pings
//!   │                                                              │ disconnect()
//!   │                                                              ▼
//!   └── (max_attempts reached: Stopped) ◄──────────────── Closing ─ DISCONNECT sent ─► Stopped
//! ```
//!
//! # What survives a connection
//!
//! The outbound store (QoS 0 not yet written, QoS 1/2 until acknowledged), the subscription
//! table, and the identifiers of inbound QoS 2 exchanges (cleared when the broker reports no
//! session). Everything tied to one connection (pending acknowledgements, keepalive timers) is
//! reset when it ends.

mod backoff;
mod commands;
mod config;
mod event;
mod event_queue;
mod outbox;
mod slab;
mod subscriptions;
#[cfg(test)]
mod tests;

use heapless::{Deque, Vec};
use rand_core::RngCore;

pub use backoff::BackoffConfig;
pub use config::{Config, ConfigError, TimeoutName};
pub use event::{
    CloseReason, Command, Event, InboundAck, IncomingMessage, ProtocolError, PublishError,
    PublishId, RequestId, SubscribeError,
};

use crate::compact::remove_ordered;
use crate::packet::{
    self, ConnAck, ConnectReturnCode, Packet, PacketId, PacketType, Part, Publish, PublishQos, QoS,
    SubAck, Subscription, check_topic_filter, first_byte,
};
use crate::time::{Duration, Instant};
use commands::PendingCommands;
use event_queue::{EVENT_CAPACITY, EventQueue};
use outbox::{Entry, Outbox, Stage};
use subscriptions::{Removal, SubState, Subscriptions};

/// Inbound acknowledgements (PUBACK, PUBREC, PUBCOMP) waiting to be written.
const CONTROL_CAPACITY: usize = 16;

/// This build handles QoS 2 (the `qos2` feature). Without it the QoS 2 paths are guarded by
/// this constant and left out of the binary, but still compiled and type-checked.
const QOS2: bool = cfg!(feature = "qos2");

/// The highest QoS this build publishes, subscribes with and accepts: QoS 2 needs the `qos2`
/// feature. [`Config::max_qos`] is capped at it.
pub const MAX_QOS: QoS = if QOS2 {
    QoS::ExactlyOnce
} else {
    QoS::AtLeastOnce
};

/// A message to publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct OutgoingMessage<'m> {
    /// The topic name.
    pub topic: &'m str,
    /// The payload.
    pub payload: &'m [u8],
    /// The QoS.
    pub qos: QoS,
    /// Ask the broker to retain it.
    pub retain: bool,
    /// Drop it (and report [`Event::Expired`]) if it has not been acknowledged by then. A QoS 2
    /// message sent once on a persistent session is completed instead: the broker may hold it.
    pub ttl: Option<Duration>,
}

impl<'m> OutgoingMessage<'m> {
    /// A QoS 0, non-retained message without time to live.
    pub const fn new(topic: &'m str, payload: &'m [u8]) -> Self {
        Self {
            topic,
            payload,
            qos: QoS::AtMostOnce,
            retain: false,
            ttl: None,
        }
    }

    /// With this QoS.
    pub const fn qos(mut self, qos: QoS) -> Self {
        self.qos = qos;
        self
    }

    /// Retained or not.
    pub const fn retain(mut self, retain: bool) -> Self {
        self.retain = retain;
        self
    }

    /// With a time to live.
    pub const fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
}

/// Where the session stands, for display and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum State {
    /// Waiting to (re)connect.
    Waiting,
    /// The transport is opening a connection.
    Opening,
    /// CONNECT sent or about to be; waiting for CONNACK.
    AwaitingConnAck,
    /// CONNACK accepted; waiting for the first PINGRESP.
    AwaitingFirstPingResp,
    /// Up: the broker answered a heartbeat on this connection.
    Up,
    /// DISCONNECT about to be sent.
    Closing,
    /// Stopped: no reconnect until [`Session::restart`].
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Waiting {
        retry_at: Instant,
    },
    Opening {
        deadline: Instant,
    },
    AwaitConnAck {
        deadline: Instant,
        connect_sent: bool,
    },
    AwaitFirstPong {
        deadline: Instant,
        session_present: bool,
    },
    Up,
    Closing {
        deadline: Instant,
        /// The CONNACK had been accepted: inbound traffic is still legitimate.
        accepted: bool,
    },
    Stopped,
}

impl Link {
    /// A transport connection exists.
    fn has_connection(self) -> bool {
        matches!(
            self,
            Link::AwaitConnAck { .. }
                | Link::AwaitFirstPong { .. }
                | Link::Up
                | Link::Closing { .. }
        )
    }

    /// CONNACK accepted on this connection: inbound traffic is legitimate.
    fn is_accepted(self) -> bool {
        matches!(self, Link::AwaitFirstPong { .. } | Link::Up)
    }

    /// Inbound messages are delivered and acknowledged: accepted, or leaving (DISCONNECT not
    /// written yet), so that what the application has dealt with is acknowledged before
    /// DISCONNECT and a persistent session does not get it again.
    fn takes_inbound(self) -> bool {
        self.is_accepted() || matches!(self, Link::Closing { accepted: true, .. })
    }
}

/// The next keepalive deadline while up.
#[derive(Debug, Clone, Copy)]
enum KeepaliveDue {
    /// A PINGREQ goes out then.
    Ping(Instant),
    /// The PINGREQ sent is answered by then, or the connection is dead.
    PingResp(Instant),
    /// The PINGREQ owed could not be written; by then the connection counts as dead.
    Unwritten(Instant),
}

impl KeepaliveDue {
    fn at(self) -> Instant {
        match self {
            KeepaliveDue::Ping(t) | KeepaliveDue::PingResp(t) | KeepaliveDue::Unwritten(t) => t,
        }
    }
}

/// Keepalive bookkeeping of one connection.
#[derive(Debug, Clone, Copy, Default)]
struct Keepalive {
    last_sent: Instant,
    last_received: Instant,
    /// A PINGREQ is owed and not written yet.
    ping_due: bool,
    /// A PINGREQ was written at this instant and its PINGRESP has not come.
    ping_sent: Option<Instant>,
}

impl Keepalive {
    fn fresh(now: Instant) -> Self {
        Self {
            last_sent: now,
            last_received: now,
            ping_due: false,
            ping_sent: None,
        }
    }

    /// A PINGREQ goes out when nothing was sent, or nothing received, for the interval.
    fn next_ping(&self, interval: Duration) -> Instant {
        self.last_sent.min(self.last_received) + interval
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(
    clippy::enum_variant_names,
    reason = "named after the packets they send"
)]
enum Control {
    PubAck(PacketId),
    PubRec(PacketId),
    PubComp(PacketId),
}

impl Control {
    fn packet(self) -> (PacketType, PacketId) {
        match self {
            Control::PubAck(id) => (PacketType::PubAck, id),
            Control::PubRec(id) => (PacketType::PubRec, id),
            Control::PubComp(id) => (PacketType::PubComp, id),
        }
    }
}

/// The protocol state machine of one MQTT client.
///
/// - `OUT`: entries of the outbound store (messages accepted and not yet acknowledged);
///   their topics and payloads live in the caller's `outbox` buffer.
/// - `SUBS`: entries of the subscription table; filters live in the caller's `filters` buffer.
/// - `IN2`: inbound QoS 2 exchanges open at once (PUBREC sent, PUBREL not yet received).
pub struct Session<'b, R, const OUT: usize = 16, const SUBS: usize = 8, const IN2: usize = 8> {
    config: Config<'b>,
    rng: R,
    link: Link,
    keepalive: Keepalive,
    failures: u32,
    connection: u32,
    outbox: Outbox<'b, OUT>,
    subs: Subscriptions<'b, SUBS>,
    inbound_qos2: Vec<PacketId, IN2>,
    /// The oldest this many of `inbound_qos2` predate a CONNACK whose "session present" may
    /// name a session the broker made anew (see `session_unconfirmed`): their exchanges may be
    /// gone for good, so they make room when the table is full.
    inbound_suspect: usize,
    /// A CONNECT went out and its CONNACK never came back: the broker may have started a fresh
    /// session then, which the next CONNACK reports as present.
    session_unconfirmed: bool,
    control: Deque<Control, CONTROL_CAPACITY>,
    commands: PendingCommands,
    events: EventQueue,
    next_packet_id: u16,
    next_publish_id: u32,
    next_request_id: u32,
}

impl<'b, R: RngCore, const OUT: usize, const SUBS: usize, const IN2: usize>
    Session<'b, R, OUT, SUBS, IN2>
{
    /// A session that will connect at its first [`handle_timeout`](Self::handle_timeout).
    ///
    /// `outbox` holds the topics and payloads of stored messages, `filters` the subscription
    /// filters; both are the caller's memory, sized for the application.
    pub fn new(
        mut config: Config<'b>,
        outbox: &'b mut [u8],
        filters: &'b mut [u8],
        rng: R,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        config.max_qos = config.max_qos.min(MAX_QOS);
        Ok(Self {
            config,
            rng,
            link: Link::Waiting {
                retry_at: Instant::ZERO,
            },
            keepalive: Keepalive::default(),
            failures: 0,
            connection: 0,
            outbox: Outbox::new(outbox),
            subs: Subscriptions::new(filters),
            inbound_qos2: Vec::new(),
            inbound_suspect: 0,
            session_unconfirmed: false,
            control: Deque::new(),
            commands: PendingCommands::default(),
            events: EventQueue::new(),
            next_packet_id: 1,
            next_publish_id: 1,
            next_request_id: 1,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config<'b> {
        &self.config
    }

    /// Where the session stands.
    pub fn state(&self) -> State {
        match self.link {
            Link::Waiting { .. } => State::Waiting,
            Link::Opening { .. } => State::Opening,
            Link::AwaitConnAck { .. } => State::AwaitingConnAck,
            Link::AwaitFirstPong { .. } => State::AwaitingFirstPingResp,
            Link::Up => State::Up,
            Link::Closing { .. } => State::Closing,
            Link::Stopped => State::Stopped,
        }
    }

    /// True once the broker answered the first heartbeat of this connection.
    pub fn is_up(&self) -> bool {
        self.link == Link::Up
    }

    /// Messages in the outbound store.
    pub fn stored_messages(&self) -> usize {
        self.outbox.len()
    }

    /// Messages on the wire awaiting their acknowledgement (QoS 2 ones from PUBLISH until
    /// PUBCOMP, PUBREL included).
    pub fn in_flight(&self) -> usize {
        self.outbox.entries().filter(|e| e.in_flight()).count()
    }

    /// Filters in the subscription table.
    pub fn subscriptions(&self) -> usize {
        self.subs.len()
    }

    /// Consecutive failed connection attempts since the session was last up.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    // ----- outputs -----

    /// The next transport command, in order.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop()
    }

    /// The next event, in order.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop()
    }

    /// The instant at which [`handle_timeout`](Self::handle_timeout) must be called next, if
    /// any. It may be in the past: call it at once then.
    pub fn poll_timeout(&self) -> Option<Instant> {
        // Internally "never" is `Instant::FAR_FUTURE`: cheaper than `Option`s on a 32-bit core.
        let link_deadline = match self.link {
            Link::Waiting { retry_at } => retry_at,
            Link::Opening { deadline }
            | Link::AwaitConnAck { deadline, .. }
            | Link::AwaitFirstPong { deadline, .. }
            | Link::Closing { deadline, .. } => deadline,
            Link::Up => self.keepalive_due().at().min(self.ack_deadline()),
            Link::Stopped => Instant::FAR_FUTURE,
        };
        let next = link_deadline.min(self.outbox.next_expiry());
        (next != Instant::FAR_FUTURE).then_some(next)
    }

    /// Writes whole packets that are due into `buf` and returns how many bytes it wrote. Call
    /// it until it returns 0. A packet that does not fit waits for the next call, so `buf` may
    /// be the free tail of a transmit buffer; an empty buffer must hold `max_packet_size`
    /// bytes, or the largest packets could never go out.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> usize {
        let mut out = Output { buf, len: 0 };
        if let Link::AwaitConnAck {
            deadline,
            connect_sent: false,
        } = self.link
            && out.put(
                first_byte(PacketType::Connect),
                &self.config.connect_packet().parts(),
            )
        {
            self.link = Link::AwaitConnAck {
                deadline,
                connect_sent: true,
            };
        }
        if self.link.is_accepted()
            && self.keepalive.ping_due
            && out.put(first_byte(PacketType::PingReq), &[])
        {
            self.keepalive.ping_due = false;
            self.keepalive.ping_sent = Some(now);
        }
        if self.link.takes_inbound() {
            while let Some(control) = self.control.front() {
                let (packet_type, id) = control.packet();
                if !out.put_id(packet_type, id) {
                    break;
                }
                self.control.pop_front();
            }
        }
        if self.link == Link::Up {
            self.transmit_subscriptions(now, &mut out);
            self.transmit_messages(now, &mut out);
        }
        if let Link::Closing { .. } = self.link
            && self.control.is_empty()
            && out.put(first_byte(PacketType::Disconnect), &[])
        {
            self.stop(true);
        }
        if out.len > 0 {
            self.keepalive.last_sent = now;
        }
        out.len
    }

    // ----- inputs: time and transport -----

    /// Runs the timers that are due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let room = EVENT_CAPACITY.saturating_sub(self.events.len() + 4);
        let events = &mut self.events;
        self.outbox.expire(now, room, |id| {
            debug!("message {} expired", id.0);
            events.push(Event::Expired(id));
        });
        match self.link {
            Link::Waiting { retry_at } if now >= retry_at => {
                self.connection = self.connection.wrapping_add(1);
                self.push_command(Command::Open);
                self.link = Link::Opening {
                    deadline: now + self.config.connect_timeout,
                };
            }
            Link::Opening { deadline } if now >= deadline => {
                self.fail(now, CloseReason::ConnectTimeout);
            }
            Link::AwaitConnAck { deadline, .. } if now >= deadline => {
                self.fail(now, CloseReason::ConnAckTimeout);
            }
            Link::AwaitFirstPong { deadline, .. } if now >= deadline => {
                self.fail(now, CloseReason::NoFirstPingResp);
            }
            Link::Up => match self.keepalive_due() {
                KeepaliveDue::PingResp(t) if now >= t => {
                    self.fail(now, CloseReason::PingTimeout);
                }
                _ if now >= self.ack_deadline() => {
                    self.fail(now, CloseReason::AckTimeout);
                }
                KeepaliveDue::Unwritten(t) if now >= t => {
                    self.fail(now, CloseReason::PingTimeout);
                }
                KeepaliveDue::Ping(t) if now >= t => {
                    self.keepalive.ping_due = true;
                }
                _ => {}
            },
            Link::Closing { deadline, .. } if now >= deadline => self.stop(true),
            _ => {}
        }
    }

    /// The transport opened the connection that [`Command::Open`] asked for.
    pub fn connected(&mut self, now: Instant) {
        if let Link::Opening { .. } = self.link {
            self.commands.opened();
            self.keepalive = Keepalive::fresh(now);
            self.link = Link::AwaitConnAck {
                deadline: now + self.config.connack_timeout,
                connect_sent: false,
            };
            self.push_event(Event::TransportConnected);
        }
    }

    /// The transport could not open the connection.
    pub fn connect_failed(&mut self, now: Instant) {
        if let Link::Opening { .. } = self.link {
            self.commands.opened();
            self.fail(now, CloseReason::ConnectFailed);
        }
    }

    /// The transport lost the connection (closed by the peer, or an I/O error).
    pub fn closed(&mut self, now: Instant) {
        match self.link {
            Link::Opening { .. } => self.fail(now, CloseReason::ConnectFailed),
            Link::Closing { .. } => self.stop(false),
            link if link.has_connection() => self.fail(now, CloseReason::ClosedByPeer),
            _ => {}
        }
    }

    /// The receive side could not decode the stream: a protocol error, reconnect. A packet
    /// type only a client sends ([`packet::decode_from_broker`]'s
    /// [`UnexpectedDirection`](packet::Error::UnexpectedDirection)) is reported as the
    /// unexpected packet it is, as if [`handle_packet`](Self::handle_packet) had been given it.
    pub fn handle_decode_error(&mut self, now: Instant, error: packet::Error) {
        if self.link.has_connection() {
            let error = match error {
                packet::Error::UnexpectedDirection(t) => ProtocolError::Unexpected(t),
                other => ProtocolError::Malformed(other),
            };
            self.fail(now, CloseReason::Protocol(error));
        }
    }

    /// A packet from the broker. Returns an application message, if it was one to deliver.
    pub fn handle_packet<'p>(
        &mut self,
        now: Instant,
        packet: Packet<'p>,
    ) -> Option<IncomingMessage<'p>> {
        if !self.link.has_connection() {
            return None;
        }
        self.keepalive.last_received = now;
        match self.process(now, packet) {
            Ok(message) => message,
            Err(reason) => {
                self.fail(now, reason);
                None
            }
        }
    }

    /// Bytes arrived on the connection, whole packet or not (the driver calls it for every
    /// read). While up they prove the link alive: the keepalive's receive side is refreshed,
    /// and an outstanding PINGRESP may be queued behind them (the rest of a large message, or
    /// of one being skipped), so its deadline moves. A link on which nothing arrives still
    /// fails at the ping timeout.
    pub fn bytes_received(&mut self, now: Instant) {
        if self.link == Link::Up {
            self.keepalive.last_received = now;
            if self.keepalive.ping_sent.is_some() {
                self.keepalive.ping_sent = Some(now);
            }
        }
    }

    /// A PUBLISH too large for the receive buffer, whose head (fixed header, topic, packet
    /// identifier) the driver read and whose `len` bytes it skips. As far as the broker can
    /// tell, the message is handled: in turn like any PUBLISH, acknowledged at its QoS (QoS 2
    /// exactly once), reported to the application as [`Event::MessageTooLarge`] instead of
    /// delivered. The same as [`handle_packet`](Self::handle_packet) with the head (topic and
    /// payload left empty), then [`message_skipped`](Self::message_skipped) and
    /// [`acknowledge`](Self::acknowledge) for the message it returned.
    pub fn handle_oversize_publish(
        &mut self,
        now: Instant,
        dup: bool,
        qos: PublishQos,
        len: usize,
    ) {
        let head = Publish::head(dup, qos);
        if let Some(message) = self.handle_packet(now, Packet::Publish(head)) {
            self.message_skipped(message.qos, len);
            if let Some(ack) = message.ack {
                self.acknowledge(now, ack);
            }
        }
    }

    /// The driver skipped the `len` bytes of a message at `qos` (the head of a PUBLISH too
    /// large to hold, for which [`handle_packet`](Self::handle_packet) returned a message)
    /// instead of delivering it: reported as [`Event::MessageTooLarge`]. The driver still
    /// [`acknowledge`](Self::acknowledge)s it, as it would a delivered one.
    pub fn message_skipped(&mut self, qos: QoS, len: usize) {
        warn!(
            "a {}-byte message does not fit the receive buffer: skipped",
            len
        );
        self.push_event(Event::MessageTooLarge { len, qos });
    }

    // ----- inputs: the application -----

    /// Accepts a message into the outbound store. QoS 0 goes out once (when up); QoS 1 and 2
    /// stay until acknowledged, expired or discarded, across reconnects.
    pub fn publish(
        &mut self,
        now: Instant,
        message: &OutgoingMessage<'_>,
    ) -> Result<PublishId, PublishError> {
        if self.link == Link::Stopped {
            return Err(PublishError::Stopped);
        }
        if message.qos > self.config.max_qos {
            return Err(PublishError::QosNotSupported {
                requested: message.qos,
                max: self.config.max_qos,
            });
        }
        let packet_id = match message.qos {
            QoS::AtMostOnce => None,
            _ => Some(self.allocate_packet_id().ok_or(PublishError::StoreFull)?),
        };
        let qos = match (message.qos, packet_id) {
            (QoS::AtLeastOnce, Some(id)) => PublishQos::AtLeastOnce(id),
            (QoS::ExactlyOnce, Some(id)) => PublishQos::ExactlyOnce(id),
            _ => PublishQos::AtMostOnce,
        };
        let len = Packet::Publish(Publish {
            dup: false,
            qos,
            retain: message.retain,
            topic: message.topic,
            payload: message.payload,
        })
        .encoded_len()
        .map_err(PublishError::Invalid)?;
        if len > self.config.max_packet_size {
            return Err(PublishError::TooLarge {
                len,
                max_packet_size: self.config.max_packet_size,
            });
        }
        let id = PublishId(self.next_publish_id);
        let entry = Entry {
            id,
            qos: message.qos,
            packet_id,
            retain: message.retain,
            sent_before: false,
            stage: Stage::Queued,
            expires_at: message.ttl.map_or(Instant::FAR_FUTURE, |ttl| now + ttl),
            // The encoder accepted the topic, so it fits in 16 bits.
            topic_len: u16::try_from(message.topic.len()).unwrap_or(u16::MAX),
        };
        self.outbox.push(entry, message.topic, message.payload)?;
        self.next_publish_id = self.next_publish_id.wrapping_add(1);
        Ok(id)
    }

    /// Drops a stored message that is not on the wire. Returns false if it is unknown or
    /// awaiting its acknowledgement (then only the acknowledgement or a reconnect can end it),
    /// or a QoS 2 message sent once on a persistent session (the broker may hold it).
    pub fn discard(&mut self, id: PublishId) -> bool {
        let persistent = !self.config.clean_session;
        match self.outbox.find(|e| e.id == id) {
            Some(i)
                if self.outbox.entry(i).is_some_and(|e| {
                    e.stage == Stage::Queued
                        && !(persistent && e.sent_before && e.qos == QoS::ExactlyOnce)
                }) =>
            {
                self.outbox.remove(i).is_some()
            }
            _ => false,
        }
    }

    /// Subscribes to filters. They are remembered, sent when up, and renewed after every
    /// connect in which the broker kept no session. Answers come as [`Event::Subscribed`].
    pub fn subscribe(
        &mut self,
        _now: Instant,
        subscriptions: &[Subscription<'_>],
    ) -> Result<RequestId, SubscribeError> {
        self.check_request(subscriptions.iter().map(|s| s.filter))?;
        let request = self.next_request();
        self.subs.add(request, subscriptions)?;
        self.commit_request();
        Ok(request)
    }

    /// Unsubscribes from filters and forgets them. Answered by [`Event::Unsubscribed`].
    pub fn unsubscribe(
        &mut self,
        _now: Instant,
        filters: &[&str],
    ) -> Result<RequestId, SubscribeError> {
        self.check_request(filters.iter().copied())?;
        let request = self.next_request();
        self.subs.remove_filters(request, filters)?;
        self.commit_request();
        if !self.link.is_accepted() && self.config.clean_session {
            // The next connection starts clean: there is nothing to tell the broker, for this
            // request or for an earlier one whose UNSUBACK a lost connection took with it.
            self.subs
                .remove_where(Removal::UnsubWanted, &mut self.events);
        }
        Ok(request)
    }

    /// The application has dealt with an incoming QoS 1/2 message: now the broker may hear
    /// it. An acknowledgement for a connection that has since ended is dropped: the broker
    /// sends the message again, and a QoS 1 message is delivered again, while a QoS 2 message
    /// (whose identifier the session recorded when it handed the message out) is only
    /// acknowledged, never delivered twice.
    pub fn acknowledge(&mut self, now: Instant, ack: InboundAck) {
        if ack.connection != self.connection || !self.link.takes_inbound() {
            return;
        }
        let control = match ack.qos {
            QoS::ExactlyOnce if !QOS2 => Control::PubRec(ack.packet_id),
            QoS::ExactlyOnce => {
                if !self.inbound_qos2.contains(&ack.packet_id)
                    && self.inbound_qos2.push(ack.packet_id).is_err()
                {
                    self.fail(now, CloseReason::InboundBacklog);
                    return;
                }
                Control::PubRec(ack.packet_id)
            }
            _ => Control::PubAck(ack.packet_id),
        };
        if self.control.push_back(control).is_err() {
            self.fail(now, CloseReason::InboundBacklog);
        }
    }

    /// Ends the session gracefully: DISCONNECT (so the broker drops the will), then close. No
    /// reconnect until [`restart`](Self::restart). Stored messages stay.
    ///
    /// Until DISCONNECT is written, acknowledgements still go out first (also those the
    /// application gives [`acknowledge`](Self::acknowledge) after this call), and inbound
    /// PUBACK and PUBCOMP still end their messages; nothing the broker sends meanwhile turns
    /// the disconnect into a reconnect.
    pub fn disconnect(&mut self, now: Instant) {
        match self.link {
            Link::AwaitConnAck {
                connect_sent: false,
                ..
            }
            | Link::Opening { .. } => self.stop(true),
            Link::AwaitConnAck { .. } | Link::AwaitFirstPong { .. } | Link::Up => {
                if let Link::AwaitConnAck { .. } = self.link {
                    // This connection's CONNECT will never see its CONNACK.
                    self.session_unconfirmed = true;
                }
                self.link = Link::Closing {
                    deadline: now + self.config.ping_timeout,
                    accepted: self.link.is_accepted(),
                };
            }
            Link::Waiting { .. } => {
                self.link = Link::Stopped;
                self.push_event(Event::Disconnected);
            }
            Link::Closing { .. } | Link::Stopped => {}
        }
    }

    /// Starts a stopped session again: it connects at once.
    pub fn restart(&mut self, now: Instant) {
        if self.link == Link::Stopped {
            self.failures = 0;
            self.link = Link::Waiting { retry_at: now };
        }
    }

    // ----- internals -----

    fn process<'p>(
        &mut self,
        now: Instant,
        packet: Packet<'p>,
    ) -> Result<Option<IncomingMessage<'p>>, CloseReason> {
        let unexpected =
            |p: &Packet<'_>| CloseReason::Protocol(ProtocolError::Unexpected(p.packet_type()));
        match (self.link, packet) {
            // A CONNACK answers a CONNECT that was written; before that it is out of turn.
            (
                Link::AwaitConnAck {
                    connect_sent: true, ..
                },
                Packet::ConnAck(ack),
            ) => {
                self.on_connack(now, ack)?;
                Ok(None)
            }
            (
                Link::AwaitFirstPong {
                    session_present, ..
                },
                Packet::PingResp,
            ) => {
                self.link = Link::Up;
                self.failures = 0;
                self.keepalive.ping_sent = None;
                info!("up (session present: {})", session_present);
                self.push_event(Event::Up { session_present });
                Ok(None)
            }
            (Link::Up, Packet::PingResp) if self.keepalive.ping_sent.is_some() => {
                self.keepalive.ping_sent = None;
                Ok(None)
            }
            (link, Packet::Publish(p)) if link.takes_inbound() => self.on_publish(p),
            // Answered also without `qos2` (see `on_publish`); the table is then empty.
            (link, Packet::PubRel(rel)) if link.takes_inbound() => {
                let id = rel.packet_id;
                self.close_inbound_qos2(id);
                self.push_control(Control::PubComp(id))?;
                Ok(None)
            }
            (Link::Up, Packet::PubAck(ack)) => self.on_puback(ack.packet_id),
            (Link::Up, Packet::PubComp(comp)) if QOS2 => {
                self.on_publish_done(PacketType::PubComp, comp.packet_id, QoS::ExactlyOnce)
            }
            // Leaving: acknowledgements still end their messages (no resend after a restart);
            // anything else, even a protocol error, must not turn the DISCONNECT the
            // application asked for into a reconnect.
            (Link::Closing { .. }, Packet::PubAck(ack)) => {
                Ok(self.on_puback(ack.packet_id).unwrap_or(None))
            }
            (Link::Closing { .. }, Packet::PubComp(comp)) if QOS2 => Ok(self
                .on_publish_done(PacketType::PubComp, comp.packet_id, QoS::ExactlyOnce)
                .unwrap_or(None)),
            (Link::Closing { .. }, _) => Ok(None),
            (Link::Up, Packet::PubRec(rec)) if QOS2 => {
                let i = self
                    .outbox
                    .find(|e| {
                        e.packet_id == Some(rec.packet_id)
                            && e.qos == QoS::ExactlyOnce
                            && matches!(e.stage, Stage::AwaitingAck(_))
                    })
                    .ok_or(unknown_id(PacketType::PubRec, rec.packet_id))?;
                if let Some(e) = self.outbox.entry_mut(i) {
                    e.stage = Stage::Releasing;
                }
                self.outbox.release_bytes(i);
                Ok(None)
            }
            (Link::Up, Packet::SubAck(ack)) => {
                self.on_suback(ack)?;
                Ok(None)
            }
            (Link::Up, Packet::UnsubAck(ack)) => {
                let id = ack.packet_id;
                let unsubscribing = self
                    .subs
                    .entries()
                    .any(|e| matches!(e.state, SubState::UnsubRequested(p, _) if p == id));
                if !unsubscribing {
                    return Err(unknown_id(PacketType::UnsubAck, id));
                }
                // One UNSUBSCRIBE may carry the filters of several requests: each is answered.
                self.subs
                    .remove_where(Removal::UnsubAcked(id), &mut self.events);
                Ok(None)
            }
            (_, other) => Err(unexpected(&other)),
        }
    }

    fn on_connack(&mut self, now: Instant, ack: ConnAck) -> Result<(), CloseReason> {
        if ack.code != ConnectReturnCode::Accepted {
            return Err(CloseReason::Refused(ack.code));
        }
        let session_present = ack.session_present;
        self.push_event(Event::ConnAckReceived { session_present });
        if !session_present || self.session_unconfirmed {
            // The broker has no subscriptions, or may not: after a lost CONNACK, "present" can
            // name a session that the lost CONNECT created empty. Renewing them is harmless.
            for e in self.subs.entries_mut() {
                if e.state == SubState::Active {
                    e.state = SubState::Wanted;
                }
            }
        }
        if QOS2 && session_present && self.session_unconfirmed {
            self.inbound_suspect = self.inbound_qos2.len();
        }
        self.session_unconfirmed = false;
        if !session_present {
            // The broker starts from nothing: so does inbound QoS 2.
            self.inbound_qos2.clear();
            self.inbound_suspect = 0;
            self.subs
                .remove_where(Removal::UnsubWanted, &mut self.events);
        }
        self.keepalive.ping_due = true;
        self.link = Link::AwaitFirstPong {
            deadline: now + self.config.ping_timeout,
            session_present,
        };
        Ok(())
    }

    fn on_publish<'p>(
        &mut self,
        p: Publish<'p>,
    ) -> Result<Option<IncomingMessage<'p>>, CloseReason> {
        let ack = match p.qos {
            PublishQos::AtMostOnce => None,
            PublishQos::AtLeastOnce(id) => Some(InboundAck {
                packet_id: id,
                qos: QoS::AtLeastOnce,
                connection: self.connection,
            }),
            // Without `qos2` the client subscribes at most at QoS 1, but QoS 2 can still come:
            // a persistent session subscribed by an earlier build, a broker that ignores the
            // granted QoS. It is delivered at least once and acknowledged as QoS 2 asks (PUBREC,
            // then PUBCOMP for the PUBREL), without the table that makes it exactly once.
            PublishQos::ExactlyOnce(id) if !QOS2 => Some(InboundAck {
                packet_id: id,
                qos: QoS::ExactlyOnce,
                connection: self.connection,
            }),
            PublishQos::ExactlyOnce(id) => {
                if self.inbound_qos2.contains(&id) {
                    if p.dup {
                        // Delivered already; the broker missed our PUBREC. Exactly once: not
                        // again. The broker knows the exchange: it is not suspect any more.
                        self.close_inbound_qos2(id);
                        let _ = self.inbound_qos2.push(id);
                        self.push_control(Control::PubRec(id))?;
                        return Ok(None);
                    }
                    // A first attempt (a resend carries DUP, MQTT-3.3.1-1) with an identifier
                    // still open here: the broker has no such exchange any more (it lost the
                    // session, and a lost CONNACK hid that), so this is a new message.
                    self.close_inbound_qos2(id);
                }
                if self.inbound_qos2.is_full() && self.inbound_suspect > 0 {
                    // Room from an exchange the broker may have lost with its session; kept,
                    // it could block every new message forever.
                    remove_ordered(&mut self.inbound_qos2, 0);
                    self.inbound_suspect -= 1;
                }
                // The identifier is recorded before the message is handed out: with the table
                // full, refuse it undelivered (the broker sends it again after the reconnect)
                // rather than deliver it and then fail, which would deliver it twice.
                self.inbound_qos2
                    .push(id)
                    .map_err(|_| CloseReason::InboundBacklog)?;
                Some(InboundAck {
                    packet_id: id,
                    qos: QoS::ExactlyOnce,
                    connection: self.connection,
                })
            }
        };
        Ok(Some(IncomingMessage {
            topic: p.topic,
            payload: p.payload,
            qos: p.qos.qos(),
            retain: p.retain,
            dup: p.dup,
            ack,
        }))
    }

    /// PUBACK ends a QoS 1 message, and also a QoS 2 message still waiting for PUBREC: a
    /// broker without QoS 2 (RabbitMQ 3.x) takes it at QoS 1 and answers PUBACK. Treating that
    /// as a protocol error would resend the message after every reconnect, each time
    /// delivered again, with the backoff reset by every successful connect: a storm. The
    /// exchange is over, and the application hears that the guarantee was weaker.
    fn on_puback(&mut self, id: PacketId) -> Result<Option<IncomingMessage<'static>>, CloseReason> {
        let downgraded = self.outbox.find(|e| {
            QOS2 && e.packet_id == Some(id)
                && e.qos == QoS::ExactlyOnce
                && matches!(e.stage, Stage::AwaitingAck(_))
        });
        if let Some(i) = downgraded {
            if let Some(entry) = self.outbox.remove(i) {
                warn!(
                    "QoS 2 message {} answered with PUBACK: the broker took it at QoS 1 \
                     (set Config::max_qos)",
                    entry.id.0
                );
                self.push_event(Event::PublishDowngraded(entry.id));
                self.push_event(Event::Published(entry.id));
            }
            return Ok(None);
        }
        self.on_publish_done(PacketType::PubAck, id, QoS::AtLeastOnce)
    }

    fn on_publish_done(
        &mut self,
        packet_type: PacketType,
        id: PacketId,
        qos: QoS,
    ) -> Result<Option<IncomingMessage<'static>>, CloseReason> {
        let i = self
            .outbox
            .find(|e| {
                e.packet_id == Some(id)
                    && e.qos == qos
                    && match qos {
                        QoS::ExactlyOnce => matches!(e.stage, Stage::AwaitingComp(_)),
                        _ => matches!(e.stage, Stage::AwaitingAck(_)),
                    }
            })
            .ok_or(unknown_id(packet_type, id))?;
        if let Some(entry) = self.outbox.remove(i) {
            self.push_event(Event::Published(entry.id));
        }
        Ok(None)
    }

    fn on_suback(&mut self, ack: SubAck<'_>) -> Result<(), CloseReason> {
        let id = ack.packet_id;
        let requested =
            |e: &subscriptions::SubEntry| matches!(e.state, SubState::Requested(p, _) if p == id);
        let expected = self.subs.entries().filter(|e| requested(e)).count();
        if expected == 0 {
            return Err(unknown_id(PacketType::SubAck, id));
        }
        if expected != ack.codes.len() {
            return Err(CloseReason::Protocol(ProtocolError::SubAckCountMismatch));
        }
        let mut codes = ack.codes.iter();
        let mut refused = false;
        let events = &mut self.events;
        for entry in self.subs.entries_mut() {
            if !requested(entry) {
                continue;
            }
            let Some(code) = codes.next() else { break };
            events.push(Event::Subscribed {
                request: entry.request,
                index: entry.index,
                code,
            });
            // A refused filter is forgotten, not renewed.
            entry.state = match code.granted() {
                Some(_) => SubState::Active,
                None => {
                    refused = true;
                    SubState::Refused
                }
            };
        }
        if refused {
            self.subs.remove_where(Removal::Refused, &mut self.events);
        }
        Ok(())
    }

    fn transmit_subscriptions(&mut self, now: Instant, out: &mut Output<'_>) {
        for wanted in [SubState::Wanted, SubState::UnsubWanted] {
            loop {
                let count = self.subs.plan(wanted, self.config.max_packet_size);
                if count == 0 {
                    break;
                }
                let Some(packet_id) = self.allocate_packet_id() else {
                    return;
                };
                let (first, parts) = self.subs.request(wanted, count, packet_id);
                if !out.put(first, &parts) {
                    return;
                }
                self.subs.mark_requested(wanted, count, packet_id, now);
            }
        }
    }

    fn transmit_messages(&mut self, now: Instant, out: &mut Output<'_>) {
        let window = usize::from(self.config.inflight_window);
        let mut in_flight = self.in_flight();
        let mut i = 0;
        while let Some(entry) = self.outbox.entry(i).copied() {
            match entry.stage {
                Stage::Releasing if QOS2 => {
                    let Some(id) = entry.packet_id else { break };
                    if !out.put_id(PacketType::PubRel, id) {
                        return;
                    }
                    if let Some(e) = self.outbox.entry_mut(i) {
                        e.stage = Stage::AwaitingComp(now);
                    }
                }
                Stage::Queued if entry.qos == QoS::AtMostOnce => {
                    let Some((first, parts)) = self.outbox.publish(i) else {
                        break;
                    };
                    if !out.put(first, &parts) {
                        return;
                    }
                    self.outbox.remove(i);
                    self.push_event(Event::Published(entry.id));
                    continue;
                }
                Stage::Queued if in_flight < window => {
                    let Some((first, parts)) = self.outbox.publish(i) else {
                        break;
                    };
                    if !out.put(first, &parts) {
                        return;
                    }
                    in_flight += 1;
                    let persistent = !self.config.clean_session;
                    if let Some(e) = self.outbox.entry_mut(i) {
                        e.stage = Stage::AwaitingAck(now);
                        e.sent_before = true;
                        if QOS2 && persistent && e.qos == QoS::ExactlyOnce {
                            // The broker may hold it now, and holds its identifier until our
                            // PUBREL: dropped, the identifier would come back on a new message
                            // that the broker takes for this one and never delivers.
                            e.expires_at = Instant::FAR_FUTURE;
                        }
                    }
                }
                _ => {}
            }
            i += 1;
        }
    }

    /// Ends the inbound QoS 2 exchange `id`, if open.
    fn close_inbound_qos2(&mut self, id: PacketId) {
        if let Some(i) = self.inbound_qos2.iter().position(|&open| open == id) {
            remove_ordered(&mut self.inbound_qos2, i);
            if i < self.inbound_suspect {
                self.inbound_suspect -= 1;
            }
        }
    }

    /// The earliest instant at which an acknowledgement becomes overdue.
    fn ack_deadline(&self) -> Instant {
        // Plain loops over both tables: chains of `filter_map` and `min` on `Option<Instant>`
        // cost several times the code on a 32-bit core.
        let mut oldest = Instant::FAR_FUTURE;
        for t in self.outbox.entries().filter_map(Entry::waiting_since) {
            oldest = oldest.min(t);
        }
        for t in self.subs.entries().filter_map(|e| e.waiting_since()) {
            oldest = oldest.min(t);
        }
        // FAR_FUTURE stays FAR_FUTURE: the addition saturates.
        oldest + self.config.ack_timeout
    }

    /// What the keepalive waits for while up, and until when.
    fn keepalive_due(&self) -> KeepaliveDue {
        let next_ping = self.keepalive.next_ping(self.config.keep_alive());
        match self.keepalive.ping_sent {
            Some(sent) => KeepaliveDue::PingResp(sent + self.config.ping_timeout),
            // Owed but not written (the transport takes nothing): once a ping timeout has
            // passed the link is as dead as one whose PINGRESP never came, and the deadline is
            // not in the past, which would make the caller spin.
            None if self.keepalive.ping_due => {
                KeepaliveDue::Unwritten(next_ping + self.config.ping_timeout)
            }
            None => KeepaliveDue::Ping(next_ping),
        }
    }

    /// The application's disconnect is complete: the session stops. `close` asks the driver
    /// to close the connection (not when the transport already reported it gone).
    fn stop(&mut self, close: bool) {
        self.end_connection();
        if close {
            self.push_command(Command::Close);
        }
        self.link = Link::Stopped;
        self.push_event(Event::Disconnected);
    }

    /// The connection (or attempt) failed: close it, and back off before the next one.
    fn fail(&mut self, now: Instant, reason: CloseReason) {
        let was_up = self.link == Link::Up;
        // The transport already knows about a connection it reported lost or never opened.
        let transport_knows = matches!(
            reason,
            CloseReason::ClosedByPeer | CloseReason::ConnectFailed
        );
        if !transport_knows && !matches!(self.link, Link::Waiting { .. } | Link::Stopped) {
            self.push_command(Command::Close);
        }
        warn!("connection down: {:?}", reason);
        self.end_connection();
        if let Link::Closing { .. } = self.link {
            // The application asked to leave: a failure before DISCONNECT went out ends the
            // connection as the DISCONNECT would have, never in a reconnect.
            self.link = Link::Stopped;
            self.push_event(Event::Disconnected);
            return;
        }
        self.push_event(Event::Down { reason, was_up });
        self.failures = self.failures.saturating_add(1);
        if self
            .config
            .backoff
            .max_attempts
            .is_some_and(|max| self.failures >= max)
        {
            self.link = Link::Stopped;
            self.push_event(Event::GaveUp);
            return;
        }
        let delay = self.config.backoff.delay(self.failures, &mut self.rng);
        self.link = Link::Waiting {
            retry_at: now + delay,
        };
        self.push_event(Event::Reconnecting {
            failures: self.failures,
            delay,
        });
    }

    /// Resets everything that belongs to one connection.
    fn end_connection(&mut self) {
        if let Link::AwaitConnAck {
            connect_sent: true, ..
        } = self.link
        {
            self.session_unconfirmed = true;
        }
        self.outbox.connection_lost();
        for e in self.subs.entries_mut() {
            e.state = match e.state {
                SubState::Requested(..) => SubState::Wanted,
                SubState::UnsubRequested(..) => SubState::UnsubWanted,
                other => other,
            };
        }
        self.control.clear();
        // Field by field: a whole new `Keepalive` is built on the stack and copied over.
        self.keepalive.ping_due = false;
        self.keepalive.ping_sent = None;
    }

    fn check_request<'f>(
        &self,
        filters: impl ExactSizeIterator<Item = &'f str>,
    ) -> Result<(), SubscribeError> {
        if self.link == Link::Stopped {
            return Err(SubscribeError::Stopped);
        }
        if filters.len() == 0 || filters.len() > SUBS {
            return Err(SubscribeError::BadCount);
        }
        for filter in filters {
            check_topic_filter(filter).map_err(SubscribeError::Invalid)?;
            // A SUBSCRIBE carrying this filter alone: fixed header (at most 5), packet
            // identifier, length prefix, filter, requested QoS.
            let len = 5 + 2 + 2 + filter.len() + 1;
            if len > self.config.max_packet_size {
                return Err(SubscribeError::TooLarge {
                    len,
                    max_packet_size: self.config.max_packet_size,
                });
            }
        }
        Ok(())
    }

    fn next_request(&self) -> RequestId {
        RequestId(self.next_request_id)
    }

    fn commit_request(&mut self) {
        self.next_request_id = self.next_request_id.wrapping_add(1);
    }

    /// The next packet identifier not used by any open exchange.
    fn allocate_packet_id(&mut self) -> Option<PacketId> {
        for _ in 0..u16::MAX {
            let candidate = PacketId::new(self.next_packet_id);
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            if let Some(id) = candidate
                && !self.outbox.uses_packet_id(id)
                && !self.subs.uses_packet_id(id)
            {
                return Some(id);
            }
        }
        None
    }

    fn push_control(&mut self, control: Control) -> Result<(), CloseReason> {
        self.control
            .push_back(control)
            .map_err(|_| CloseReason::InboundBacklog)
    }

    fn push_command(&mut self, command: Command) {
        self.commands.push(command);
    }

    fn push_event(&mut self, event: Event) {
        self.events.push(event);
    }
}

fn unknown_id(packet_type: PacketType, id: PacketId) -> CloseReason {
    CloseReason::Protocol(ProtocolError::UnknownPacketId(packet_type, id))
}

/// Whole packets written into the transmit buffer.
struct Output<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl Output<'_> {
    /// Writes the packet with first byte `first` and body `parts` if it fits whole; false if
    /// it does not (it waits for the next call). Every packet the session writes is built
    /// from validated values (`Config::validate`, `publish`, `subscribe`, `unsubscribe`), so
    /// the receiver's checks are not run again, and all of them go through one field loop
    /// ([`packet::encode_parts`]) rather than one encoder per packet type.
    fn put(&mut self, first: u8, parts: &[Option<Part<'_>>]) -> bool {
        let Some(rest) = self.buf.get_mut(self.len..) else {
            return false;
        };
        match packet::encode_parts(first, parts, rest) {
            Some(n) => {
                self.len += n;
                true
            }
            None => false,
        }
    }

    /// A packet whose body is a packet identifier (the acknowledgements, PUBREL).
    fn put_id(&mut self, packet_type: PacketType, id: PacketId) -> bool {
        self.put(first_byte(packet_type), &[Some(Part::U16(id.get()))])
    }
}
