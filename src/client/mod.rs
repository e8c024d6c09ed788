//! The async client: a thin driver that runs the [`Session`] over a [`Transport`].
//!
//! It reads the clock, feeds received packets to the session, writes what the session wants
//! written, executes its open/close commands, and sleeps until the session's next deadline or
//! until the network has something. Every decision is the session's.
//!
//! One task drives it: call [`Client::poll`] in a loop and handle the events. To publish from
//! the same task while waiting, `select` between `poll` and your own future: `poll` is
//! cancel-safe, so dropping it at any await loses nothing.

mod clock;

use core::task::Poll;

use embassy_futures::poll_once;
use embassy_futures::select::{Either, select};
use rand_core::RngCore;

pub use clock::Clock;
#[cfg(feature = "embassy-time")]
pub use clock::EmbassyClock;
#[cfg(feature = "tokio")]
pub use clock::TokioClock;

use crate::compact::move_down;
use crate::packet::{self, Decoded, Packet, PacketType, Subscription};
use crate::session::{
    Command, Config, ConfigError, Event, InboundAck, IncomingMessage, OutgoingMessage,
    PublishError, PublishId, RequestId, Session, State, SubscribeError,
};
use crate::time::Instant;
use crate::transport::Transport;

/// The memory a client works in, all the caller's.
pub struct Buffers<'b> {
    /// Received bytes; also the largest packet the client accepts.
    pub rx: &'b mut [u8],
    /// Bytes to send; also the largest packet the client produces.
    pub tx: &'b mut [u8],
    /// Topics and payloads of stored (unacknowledged) messages.
    pub outbox: &'b mut [u8],
    /// Subscription filters, kept for renewal after reconnects.
    pub filters: &'b mut [u8],
}

/// What [`Client::poll`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ClientEvent<'a> {
    /// A lifecycle, delivery or subscription event of the session.
    Session(Event),
    /// A message from the broker, borrowing from the receive buffer. For QoS 1 and 2 the
    /// acknowledgement goes out when `poll` is next called: after the application dealt with it.
    Message(IncomingMessage<'a>),
}

/// Why [`Client::poll`] returned without an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ClientError {
    /// The session stopped (after DISCONNECT, or after `max_attempts` failures) and has
    /// nothing more to report; [`Client::restart`] starts it again.
    Stopped,
}

impl core::fmt::Display for ClientError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("session stopped")
    }
}

impl core::error::Error for ClientError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Closed,
    Opening,
    Open,
    /// The connection is being closed: first the rest of the transmit buffer (DISCONNECT, which
    /// `wait` writes like any other bytes), then the transport, both until `deadline`. Kept as
    /// state so that a `poll` dropped halfway finishes the close on its next call instead of
    /// forgetting it.
    Closing {
        deadline: Instant,
    },
}

/// An MQTT client over transport `T`, clock `K` and random generator `R`. The capacities are
/// the session's (see [`Session`]).
pub struct Client<'b, T, K, R, const OUT: usize = 16, const SUBS: usize = 8, const IN2: usize = 8> {
    session: Session<'b, R, OUT, SUBS, IN2>,
    transport: T,
    clock: K,
    link: Link,
    rx: &'b mut [u8],
    /// Bytes of `rx` already handled: the next packet starts here. Consuming a packet moves
    /// this cursor, and what is left moves to the front only when the room behind is needed
    /// and the move is one `memcpy` (see `compact_rx`), not once per packet.
    rx_start: usize,
    rx_len: usize,
    /// Bytes of `rx` holding the message last returned by `poll`, released at the next call.
    rx_delivered: usize,
    /// Bytes of a PUBLISH too large for `rx` still to come and be dropped.
    rx_skip: usize,
    tx: &'b mut [u8],
    tx_start: usize,
    tx_end: usize,
    /// The acknowledgement owed for the message last returned by `poll`.
    owed_ack: Option<InboundAck>,
    /// The last transport operation was a read. Unless it was, a read that is ready at once
    /// goes before the next write.
    read_last: bool,
}

