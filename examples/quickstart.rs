//! The quickstart: one client's whole life against a broker, printed as it happens.
//!
//! ```sh
//! cargo run --example quickstart                       # in-process broker on a free port
//! cargo run --example quickstart -- --broker host:port # any MQTT 3.1.1 broker
//! ```
//!
//! It connects (TCP, CONNACK, and the first PINGRESP that makes the session "up"), subscribes,
//! publishes one message at each QoS to itself, shows the messages coming back and the broker's
//! acknowledgements, disconnects cleanly and exits 0. Any failure, or no finish within 30 s,
//! exits 1 with the reason; a bad argument exits 2.

#[path = "support/broker.rs"]
mod broker;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use rand_core::{OsRng, RngCore, TryRngCore};
use shearwater::client::{Buffers, Client, ClientError, ClientEvent, TokioClock};
use shearwater::packet::{QoS, SubAckReturnCode, Subscription};
use shearwater::session::{CloseReason, Config, Event, OutgoingMessage, PublishId};
use shearwater::transport::tokio::TokioTransport;

/// The whole run must finish within this.
const DEADLINE: Duration = Duration::from_secs(30);

/// The three qualities of service, in order.
const QOS: [QoS; 3] = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];

const USAGE: &str = "\
usage: quickstart [--broker HOST:PORT]

Connects, subscribes, publishes one message at QoS 0, 1 and 2 to itself, receives them,
disconnects and exits 0. Without --broker it starts an MQTT broker inside the process
on a free loopback port.";

