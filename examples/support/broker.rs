//! An MQTT broker inside the process, for the host examples and the integration tests, so a
//! fresh machine needs nothing installed.
//!
//! It is [rumqttd](https://docs.rs/rumqttd) (a dev-dependency) listening on a free loopback
//! port with MQTT 3.1.1 only. rumqttd runs on threads of its own (a router thread and a
//! listener thread with its own single-threaded tokio runtime), so it works the same under any
//! runtime of the caller, or none. It cannot be stopped: its threads end with the process.
//!
//! Used by `#[path]` from `examples/` and `tests/inprocess/`, so there is one copy.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// How long the broker may take to accept connections after its threads start.
const READY_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts at a free port: another process may take the port between our probe and rumqttd's
/// bind.
const PORT_ATTEMPTS: usize = 5;

/// A running in-process broker.
#[derive(Debug, Clone, Copy)]
pub struct InProcessBroker {
    addr: SocketAddr,
}

impl InProcessBroker {
    /// Starts a broker on a free port of 127.0.0.1 and returns once it accepts connections.
    pub fn start() -> io::Result<Self> {
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            let addr = free_loopback_port()?;
            match Self::start_on(addr) {
                Ok(broker) => return Ok(broker),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("no free port")))
    }

    /// Starts a broker listening on `addr` and returns once it accepts connections.
    pub fn start_on(addr: SocketAddr) -> io::Result<Self> {
        let mut broker = rumqttd::Broker::new(config(addr));
        let thread = thread::Builder::new()
            .name(format!("broker-{}", addr.port()))
            .spawn(move || broker.start().map_err(|e| e.to_string()))?;
        let started = Instant::now();
        loop {
            // `Broker::start` only returns when its listener failed (port taken, say).
            if thread.is_finished() {
                let reason = match thread.join() {
                    Ok(Ok(())) => "listener stopped".to_owned(),
                    Ok(Err(e)) => e,
                    Err(_) => "broker thread panicked".to_owned(),
                };
                return Err(io::Error::other(format!(
                    "in-process broker on {addr} did not start: {reason}"
                )));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(Self { addr });
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("in-process broker on {addr} not accepting connections"),
                ));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// A loopback port that was free a moment ago.
fn free_loopback_port() -> io::Result<SocketAddr> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()
}

/// rumqttd's configuration: one MQTT 3.1.1 listener on `addr`, small limits, no metrics,
/// console or TLS.
fn config(addr: SocketAddr) -> rumqttd::Config {
    let connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: 10_000,
        max_payload_size: 256 * 1024,
        max_inflight_count: 100,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let listener = rumqttd::ServerSettings {
        name: format!("v4-{}", addr.port()),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 0,
        connections,
    };
    rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            max_connections: 64,
            max_outgoing_packet_count: 200,
            max_segment_size: 1024 * 1024,
            max_segment_count: 10,
            ..Default::default()
        },
        v4: Some(HashMap::from([("1".to_owned(), listener)])),
        ..Default::default()
    }
}
