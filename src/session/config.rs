//! Session configuration, with the fleet-safety rules checked up front.

use core::fmt;

use super::BackoffConfig;
use crate::packet::{self, Connect, Packet, QoS, Will};
use crate::time::Duration;

/// Everything the session needs to know about how to talk to its broker.
///
/// Build it with [`Config::new`] and change the fields you need; [`Session::new`] checks it.
///
/// [`Session::new`]: super::Session::new
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct Config<'a> {
    /// The client identifier. May be empty only with `clean_session`.
    pub client_id: &'a str,
    /// Ask for a fresh session on every connect (default `true`).
    pub clean_session: bool,
    /// Keep alive in seconds (default 20). Must be above 0 and below `idle_limit`.
    pub keep_alive_secs: u16,
    /// The idle timeout of whatever sits between the device and its broker: a proxy or load
    /// balancer cuts a connection with no traffic for this long (default 30 s, HAProxy's
    /// `timeout tunnel` in a typical setup).
    pub idle_limit: Duration,
    /// How long to wait for PINGRESP before declaring the connection dead (default 5 s).
    pub ping_timeout: Duration,
    /// How long the transport may take to open a connection (default 10 s).
    pub connect_timeout: Duration,
    /// How long to wait for CONNACK after CONNECT (default 10 s).
    pub connack_timeout: Duration,
    /// How long a PUBACK, PUBREC, PUBCOMP, SUBACK or UNSUBACK may take before the connection
    /// counts as broken (default 30 s). Unacknowledged messages are sent again after the
    /// reconnect, never on the same connection.
    pub ack_timeout: Duration,
    /// Reconnect delays.
    pub backoff: BackoffConfig,
    /// How many QoS 1/2 messages may await their acknowledgement at once (default 8).
    pub inflight_window: u16,
    /// The largest packet the session will produce; publishes that would be larger are
    /// refused. Set it to the size of the client's transmit buffer (default 1024).
    pub max_packet_size: usize,
    /// The highest QoS the broker honours for the messages this client publishes (default
    /// [`QoS::ExactlyOnce`]; the session caps it at [`MAX_QOS`](super::MAX_QOS), QoS 1 without
    /// the `qos2` feature). A publish above it is refused with
    /// [`PublishError::QosNotSupported`], before anything is stored or sent. Set it to
    /// [`QoS::AtLeastOnce`] for brokers without QoS 2, such as RabbitMQ 3.x, which answers a
    /// QoS 2 PUBLISH with PUBACK: the exchange can never complete as QoS 2 (see
    /// `docs/interop.md`). Subscriptions are not affected by it (the broker grants what it can
    /// in SUBACK); without `qos2` they ask for QoS 1 at most.
    ///
    /// [`PublishError::QosNotSupported`]: super::PublishError::QosNotSupported
    pub max_qos: QoS,
    /// The will message, published by the broker if the connection dies without DISCONNECT.
    pub will: Option<Will<'a>>,
    /// The user name, if any.
    pub username: Option<&'a str>,
    /// The password, if any (needs a user name).
    pub password: Option<&'a [u8]>,
}

impl<'a> Config<'a> {
    /// The defaults, with the given client identifier.
    pub const fn new(client_id: &'a str) -> Self {
        Self {
            client_id,
            clean_session: true,
            keep_alive_secs: 20,
            idle_limit: Duration::from_secs(30),
            ping_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            connack_timeout: Duration::from_secs(10),
            ack_timeout: Duration::from_secs(30),
            backoff: BackoffConfig {
                min: Duration::from_secs(1),
                max: Duration::from_secs(60),
                max_attempts: None,
            },
            inflight_window: 8,
            max_packet_size: 1024,
            max_qos: QoS::ExactlyOnce,
            will: None,
            username: None,
            password: None,
        }
    }

    /// The keep-alive interval.
    pub const fn keep_alive(&self) -> Duration {
        Duration::from_secs(self.keep_alive_secs as u64)
    }

