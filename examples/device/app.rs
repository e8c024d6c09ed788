//! The device application that every board crate runs (included with `#[path]`): the board
//! brings up its network stack and hands over the stack, an identifier, its hardware RNG and
//! its LEDs; this runs shearwater on top.
//!
//! - Broker: `SHEARWATER_BROKER` (host name, resolved by DNS at every connect) and
//!   `SHEARWATER_BROKER_PORT`, read at build time; defaults `test.mosquitto.org:1883`.
//! - Subscribes to `devices/<id>/cmd`: `on`, `off` and `toggle` drive the board's LED.
//! - Publishes telemetry to `devices/<id>/telemetry` at QoS 1 every 5 s, each message with a
//!   30 s time to live: while the broker is unreachable the outbound store keeps the newest
//!   readings and reports the expired ones, never blocking the loop.
//! - Reconnects forever with jittered exponential backoff (the jitter comes from the hardware
//!   RNG), so pulling the cable or losing Wi-Fi and getting it back needs nothing from here.

use core::fmt::Write as _;

use embassy_futures::select::{Either, select};
use embassy_net::Stack;
use embassy_time::{Duration, Instant, Timer};
use heapless::String;
use rand_core::RngCore;
use shearwater::client::{Buffers, Client, ClientEvent, EmbassyClock};
use shearwater::packet::{QoS, Subscription};
use shearwater::session::{Config, Event, OutgoingMessage};
use shearwater::transport::embassy_net::{Broker, EmbassyNetTransport};
use static_cell::StaticCell;

const BROKER_HOST: &str = match option_env!("SHEARWATER_BROKER") {
    Some(host) => host,
    None => "test.mosquitto.org",
};
const BROKER_PORT: u16 = match option_env!("SHEARWATER_BROKER_PORT") {
    Some(port) => parse_port(port),
    None => 1883,
};
const TELEMETRY_EVERY: Duration = Duration::from_secs(5);
const TELEMETRY_TTL: shearwater::time::Duration = shearwater::time::Duration::from_secs(30);

/// What a command asks the board's LED to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub enum LedCommand {
    On,
    Off,
    Toggle,
}

impl LedCommand {
    fn parse(payload: &[u8]) -> Option<Self> {
        match payload {
            b"on" => Some(LedCommand::On),
            b"off" => Some(LedCommand::Off),
            b"toggle" => Some(LedCommand::Toggle),
            _ => None,
        }
    }
}

/// Runs the application forever. `on_command` acts on a command, `on_up` shows whether the
/// session is up.
pub async fn run<R: RngCore>(
    stack: Stack<'static>,
    id: &str,
    rng: R,
    mut on_command: impl FnMut(LedCommand),
    mut on_up: impl FnMut(bool),
) -> ! {
    static CLIENT_ID: StaticCell<String<32>> = StaticCell::new();
    let client_id = CLIENT_ID.init(String::new());
    let _ = write!(client_id, "shearwater-{id}");
    let mut cmd_topic: String<64> = String::new();
    let _ = write!(cmd_topic, "devices/{id}/cmd");
    let mut telemetry_topic: String<64> = String::new();
    let _ = write!(telemetry_topic, "devices/{id}/telemetry");

    static SOCKET_RX: StaticCell<[u8; 1024]> = StaticCell::new();
    static SOCKET_TX: StaticCell<[u8; 1024]> = StaticCell::new();
    let transport = EmbassyNetTransport::new(
        stack,
        SOCKET_RX.init([0; 1024]),
        SOCKET_TX.init([0; 1024]),
        Broker::Host(BROKER_HOST, BROKER_PORT),
    );
    static RX: StaticCell<[u8; 512]> = StaticCell::new();
    static TX: StaticCell<[u8; 512]> = StaticCell::new();
    static OUTBOX: StaticCell<[u8; 1024]> = StaticCell::new();
    static FILTERS: StaticCell<[u8; 64]> = StaticCell::new();
    let buffers = Buffers {
        rx: RX.init([0; 512]),
        tx: TX.init([0; 512]),
        outbox: OUTBOX.init([0; 1024]),
        filters: FILTERS.init([0; 64]),
    };
    let config = Config::new(client_id.as_str());
    let mut client: Client<'_, _, _, _, 8, 2, 4> =
        match Client::new(config, buffers, transport, EmbassyClock, rng) {
            Ok(client) => client,
            Err(e) => defmt::panic!("configuration refused: {}", e),
        };
    if let Err(e) = client.subscribe(&[Subscription {
        filter: cmd_topic.as_str(),
        qos: QoS::AtLeastOnce,
    }]) {
        defmt::panic!("subscription refused: {}", e);
    }
    defmt::info!("broker {}:{}, device {}", BROKER_HOST, BROKER_PORT, id);

    let mut next = Instant::now() + TELEMETRY_EVERY;
    let mut seq = 0u32;
    loop {
        match select(client.poll(), Timer::at(next)).await {
            Either::First(Ok(ClientEvent::Message(message))) => {
                match LedCommand::parse(message.payload) {
                    Some(command) => {
                        defmt::info!("command {} (dup: {})", command, message.dup);
                        on_command(command);
                    }
                    None => defmt::warn!("unknown command {=[u8]:a}", message.payload),
                }
                // The PUBACK goes out at the next poll: after the command was carried out.
            }
            Either::First(Ok(ClientEvent::Session(event))) => {
                defmt::info!("{}", event);
                match event {
                    Event::Up { .. } => on_up(true),
                    Event::Down { .. } => on_up(false),
                    _ => {}
                }
            }
            Either::First(Err(e)) => {
                defmt::warn!("{}: starting again", e);
                client.restart();
            }
            Either::Second(()) => {
                next += TELEMETRY_EVERY;
                seq = seq.wrapping_add(1);
                let mut payload: String<64> = String::new();
                let _ = write!(
                    payload,
                    "{{\"seq\":{},\"uptime_ms\":{}}}",
                    seq,
                    Instant::now().as_millis()
                );
                let message = OutgoingMessage::new(telemetry_topic.as_str(), payload.as_bytes())
                    .qos(QoS::AtLeastOnce)
                    .ttl(TELEMETRY_TTL);
                if let Err(e) = client.publish(&message) {
                    // Backpressure: the store is full of unacknowledged readings.
                    defmt::warn!("telemetry {} not queued: {}", seq, e);
                }
            }
        }
    }
}

const fn parse_port(s: &str) -> u16 {
    let bytes = s.as_bytes();
    let mut port: u32 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let digit = bytes[i];
        assert!(
            digit.is_ascii_digit(),
            "SHEARWATER_BROKER_PORT is not a number"
        );
        port = port * 10 + (digit - b'0') as u32;
        assert!(port <= 65535, "SHEARWATER_BROKER_PORT is above 65535");
        i += 1;
    }
    assert!(port > 0, "SHEARWATER_BROKER_PORT is empty or 0");
    port as u16
}
