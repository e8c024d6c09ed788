//! A TCP relay between a client and the in-process broker, to stage a broker outage.
//!
//! rumqttd cannot be stopped and started again inside a process, so the tests point the client
//! at this relay instead: [`Relay::cut`] drops every relayed connection and stops listening
//! (the client sees its connection closed, then connections refused, as if the broker went
//! away), and [`Relay::resume`] listens again on the same port. The broker side sees the
//! connections end without DISCONNECT, as it would if the device's network went away.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

/// A relay from a loopback port to the broker.
pub struct Relay {
    addr: SocketAddr,
    upstream: SocketAddr,
    accept: Option<JoinHandle<()>>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Relay {
    /// Listens on a free loopback port and relays every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let mut relay = Self {
            addr: listener.local_addr()?,
            upstream,
            accept: None,
            connections: Arc::default(),
        };
        relay.listen(listener);
        Ok(relay)
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every relayed connection and stops listening.
    pub fn cut(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
        for connection in self.connections.lock().expect("relay lock").drain(..) {
            connection.abort();
        }
    }

    /// Listens again, on the same port.
    pub async fn resume(&mut self) -> io::Result<()> {
        // The aborted accept task may not have dropped its listener yet.
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                Err(e) => return Err(e),
            }
        };
        self.listen(listener);
        Ok(())
    }

    fn listen(&mut self, listener: TcpListener) {
        let upstream = self.upstream;
        let connections = Arc::clone(&self.connections);
        self.accept = Some(tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut broker) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut broker).await;
                    }
                });
                connections
                    .lock()
                    .expect("relay lock")
                    .push(task.abort_handle());
            }
        }));
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
    }
}
