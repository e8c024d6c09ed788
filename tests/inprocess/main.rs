//! The real client over real loopback TCP against the in-process broker (rumqttd, see
//! `examples/support/broker.rs`): connect and up, wildcard subscriptions, QoS 0/1/2 both
//! ways, retained messages, unsubscribe, will, clean disconnect (the last message acknowledged
//! before DISCONNECT, as a persistent session shows), and a reconnect through a staged broker
//! outage with subscriptions renewed and stored messages delivered.
//!
//! Part of plain `cargo test`: nothing to install, each test has a broker of its own on a free
//! port and a time limit, so nothing hangs.

#[path = "../../examples/support/broker.rs"]
mod broker;
mod relay;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration as StdDuration;

use broker::InProcessBroker;
use rand_core::{OsRng, TryRngCore, UnwrapErr};
use relay::Relay;
use shearwater::client::{Buffers, Client, ClientError, ClientEvent, TokioClock};
use shearwater::packet::{QoS, SubAckReturnCode, Subscription, Will};
use shearwater::session::{CloseReason, Config, Event, OutgoingMessage, PublishId};
use shearwater::time::Duration;
use shearwater::transport::tokio::TokioTransport;

type TestClient = Client<'static, TokioTransport, TokioClock, UnwrapErr<OsRng>>;

/// No test takes longer than this.
const TEST_LIMIT: StdDuration = StdDuration::from_secs(20);
/// How long "nothing arrives" is watched for.
const QUIET: StdDuration = StdDuration::from_millis(300);

/// Runs a test body under [`TEST_LIMIT`].
async fn bounded(body: impl Future<Output = ()>) {
    if tokio::time::timeout(TEST_LIMIT, body).await.is_err() {
        panic!("test did not finish within {TEST_LIMIT:?}");
    }
}

fn start_broker() -> InProcessBroker {
    InProcessBroker::start().expect("in-process broker starts")
}

/// A client for `addr` with fast reconnects; `tweak` changes its configuration. The memory is
/// leaked: a test's clients live until the test process ends anyway.
fn client(addr: SocketAddr, id: &str, tweak: impl FnOnce(&mut Config<'static>)) -> TestClient {
    let id: &'static str = Box::leak(id.to_owned().into_boxed_str());
    let mut config = Config::new(id);
    config.backoff.min = Duration::from_millis(50);
    config.backoff.max = Duration::from_millis(200);
    tweak(&mut config);
    let buffer = |len: usize| -> &'static mut [u8] { Box::leak(vec![0; len].into_boxed_slice()) };
    let buffers = Buffers {
        rx: buffer(4096),
        tx: buffer(4096),
        outbox: buffer(8192),
        filters: buffer(1024),
    };
    Client::new(
        config,
        buffers,
        TokioTransport::new(addr),
        TokioClock::new(),
        OsRng.unwrap_err(),
    )
    .expect("valid configuration")
}

/// A received message, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Msg {
    topic: String,
    payload: Vec<u8>,
    qos: QoS,
    retain: bool,
}

/// What `poll` returned, owned, so the client can be used again at once.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Session(Event),
    Message(Msg),
}

async fn next(client: &mut TestClient) -> Ev {
    match client.poll().await {
        Ok(ClientEvent::Session(event)) => Ev::Session(event),
        Ok(ClientEvent::Message(m)) => Ev::Message(Msg {
            topic: m.topic.to_owned(),
            payload: m.payload.to_vec(),
            qos: m.qos,
            retain: m.retain,
        }),
        Err(e) => panic!("client stopped: {e}"),
    }
}

/// Polls until `done` holds for an event; returns every event up to and including it.
async fn until(client: &mut TestClient, mut done: impl FnMut(&Ev) -> bool) -> Vec<Ev> {
    let mut seen = Vec::new();
    loop {
        let event = next(client).await;
        let last = done(&event);
        seen.push(event);
        if last {
            return seen;
        }
    }
}

/// Polls for [`QUIET`] and returns what came.
async fn during_quiet(client: &mut TestClient) -> Vec<Ev> {
    let mut seen = Vec::new();
    let end = tokio::time::Instant::now() + QUIET;
    while let Ok(event) = tokio::time::timeout_at(end, next(client)).await {
        seen.push(event);
    }
    seen
}

async fn up(client: &mut TestClient) {
    until(client, |e| matches!(e, Ev::Session(Event::Up { .. }))).await;
}

