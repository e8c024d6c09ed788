//! What the session tells the application: events, reasons, handles.

use core::fmt;

use crate::packet::{self, ConnectReturnCode, PacketId, PacketType, QoS, SubAckReturnCode};
use crate::time::Duration;

/// The handle of an accepted publish; later events name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PublishId(pub(crate) u32);

impl PublishId {
    /// The handle as a number (unique for the session's lifetime, increasing).
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for PublishId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// The handle of a subscribe or unsubscribe request; later events name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RequestId(pub(crate) u32);

impl RequestId {
    /// The handle as a number.
    pub const fn get(self) -> u32 {
        self.0
    }
}

/// Why a connection (or an attempt at one) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum CloseReason {
    /// The transport could not open a connection.
    ConnectFailed,
    /// The transport did not open a connection within `connect_timeout`.
    ConnectTimeout,
    /// No CONNACK within `connack_timeout`.
    ConnAckTimeout,
    /// The broker refused the connection.
    Refused(ConnectReturnCode),
    /// CONNACK came, but no PINGRESP to the first PINGREQ within `ping_timeout`: the broker
    /// accepts connections but does not serve them.
    NoFirstPingResp,
    /// No PINGRESP within `ping_timeout`: the connection is dead (half-open, stalled).
    PingTimeout,
    /// An acknowledgement (PUBACK, PUBREC, PUBCOMP, SUBACK, UNSUBACK) took longer than
    /// `ack_timeout`.
    AckTimeout,
    /// The transport reported the connection closed or broken.
    ClosedByPeer,
    /// The broker broke the protocol.
    Protocol(ProtocolError),
    /// More inbound QoS 1/2 acknowledgements or QoS 2 exchanges are open than the session's
    /// tables hold; the broker will deliver again after the reconnect.
    InboundBacklog,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::ConnectFailed => f.write_str("transport connect failed"),
            CloseReason::ConnectTimeout => f.write_str("transport connect timed out"),
            CloseReason::ConnAckTimeout => f.write_str("no CONNACK in time"),
            CloseReason::Refused(code) => write!(f, "broker refused the connection: {code:?}"),
            CloseReason::NoFirstPingResp => f.write_str("no PINGRESP to the first PINGREQ"),
            CloseReason::PingTimeout => f.write_str("no PINGRESP in time"),
            CloseReason::AckTimeout => f.write_str("acknowledgement overdue"),
            CloseReason::ClosedByPeer => f.write_str("connection closed"),
            CloseReason::Protocol(e) => write!(f, "protocol error: {e}"),
            CloseReason::InboundBacklog => f.write_str("too many open inbound exchanges"),
        }
    }
}

/// How the broker broke the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ProtocolError {
    /// A packet could not be decoded (malformed or oversize).
    Malformed(packet::Error),
    /// A packet that a broker never sends, or not in this state.
    Unexpected(PacketType),
    /// An acknowledgement for a packet identifier the session is not waiting on.
    UnknownPacketId(PacketType, PacketId),
    /// A SUBACK with a different number of return codes than the SUBSCRIBE had filters.
    SubAckCountMismatch,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Malformed(e) => write!(f, "malformed packet: {e}"),
            ProtocolError::Unexpected(t) => write!(f, "unexpected {t}"),
            ProtocolError::UnknownPacketId(t, id) => write!(f, "{t} for unknown packet id {id}"),
            ProtocolError::SubAckCountMismatch => {
                f.write_str("SUBACK return codes do not match the SUBSCRIBE")
            }
        }
    }
}

/// Something the application should hear about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Event {
    /// The transport opened a connection and CONNECT is on its way.
    TransportConnected,
    /// The broker accepted the connection; the first PINGREQ is on its way. Not "up" yet.
    ConnAckReceived {
        /// The broker kept a session from before.
        session_present: bool,
    },
    /// The broker answered the first PINGREQ: the session is up.
    Up {
        /// The broker kept a session from before.
        session_present: bool,
    },
    /// A connection, or an attempt at one, ended.
    Down {
        /// Why.
        reason: CloseReason,
        /// Whether the session had been up on this connection.
        was_up: bool,
    },
    /// The next connection attempt comes after `delay`.
    Reconnecting {
        /// Consecutive failures so far (1 after the first).
        failures: u32,
        /// The drawn delay.
        delay: Duration,
    },
    /// `max_attempts` consecutive attempts failed; the session stopped.
    GaveUp,
    /// The session stopped at the application's request: DISCONNECT was sent, or there was no
    /// connection to send it on, or the connection failed while it was being closed.
    Disconnected,
    /// The broker acknowledged a QoS 1 (PUBACK) or QoS 2 (PUBCOMP) message; a QoS 0 message
    /// was handed to the transmit buffer (QoS 0 promises no more: a connection lost before the
    /// bytes left loses it).
    Published(PublishId),
    /// The broker answered this QoS 2 message with PUBACK, as RabbitMQ 3.x does: it took the
    /// message at QoS 1, so subscribers may receive it more than once. The exchange is over;
    /// [`Event::Published`] follows. Set [`Config::max_qos`](super::Config::max_qos) to refuse
    /// QoS 2 publishes up front instead.
    PublishDowngraded(PublishId),
    /// The message's time to live ran out before it was acknowledged; it was dropped.
    Expired(PublishId),
    /// The broker answered one filter of a SUBSCRIBE (also for renewals after a reconnect).
    Subscribed {
        /// The request that asked for the filter.
        request: RequestId,
        /// The filter's place in that request.
        index: u16,
        /// Granted QoS or failure. A failed filter is forgotten.
        code: SubAckReturnCode,
    },
    /// The broker confirmed an UNSUBSCRIBE (or the session was offline with a clean session).
    Unsubscribed(RequestId),
    /// Events were lost because the application did not drain the queue.
    EventsLost(u32),
    /// A message larger than the receive buffer arrived: it was skipped, not delivered, and
    /// acknowledged at its QoS so that the broker does not send it again. Skipping keeps the
    /// connection: a retained message that no longer fits would otherwise come back after
    /// every resubscribe and turn into a reconnect loop.
    MessageTooLarge {
        /// The whole packet's length in bytes.
        len: usize,
        /// The message's QoS.
        qos: QoS,
    },
}

