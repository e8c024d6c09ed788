//! A bare MQTT 3.1.1 peer over a tokio socket, built on the crate's codec only (no session, no
//! client): the independent publisher and subscriber of the tests, and the "raw client" that
//! connects and then stays silent.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use shearwater::packet::{
    self, ConnAck, Connect, Decoded, Packet, PacketId, PacketType, PubAck, Publish, PublishQos,
    QoS, Subscribe, Subscription,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a raw exchange (CONNACK, SUBACK, PUBACK) may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);

/// A packet received by a [`RawClient`], owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawPacket {
    /// CONNACK.
    ConnAck(ConnAck),
    /// PUBLISH.
    Publish {
        /// Its topic.
        topic: String,
        /// Its payload.
        payload: Vec<u8>,
        /// Its packet identifier (QoS 1 and 2).
        packet_id: Option<PacketId>,
    },
    /// Any other packet, by type.
    Other(PacketType),
}

/// One MQTT connection driven by hand.
pub struct RawClient {
    name: String,
    stream: TcpStream,
    buf: Vec<u8>,
    next_id: u16,
}

impl RawClient {
    /// Connects (clean session) and waits for an accepting CONNACK; panics on any failure.
    pub async fn connect(addr: SocketAddr, client_id: &str, keep_alive: u16) -> Self {
        let (client, _) = Self::try_connect(addr, client_id, keep_alive)
            .await
            .unwrap_or_else(|e| panic!("raw client {client_id} to {addr}: {e}"));
        client
    }

    /// Connects and waits for the CONNACK; returns the client and when the CONNACK came.
    pub async fn try_connect(
        addr: SocketAddr,
        client_id: &str,
        keep_alive: u16,
    ) -> Result<(Self, Instant), String> {
        let stream = tokio::time::timeout(EXCHANGE_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| "TCP connect timed out".to_owned())?
            .map_err(|e| format!("TCP connect: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let mut client = Self {
            name: client_id.to_owned(),
            stream,
            buf: Vec::new(),
            next_id: 1,
        };
        client
            .send(&Packet::Connect(Connect {
                clean_session: true,
                keep_alive,
                client_id,
                will: None,
                username: None,
                password: None,
            }))
            .await;
        match tokio::time::timeout(EXCHANGE_TIMEOUT, client.read_packet()).await {
            Ok(Some(RawPacket::ConnAck(ack)))
                if ack.code == packet::ConnectReturnCode::Accepted =>
            {
                Ok((client, Instant::now()))
            }
            Ok(other) => Err(format!("expected an accepting CONNACK, got {other:?}")),
            Err(_) => Err("no CONNACK in time".to_owned()),
        }
    }

    /// Encodes and writes one packet.
    pub async fn send(&mut self, packet: &Packet<'_>) {
        let mut out = vec![0u8; packet.encoded_len().expect("a valid packet")];
        packet.encode(&mut out).expect("encode");
        self.stream
            .write_all(&out)
            .await
            .unwrap_or_else(|e| panic!("raw client {}: write: {e}", self.name));
    }

    /// The next packet, or `None` once the peer closed the connection (or broke it).
    pub async fn read_packet(&mut self) -> Option<RawPacket> {
        loop {
            match packet::decode(&self.buf, 1 << 20) {
                Ok(Decoded::Complete { packet, len }) => {
                    let owned = match packet {
                        Packet::ConnAck(ack) => RawPacket::ConnAck(ack),
                        Packet::Publish(p) => RawPacket::Publish {
                            topic: p.topic.to_owned(),
                            payload: p.payload.to_vec(),
                            packet_id: p.qos.packet_id(),
                        },
                        other => RawPacket::Other(other.packet_type()),
                    };
                    self.buf.drain(..len);
                    return Some(owned);
                }
                Ok(Decoded::Incomplete(_)) => {}
                Err(e) => panic!("raw client {}: undecodable input: {e}", self.name),
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn packet_id(&mut self) -> PacketId {
        let id = PacketId::new(self.next_id).expect("non-zero");
        self.next_id = self.next_id.checked_add(1).unwrap_or(1);
        id
    }

    /// Subscribes to one filter and waits for the SUBACK.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) {
        let packet_id = self.packet_id();
        let filters = [Subscription { filter, qos }];
        self.send(&Packet::Subscribe(Subscribe {
            packet_id,
            filters: packet::List::new(&filters),
        }))
        .await;
        self.expect(PacketType::SubAck, "SUBACK").await;
    }

    /// Publishes; at QoS 1 waits for the PUBACK.
    pub async fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS) {
        let qos_id = match qos {
            QoS::AtMostOnce => PublishQos::AtMostOnce,
            QoS::AtLeastOnce => PublishQos::AtLeastOnce(self.packet_id()),
            QoS::ExactlyOnce => unimplemented!("the tests publish QoS 0 and 1 only"),
        };
        self.send(&Packet::Publish(Publish {
            dup: false,
            qos: qos_id,
            retain: false,
            topic,
            payload,
        }))
        .await;
        if qos == QoS::AtLeastOnce {
            self.expect(PacketType::PubAck, "PUBACK").await;
        }
    }

    /// Waits for a packet of type `wanted`, skipping others; panics after the exchange timeout.
    async fn expect(&mut self, wanted: PacketType, what: &str) {
        let name = self.name.clone();
        let wait = async {
            loop {
                match self.read_packet().await {
                    Some(RawPacket::Other(t)) if t == wanted => return,
                    Some(_) => {}
                    None => panic!("raw client {name}: connection closed waiting for {what}"),
                }
            }
        };
        tokio::time::timeout(EXCHANGE_TIMEOUT, wait)
            .await
            .unwrap_or_else(|_| panic!("raw client {name}: no {what} in time"));
    }

    /// The next application message within `timeout` (acknowledged at once if QoS 1), or
    /// `None`.
    pub async fn next_message(&mut self, timeout: Duration) -> Option<(String, Vec<u8>)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let packet = tokio::time::timeout_at(deadline, self.read_packet())
                .await
                .ok()??;
            if let RawPacket::Publish {
                topic,
                payload,
                packet_id,
            } = packet
            {
                if let Some(id) = packet_id {
                    self.send(&Packet::PubAck(PubAck::new(id))).await;
                }
                return Some((topic, payload));
            }
        }
    }
}
