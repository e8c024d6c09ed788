//! The device network stack end to end on a host: the shearwater client with
//! `EmbassyNetTransport` on embassy-net (smoltcp) over a TAP device, against a real mosquitto.
//!
//! `run.sh` creates the network namespace and the TAP device, then runs this program inside
//! the namespace; the program starts mosquitto itself (so it can restart it) and checks, each
//! phase with a deadline: connect and up, subscribe, a QoS 1 round trip, keepalive pings on an
//! idle connection, a reconnect after mosquitto is killed and started again (subscription
//! renewed, QoS 1 round trip again), and a graceful disconnect. Exit status 0 when all passed.

use std::fs;
use std::net::{SocketAddrV4, TcpStream};
use std::process::{Child, Command};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use embassy_executor::Spawner;
use embassy_net::{Ipv4Address, Ipv4Cidr, StackResources, StaticConfigV4};
use embassy_net_tuntap::TunTapDevice;
use embassy_time::{Duration, Timer, with_timeout};
use log::{error, info};
use shearwater::client::{Buffers, Client, ClientError, ClientEvent, EmbassyClock};
use shearwater::packet::{QoS, SubAckReturnCode, Subscription};
use shearwater::session::{Config, Event, OutgoingMessage};
use shearwater::transport::embassy_net::{Broker, EmbassyNetTransport};
use static_cell::StaticCell;

const BROKER: Ipv4Address = Ipv4Address::new(10, 77, 0, 1);
const DEVICE: Ipv4Address = Ipv4Address::new(10, 77, 0, 2);
const PORT: u16 = 1883;
const FILTER: &str = "shearwater/netns/#";
const TOPIC: &str = "shearwater/netns/echo";
const KEEP_ALIVE_SECS: u16 = 1;

type DeviceClient = Client<'static, EmbassyNetTransport<'static>, EmbassyClock, SplitMix, 8, 4, 4>;

/// SplitMix64: the reconnect jitter's random numbers.
struct SplitMix(u64);

impl rand_core::RngCore for SplitMix {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        rand_core::impls::fill_bytes_via_next(self, dst);
    }
}

/// The broker process, started and restarted by the test.
struct Mosquitto {
    config: String,
    log: String,
    child: Option<Child>,
}

impl Mosquitto {
    fn start(&mut self) {
        let child = Command::new("mosquitto")
            .args(["-c", &self.config])
            .spawn()
            .expect("mosquitto starts");
        self.child = Some(child);
        let addr = SocketAddrV4::new(BROKER, PORT);
        let deadline = StdInstant::now() + StdDuration::from_secs(10);
        while TcpStream::connect_timeout(&addr.into(), StdDuration::from_millis(200)).is_err() {
            assert!(StdInstant::now() < deadline, "mosquitto does not listen");
            std::thread::sleep(StdDuration::from_millis(50));
        }
        info!("mosquitto listening on {addr}");
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// PINGREQs mosquitto logged from our client so far.
    fn pings(&self) -> usize {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("Received PINGREQ from shearwater-netns"))
            .count()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, TunTapDevice>) -> ! {
    runner.run().await
}

#[embassy_executor::task]
async fn watchdog() {
    Timer::after(Duration::from_secs(90)).await;
    error!("FAILED: the test did not finish within 90 s");
    std::process::exit(1);
}

/// Polls the client until `done` accepts an event; fails the test after `secs`.
async fn until(
    client: &mut DeviceClient,
    what: &str,
    secs: u64,
    mut done: impl FnMut(&ClientEvent<'_>) -> bool,
) {
    let result = with_timeout(Duration::from_secs(secs), async {
        loop {
            match client.poll().await {
                Ok(event) => {
                    info!("event: {event:?}");
                    if done(&event) {
                        return;
                    }
                }
                Err(ClientError::Stopped) => fail(&format!("{what}: the session stopped")),
            }
        }
    })
    .await;
    if result.is_err() {
        fail(&format!("{what}: not within {secs} s"));
    }
    info!("ok: {what}");
}

fn fail(why: &str) -> ! {
    error!("FAILED: {why}");
    std::process::exit(1);
}

/// Publishes at QoS 1 and waits for both the PUBACK and the broker's copy of it.
async fn round_trip(client: &mut DeviceClient, payload: &'static [u8]) {
    let id = client
        .publish(
            &OutgoingMessage::new(TOPIC, payload)
                .qos(QoS::AtLeastOnce)
                .ttl(shearwater::time::Duration::from_secs(10)),
        )
        .unwrap_or_else(|e| fail(&format!("publish refused: {e:?}")));
    let (mut acked, mut echoed) = (false, false);
    until(client, "QoS 1 round trip", 10, |event| {
        match event {
            ClientEvent::Session(Event::Published(p)) if *p == id => acked = true,
            ClientEvent::Message(m) if m.topic == TOPIC && m.payload == payload => {
                assert_eq!(m.qos, QoS::AtLeastOnce);
                echoed = true;
            }
            _ => {}
        }
        acked && echoed
    })
    .await;
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    env_logger::builder()
        .filter_level(log::LevelFilter::Info)
        .parse_default_env()
        .init();
    let tap = std::env::var("TAP").unwrap_or_else(|_| "tap0".into());
    let mut mosquitto = Mosquitto {
        config: std::env::var("MOSQUITTO_CONF").expect("MOSQUITTO_CONF"),
        log: std::env::var("MOSQUITTO_LOG").expect("MOSQUITTO_LOG"),
        child: None,
    };
    mosquitto.start();

    // Opening the TAP brings its carrier up; the first ARP reply can be lost before that.
    let device = TunTapDevice::new(&tap).expect("TAP device opens");
    let operstate = format!("/sys/class/net/{tap}/operstate");
    let deadline = StdInstant::now() + StdDuration::from_secs(10);
    while fs::read_to_string(&operstate).unwrap_or_default().trim() != "up" {
        assert!(StdInstant::now() < deadline, "{tap} never came up");
        std::thread::sleep(StdDuration::from_millis(20));
    }

    let config = embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(DEVICE, 24),
        gateway: None,
        dns_servers: Default::default(),
    });
    static RESOURCES: StaticCell<StackResources<3>> = StaticCell::new();
    let (stack, runner) = embassy_net::new(
        device,
        config,
        RESOURCES.init(StackResources::new()),
        0x5eed,
    );
    spawner.spawn(net_task(runner).unwrap());
    spawner.spawn(watchdog().unwrap());
    stack.wait_config_up().await;

