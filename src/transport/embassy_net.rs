//! The device transport: an embassy-net TCP socket over the caller's socket buffers, with host
//! name resolution through embassy-net's DNS.

use core::future::{Future, poll_fn};
use core::pin::pin;
use core::task::Poll;
use embassy_net::dns::DnsQueryType;

use embassy_net::tcp::{ConnectError, Error as TcpError, State, TcpSocket};
use embassy_net::{IpAddress, IpEndpoint, Stack};
use embedded_io_async::{ErrorKind, ErrorType, Read, Write};

use super::Transport;

/// Where the broker is.
#[derive(Debug, Clone, Copy)]
pub enum Broker<'a> {
    /// A fixed address.
    Endpoint(IpEndpoint),
    /// A host name, resolved at every connect, and a port.
    Host(&'a str, u16),
}

/// Why the transport failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Error {
    /// The host name did not resolve.
    Dns,
    /// The TCP connect failed (refused, reset, timed out).
    Connect(ConnectError),
    /// Reading or writing failed (reset by the peer).
    Tcp(TcpError),
    /// Read or write without an open connection.
    NotConnected,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Dns => f.write_str("broker host name did not resolve"),
            Error::Connect(e) => write!(f, "TCP connect failed: {e:?}"),
            Error::Tcp(e) => write!(f, "TCP connection failed: {e:?}"),
            Error::NotConnected => f.write_str("not connected"),
        }
    }
}

impl core::error::Error for Error {}

impl embedded_io_async::Error for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Error::Dns => ErrorKind::AddrNotAvailable,
            Error::Connect(ConnectError::TimedOut) => ErrorKind::TimedOut,
            Error::Connect(ConnectError::ConnectionReset) => ErrorKind::ConnectionReset,
            Error::Connect(_) => ErrorKind::ConnectionRefused,
            Error::Tcp(_) => ErrorKind::ConnectionReset,
            Error::NotConnected => ErrorKind::NotConnected,
        }
    }
}

/// One TCP socket, reused for every connection to the broker.
pub struct EmbassyNetTransport<'d> {
    stack: Stack<'d>,
    socket: TcpSocket<'d>,
    broker: Broker<'d>,
    connected: bool,
    /// A connect was started and its future dropped before the handshake ended (the client
    /// races connects against the application): the next `connect` waits for that handshake
    /// instead of resetting it, so a connect slower than the application's wake-ups still ends.
    handshaking: bool,
}

impl<'d> EmbassyNetTransport<'d> {
    /// A transport on `stack` using the caller's socket buffers.
    pub fn new(
        stack: Stack<'d>,
        rx_buffer: &'d mut [u8],
        tx_buffer: &'d mut [u8],
        broker: Broker<'d>,
    ) -> Self {
        Self {
            stack,
            socket: TcpSocket::new(stack, rx_buffer, tx_buffer),
            broker,
            connected: false,
            handshaking: false,
        }
    }

    /// Waits for the handshake of an earlier, abandoned connect to finish.
    async fn finish_handshake(&self) -> Result<(), Error> {
        poll_fn(|cx| match self.socket.state() {
            State::SynSent | State::SynReceived => {
                // A state change wakes the send waker; polling a fresh readiness future
                // registers ours (it cannot be ready before the handshake ends).
                let _ = pin!(self.socket.wait_write_ready()).poll(cx);
                Poll::Pending
            }
            State::Established => Poll::Ready(Ok(())),
            _ => Poll::Ready(Err(Error::Connect(ConnectError::ConnectionReset))),
        })
        .await
    }

    async fn resolve(&self) -> Result<IpEndpoint, Error> {
        match self.broker {
            Broker::Endpoint(endpoint) => Ok(endpoint),
            Broker::Host(host, port) => {
                let addrs = self
                    .stack
                    .dns_query(host, DnsQueryType::A)
                    .await
                    .map_err(|_| Error::Dns)?;
                let addr: IpAddress = *addrs.first().ok_or(Error::Dns)?;
                Ok(IpEndpoint::new(addr, port))
            }
        }
    }
}

impl ErrorType for EmbassyNetTransport<'_> {
    type Error = Error;
}

impl Read for EmbassyNetTransport<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        if !self.connected {
            return Err(Error::NotConnected);
        }
        self.socket.read(buf).await.map_err(Error::Tcp)
    }
}

impl Write for EmbassyNetTransport<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Error> {
        if !self.connected {
            return Err(Error::NotConnected);
        }
        self.socket.write(buf).await.map_err(Error::Tcp)
    }

    async fn flush(&mut self) -> Result<(), Error> {
        if !self.connected {
            return Err(Error::NotConnected);
        }
        self.socket.flush().await.map_err(Error::Tcp)
    }
}

impl Transport for EmbassyNetTransport<'_> {
    async fn connect(&mut self) -> Result<(), Error> {
        if self.handshaking {
            let result = self.finish_handshake().await;
            self.handshaking = false;
            self.connected = result.is_ok();
            return result;
        }
        // A socket that was not closed cleanly is reset before it is reused.
        self.socket.abort();
        self.connected = false;
        let endpoint = self.resolve().await?;
        self.handshaking = true;
        let result = self.socket.connect(endpoint).await.map_err(Error::Connect);
        self.handshaking = false;
        result?;
        self.connected = true;
        Ok(())
    }

    async fn close(&mut self) {
        self.handshaking = false;
        if self.connected {
            self.connected = false;
            // Let DISCONNECT leave before the FIN, then wait for the close to complete.
            let _ = self.socket.flush().await;
            self.socket.close();
            let _ = self.socket.flush().await;
        }
        self.socket.abort();
    }
}
