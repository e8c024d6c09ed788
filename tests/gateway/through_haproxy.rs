//! The client behind a typical MQTT gateway: HAProxy in TCP mode (idle timeouts 30 s) in front
//! of two mosquitto brokers bridged to each other.
//!
//! The bridge is one mosquitto `connection` on the second broker to the first with
//! `topic # both 1`: one bidirectional bridge, so a subscriber on either broker sees every
//! message (a second bridge the other way would loop messages). HAProxy uses `balance first`
//! (see [`Haproxy::config`]): the client lands on the first broker while it is up, so the test
//! knows which one to kill, and moves only when HAProxy marks it down.

#[cfg(feature = "tokio")]
use {
    crate::fakes::Relay,
    crate::haproxy::Haproxy,
    crate::harness::{ClientTask, Ev, reconnect_delays, secs},
    crate::mosquitto::Mosquitto,
    crate::mqtt::RawClient,
    shearwater::packet::QoS,
    shearwater::session::{CloseReason, Config, Event, State},
    shearwater::time::Duration as SwDuration,
    std::collections::BTreeSet,
    std::time::{Duration, Instant},
};

/// Two bridged brokers behind HAProxy.
#[cfg(feature = "tokio")]
struct Gateway {
    /// `b1` (HAProxy's first server) and `b2` (which holds the bridge to `b1`).
    brokers: [Mosquitto; 2],
    haproxy: Haproxy,
    /// With [`Gateway::start_with_b1_host`]: the address HAProxy knows `b1` by, a relay
    /// that can vanish like a host that is gone.
    b1_host: Option<Relay>,
}

#[cfg(feature = "tokio")]
impl Gateway {
    async fn start() -> Self {
        Self::start_inner(false).await
    }

    /// HAProxy reaches `b1` through a relay (its "host"), which the test can make vanish.
    async fn start_with_b1_host() -> Self {
        Self::start_inner(true).await
    }

    async fn start_inner(b1_behind_host: bool) -> Self {
        let b1 = Mosquitto::start(&[]).await;
        let b1_host = match b1_behind_host {
            true => Some(Relay::start(b1.addr()).await),
            false => None,
        };
        let b1_port = b1_host.as_ref().map_or(b1.port(), |h| h.addr().port());
        let bridge = format!(
            "connection b2-to-b1\n\
             address 127.0.0.1:{}\n\
             remote_clientid bridge-b2-to-b1\n\
             topic # both 1\n\
             bridge_protocol_version mqttv311\n\
             cleansession true\n\
             restart_timeout 1\n",
            b1.port()
        );
        let bridge: Vec<&str> = bridge.lines().collect();
        let b2 = Mosquitto::start(&bridge).await;
        let haproxy = Haproxy::start(&[("b1", b1_port), ("b2", b2.port())]).await;
        haproxy
            .wait_servers(Duration::from_secs(10), "both servers UP", |servers| {
                servers.len() == 2 && servers.iter().all(|s| s.status == "UP")
            })
            .await;
        // The bridge carries messages both ways before any test relies on it.
        check_bridge(&b1, &b2).await;
        check_bridge(&b2, &b1).await;
        Self {
            brokers: [b1, b2],
            haproxy,
            b1_host,
        }
    }

    /// The index (0 for b1, 1 for b2) of the broker HAProxy sends the one client session to.
    async fn client_broker(&self) -> usize {
        let servers = self
            .haproxy
            .wait_servers(Duration::from_secs(5), "one client session", |servers| {
                servers.iter().map(|s| s.sessions).sum::<u32>() == 1
            })
            .await;
        servers
            .iter()
            .position(|s| s.sessions == 1)
            .expect("a server with the session")
    }
}