/// An application message from the broker, borrowing topic and payload from the receive
/// buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct IncomingMessage<'p> {
    /// The topic name.
    pub topic: &'p str,
    /// The payload.
    pub payload: &'p [u8],
    /// The QoS it was delivered with.
    pub qos: QoS,
    /// It is a retained message.
    pub retain: bool,
    /// The broker may have delivered it before (QoS 1 is at least once).
    pub dup: bool,
    /// For QoS 1 and 2: hand it to [`Session::acknowledge`](super::Session::acknowledge) once
    /// the message has been dealt with; only then does the broker hear about it. The
    /// [`Client`](crate::client::Client) does this itself at the next `poll`.
    pub ack: Option<InboundAck>,
}

/// The acknowledgement owed for an incoming QoS 1 or 2 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct InboundAck {
    pub(crate) packet_id: PacketId,
    pub(crate) qos: QoS,
    pub(crate) connection: u32,
}

/// Why a publish was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum PublishError {
    /// The message breaks a protocol rule (topic name, length).
    Invalid(packet::Error),
    /// The PUBLISH would be longer than `max_packet_size`.
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max_packet_size: usize,
    },
    /// The message's QoS is above [`Config::max_qos`](super::Config::max_qos): the broker
    /// cannot honour it. Nothing was stored; publish again with at most `max` if the weaker
    /// guarantee will do (QoS 1 instead of 2 means subscribers may see duplicates).
    QosNotSupported {
        /// The QoS asked for.
        requested: QoS,
        /// The configured maximum.
        max: QoS,
    },
    /// The outbound store has no free entry: wait for acknowledgements.
    StoreFull,
    /// The outbound store has no room for this many bytes: wait for acknowledgements.
    StoreBytesFull,
    /// The session stopped (after DISCONNECT or giving up).
    Stopped,
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::Invalid(e) => write!(f, "invalid message: {e}"),
            PublishError::TooLarge {
                len,
                max_packet_size,
            } => write!(f, "PUBLISH of {len} bytes exceeds {max_packet_size}"),
            PublishError::QosNotSupported { requested, max } => write!(
                f,
                "QoS {} is above the broker's maximum QoS {} (Config::max_qos)",
                *requested as u8, *max as u8
            ),
            PublishError::StoreFull => f.write_str("outbound store full (entries)"),
            PublishError::StoreBytesFull => f.write_str("outbound store full (bytes)"),
            PublishError::Stopped => f.write_str("session stopped"),
        }
    }
}

impl core::error::Error for PublishError {}

/// Why a subscribe or unsubscribe was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SubscribeError {
    /// A filter breaks a protocol rule.
    Invalid(packet::Error),
    /// No filter given, or more than one request may hold.
    BadCount,
    /// The subscription table has no room.
    TableFull,
    /// A filter's earlier subscribe or unsubscribe request is still open (waiting to be sent
    /// or for its answer): try again after its event.
    Busy,
    /// A SUBSCRIBE carrying one of the filters would exceed `max_packet_size`.
    TooLarge {
        /// The packet's length (an upper bound).
        len: usize,
        /// The limit.
        max_packet_size: usize,
    },
    /// The session stopped.
    Stopped,
}

impl fmt::Display for SubscribeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubscribeError::Invalid(e) => write!(f, "invalid filter: {e}"),
            SubscribeError::BadCount => f.write_str("bad number of filters"),
            SubscribeError::TableFull => f.write_str("subscription table full"),
            SubscribeError::Busy => f.write_str("filter has a request in flight"),
            SubscribeError::TooLarge {
                len,
                max_packet_size,
            } => write!(f, "SUBSCRIBE of {len} bytes exceeds {max_packet_size}"),
            SubscribeError::Stopped => f.write_str("session stopped"),
        }
    }
}

impl core::error::Error for SubscribeError {}

/// A request from the session to the driver about the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Command {
    /// Open a connection to the broker, then call `connected` or `connect_failed`.
    Open,
    /// Close the connection now. The session already counts it as gone: do not call `closed`.
    Close,
}