/// Subscribes and waits for every filter's SUBACK, which must grant it.
async fn subscribe(client: &mut TestClient, filters: &[(&str, QoS)]) {
    let subscriptions: Vec<Subscription<'_>> = filters
        .iter()
        .map(|&(filter, qos)| Subscription { filter, qos })
        .collect();
    let request = client
        .subscribe(&subscriptions)
        .expect("subscribe accepted");
    let mut answered = 0;
    until(client, |e| {
        if let Ev::Session(Event::Subscribed {
            request: r, code, ..
        }) = e
            && *r == request
        {
            assert_ne!(*code, SubAckReturnCode::Failure, "subscription refused");
            answered += 1;
        }
        answered == filters.len()
    })
    .await;
}

/// Publishes and waits for the message's `Published`.
async fn publish(client: &mut TestClient, message: OutgoingMessage<'_>) -> PublishId {
    let id = client.publish(&message).expect("publish accepted");
    until(client, |e| *e == Ev::Session(Event::Published(id))).await;
    id
}

/// Polls until `n` messages came; returns them.
async fn messages(client: &mut TestClient, n: usize) -> Vec<Msg> {
    let mut got = Vec::new();
    until(client, |e| {
        if let Ev::Message(m) = e {
            got.push(m.clone());
        }
        got.len() == n
    })
    .await;
    got
}

fn received(events: &[Ev]) -> Vec<&Msg> {
    events
        .iter()
        .filter_map(|e| match e {
            Ev::Message(m) => Some(m),
            Ev::Session(_) => None,
        })
        .collect()
}

#[tokio::test]
async fn connects_and_comes_up_after_the_first_pingresp() {
    bounded(async {
        let broker = start_broker();
        let mut c = client(broker.addr(), "up", |_| {});
        let events = until(&mut c, |e| matches!(e, Ev::Session(Event::Up { .. }))).await;
        assert_eq!(
            events,
            [
                Ev::Session(Event::TransportConnected),
                Ev::Session(Event::ConnAckReceived {
                    session_present: false
                }),
                Ev::Session(Event::Up {
                    session_present: false
                }),
            ]
        );
        assert!(c.session().is_up());
        assert_eq!(c.session().failures(), 0);
    })
    .await;
}

#[tokio::test]
async fn wildcard_subscriptions_receive_what_matches_and_nothing_else() {
    bounded(async {
        let broker = start_broker();
        let mut sub = client(broker.addr(), "wild-sub", |_| {});
        subscribe(
            &mut sub,
            &[("w/+/temp", QoS::AtLeastOnce), ("x/#", QoS::AtLeastOnce)],
        )
        .await;
        let mut publisher = client(broker.addr(), "wild-pub", |_| {});
        for topic in ["w/a/temp", "w/a/humidity", "w/b/temp", "x/y/z", "y/x"] {
            let message = OutgoingMessage::new(topic, topic.as_bytes()).qos(QoS::AtLeastOnce);
            publish(&mut publisher, message).await;
        }

        let mut topics: Vec<String> = messages(&mut sub, 3)
            .await
            .into_iter()
            .map(|m| {
                assert_eq!(m.payload, m.topic.as_bytes());
                m.topic
            })
            .collect();
        topics.sort();
        assert_eq!(topics, ["w/a/temp", "w/b/temp", "x/y/z"]);
        assert_eq!(received(&during_quiet(&mut sub).await), [] as [&Msg; 0]);
    })
    .await;
}

#[tokio::test]
async fn publishes_at_qos_0_1_and_2_are_reported_and_come_back() {
    bounded(async {
        let broker = start_broker();
        let mut c = client(broker.addr(), "qos", |_| {});
        let qos = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];
        let topics = ["q/0", "q/1", "q/2"];
        // One filter per QoS: rumqttd delivers at the subscription's QoS even when the
        // message's is lower, so this shows the QoS each message was published with.
        let filters: Vec<(&str, QoS)> = topics.iter().copied().zip(qos).collect();
        subscribe(&mut c, &filters).await;

        let mut ids = Vec::new();
        for (topic, qos) in topics.iter().zip(qos) {
            let id = c
                .publish(&OutgoingMessage::new(topic, topic.as_bytes()).qos(qos))
                .expect("publish accepted");
            ids.push(id);
        }
        let mut published = Vec::new();
        let mut got = Vec::new();
        until(&mut c, |e| {
            match e {
                Ev::Session(Event::Published(id)) => published.push(*id),
                Ev::Message(m) => got.push(m.clone()),
                _ => {}
            }
            published.len() == 3 && got.len() == 3
        })
        .await;
        published.sort();
        assert_eq!(published, ids);
        got.sort_by(|a, b| a.topic.cmp(&b.topic));
        for ((m, topic), qos) in got.iter().zip(topics).zip(qos) {
            assert_eq!(m.topic, topic);
            assert_eq!(m.payload, topic.as_bytes());
            assert_eq!(m.qos, qos);
            assert!(!m.retain);
        }
        // Every exchange finished: nothing left in the store or on the wire.
        assert!(during_quiet(&mut c).await.is_empty());
        assert_eq!(c.session().stored_messages(), 0);
        assert_eq!(c.session().in_flight(), 0);
    })
    .await;
}