/// A message published on `from` reaches a subscriber on `to` (bounded wait: the bridge may
/// still be connecting).
#[cfg(feature = "tokio")]
async fn check_bridge(from: &Mosquitto, to: &Mosquitto) {
    let mut subscriber = RawClient::connect(to.addr(), "bridge-probe-sub", 0).await;
    subscriber.subscribe("probe/#", QoS::AtLeastOnce).await;
    let mut publisher = RawClient::connect(from.addr(), "bridge-probe-pub", 0).await;
    let started = Instant::now();
    loop {
        publisher
            .publish("probe/bridge", b"probe", QoS::AtLeastOnce)
            .await;
        if subscriber
            .next_message(Duration::from_millis(300))
            .await
            .is_some()
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the bridge between the brokers does not carry messages"
        );
    }
}

/// The `Received PINGREQ from <client>` lines of a mosquitto log, as Unix seconds.
#[cfg(feature = "tokio")]
fn pingreq_times(log: &str, client_id: &str) -> Vec<u64> {
    let needle = format!("Received PINGREQ from {client_id}");
    log.lines()
        .filter(|line| line.ends_with(&needle))
        .filter_map(|line| line.split(':').next()?.trim().parse().ok())
        .collect()
}

slow_test! {
    /// (a) With the default keepalive (20 s, below HAProxy's 30 s idle timeouts) a client
    /// without any application traffic stays up through 80 s idle: no `Down`, PINGREQs every
    /// 20 s, and the connection still carries a QoS 1 round trip at the end.
    async fn idle_client_with_default_keepalive_survives_75s() {
        let gw = Gateway::start().await;
        let config = Config::new("gw-idle");
        assert_eq!(config.keep_alive_secs, 20, "this test is about the default keepalive");
        let mut client = ClientTask::spawn(config, gw.haproxy.addr(), 11, &[]);
        let up = client
            .wait_for(Duration::from_secs(15), "Up", Ev::is_up)
            .await;

        let idle = Duration::from_secs(80);
        let events = client.collect_for(idle).await;
        let downs: Vec<_> = events.iter().filter(|s| s.ev.down_reason().is_some()).collect();
        assert!(
            downs.is_empty(),
            "the idle client went down: {downs:?}\n{}",
            client.describe_history()
        );
        assert_eq!(client.state().await, State::Up);

        let id = client
            .publish("gw/idle/check", b"still here", QoS::AtLeastOnce)
            .await
            .expect("publish");
        client.wait_published(Duration::from_secs(5), &[id]).await;
        let survived = up.at.elapsed();

        let broker = gw.client_broker().await;
        let pings = pingreq_times(&gw.brokers[broker].log(), "gw-idle");
        let intervals: Vec<u64> = pings.windows(2).map(|w| w[1] - w[0]).collect();
        // The first PINGREQ goes out at CONNACK; then one every 20 s: 20, 40, 60 (and 80).
        assert!(pings.len() >= 4, "PINGREQs seen by the broker: {pings:?}");
        assert!(
            intervals.iter().all(|i| (19..=21).contains(i)),
            "PINGREQ intervals (s, from the broker's log): {intervals:?}"
        );
        println!(
            "[gateway idle] up {} through HAProxy (timeouts 30 s) with keepalive 20 s and no \
             application traffic, no Down; {} PINGREQs, intervals {intervals:?} s",
            secs(survived),
            pings.len()
        );
    }
}

slow_test! {
    /// (b) A raw client that sends CONNECT with keepalive 0 (so mosquitto never cuts it) and
    /// then nothing is cut by HAProxy's idle timeout near 30 s: what happens to a client
    /// whose keepalive is not below the proxy's timeout.
    async fn silent_raw_client_is_cut_near_30s() {
        let gw = Gateway::start().await;
        let (mut raw, connack_at) = RawClient::try_connect(gw.haproxy.addr(), "gw-raw-silent", 0)
            .await
            .expect("CONNECT through HAProxy");
        let closed = tokio::time::timeout(Duration::from_secs(60), raw.read_packet()).await;
        let cut_after = connack_at.elapsed();
        assert_eq!(closed, Ok(None), "expected the connection closed, nothing received");
        assert!(
            (Duration::from_secs(28)..=Duration::from_secs(35)).contains(&cut_after),
            "cut after {}, expected about 30 s",
            secs(cut_after)
        );
        let broker = gw.client_broker_log_mentioning("gw-raw-silent");
        assert!(
            !broker.contains("gw-raw-silent has exceeded timeout"),
            "the broker, not the proxy, cut the client"
        );
        println!(
            "[gateway cut] silent raw client (keepalive 0) cut by HAProxy {} after its CONNACK",
            secs(cut_after)
        );
    }
}