    /// The CONNECT packet this configuration produces.
    pub fn connect_packet(&self) -> Connect<'a> {
        Connect {
            clean_session: self.clean_session,
            keep_alive: self.keep_alive_secs,
            client_id: self.client_id,
            will: self.will,
            username: self.username,
            password: self.password,
        }
    }

    /// Checks the configuration; every rule has its own error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.keep_alive_secs == 0 {
            return Err(ConfigError::KeepAliveZero);
        }
        if self.keep_alive() >= self.idle_limit {
            return Err(ConfigError::KeepAliveNotBelowIdleLimit {
                keep_alive: self.keep_alive(),
                idle_limit: self.idle_limit,
            });
        }
        for (timeout, name) in [
            (self.ping_timeout, TimeoutName::Ping),
            (self.connect_timeout, TimeoutName::Connect),
            (self.connack_timeout, TimeoutName::ConnAck),
            (self.ack_timeout, TimeoutName::Ack),
        ] {
            if timeout == Duration::ZERO {
                return Err(ConfigError::ZeroTimeout(name));
            }
        }
        if self.backoff.min == Duration::ZERO || self.backoff.min > self.backoff.max {
            return Err(ConfigError::InvalidBackoff);
        }
        if self.inflight_window == 0 {
            return Err(ConfigError::ZeroInflightWindow);
        }
        let connect_len = Packet::Connect(self.connect_packet())
            .encoded_len()
            .map_err(ConfigError::InvalidConnect)?;
        if connect_len > self.max_packet_size {
            return Err(ConfigError::ConnectTooLarge {
                len: connect_len,
                max_packet_size: self.max_packet_size,
            });
        }
        Ok(())
    }
}

/// Which timeout a [`ConfigError::ZeroTimeout`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[allow(missing_docs, reason = "named after the Config fields")]
pub enum TimeoutName {
    Ping,
    Connect,
    ConnAck,
    Ack,
}

/// A configuration the session refuses, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ConfigError {
    /// Keep alive 0 would switch off the broker's and the client's dead-connection detection.
    KeepAliveZero,
    /// A keep alive at or above the idle limit lets a proxy cut an idle but healthy connection.
    KeepAliveNotBelowIdleLimit {
        /// The configured keep alive.
        keep_alive: Duration,
        /// The configured idle limit.
        idle_limit: Duration,
    },
    /// A timeout of zero would fail every attempt.
    ZeroTimeout(TimeoutName),
    /// `backoff.min` is zero or above `backoff.max`.
    InvalidBackoff,
    /// The in-flight window must allow at least one message.
    ZeroInflightWindow,
    /// The CONNECT built from this configuration breaks a protocol rule.
    InvalidConnect(packet::Error),
    /// The CONNECT built from this configuration exceeds `max_packet_size`.
    ConnectTooLarge {
        /// The CONNECT's length.
        len: usize,
        /// The configured limit.
        max_packet_size: usize,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::KeepAliveZero => f.write_str("keep alive must be above 0"),
            ConfigError::KeepAliveNotBelowIdleLimit {
                keep_alive,
                idle_limit,
            } => write!(
                f,
                "keep alive {keep_alive} is not below the idle limit {idle_limit} of the path \
                 to the broker: a proxy would cut idle connections"
            ),
            ConfigError::ZeroTimeout(name) => write!(f, "{name:?} timeout must be above 0"),
            ConfigError::InvalidBackoff => {
                f.write_str("backoff minimum must be above 0 and not above the maximum")
            }
            ConfigError::ZeroInflightWindow => f.write_str("in-flight window must be at least 1"),
            ConfigError::InvalidConnect(e) => write!(f, "invalid CONNECT: {e}"),
            ConfigError::ConnectTooLarge {
                len,
                max_packet_size,
            } => write!(
                f,
                "CONNECT of {len} bytes exceeds max_packet_size {max_packet_size}"
            ),
        }
    }
}

impl core::error::Error for ConfigError {}