#[tokio::test]
async fn a_retained_message_reaches_later_subscribers_until_cleared() {
    bounded(async {
        let broker = start_broker();
        let mut publisher = client(broker.addr(), "ret-pub", |_| {});
        let message = OutgoingMessage::new("ret/state", b"on")
            .qos(QoS::AtLeastOnce)
            .retain(true);
        publish(&mut publisher, message).await;

        let mut late = client(broker.addr(), "ret-late", |_| {});
        subscribe(&mut late, &[("ret/#", QoS::AtLeastOnce)]).await;
        let got = messages(&mut late, 1).await;
        assert_eq!(got[0].topic, "ret/state");
        assert_eq!(got[0].payload, b"on");
        assert!(got[0].retain, "a retained message arrives with RETAIN set");

        // An empty retained message clears it.
        let clear = OutgoingMessage::new("ret/state", b"")
            .qos(QoS::AtLeastOnce)
            .retain(true);
        publish(&mut publisher, clear).await;
        let mut later = client(broker.addr(), "ret-later", |_| {});
        subscribe(&mut later, &[("ret/#", QoS::AtLeastOnce)]).await;
        assert_eq!(received(&during_quiet(&mut later).await), [] as [&Msg; 0]);
    })
    .await;
}

#[tokio::test]
async fn after_unsubscribe_the_filter_receives_nothing() {
    bounded(async {
        let broker = start_broker();
        let mut sub = client(broker.addr(), "unsub-sub", |_| {});
        subscribe(
            &mut sub,
            &[("u/gone", QoS::AtLeastOnce), ("u/kept", QoS::AtLeastOnce)],
        )
        .await;
        assert_eq!(sub.session().subscriptions(), 2);
        let request = sub.unsubscribe(&["u/gone"]).expect("unsubscribe accepted");
        until(&mut sub, |e| {
            *e == Ev::Session(Event::Unsubscribed(request))
        })
        .await;
        assert_eq!(sub.session().subscriptions(), 1);

        let mut publisher = client(broker.addr(), "unsub-pub", |_| {});
        for topic in ["u/gone", "u/kept"] {
            let message = OutgoingMessage::new(topic, b"x").qos(QoS::AtLeastOnce);
            publish(&mut publisher, message).await;
        }
        let got = messages(&mut sub, 1).await;
        assert_eq!(got[0].topic, "u/kept");
        assert_eq!(received(&during_quiet(&mut sub).await), [] as [&Msg; 0]);
    })
    .await;
}

#[tokio::test]
async fn a_clean_disconnect_stops_the_client_and_drops_the_will() {
    bounded(async {
        let broker = start_broker();
        let mut watcher = client(broker.addr(), "will-watch-1", |_| {});
        subscribe(&mut watcher, &[("will/#", QoS::AtLeastOnce)]).await;

        let mut c = client(broker.addr(), "will-clean", |config| {
            config.will = Some(Will {
                topic: "will/clean",
                payload: b"gone",
                qos: QoS::AtLeastOnce,
                retain: false,
            });
        });
        up(&mut c).await;
        c.disconnect();
        let events = until(&mut c, |e| *e == Ev::Session(Event::Disconnected)).await;
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, Ev::Session(Event::Down { .. }))),
            "a requested disconnect is no Down: {events:?}"
        );
        assert_eq!(c.poll().await.err(), Some(ClientError::Stopped));
        assert_eq!(
            c.publish(&OutgoingMessage::new("will/after", b"x")).err(),
            Some(shearwater::session::PublishError::Stopped)
        );
        // DISCONNECT tells the broker to drop the will.
        assert_eq!(received(&during_quiet(&mut watcher).await), [] as [&Msg; 0]);
    })
    .await;
}

#[tokio::test]
async fn a_lost_connection_publishes_the_will() {
    bounded(async {
        let broker = start_broker();
        let mut watcher = client(broker.addr(), "will-watch-2", |_| {});
        subscribe(&mut watcher, &[("will/#", QoS::AtLeastOnce)]).await;

        let mut relay = Relay::start(broker.addr()).await.expect("relay starts");
        let mut c = client(relay.addr(), "will-lost", |config| {
            config.will = Some(Will {
                topic: "will/lost",
                payload: b"gone",
                qos: QoS::AtLeastOnce,
                retain: false,
            });
        });
        up(&mut c).await;
        relay.cut();
        let got = messages(&mut watcher, 1).await;
        assert_eq!(got[0].topic, "will/lost");
        assert_eq!(got[0].payload, b"gone");
    })
    .await;
}