impl<'b, T, K, R, const OUT: usize, const SUBS: usize, const IN2: usize>
    Client<'b, T, K, R, OUT, SUBS, IN2>
where
    T: Transport,
    K: Clock,
    R: RngCore,
{
    /// A client that connects on its first [`poll`](Self::poll). The session's
    /// `max_packet_size` is capped at the transmit buffer's size.
    pub fn new(
        mut config: Config<'b>,
        buffers: Buffers<'b>,
        transport: T,
        clock: K,
        rng: R,
    ) -> Result<Self, ConfigError> {
        config.max_packet_size = config.max_packet_size.min(buffers.tx.len());
        let session = Session::new(config, buffers.outbox, buffers.filters, rng)?;
        Ok(Self {
            session,
            transport,
            clock,
            link: Link::Closed,
            rx: buffers.rx,
            rx_start: 0,
            rx_len: 0,
            rx_delivered: 0,
            rx_skip: 0,
            tx: buffers.tx,
            tx_start: 0,
            tx_end: 0,
            owed_ack: None,
            read_last: false,
        })
    }

    /// The session, for its state and counters.
    pub fn session(&self) -> &Session<'b, R, OUT, SUBS, IN2> {
        &self.session
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Accepts a message (see [`Session::publish`]); it goes out during `poll`.
    pub fn publish(&mut self, message: &OutgoingMessage<'_>) -> Result<PublishId, PublishError> {
        self.session.publish(self.clock.now(), message)
    }

    /// Subscribes (see [`Session::subscribe`]).
    pub fn subscribe(&mut self, filters: &[Subscription<'_>]) -> Result<RequestId, SubscribeError> {
        self.session.subscribe(self.clock.now(), filters)
    }

    /// Unsubscribes (see [`Session::unsubscribe`]).
    pub fn unsubscribe(&mut self, filters: &[&str]) -> Result<RequestId, SubscribeError> {
        self.session.unsubscribe(self.clock.now(), filters)
    }

    /// Drops a stored message that is not on the wire (see [`Session::discard`]).
    pub fn discard(&mut self, id: PublishId) -> bool {
        self.session.discard(id)
    }

    /// Starts a graceful disconnect; `poll` completes it and reports
    /// [`Event::Disconnected`].
    pub fn disconnect(&mut self) {
        self.session.disconnect(self.clock.now());
    }

    /// Starts a stopped client again.
    pub fn restart(&mut self) {
        self.session.restart(self.clock.now());
    }

    /// Drives the client until there is something to report: connects, reconnects with
    /// backoff, keeps the connection alive, sends, receives.
    ///
    /// Cancel-safe: dropping the future at any point loses no message and no state; the next
    /// call carries on. Calling it again also releases the previous [`ClientEvent::Message`]
    /// and sends its acknowledgement.
    pub async fn poll(&mut self) -> Result<ClientEvent<'_>, ClientError> {
        self.release_delivered();
        let delivered = loop {
            let now = self.clock.now();
            self.session.handle_timeout(now);
            self.run_commands();
            // While DISCONNECT is still going out, `Disconnected` waits: an application that
            // stops polling on it has left the broker a clean disconnect.
            if !matches!(self.link, Link::Closing { .. })
                && let Some(event) = self.session.poll_event()
            {
                return Ok(ClientEvent::Session(event));
            }
            if self.link == Link::Open {
                // What became due (above all the acknowledgement of the message just
                // released) joins the transmit buffer before the next buffered packet is
                // handed out: a burst of inbound QoS 1/2 messages must not pile up its
                // acknowledgements in the session, whose queue for them is small.
                self.fill_tx(now);
                match self.receive_buffered(now) {
                    Received::Message(len) => break len,
                    Received::Handled => continue,
                    Received::Nothing => {}
                }
            }
            if self.link == Link::Closed && self.session.state() == State::Stopped {
                return Err(ClientError::Stopped);
            }
            self.wait().await;
        };
        self.rx_delivered = delivered;
        let message = match packet::decode_from_broker(
            self.rx
                .get(self.rx_start..self.rx_start + delivered)
                .unwrap_or(&[]),
            delivered,
        ) {
            Ok(Decoded::Complete {
                packet: Packet::Publish(p),
                ..
            }) => IncomingMessage {
                topic: p.topic,
                payload: p.payload,
                qos: p.qos.qos(),
                retain: p.retain,
                dup: p.dup,
                ack: self.owed_ack,
            },
            // The same bytes decoded as this PUBLISH a moment ago.
            _ => return Err(ClientError::Stopped),
        };
        Ok(ClientEvent::Message(message))
    }

    /// The application is done with the last message: acknowledge it and free its bytes.
    fn release_delivered(&mut self) {
        if let Some(ack) = self.owed_ack.take() {
            self.session.acknowledge(self.clock.now(), ack);
        }
        if self.rx_delivered > 0 {
            self.consume_rx(self.rx_delivered);
            self.rx_delivered = 0;
        }
    }

    fn consume_rx(&mut self, n: usize) {
        self.rx_start = (self.rx_start + n).min(self.rx_len);
        if self.rx_start == self.rx_len {
            self.rx_start = 0;
            self.rx_len = 0;
        }
    }

    /// Moves the unhandled bytes to the front of `rx` when the room behind them is needed (the
    /// buffer is full to the end) or the move is a single copy (the gap is as long as what
    /// moves). Moving after every small packet would copy the rest of the buffer each time.
    fn compact_rx(&mut self) {
        let left = self.rx_len - self.rx_start;
        if self.rx_start > 0 && (self.rx_len == self.rx.len() || self.rx_start >= left) {
            move_down(self.rx, 0, self.rx_start, self.rx_len);
            self.rx_len = left;
            self.rx_start = 0;
        }
    }

    /// Hands one buffered packet to the session.
    fn receive_buffered(&mut self, now: Instant) -> Received {
        if self.rx_skip > 0 {
            let n = self.rx_skip.min(self.rx_len - self.rx_start);
            self.consume_rx(n);
            self.rx_skip -= n;
            if self.rx_skip > 0 {
                return Received::Nothing;
            }
        }
        let max = self.rx.len();
        let input = self.rx.get(self.rx_start..self.rx_len).unwrap_or(&[]);
        let (packet, len, whole) = match packet::decode_from_broker(input, max) {
            Ok(Decoded::Complete { packet, len }) => (packet, len, true),
            Ok(Decoded::Incomplete(_)) => return Received::Nothing,
            // A PUBLISH larger than `rx`: handled from its head (topic, packet identifier),
            // which is enough to acknowledge it, and skipped as its bytes arrive. Only a head
            // that cannot fit `rx` either is a protocol error, and so, at once, is any other
            // packet type that large (the last arm).
            Err(packet::Error::PacketTooLarge { packet_len, .. })
                if input
                    .first()
                    .is_some_and(|b| b >> 4 == PacketType::Publish as u8) =>
            {
                match packet::peek_publish_head(input) {
                    Ok(Some(head)) => (Packet::Publish(head.publish()), packet_len, false),
                    Ok(None) if input.len() < max => return Received::Nothing,
                    Ok(None) => {
                        return self
                            .undecodable(now, packet::Error::PacketTooLarge { packet_len, max });
                    }
                    Err(error) => return self.undecodable(now, error),
                }
            }
            Err(error) => return self.undecodable(now, error),
        };
        match self.session.handle_packet(now, packet) {
            Some(message) if whole => {
                self.owed_ack = message.ack;
                Received::Message(len)
            }
            skipped => {
                if let Some(message) = skipped {
                    // Acknowledged at the next `poll`, like a delivered message.
                    self.session.message_skipped(message.qos, len);
                    self.owed_ack = message.ack;
                }
                if whole {
                    self.consume_rx(len);
                } else {
                    self.rx_skip = len;
                }
                Received::Handled
            }
        }
    }

    /// The stream cannot be read on: a protocol error, the session reconnects.
    fn undecodable(&mut self, now: Instant, error: packet::Error) -> Received {
        warn!("undecodable input: {:?}", error);
        self.session.handle_decode_error(now, error);
        self.rx_start = 0;
        self.rx_len = 0;
        Received::Handled
    }

    /// Appends the packets the session wants sent to the bytes still waiting in the transmit
    /// buffer, whole packets only. Appending (rather than refilling only an empty buffer) lets
    /// one write carry everything that became due meanwhile: acknowledgements of several
    /// received messages, the next messages of the window. A room smaller than
    /// `max_packet_size` is fine: a packet that does not fit waits for the next call, and once
    /// the buffer is empty the whole of it is offered.
    fn fill_tx(&mut self, now: Instant) {
        if self.tx_start == self.tx_end {
            self.tx_start = 0;
            self.tx_end = 0;
        } else if self.tx_start > 0 && self.tx_start >= self.tx_end - self.tx_start {
            // After short writes: the rest to the front, the room behind it, once that is a
            // single copy (a copy per short write would move the whole rest each time).
            move_down(self.tx, 0, self.tx_start, self.tx_end);
            self.tx_end -= self.tx_start;
            self.tx_start = 0;
        }
        if let Some(free) = self.tx.get_mut(self.tx_end..).filter(|f| !f.is_empty()) {
            self.tx_end += self.session.poll_transmit(now, free);
        }
    }

    /// Carries out the session's transport commands; closing the transport is left to
    /// [`wait`](Self::wait), and a closing link takes no further command until it is closed.
    fn run_commands(&mut self) {
        while !matches!(self.link, Link::Closing { .. }) {
            match self.session.poll_command() {
                Some(Command::Open) => self.link = Link::Opening,
                Some(Command::Close) => {
                    // DISCONNECT is in the transmit buffer: let it out first.
                    let graceful = self.session.state() == State::Stopped;
                    self.begin_close(graceful && self.link == Link::Open);
                }
                None => return,
            }
        }
    }

    /// Starts closing the connection; [`wait`](Self::wait) writes what is left (DISCONNECT),
    /// then closes the transport.
    fn begin_close(&mut self, flush: bool) {
        let deadline = self.clock.now() + self.session.config().ping_timeout;
        self.link = Link::Closing { deadline };
        // `rx_delivered` is 0 here: `poll` released the last message before it got this far.
        self.rx_start = 0;
        self.rx_len = 0;
        self.rx_skip = 0;
        if !flush {
            self.tx_start = 0;
            self.tx_end = 0;
        }
    }

    /// Waits for the first of: the next deadline (while closing, the close's), the connect
    /// finishing, the write going out, bytes arriving, the close finishing. One transport
    /// operation, chosen by the link's state, raced against one timer: a single `select`, and
    /// the outcome handled by a plain function ([`on_io`](Self::on_io)).
    ///
    /// Cancel-safe: only [`on_io`](Self::on_io) changes state, after the `select` is over; a
    /// close dropped halfway is done again by the next call.
    async fn wait(&mut self) {
        let deadline = match self.link {
            Link::Closing { deadline } => Some(deadline),
            _ => self.session.poll_timeout(),
        };
        let link = self.link;
        let read_first = !self.read_last;
        self.compact_rx();
        let pending = self.tx.get(self.tx_start..self.tx_end).unwrap_or(&[]);
        let free = self.rx.get_mut(self.rx_len..).unwrap_or(&mut []);
        let transport = &mut self.transport;
        let clock = &self.clock;
        let io = async move {
            match link {
                Link::Opening => Io::Connected(transport.connect().await),
                Link::Open if !pending.is_empty() => {
                    // One transport cannot read and write at once. Writes and reads that are
                    // ready alternate, so that a steady stream of writes on a slow uplink never
                    // leaves the broker's packets (a PINGRESP above all) unread until the ping
                    // timeout. The read is polled once, never awaited: it must not hold up the
                    // write (dropping it is allowed, see the transport contract).
                    if read_first
                        && !free.is_empty()
                        && let Poll::Ready(read) = poll_once(transport.read(free))
                    {
                        return Io::Read(read);
                    }
                    Io::Wrote(transport.write(pending).await)
                }
                Link::Closing { .. } if !pending.is_empty() => {
                    Io::Wrote(transport.write(pending).await)
                }
                Link::Open => Io::Read(transport.read(free).await),
                Link::Closing { .. } => {
                    transport.close().await;
                    Io::Closed
                }
                Link::Closed => core::future::pending().await,
            }
        };
        let sleep = async move {
            match deadline {
                Some(at) => clock.sleep_until(at).await,
                None => core::future::pending().await,
            }
        };
        let io = match select(io, sleep).await {
            Either::First(io) => io,
            Either::Second(()) => Io::Timer,
        };
        self.on_io(io);
    }

    /// What the transport operation (or the timer) of [`wait`](Self::wait) ended with.
    fn on_io(&mut self, io: Io<T::Error>) {
        self.read_last = matches!(io, Io::Read(_));
        match io {
            Io::Connected(result) => {
                let now = self.clock.now();
                match result {
                    Ok(()) => {
                        self.link = Link::Open;
                        self.session.connected(now);
                    }
                    Err(e) => {
                        warn!("connect failed: {:?}", embedded_io_async::Error::kind(&e));
                        self.link = Link::Closed;
                        self.session.connect_failed(now);
                    }
                }
            }
            // Clamped: a transport that claims more than it was given must not push the
            // positions past the buffers.
            Io::Wrote(Ok(n)) if n > 0 => self.tx_start = (self.tx_start + n).min(self.tx_end),
            Io::Read(Ok(n)) if n > 0 => {
                self.rx_len = (self.rx_len + n).min(self.rx.len());
                self.session.bytes_received(self.clock.now());
            }
            Io::Wrote(result) => {
                if let Err(e) = result {
                    warn!("write failed: {:?}", embedded_io_async::Error::kind(&e));
                }
                self.connection_lost();
            }
            Io::Read(result) => {
                if let Err(e) = result {
                    warn!("read failed: {:?}", embedded_io_async::Error::kind(&e));
                }
                self.connection_lost();
            }
            Io::Closed => self.link = Link::Closed,
            // The close's deadline: give up what is left to write, then close (raced against
            // the same, passed, deadline: one try), then stop waiting for it.
            Io::Timer if matches!(self.link, Link::Closing { .. }) => {
                if self.tx_start < self.tx_end {
                    self.tx_start = 0;
                    self.tx_end = 0;
                } else {
                    self.link = Link::Closed;
                }
            }
            Io::Timer => {}
        }
    }

    /// The transport reported the connection broken; the next `run_commands` closes it.
    fn connection_lost(&mut self) {
        // While closing, the session gave this connection up already (it asked for the
        // close) and may be opening the next one: this loss is not news to it.
        if !matches!(self.link, Link::Closing { .. }) {
            self.session.closed(self.clock.now());
        }
        self.begin_close(false);
    }
}

/// How the transport operation of [`Client::wait`] ended, or that the timer came first.
enum Io<E> {
    Connected(Result<(), E>),
    Wrote(Result<usize, E>),
    Read(Result<usize, E>),
    Closed,
    Timer,
}

enum Received {
    /// A message for the application, `len` bytes at the start of `rx`.
    Message(usize),
    /// A packet the session dealt with itself.
    Handled,
    /// No whole packet buffered.
    Nothing,
}
