//! The host transport: TCP through tokio.

use core::net::SocketAddr;
use core::pin::Pin;
use std::boxed::Box;

use embedded_io_adapters::tokio_1::FromTokio;
use embedded_io_async::{ErrorType, Read, Write};
use tokio::net::TcpStream;

use super::Transport;

/// TCP to a broker at a fixed address (or host name, resolved at every connect).
///
/// A connect whose future is dropped (a cancelled [`Client::poll`]) is kept and carried on by
/// the next [`connect`](Transport::connect) call, so an application that polls in a `select`
/// with its own, more frequent work still connects over a slow network; [`close`] abandons it.
///
/// [`Client::poll`]: crate::client::Client::poll
/// [`close`]: Transport::close
pub struct TokioTransport {
    broker: BrokerAddr,
    stream: Option<FromTokio<TcpStream>>,
    connecting: Option<Connecting>,
}

/// A connect in progress (name resolution and TCP handshake).
type Connecting = Pin<Box<dyn Future<Output = std::io::Result<TcpStream>> + Send>>;

#[derive(Clone)]
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
            connecting: None,
        }
    }

    /// Connects to `host:port`, resolving the name again at every connect (a fleet's broker
    /// address may move).
    pub fn with_host(host_and_port: &str) -> Self {
        Self {
            broker: BrokerAddr::Host(host_and_port.into()),
            stream: None,
            connecting: None,
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
        // Carry on with an attempt whose future was dropped, rather than start over: over a
        // network slower than the application's select loop, starting over never connects.
        let connecting = match &mut self.connecting {
            Some(connecting) => connecting,
            pending => {
                self.stream = None;
                let broker = self.broker.clone();
                pending.insert(Box::pin(async move {
                    match broker {
                        BrokerAddr::Socket(addr) => TcpStream::connect(addr).await,
                        BrokerAddr::Host(host) => TcpStream::connect(host.as_str()).await,
                    }
                }))
            }
        };
        let result = connecting.await;
        self.connecting = None;
        let stream = result?;
        // MQTT packets are small and latency matters more than segment count.
        stream.set_nodelay(true)?;
        self.stream = Some(FromTokio::new(stream));
        Ok(())
    }

    async fn close(&mut self) {
        self.connecting = None;
        if let Some(mut stream) = self.stream.take() {
            let _ = stream.flush().await;
            let _ = tokio::io::AsyncWriteExt::shutdown(stream.inner_mut()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use core::future::Future;
    use core::pin::pin;
    use core::task::Poll;
    use std::time::Duration;

    use super::*;

    /// Regression: a `connect` dropped before it finished (a cancelled `Client::poll`) used to
    /// be started over by the next call, so an application whose select loop wakes more often
    /// than a connect takes never connected. The attempt is resumed: one connection, not two.
    #[tokio::test]
    async fn test_dropped_connect_is_resumed_not_restarted() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut transport = TokioTransport::new(listener.local_addr().unwrap());
        {
            let mut connect = pin!(transport.connect());
            let first = core::future::poll_fn(|cx| Poll::Ready(connect.as_mut().poll(cx))).await;
            assert!(first.is_pending(), "the handshake needs a reactor turn");
        }
        assert!(transport.connecting.is_some());
        transport.connect().await.unwrap();
        assert!(transport.connecting.is_none());

        let (mut accepted, _) = listener.accept().await.unwrap();
        let second = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        assert!(
            second.is_err(),
            "a second connection: the attempt was started over"
        );
        transport.write(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        tokio::io::AsyncReadExt::read_exact(&mut accepted, &mut buf)
            .await
            .unwrap();
        assert_eq!(&buf, b"ping");
    }

    /// `close` abandons an attempt in progress: the next `connect` starts a new one.
    #[tokio::test]
    async fn test_close_abandons_a_pending_connect() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut transport = TokioTransport::new(listener.local_addr().unwrap());
        {
            let mut connect = pin!(transport.connect());
            let _ = core::future::poll_fn(|cx| Poll::Ready(connect.as_mut().poll(cx))).await;
        }
        transport.close().await;
        assert!(transport.connecting.is_none());
        transport.connect().await.unwrap();
        assert!(transport.stream.is_some());
    }
}