#[tokio::test]
async fn reconnects_after_an_outage_renews_subscriptions_and_delivers_stored_messages() {
    bounded(async {
        let broker = start_broker();
        let mut relay = Relay::start(broker.addr()).await.expect("relay starts");
        let mut c = client(relay.addr(), "outage", |_| {});
        subscribe(&mut c, &[("outage/in", QoS::AtLeastOnce)]).await;
        // Sees, directly on the broker, what the client publishes, and publishes to it.
        let mut peer = client(broker.addr(), "outage-peer", |_| {});
        subscribe(&mut peer, &[("outage/out", QoS::AtLeastOnce)]).await;

        // The broker goes away: the connection drops, then connections are refused.
        relay.cut();
        let down = until(&mut c, |e| matches!(e, Ev::Session(Event::Down { .. }))).await;
        assert_eq!(
            down.last(),
            Some(&Ev::Session(Event::Down {
                reason: CloseReason::ClosedByPeer,
                was_up: true
            }))
        );
        // Accepted while down: stored until the broker acknowledges them.
        let payloads = ["m0", "m1", "m2"];
        let mut ids = Vec::new();
        for payload in payloads {
            let message =
                OutgoingMessage::new("outage/out", payload.as_bytes()).qos(QoS::AtLeastOnce);
            ids.push(c.publish(&message).expect("stored while down"));
        }
        assert_eq!(c.session().stored_messages(), 3);
        // At least one attempt meets the refusing port and backs off.
        let failed = until(&mut c, |e| {
            matches!(e, Ev::Session(Event::Reconnecting { failures: 2.., .. }))
        })
        .await;
        assert!(failed.contains(&Ev::Session(Event::Down {
            reason: CloseReason::ConnectFailed,
            was_up: false
        })));

        // The broker is back on the same port.
        relay.resume().await.expect("relay listens again");
        let mut renewed = false;
        let mut published = Vec::new();
        let back = until(&mut c, |e| {
            match e {
                Ev::Session(Event::Subscribed { code, .. }) => {
                    assert_eq!(*code, SubAckReturnCode::GrantedQos1);
                    renewed = true;
                }
                Ev::Session(Event::Published(id)) => published.push(*id),
                _ => {}
            }
            renewed && published.len() == 3
        })
        .await;
        assert!(back.contains(&Ev::Session(Event::Up {
            session_present: false
        })));
        published.sort();
        assert_eq!(published, ids);
        assert_eq!(c.session().stored_messages(), 0);
        assert_eq!(c.session().failures(), 0);

        // The stored messages reached the broker...
        let mut got: Vec<Vec<u8>> = messages(&mut peer, 3)
            .await
            .into_iter()
            .map(|m| m.payload)
            .collect();
        got.sort();
        assert_eq!(got, payloads.map(|p| p.as_bytes().to_vec()));
        // ...and the renewed subscription works.
        let message = OutgoingMessage::new("outage/in", b"welcome back").qos(QoS::AtLeastOnce);
        publish(&mut peer, message).await;
        let got = messages(&mut c, 1).await;
        assert_eq!(got[0].topic, "outage/in");
        assert_eq!(got[0].payload, b"welcome back");
    })
    .await;
}

#[tokio::test]
async fn a_message_handled_just_before_disconnect_is_acknowledged() {
    bounded(async {
        let broker = start_broker();
        let persistent = |config: &mut Config<'static>| config.clean_session = false;
        let mut c = client(broker.addr(), "ack-then-leave", persistent);
        subscribe(&mut c, &[("leave/x", QoS::AtLeastOnce)]).await;
        let mut publisher = client(broker.addr(), "ack-then-leave-pub", |_| {});
        let message = OutgoingMessage::new("leave/x", b"once").qos(QoS::AtLeastOnce);
        publish(&mut publisher, message).await;

        // Disconnect right after the message was handed out: its PUBACK still goes first.
        assert_eq!(messages(&mut c, 1).await[0].payload, b"once");
        c.disconnect();
        until(&mut c, |e| *e == Ev::Session(Event::Disconnected)).await;

        // The broker kept the session and has nothing to deliver again.
        let mut again = client(broker.addr(), "ack-then-leave", persistent);
        let events = until(&mut again, |e| matches!(e, Ev::Session(Event::Up { .. }))).await;
        assert!(events.contains(&Ev::Session(Event::Up {
            session_present: true
        })));
        assert_eq!(received(&during_quiet(&mut again).await), [] as [&Msg; 0]);
    })
    .await;
}