#[cfg(feature = "tokio")]
impl Gateway {
    /// The log of the broker that saw `client_id`.
    fn client_broker_log_mentioning(&self, client_id: &str) -> String {
        self.brokers
            .iter()
            .map(Mosquitto::log)
            .find(|log| log.contains(client_id))
            .expect("a broker saw the client")
    }
}

slow_test! {
    /// (c) Kill the broker the client is on: the client goes down, backs off (through
    /// attempts that HAProxy still sends to the dead broker until it marks it down), comes up
    /// through the other broker, renews its subscription, and every QoS 1 message it accepted
    /// during the outage reaches a subscriber.
    async fn failover_to_the_other_broker_loses_nothing() {
        failover(false).await;
    }
}

slow_test! {
    /// (c) As above, but the killed broker's host goes with it (a container or machine that
    /// is gone): its address no longer answers at all, so until HAProxy marks it down (two
    /// failed checks) HAProxy accepts the client's connections and hangs trying to reach it:
    /// no CONNACK. The CONNACK timeout and the backoff carry the client through to the
    /// other broker.
    async fn failover_when_the_backend_host_vanishes_survives_connack_timeouts() {
        failover(true).await;
    }
}

/// The failover scenario; with `vanish` the dead broker's address goes dark too.
#[cfg(feature = "tokio")]
async fn failover(vanish: bool) {
    let mut gw = match vanish {
        true => Gateway::start_with_b1_host().await,
        false => Gateway::start().await,
    };
    let mut config = Config::new("gw-failover");
    // Short enough for a test, long enough for a loopback broker; with a vanished host,
    // shorter than HAProxy takes to mark it down, so that an attempt times out.
    config.connack_timeout = match vanish {
        true => SwDuration::from_secs(1),
        false => SwDuration::from_secs(2),
    };
    config.backoff.min = SwDuration::from_millis(250);
    config.backoff.max = SwDuration::from_secs(4);
    let mut client = ClientTask::spawn(
        config,
        gw.haproxy.addr(),
        23,
        &[("gw/down/#", QoS::AtLeastOnce)],
    );
    client
        .wait_for(Duration::from_secs(10), "Up", Ev::is_up)
        .await;
    client
        .wait_for(Duration::from_secs(5), "Subscribed", |ev| {
            matches!(ev, Ev::Session(Event::Subscribed { .. }))
        })
        .await;

    let dead = gw.client_broker().await;
    let survivor = 1 - dead;
    assert_eq!(dead, 0, "balance first: the client is on b1");
    let mut watcher = RawClient::connect(gw.brokers[survivor].addr(), "gw-watcher", 0).await;
    watcher.subscribe("gw/up/#", QoS::AtLeastOnce).await;
    let mut feeder = RawClient::connect(gw.brokers[survivor].addr(), "gw-feeder", 0).await;

    // Before the failover, through the bridge both ways.
    let id = client
        .publish("gw/up/before", b"-", QoS::AtLeastOnce)
        .await
        .expect("publish");
    client.wait_published(Duration::from_secs(5), &[id]).await;
    let seen = watcher.next_message(Duration::from_secs(5)).await;
    assert_eq!(seen.map(|m| m.0).as_deref(), Some("gw/up/before"));
    feeder
        .publish("gw/down/before", b"-", QoS::AtLeastOnce)
        .await;
    client
        .wait_for(
            Duration::from_secs(5),
            "gw/down/before",
            |ev| matches!(ev, Ev::Message { topic, .. } if topic == "gw/down/before"),
        )
        .await;

    // The crash.
    let before_kill = client.history.len();
    if let Some(host) = &gw.b1_host {
        host.vanish().await;
    }
    gw.brokers[dead].kill();
    let killed = Instant::now();
    let down = client
        .wait_for(Duration::from_secs(10), "Down", |ev| {
            ev.down_reason().is_some()
        })
        .await;

    // The application goes on publishing while the client is down.
    let mut outage_ids = Vec::new();
    let mut outage_topics = BTreeSet::new();
    for n in 0..10 {
        let topic = format!("gw/up/outage/{n}");
        let id = client
            .publish(&topic, n.to_string().as_bytes(), QoS::AtLeastOnce)
            .await
            .expect("the store takes it");
        outage_ids.push(id);
        outage_topics.insert(topic);
    }

    let up = client
        .wait_for(
            Duration::from_secs(30),
            "Up through the other broker",
            Ev::is_up,
        )
        .await;
    let failover = up.at.duration_since(killed);
    let attempts = &client.history[before_kill..];
    let delays = reconnect_delays(attempts);
    // Each attempt: when it started after the kill, how it ended and how long it took.
    let mut tries = Vec::new();
    let reasons: Vec<_> = attempts.iter().filter_map(|s| s.ev.down_reason()).collect();
    let mut opened = None;
    for s in attempts {
        match &s.ev {
            Ev::Session(Event::TransportConnected) => opened = Some(s.at),
            ev => {
                if let Some(reason) = ev.down_reason() {
                    let how = match opened.take() {
                        Some(o) => {
                            format!("{} after its TCP connect", secs(s.at.duration_since(o)))
                        }
                        None => "the live connection".to_owned(),
                    };
                    tries.push(format!(
                        "{reason:?} at {} ({how})",
                        secs(s.at.duration_since(killed))
                    ));
                }
            }
        }
    }

    // Subscriptions renewed on the new broker: a message published there reaches it.
    client
        .wait_for(Duration::from_secs(5), "the renewed Subscribed", |ev| {
            matches!(ev, Ev::Session(Event::Subscribed { .. }))
        })
        .await;
    feeder
        .publish("gw/down/after", b"-", QoS::AtLeastOnce)
        .await;
    client
        .wait_for(
            Duration::from_secs(5),
            "gw/down/after",
            |ev| matches!(ev, Ev::Message { topic, .. } if topic == "gw/down/after"),
        )
        .await;

    // None of the outage's messages lost.
    client
        .wait_published(Duration::from_secs(10), &outage_ids)
        .await;
    let mut missing = outage_topics.clone();
    while !missing.is_empty() {
        let (topic, _) = watcher
            .next_message(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("the subscriber never got {missing:?}"));
        missing.remove(&topic);
    }

    let servers = gw
        .haproxy
        .wait_servers(Duration::from_secs(5), "b1 DOWN, the client on b2", |s| {
            s[dead].status.starts_with("DOWN") && s[survivor].sessions == 1
        })
        .await;
    assert_eq!(client.state().await, State::Up);
    if vanish {
        assert!(
            reasons.contains(&CloseReason::ConnAckTimeout),
            "no attempt hung on the vanished host: {tries:?}"
        );
    }
    println!(
        "[gateway failover{}] killed b1: Down ({:?}) after {}, Up through b2 {} after the \
             kill; downs {tries:?}; delays {:?}; all {} outage messages \
             delivered; haproxy: {servers:?}",
        if vanish { ", host vanished" } else { "" },
        down.ev.down_reason().expect("a Down"),
        secs(down.at.duration_since(killed)),
        secs(failover),
        delays
            .iter()
            .map(|(f, d)| format!("#{f} {}", secs(*d)))
            .collect::<Vec<_>>(),
        outage_ids.len(),
    );
}
