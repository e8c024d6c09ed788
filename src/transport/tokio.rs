//! The host transport: TCP through tokio.

use core::net::SocketAddr;

use embedded_io_adapters::tokio_1::FromTokio;
use embedded_io_async::{ErrorType, Read, Write};
use tokio::net::TcpStream;

use super::Transport;

/// TCP to a broker at a fixed address (or host name, resolved at every connect).
pub struct TokioTransport {
    broker: BrokerAddr,
    stream: Option<FromTokio<TcpStream>>,
}

enum BrokerAddr {
    Socket(SocketAddr),
    Host(std::string::String),
}

impl TokioTransport {
    /// Connects to `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            broker: BrokerAddr::Socket(addr),
            stream: None,
        }
    }

    /// Connects to `host:port`, resolving the name again at every connect (a fleet's broker
    /// address may move).
    pub fn with_host(host_and_port: &str) -> Self {
        Self {
            broker: BrokerAddr::Host(host_and_port.into()),
            stream: None,
        }
    }

    fn stream(&mut self) -> Result<&mut FromTokio<TcpStream>, std::io::Error> {
        self.stream
            .as_mut()
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotConnected))
    }
}

impl ErrorType for TokioTransport {
    type Error = std::io::Error;
}

impl Read for TokioTransport {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        self.stream()?.read(buf).await
    }
}

impl Write for TokioTransport {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.stream()?.write(buf).await
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        self.stream()?.flush().await
    }
}

impl Transport for TokioTransport {
    async fn connect(&mut self) -> Result<(), Self::Error> {
        self.stream = None;
        let stream = match &self.broker {
            BrokerAddr::Socket(addr) => TcpStream::connect(addr).await?,
            BrokerAddr::Host(host) => TcpStream::connect(host.as_str()).await?,
        };
        // MQTT packets are small and latency matters more than segment count.
        stream.set_nodelay(true)?;
        self.stream = Some(FromTokio::new(stream));
        Ok(())
    }

    async fn close(&mut self) {
        if let Some(mut stream) = self.stream.take() {
            let _ = stream.flush().await;
            let _ = tokio::io::AsyncWriteExt::shutdown(stream.inner_mut()).await;
        }
    }
}