fn main() -> ExitCode {
    let broker = match parse_args(std::env::args().skip(1)) {
        Ok(Some(broker)) => Some(broker),
        Ok(None) => None,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("quickstart: {message}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let out = Printer::new();
    let broker = match broker {
        Some(broker) => broker,
        None => match broker::InProcessBroker::start() {
            Ok(b) => {
                out.line(
                    "broker",
                    format!("in-process broker (rumqttd) listening on {}", b.addr()),
                );
                b.addr().to_string()
            }
            Err(e) => {
                eprintln!("quickstart: cannot start the in-process broker: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("quickstart: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(async { tokio::time::timeout(DEADLINE, run(&broker, &out)).await }) {
        Ok(Ok(())) => {
            out.line("done", "all three messages went out and came back");
            ExitCode::SUCCESS
        }
        Ok(Err(message)) => {
            eprintln!("quickstart failed: {message}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!(
                "quickstart failed: not finished within {} s (is {broker} an MQTT broker?)",
                DEADLINE.as_secs()
            );
            ExitCode::FAILURE
        }
    }
}

/// `Ok(Some(addr))` for `--broker addr`, `Ok(None)` for no argument, `Err` with a message for
/// anything else (empty for `--help`).
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<String>, String> {
    let mut broker = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--broker" | "-b" => match args.next() {
                Some(addr) if addr.contains(':') => broker = Some(addr),
                Some(addr) => return Err(format!("--broker wants HOST:PORT, not '{addr}'")),
                None => return Err("--broker needs HOST:PORT".into()),
            },
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok(broker)
}

/// Prints lines stamped with the time since the program started.
struct Printer {
    start: Instant,
}

impl Printer {
    fn new() -> Self {
        Self {
            start: Instant::now(),
        }
    }

    fn line(&self, what: &str, text: impl std::fmt::Display) {
        let ms = self.start.elapsed().as_secs_f64() * 1000.0;
        println!("{ms:9.1} ms  {what:<10} {text}");
    }
}

/// What was published, to match the acknowledgements to.
struct Sent {
    id: PublishId,
    qos: QoS,
    acknowledged: bool,
}

async fn run(broker: &str, out: &Printer) -> Result<(), String> {
    let mut rng = OsRng.unwrap_err();
    let client_id = format!("quickstart-{:08x}", rng.next_u32());
    let topics = [0, 1, 2].map(|n| format!("shearwater/{client_id}/qos{n}"));

    let mut config = Config::new(&client_id);
    // A demo should fail fast and say why, not retry forever like a device.
    config.backoff.max_attempts = Some(1);

    let (mut rx, mut tx, mut outbox, mut filters) = ([0; 4096], [0; 4096], [0; 4096], [0; 512]);
    let buffers = Buffers {
        rx: &mut rx,
        tx: &mut tx,
        outbox: &mut outbox,
        filters: &mut filters,
    };
    let transport = TokioTransport::with_host(broker);
    let mut client: Client<'_, _, _, _> =
        Client::new(config, buffers, transport, TokioClock::new(), rng)
            .map_err(|e| format!("configuration refused: {e}"))?;

    out.line(
        "connect",
        format!("client '{client_id}' connecting to {broker}"),
    );
    // One filter per QoS, each subscribed at its own QoS: the broker delivers every message at
    // the QoS it was published with (rumqttd delivers at the subscription's QoS even when the
    // message's is lower, so a single `#` at QoS 2 would show three QoS 2 deliveries).
    // Subscriptions are remembered and sent once the session is up.
    let subscriptions = [0, 1, 2].map(|n| Subscription {
        filter: &topics[n],
        qos: QOS[n],
    });
    client
        .subscribe(&subscriptions)
        .map_err(|e| format!("subscribe refused: {e}"))?;

    let mut sent: Vec<Sent> = Vec::new();
    let mut subscribed = 0;
    let mut received = [false; 3];
    let mut disconnecting = false;
    loop {
        match client.poll().await {
            Ok(ClientEvent::Session(event)) => match event {
                Event::TransportConnected => {
                    out.line("tcp", "TCP connected; CONNECT sent");
                }
                Event::ConnAckReceived { session_present } => out.line(
                    "connack",
                    format!(
                        "CONNACK: accepted (session present: {session_present}); \
                         first PINGREQ sent"
                    ),
                ),
                Event::Up { .. } => {
                    out.line("up", "first PINGRESP: the broker serves, session is up");
                }
                Event::Subscribed { index, code, .. } => {
                    let filter = topics.get(usize::from(index)).map_or("?", |t| t.as_str());
                    if code == SubAckReturnCode::Failure {
                        return Err(format!("the broker refused the subscription to '{filter}'"));
                    }
                    let granted = code as u8;
                    out.line(
                        "subscribed",
                        format!("SUBACK: '{filter}' granted QoS {granted}"),
                    );
                    subscribed += 1;
                }
                Event::Published(id) => {
                    let Some(s) = sent.iter_mut().find(|s| s.id == id) else {
                        return Err(format!("acknowledgement for unknown message {id}"));
                    };
                    s.acknowledged = true;
                    let how = match s.qos {
                        QoS::AtMostOnce => "QoS 0 written to the connection (no ack in QoS 0)",
                        QoS::AtLeastOnce => "QoS 1 acknowledged: PUBACK",
                        QoS::ExactlyOnce => "QoS 2 acknowledged: PUBREC, PUBREL, PUBCOMP",
                    };
                    out.line("ack", format!("message {id}: {how}"));
                }
                Event::Disconnected => out.line("disconnect", "DISCONNECT sent, connection closed"),
                Event::Down {
                    reason: CloseReason::ConnectFailed,
                    ..
                } => {
                    return Err(format!(
                        "cannot connect to {broker}: connection refused or unreachable"
                    ));
                }
                Event::Down { reason, .. } => {
                    return Err(format!("connection to {broker} ended: {reason}"));
                }
                Event::GaveUp => return Err(format!("gave up connecting to {broker}")),
                Event::Expired(id) => return Err(format!("message {id} expired")),
                other => out.line("event", format!("{other:?}")),
            },
            Ok(ClientEvent::Message(m)) => {
                let text = String::from_utf8_lossy(m.payload);
                let ack = match m.qos {
                    QoS::AtMostOnce => "no acknowledgement",
                    QoS::AtLeastOnce => "PUBACK goes back now that it was handled",
                    QoS::ExactlyOnce => "PUBREC goes back now; PUBREL/PUBCOMP follow",
                };
                out.line(
                    "received",
                    format!("'{}' QoS {}: \"{text}\" ({ack})", m.topic, m.qos as u8),
                );
                if let Some(n) = topics.iter().position(|t| t == m.topic)
                    && let Some(slot) = received.get_mut(n)
                {
                    *slot = true;
                }
            }
            // After DISCONNECT the client has nothing more to report.
            Err(ClientError::Stopped) if disconnecting => return Ok(()),
            Err(e) => return Err(format!("client stopped unexpectedly: {e}")),
        }

        if subscribed == topics.len() && sent.is_empty() {
            for (topic, qos) in topics.iter().zip(QOS) {
                let n = qos as u8;
                let payload = format!("hello at QoS {n}");
                let message = OutgoingMessage::new(topic, payload.as_bytes()).qos(qos);
                let id = client
                    .publish(&message)
                    .map_err(|e| format!("publish refused: {e}"))?;
                out.line("publish", format!("message {id} QoS {n} to '{topic}'"));
                sent.push(Sent {
                    id,
                    qos,
                    acknowledged: false,
                });
            }
        }
        let all_acked = sent.len() == 3 && sent.iter().all(|s| s.acknowledged);
        if !disconnecting && all_acked && received.iter().all(|&r| r) {
            out.line("disconnect", "all acknowledged and received: disconnecting");
            client.disconnect();
            disconnecting = true;
        }
    }
}
