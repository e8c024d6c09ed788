//! Faults against real processes: a broker killed and restarted, listeners that accept TCP but
//! never serve, a link that goes silent without closing. Timeouts are shortened (backoff
//! 200 ms to 2 s, CONNACK and ping timeouts of 1 to 2 s) so that the loops finish in seconds.

#[cfg(feature = "tokio")]
use {
    crate::fakes::{FakeBroker, Misbehaviour, Relay},
    crate::harness::{ClientTask, Ev, Stamped, reconnect_delays, secs},
    crate::mosquitto::Mosquitto,
    crate::mqtt::RawClient,
    shearwater::packet::QoS,
    shearwater::session::{CloseReason, Config, Event, State},
    shearwater::time::Duration as SwDuration,
    std::collections::BTreeSet,
    std::sync::{Arc, Mutex},
    std::time::{Duration, Instant},
};

#[cfg(feature = "tokio")]
const BACKOFF_MIN: Duration = Duration::from_millis(200);
#[cfg(feature = "tokio")]
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// A configuration with the fault tests' short backoff.
#[cfg(feature = "tokio")]
fn config(client_id: &'static str) -> Config<'static> {
    let mut config = Config::new(client_id);
    config.backoff.min = SwDuration::from_millis(BACKOFF_MIN.as_millis() as u64);
    config.backoff.max = SwDuration::from_millis(BACKOFF_MAX.as_millis() as u64);
    config
}

/// The ceiling of the delay after `failures` failures: `min · 2^failures`, capped.
#[cfg(feature = "tokio")]
fn ceiling(failures: u32) -> Duration {
    (BACKOFF_MIN * 2u32.saturating_pow(failures)).min(BACKOFF_MAX)
}

/// Checks reconnect delays: failures counted 1, 2, 3, ... without a reset, each delay within
/// `[min, min · 2^failures]` capped at `max`, the ceiling reached, the delays spread (jitter:
/// not a function of the failure count, not pinned to the ceiling), and growing: later delays
/// go beyond the first ceiling.
#[cfg(feature = "tokio")]
fn check_backoff(delays: &[(u32, Duration)]) {
    let shown: Vec<String> = delays
        .iter()
        .map(|(f, d)| format!("#{f} {}", secs(*d)))
        .collect();
    assert!(delays.len() >= 4, "too few attempts to judge: {shown:?}");
    for (i, &(failures, delay)) in delays.iter().enumerate() {
        assert_eq!(
            failures,
            delays[0].0 + i as u32,
            "failures not counted up: {shown:?}"
        );
        assert!(
            (BACKOFF_MIN..=ceiling(failures)).contains(&delay),
            "delay #{failures} {} outside [{}, {}]: {shown:?}",
            secs(delay),
            secs(BACKOFF_MIN),
            secs(ceiling(failures))
        );
    }
    let last = delays.last().expect("delays").0;
    assert_eq!(
        ceiling(last),
        BACKOFF_MAX,
        "the cap was never reached: {shown:?}"
    );
    assert!(
        delays.iter().skip(1).any(|&(_, d)| d > ceiling(1)),
        "no delay grew beyond the first ceiling {}: {shown:?}",
        secs(ceiling(1))
    );
    let distinct: BTreeSet<Duration> = delays.iter().map(|&(_, d)| d).collect();
    assert!(
        distinct.len() * 2 > delays.len(),
        "delays not jittered: {shown:?}"
    );
    assert!(
        delays.iter().any(|&(f, d)| d < ceiling(f)),
        "every delay at its ceiling: no jitter: {shown:?}"
    );
}

/// For each `Reconnecting` in `events`, the time until the next attempt visibly started or
/// ended (the next `TransportConnected` or `Down`), next to the drawn delay.
#[cfg(feature = "tokio")]
fn measured_waits(events: &[Stamped]) -> Vec<(Duration, Duration)> {
    let mut waits = Vec::new();
    for (i, s) in events.iter().enumerate() {
        let Ev::Session(Event::Reconnecting { delay, .. }) = s.ev else {
            continue;
        };
        let next = events[i + 1..].iter().find(|n| {
            matches!(n.ev, Ev::Session(Event::TransportConnected)) || n.ev.down_reason().is_some()
        });
        if let Some(next) = next {
            waits.push((
                Duration::from_millis(delay.as_millis()),
                next.at.duration_since(s.at),
            ));
        }
    }
    waits
}

/// The client waited what it drew: never less, and at most a scheduling slop more.
#[cfg(feature = "tokio")]
fn check_waits(waits: &[(Duration, Duration)]) {
    for &(drawn, waited) in waits {
        assert!(
            waited + Duration::from_millis(5) >= drawn
                && waited <= drawn + Duration::from_millis(300),
            "drew {} but waited {}",
            secs(drawn),
            secs(waited)
        );
    }
}

slow_test! {
    /// A broker killed (SIGKILL) and restarted 8 s later on the same port: the client goes
    /// down at once, retries with growing, jittered delays (each one waited as drawn), comes
    /// back up within one capped delay of the restart, renews its subscription, and the QoS 1
    /// messages accepted during the outage arrive after it (at the client's own subscription).
    async fn broker_restart_backoff_grows_with_jitter_and_outage_publishes_arrive() {
        let mut broker = Mosquitto::start(&[]).await;
        let mut client = ClientTask::spawn(
            config("fault-restart"),
            broker.addr(),
            31,
            &[("fault/restart/#", QoS::AtLeastOnce)],
        );
        client.wait_for(Duration::from_secs(10), "Up", Ev::is_up).await;
        client
            .wait_for(Duration::from_secs(5), "Subscribed", |ev| {
                matches!(ev, Ev::Session(Event::Subscribed { .. }))
            })
            .await;

        let before_kill = client.history.len();
        broker.kill();
        let killed = Instant::now();
        let down = client
            .wait_for(Duration::from_secs(5), "Down", |ev| ev.down_reason().is_some())
            .await;
        assert_eq!(down.ev.down_reason(), Some(CloseReason::ClosedByPeer));

        let mut outage_ids = Vec::new();
        let mut outage_topics = BTreeSet::new();
        for n in 0..10 {
            let topic = format!("fault/restart/outage/{n}");
            outage_ids.push(
                client
                    .publish(&topic, n.to_string().as_bytes(), QoS::AtLeastOnce)
                    .await
                    .expect("the store takes it"),
            );
            outage_topics.insert(topic);
        }

        let outage = Duration::from_secs(8);
        client
            .collect_for(outage.saturating_sub(killed.elapsed()))
            .await;
        broker.restart().await;
        let restarted = Instant::now();
        let up = client
            .wait_for(Duration::from_secs(10), "Up after the restart", Ev::is_up)
            .await;
        let events = client.history[before_kill..].to_vec();
        let delays = reconnect_delays(&events);
        let reasons: Vec<_> = events.iter().filter_map(|s| s.ev.down_reason()).collect();
        assert!(
            reasons[1..].iter().all(|r| *r == CloseReason::ConnectFailed),
            "while the broker was down every attempt should fail to connect: {reasons:?}"
        );
        check_backoff(&delays);
        let waits = measured_waits(&events);
        check_waits(&waits);
        let back_after = up.at.duration_since(restarted);
        assert!(
            back_after <= BACKOFF_MAX + Duration::from_millis(500),
            "up {} after the restart: more than one capped delay",
            secs(back_after)
        );

        client.wait_published(Duration::from_secs(10), &outage_ids).await;
        let mut missing = outage_topics.clone();
        let started = Instant::now();
        while !missing.is_empty() {
            if let Some(Ev::Message { topic, .. }) = client.history.iter().map(|s| &s.ev).find(
                |ev| matches!(ev, Ev::Message { topic, .. } if missing.contains(topic)),
            ) {
                let topic = topic.clone();
                missing.remove(&topic);
                continue;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "outage messages never came back: {missing:?}\n{}",
                client.describe_history()
            );
            client.next(Duration::from_millis(200)).await;
        }
        println!(
            "[fault restart] broker down {}: {} attempts, delays {:?}, waited {:?}; up {} \
             after the restart; all {} outage messages delivered",
            secs(restarted.duration_since(killed)),
            delays.len(),
            delays.iter().map(|(f, d)| format!("#{f} {}", secs(*d))).collect::<Vec<_>>(),
            waits.iter().map(|(_, w)| secs(*w)).collect::<Vec<_>>(),
            secs(back_after),
            outage_ids.len()
        );
    }
}

/// Runs a client against `fake` until `downs` attempts failed; returns its events.
#[cfg(feature = "tokio")]
async fn attempts_against(
    fake: &FakeBroker,
    config: Config<'static>,
    seed: u64,
    downs: usize,
) -> ClientTask {
    let mut client = ClientTask::spawn(config, fake.addr(), seed, &[]);
    for _ in 0..downs {
        client
            .wait_for(Duration::from_secs(15), "Down", |ev| {
                ev.down_reason().is_some()
            })
            .await;
    }
    client
}

/// For each attempt, the time from `start` (an event) to its `Down`.
#[cfg(feature = "tokio")]
fn attempt_durations(events: &[Stamped], start: impl Fn(&Ev) -> bool) -> Vec<Duration> {
    let mut durations = Vec::new();
    let mut began = None;
    for s in events {
        if start(&s.ev) {
            began = Some(s.at);
        } else if s.ev.down_reason().is_some()
            && let Some(began) = began.take()
        {
            durations.push(s.at.duration_since(began));
        }
    }
    durations
}

slow_test! {
    /// A listener that accepts TCP and reads the CONNECT but never answers: every attempt
    /// ends in `Down(ConnAckTimeout)` after the CONNACK timeout, the client backs off with
    /// growing delays, and it never reports `Up`.
    async fn listener_without_connack_times_out_and_backs_off_never_up() {
        let fake = FakeBroker::start(Misbehaviour::NoConnAck).await;
        let mut config = config("fault-no-connack");
        config.connack_timeout = SwDuration::from_secs(1);
        let started = Instant::now();
        let client = attempts_against(&fake, config, 41, 6).await;
        let events = &client.history;
        assert!(
            !events.iter().any(|s| s.ev.is_up()
                || matches!(s.ev, Ev::Session(Event::ConnAckReceived { .. }))),
            "up without a CONNACK:\n{}",
            client.describe_history()
        );
        for s in events {
            if let Ev::Session(Event::Down { reason, was_up }) = s.ev {
                assert_eq!((reason, was_up), (CloseReason::ConnAckTimeout, false));
            }
        }
        let waits = attempt_durations(events, |ev| {
            matches!(ev, Ev::Session(Event::TransportConnected))
        });
        for w in &waits {
            assert!(
                (Duration::from_millis(990)..=Duration::from_millis(1300)).contains(w),
                "CONNACK timeout of 1 s took {}",
                secs(*w)
            );
        }
        let delays = reconnect_delays(events);
        check_backoff(&delays);
        check_waits(&measured_waits(events));
        assert_ne!(client.state().await, State::Up);
        let stats = fake.stats();
        assert!(stats.connects >= 6 && stats.pingreqs == 0, "{stats:?}");
        println!(
            "[fault no-CONNACK] {} attempts in {}, each Down(ConnAckTimeout) after {:?}; \
             delays {:?}; listener saw {stats:?}",
            waits.len(),
            secs(started.elapsed()),
            waits.iter().map(|w| secs(*w)).collect::<Vec<_>>(),
            delays.iter().map(|(f, d)| format!("#{f} {}", secs(*d))).collect::<Vec<_>>(),
        );
    }
}

slow_test! {
    /// A listener that sends an accepting CONNACK but never a PINGRESP: the client sends the
    /// first PINGREQ, never reports `Up`, ends each attempt with `Down(NoFirstPingResp)` after
    /// the ping timeout, and keeps backing off with growing delays (no reset: it was never up).
    async fn connack_without_pingresp_is_never_up_and_keeps_backing_off() {
        let fake = FakeBroker::start(Misbehaviour::ConnAckThenSilence).await;
        let mut config = config("fault-no-pingresp");
        config.ping_timeout = SwDuration::from_secs(1);
        let started = Instant::now();
        let client = attempts_against(&fake, config, 53, 6).await;
        let events = &client.history;
        assert!(!events.iter().any(|s| s.ev.is_up()), "{}", client.describe_history());
        for s in events {
            if let Ev::Session(Event::Down { reason, was_up }) = s.ev {
                assert_eq!((reason, was_up), (CloseReason::NoFirstPingResp, false));
            }
        }
        let waits = attempt_durations(events, |ev| {
            matches!(ev, Ev::Session(Event::ConnAckReceived { .. }))
        });
        assert!(waits.len() >= 6, "{}", client.describe_history());
        for w in &waits {
            assert!(
                (Duration::from_millis(990)..=Duration::from_millis(1300)).contains(w),
                "ping timeout of 1 s took {}",
                secs(*w)
            );
        }
        let delays = reconnect_delays(events);
        check_backoff(&delays);
        check_waits(&measured_waits(events));
        assert_ne!(client.state().await, State::Up);
        let stats = fake.stats();
        assert!(
            stats.connects >= 6 && stats.pingreqs >= stats.connects - 1,
            "every accepted connection gets its first PINGREQ: {stats:?}"
        );
        println!(
            "[fault no-PINGRESP] {} attempts in {}, each Down(NoFirstPingResp) {:?} after its \
             CONNACK; delays {:?}; listener saw {stats:?}",
            waits.len(),
            secs(started.elapsed()),
            waits.iter().map(|w| secs(*w)).collect::<Vec<_>>(),
            delays.iter().map(|(f, d)| format!("#{f} {}", secs(*d))).collect::<Vec<_>>(),
        );
    }
}

slow_test! {
    /// A link that goes silent without closing (a relay between client and mosquitto stops
    /// forwarding both ways, sockets open) while the application publishes QoS 0 every
    /// 100 ms (and QoS 1 every 500 ms): the client finds it dead with `Down(PingTimeout)`
    /// within keepalive + ping timeout of the silence, reconnects, the publishes flow again,
    /// and every QoS 1 message that went into the silence is sent again and arrives.
    async fn silent_link_is_found_within_keepalive_plus_ping_timeout() {
        let broker = Mosquitto::start(&[]).await;
        let relay = Relay::start(broker.addr()).await;
        let keep_alive = Duration::from_secs(2);
        let ping_timeout = Duration::from_secs(2);
        let mut config = config("fault-silent");
        config.keep_alive_secs = keep_alive.as_secs() as u16;
        config.ping_timeout = SwDuration::from_secs(ping_timeout.as_secs());
        let mut client = ClientTask::spawn(config, relay.addr(), 67, &[]);

        // A subscriber straight on the broker, recording what arrives.
        let mut watcher = RawClient::connect(broker.addr(), "fault-silent-watcher", 0).await;
        watcher.subscribe("fault/silent/#", QoS::AtLeastOnce).await;
        let arrived = Arc::new(Mutex::new(Vec::<(String, Instant)>::new()));
        let arrivals = arrived.clone();
        let watching = tokio::spawn(async move {
            while let Some((topic, _)) = watcher.next_message(Duration::from_secs(3600)).await {
                arrivals.lock().unwrap().push((topic, Instant::now()));
            }
        });
        client.wait_for(Duration::from_secs(10), "Up", Ev::is_up).await;

        // The application: a QoS 0 message every 100 ms and a QoS 1 message every 500 ms,
        // whatever the link does.
        let handle = client.handle();
        let qos1 = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(Vec::new()));
        let (qos1_sent, refused_by_publisher) = (qos1.clone(), refused.clone());
        let publisher = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            for n in 0u32.. {
                tick.tick().await;
                let (topic, qos) = match n % 5 {
                    0 => (format!("fault/silent/q1/{n}"), QoS::AtLeastOnce),
                    _ => (format!("fault/silent/q0/{n}"), QoS::AtMostOnce),
                };
                match handle.publish(&topic, b"-", qos).await {
                    Ok(id) if qos == QoS::AtLeastOnce => qos1_sent.lock().unwrap().push((id, topic)),
                    Ok(_) => {}
                    Err(e) => refused_by_publisher.lock().unwrap().push((n, e)),
                }
            }
        });

        // Healthy for 3 s: messages arrive.
        client.collect_for(Duration::from_secs(3)).await;
        assert!(
            !arrived.lock().unwrap().is_empty(),
            "nothing got through the healthy relay"
        );

        let before_freeze = client.history.len();
        let frozen = relay.freeze();
        let down = client
            .wait_for(Duration::from_secs(15), "Down", |ev| ev.down_reason().is_some())
            .await;
        let detected = down.at.duration_since(frozen);
        let written_into_silence = client.history[before_freeze..]
            .iter()
            .filter(|s| s.ev.published().is_some())
            .count();
        assert_eq!(down.ev.down_reason(), Some(CloseReason::PingTimeout));
        assert!(
            detected <= keep_alive + ping_timeout + Duration::from_millis(300),
            "found after {}: more than keepalive + ping timeout",
            secs(detected)
        );
        assert!(
            detected + Duration::from_millis(50) >= ping_timeout,
            "found after {}: sooner than a ping can time out",
            secs(detected)
        );
        assert!(written_into_silence > 5, "the application's publishes stalled");

        // A new connection through the relay (new connections are relayed again).
        let up = client
            .wait_for(Duration::from_secs(10), "Up again", Ev::is_up)
            .await;
        client.collect_for(Duration::from_secs(1)).await;
        publisher.abort();
        let fresh = arrived
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, at)| *at > up.at)
            .count();
        assert!(fresh > 0, "nothing arrived after the reconnect");

        // Every QoS 1 message, including those written into the silence, acknowledged and
        // delivered.
        let qos1 = qos1.lock().unwrap().clone();
        let ids: Vec<_> = qos1.iter().map(|(id, _)| *id).collect();
        client.wait_published(Duration::from_secs(10), &ids).await;
        let started = Instant::now();
        let missing = loop {
            let got: BTreeSet<String> =
                arrived.lock().unwrap().iter().map(|(t, _)| t.clone()).collect();
            let missing: Vec<&String> =
                qos1.iter().map(|(_, t)| t).filter(|t| !got.contains(*t)).collect();
            if missing.is_empty() || started.elapsed() > Duration::from_secs(5) {
                break missing;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        watching.abort();
        assert!(missing.is_empty(), "QoS 1 messages lost: {missing:?}");
        let refused = refused.lock().unwrap().clone();
        println!(
            "[fault silent link] keepalive {}, ping timeout {}: Down(PingTimeout) {} after the \
             link went silent ({written_into_silence} messages written into the silence), up \
             again {} later; all {} QoS 1 messages delivered; publishes refused: {refused:?}; \
             relay accepted {} connections",
            secs(keep_alive),
            secs(ping_timeout),
            secs(detected),
            secs(up.at.duration_since(down.at)),
            qos1.len(),
            relay.accepted()
        );
    }
}