    static SOCKET_RX: StaticCell<[u8; 1024]> = StaticCell::new();
    static SOCKET_TX: StaticCell<[u8; 1024]> = StaticCell::new();
    let transport = EmbassyNetTransport::new(
        stack,
        SOCKET_RX.init([0; 1024]),
        SOCKET_TX.init([0; 1024]),
        Broker::Endpoint((BROKER, PORT).into()),
    );
    static RX: StaticCell<[u8; 512]> = StaticCell::new();
    static TX: StaticCell<[u8; 512]> = StaticCell::new();
    static OUTBOX: StaticCell<[u8; 1024]> = StaticCell::new();
    static FILTERS: StaticCell<[u8; 128]> = StaticCell::new();
    let buffers = Buffers {
        rx: RX.init([0; 512]),
        tx: TX.init([0; 512]),
        outbox: OUTBOX.init([0; 1024]),
        filters: FILTERS.init([0; 128]),
    };
    let mut config = Config::new("shearwater-netns");
    config.keep_alive_secs = KEEP_ALIVE_SECS;
    config.ping_timeout = shearwater::time::Duration::from_secs(2);
    config.backoff.min = shearwater::time::Duration::from_millis(200);
    config.backoff.max = shearwater::time::Duration::from_secs(2);
    let seed = std::process::id().into();
    let mut client: DeviceClient =
        Client::new(config, buffers, transport, EmbassyClock, SplitMix(seed))
            .unwrap_or_else(|e| fail(&format!("config refused: {e}")));
    client
        .subscribe(&[Subscription {
            filter: FILTER,
            qos: QoS::AtLeastOnce,
        }])
        .unwrap_or_else(|e| fail(&format!("subscribe refused: {e:?}")));

    // 1. Connect: up only once the broker answered the first PINGREQ.
    until(&mut client, "connect and up", 10, |e| {
        matches!(e, ClientEvent::Session(Event::Up { .. }))
    })
    .await;
    // 2. The subscription goes out and is granted.
    let subscribed = |e: &ClientEvent<'_>| {
        matches!(
            e,
            ClientEvent::Session(Event::Subscribed {
                code: SubAckReturnCode::GrantedQos1,
                ..
            })
        )
    };
    until(&mut client, "subscribe", 10, subscribed).await;
    // 3. QoS 1 out and back.
    round_trip(&mut client, b"first").await;
    // 4. Idle: keepalive pings answered, no event at all.
    let pings = mosquitto.pings();
    let idle = with_timeout(
        Duration::from_millis(u64::from(KEEP_ALIVE_SECS) * 4_000 + 500),
        client.poll(),
    )
    .await;
    if let Ok(event) = idle {
        fail(&format!("idle connection reported {event:?}"));
    }
    let idle_pings = mosquitto.pings() - pings;
    if idle_pings < 3 {
        fail(&format!("{idle_pings} PINGREQs in 4 keepalive intervals"));
    }
    info!("ok: keepalive ({idle_pings} PINGREQs answered while idle)");
    // 5. The broker dies and comes back: down, backoff, up, subscription renewed, QoS 1 again.
    mosquitto.kill();
    until(&mut client, "connection lost", 10, |e| {
        matches!(e, ClientEvent::Session(Event::Down { was_up: true, .. }))
    })
    .await;
    mosquitto.start();
    until(&mut client, "reconnect and up", 20, |e| {
        matches!(e, ClientEvent::Session(Event::Up { .. }))
    })
    .await;
    until(&mut client, "subscription renewed", 10, subscribed).await;
    round_trip(&mut client, b"second").await;
    // 6. Graceful disconnect.
    client.disconnect();
    until(&mut client, "disconnect", 10, |e| {
        matches!(e, ClientEvent::Session(Event::Disconnected))
    })
    .await;
    info!("netns: 6 passed, 0 failed");
    drop(mosquitto);
    std::process::exit(0);
}
