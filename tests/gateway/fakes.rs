//! Misbehaving network pieces written in the test: a TCP relay that can go silent without
//! closing (a half-open link), and listeners that accept TCP but never serve MQTT properly.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use shearwater::packet::{self, Decoded, Packet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// A TCP relay between clients and an upstream. [`freeze`](Relay::freeze) makes every
/// connection open at that moment stop forwarding in both directions *without closing*: the
/// sockets stay open, bytes pile up unread, nothing comes back. Connections accepted later are
/// relayed normally. [`vanish`](Relay::vanish) makes its address go dark like a host that is
/// gone: nothing is accepted any more and new connection attempts get no answer at all (no
/// SYN-ACK, no reset). Everything is dropped with the relay.
pub struct Relay {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    /// Connections with an index below this value are frozen.
    frozen_below: watch::Sender<usize>,
    vanished: watch::Sender<bool>,
    /// Connections that fill the accept queue once the relay vanished.
    queue_fillers: Mutex<Vec<TcpStream>>,
    task: JoinHandle<()>,
}

/// The relay's listen backlog: small, so that a few connections fill the accept queue.
const BACKLOG: u32 = 4;

impl Relay {
    /// Listens on a free loopback port and relays to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("relay socket");
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind relay");
        let listener = socket.listen(BACKLOG).expect("relay listen");
        let addr = listener.local_addr().expect("relay address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let (frozen_below, frozen) = watch::channel(0);
        let (vanished, mut vanishing) = watch::channel(false);
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            // Owned here: aborting this task drops the set, which aborts every connection.
            let mut connections = JoinSet::new();
            loop {
                let accept = tokio::select! {
                    accept = listener.accept() => accept,
                    _ = async { vanishing.wait_for(|v| *v).await.is_ok() } => {
                        // Gone: keep the listener (so the port is not refused) and never
                        // accept again; connections already relayed go on.
                        while connections.join_next().await.is_some() {}
                        std::future::pending::<()>().await;
                        return;
                    }
                };
                let Ok((client, _)) = accept else {
                    continue;
                };
                let index = counter.fetch_add(1, Ordering::SeqCst);
                let frozen = frozen.clone();
                connections.spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return; // Upstream down: drop the client's connection.
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (client_rd, client_wr) = client.into_split();
                    let (server_rd, server_wr) = server.into_split();
                    tokio::join!(
                        pump(client_rd, server_wr, index, frozen.clone()),
                        pump(server_rd, client_wr, index, frozen),
                    );
                });
                // Reap finished connections so the set does not grow without bound.
                while connections.try_join_next().is_some() {}
            }
        });
        Self {
            addr,
            accepted,
            frozen_below,
            vanished,
            queue_fillers: Mutex::new(Vec::new()),
            task,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Freezes every connection accepted so far; returns when.
    pub fn freeze(&self) -> Instant {
        self.frozen_below.send_replace(self.accepted());
        Instant::now()
    }

    /// Stops accepting and fills the accept queue, so that the kernel drops every further
    /// SYN: connecting to the address now hangs until the connector's own timeout, as for a
    /// host that went away. Connections already relayed are left as they are.
    pub async fn vanish(&self) {
        self.vanished.send_replace(true);
        // Let the accept loop see it before the queue is filled behind its back.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        for _ in 0..=BACKLOG + 8 {
            let attempt = tokio::time::timeout(
                std::time::Duration::from_millis(300),
                TcpStream::connect(self.addr),
            )
            .await;
            match attempt {
                Ok(Ok(stream)) => self.queue_fillers.lock().unwrap().push(stream),
                Ok(Err(e)) => panic!("relay: connecting to fill its queue: {e}"),
                Err(_) => return, // No answer: the queue is full.
            }
        }
        panic!("relay: the accept queue never filled");
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies one direction until end of stream, or forever nothing once frozen.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    index: usize,
    mut frozen_below: watch::Receiver<usize>,
) {
    let mut buf = [0u8; 4096];
    loop {
        if *frozen_below.borrow_and_update() > index {
            // Half-open: keep both sockets open, read nothing, send nothing.
            let _held = (from, to);
            std::future::pending::<()>().await;
            return;
        }
        tokio::select! {
            changed = frozen_below.changed() => {
                if changed.is_err() {
                    return; // The relay is gone.
                }
            }
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown().await;
                    return;
                }
                Ok(n) => {
                    if to.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            },
        }
    }
}

/// How a [`FakeBroker`] misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Accepts TCP, reads everything, never answers: no CONNACK.
    NoConnAck,
    /// Answers CONNECT with an accepting CONNACK, then never answers again: no PINGRESP.
    ConnAckThenSilence,
}

/// What a [`FakeBroker`] saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FakeStats {
    /// TCP connections accepted.
    pub connections: usize,
    /// CONNECT packets received.
    pub connects: usize,
    /// PINGREQ packets received.
    pub pingreqs: usize,
}

/// A listener that accepts TCP but does not serve MQTT: the broker that is up but cannot
/// serve, or the proxy whose backend is gone. Connections stay open until the client closes
/// them.
pub struct FakeBroker {
    addr: SocketAddr,
    stats: Arc<Mutex<FakeStats>>,
    task: JoinHandle<()>,
}

impl FakeBroker {
    /// Listens on a free loopback port.
    pub async fn start(misbehaviour: Misbehaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fake");
        let addr = listener.local_addr().expect("fake address");
        let stats = Arc::new(Mutex::new(FakeStats::default()));
        let shared = stats.clone();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                shared.lock().unwrap().connections += 1;
                connections.spawn(serve_badly(stream, misbehaviour, shared.clone()));
                while connections.try_join_next().is_some() {}
            }
        });
        Self { addr, stats, task }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it saw so far.
    pub fn stats(&self) -> FakeStats {
        *self.stats.lock().unwrap()
    }
}

impl Drop for FakeBroker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_badly(
    mut stream: TcpStream,
    misbehaviour: Misbehaviour,
    stats: Arc<Mutex<FakeStats>>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        loop {
            let (packet_type, len) = match packet::decode(&buf, 1 << 16) {
                Ok(Decoded::Complete { packet, len }) => (packet.packet_type(), len),
                Ok(Decoded::Incomplete(_)) => break,
                Err(e) => panic!("fake broker: undecodable input from the client: {e}"),
            };
            buf.drain(..len);
            match packet_type {
                packet::PacketType::Connect => {
                    stats.lock().unwrap().connects += 1;
                    if misbehaviour == Misbehaviour::ConnAckThenSilence {
                        let connack = Packet::ConnAck(packet::ConnAck {
                            session_present: false,
                            code: packet::ConnectReturnCode::Accepted,
                        });
                        let mut out = [0u8; 4];
                        let n = connack.encode(&mut out).expect("encode CONNACK");
                        if stream.write_all(&out[..n]).await.is_err() {
                            return;
                        }
                    }
                }
                packet::PacketType::PingReq => stats.lock().unwrap().pingreqs += 1,
                _ => {}
            }
        }
    }
}
