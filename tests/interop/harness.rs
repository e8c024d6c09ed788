//! A test client: the real `Client` over `TokioTransport` and `TokioClock`, with owned copies
//! of what it reports and bounded waits that fail with the client's history.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration as StdDuration;

use shearwater::client::{Buffers, Client, ClientEvent, TokioClock};
use shearwater::packet::{QoS, SubAckReturnCode, Subscription, Will};
use shearwater::rand::SplitMix64;
use shearwater::session::{Config, Event, OutgoingMessage, PublishError, PublishId, RequestId};
use shearwater::time::Duration;
use shearwater::transport::tokio::TokioTransport;

/// How long one expectation may take.
pub const WAIT: StdDuration = StdDuration::from_secs(10);
/// How long a whole test may take.
const TEST_LIMIT: StdDuration = StdDuration::from_secs(90);

/// Runs a test body on a current-thread runtime, bounded by [`TEST_LIMIT`].
pub fn run<F: Future<Output = ()>>(body: F) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        if tokio::time::timeout(TEST_LIMIT, body).await.is_err() {
            panic!("test exceeded {TEST_LIMIT:?}");
        }
    });
}

/// A client id (at most 23 characters, the limit a 3.1.1 broker must accept) unique to this
/// process, so tests never meet stale sessions on a shared broker.
pub fn client_id(name: &str) -> &'static str {
    let id = format!("sw{}-{name}", std::process::id() % 100_000);
    assert!(id.len() <= 23, "client id {id} too long");
    leak(id)
}

/// A topic under a prefix unique to this process and test.
pub fn topic(test: &str, rest: &str) -> &'static str {
    leak(format!("sw/{}/{test}/{rest}", std::process::id()))
}

/// Test strings live as long as the test process (as a device's configuration would).
pub fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// The defaults with quick reconnects, for tests that cut connections.
pub fn config(client_id: &'static str) -> Config<'static> {
    let mut config = Config::new(client_id);
    config.backoff.min = Duration::from_millis(50);
    config.backoff.max = Duration::from_millis(500);
    config.max_packet_size = 4096;
    config
}

/// A will message.
pub fn will(topic: &'static str, payload: &'static [u8], qos: QoS) -> Option<Will<'static>> {
    Some(Will {
        topic,
        payload,
        qos,
        retain: false,
    })
}

/// An owned incoming message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    /// Topic name.
    pub topic: String,
    /// Payload.
    pub payload: Vec<u8>,
    /// The QoS it was delivered with.
    pub qos: QoS,
    /// Retained flag.
    pub retain: bool,
    /// DUP flag.
    pub dup: bool,
}

impl Msg {
    /// The payload as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// What the client reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A session event.
    Event(Event),
    /// A message.
    Message(Msg),
    /// `poll` said the session stopped.
    Stopped,
}

type Inner = Client<'static, TokioTransport, TokioClock, SplitMix64>;

/// The real client plus what it reported and the test has not consumed yet.
pub struct TestClient {
    name: &'static str,
    client: Inner,
    /// Reported and not yet taken by an expectation, in order.
    pending: VecDeque<Seen>,
    /// Everything reported, for failure messages.
    history: Vec<Seen>,
}

impl TestClient {
    /// A client for the broker at `addr`; it connects when first driven.
    pub fn new(addr: SocketAddr, config: Config<'static>) -> Self {
        Self::with_rx(addr, config, 4096)
    }

    /// [`new`](Self::new) with a receive buffer of `rx` bytes: the largest packet it takes.
    pub fn with_rx(addr: SocketAddr, config: Config<'static>, rx: usize) -> Self {
        static SEED: AtomicU64 = AtomicU64::new(1);
        let buffer = |n| Box::leak(vec![0u8; n].into_boxed_slice());
        let buffers = Buffers {
            rx: buffer(rx),
            tx: buffer(4096),
            outbox: buffer(8192),
            filters: buffer(1024),
        };
        let client = Client::new(
            config,
            buffers,
            TokioTransport::new(addr),
            TokioClock::new(),
            SplitMix64::new(SEED.fetch_add(1, Ordering::Relaxed)),
        )
        .expect("valid config");
        Self {
            name: config.client_id,
            client,
            pending: VecDeque::new(),
            history: Vec::new(),
        }
    }

    /// The client, for state queries.
    pub fn inner(&self) -> &Inner {
        &self.client
    }

    /// One report from the client, or `None` after `timeout`.
    async fn next(&mut self, timeout: StdDuration) -> Option<Seen> {
        let seen = match tokio::time::timeout(timeout, self.client.poll()).await {
            Err(_) => return None,
            Ok(Err(_)) => Seen::Stopped,
            Ok(Ok(ClientEvent::Session(event))) => Seen::Event(event),
            Ok(Ok(ClientEvent::Message(m))) => Seen::Message(Msg {
                topic: m.topic.to_string(),
                payload: m.payload.to_vec(),
                qos: m.qos,
                retain: m.retain,
                dup: m.dup,
            }),
        };
        if seen != Seen::Stopped || self.history.last() != Some(&Seen::Stopped) {
            self.history.push(seen.clone());
        }
        Some(seen)
    }

    /// The first report (earlier unconsumed ones first) for which `f` says `Some`, within
    /// `timeout`; panics with the client's history otherwise. Other reports stay pending.
    pub async fn expect<T>(
        &mut self,
        what: &str,
        timeout: StdDuration,
        mut f: impl FnMut(&Seen) -> Option<T>,
    ) -> T {
        if let Some(i) = self.pending.iter().position(|s| f(s).is_some())
            && let Some(seen) = self.pending.remove(i)
            && let Some(t) = f(&seen)
        {
            return t;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(seen) = self.next(left).await else {
                self.fail(&format!("timed out after {timeout:?} waiting for {what}"));
            };
            if let Some(t) = f(&seen) {
                return t;
            }
            if seen == Seen::Stopped {
                self.fail(&format!("the client stopped while waiting for {what}"));
            }
            self.pending.push_back(seen);
        }
    }

    fn fail(&self, why: &str) -> ! {
        let mut text = format!("[{}] {why}\nhistory:\n", self.name);
        for seen in &self.history {
            let _ = writeln!(text, "  {seen:?}");
        }
        let _ = writeln!(text, "pending: {:?}", self.pending);
        panic!("{text}");
    }

    /// Waits until the session is up; returns `session_present`.
    pub async fn up(&mut self) -> bool {
        self.expect("Up", WAIT, |s| match s {
            Seen::Event(Event::Up { session_present }) => Some(*session_present),
            _ => None,
        })
        .await
    }

    /// Waits for a message too large for the receive buffer; returns its length.
    pub async fn too_large(&mut self) -> usize {
        self.expect("MessageTooLarge", WAIT, |s| match s {
            Seen::Event(Event::MessageTooLarge { len, .. }) => Some(*len),
            _ => None,
        })
        .await
    }

    /// Waits until the connection goes down; returns the event.
    pub async fn down(&mut self) -> Event {
        self.expect("Down", WAIT, |s| match s {
            Seen::Event(e @ Event::Down { .. }) => Some(*e),
            _ => None,
        })
        .await
    }

    /// Subscribes and waits for the answer: one code per filter.
    pub async fn subscribe(&mut self, filters: &[(&str, QoS)]) -> Vec<SubAckReturnCode> {
        let subs: Vec<Subscription<'_>> = filters
            .iter()
            .map(|&(filter, qos)| Subscription { filter, qos })
            .collect();
        let request = self.client.subscribe(&subs).expect("subscribe accepted");
        self.subscribed(request, filters.len()).await
    }

    /// Waits for the answers to `request` (also a renewal after a reconnect).
    pub async fn subscribed(&mut self, request: RequestId, count: usize) -> Vec<SubAckReturnCode> {
        let mut codes = vec![None; count];
        for _ in 0..count {
            let (index, code) = self
                .expect("SUBACK", WAIT, |s| match s {
                    Seen::Event(Event::Subscribed {
                        request: r,
                        index,
                        code,
                    }) if *r == request => Some((*index, *code)),
                    _ => None,
                })
                .await;
            codes[usize::from(index)] = Some(code);
        }
        codes.into_iter().map(|c| c.expect("every index")).collect()
    }

    /// Unsubscribes and waits for the answer.
    pub async fn unsubscribe(&mut self, filters: &[&str]) {
        let request = self
            .client
            .unsubscribe(filters)
            .expect("unsubscribe accepted");
        self.expect("UNSUBACK", WAIT, |s| {
            (*s == Seen::Event(Event::Unsubscribed(request))).then_some(())
        })
        .await;
    }

    /// Hands a message to the client; does not wait.
    pub fn try_publish(&mut self, message: OutgoingMessage<'_>) -> Result<PublishId, PublishError> {
        self.client.publish(&message)
    }

    /// Publishes and waits until it is acknowledged (QoS 1, 2) or written (QoS 0).
    pub async fn publish(&mut self, message: OutgoingMessage<'_>) -> PublishId {
        let id = self.client.publish(&message).expect("publish accepted");
        self.published(id).await;
        id
    }

    /// Waits for `Published(id)`.
    pub async fn published(&mut self, id: PublishId) {
        self.expect("Published", WAIT, |s| {
            (*s == Seen::Event(Event::Published(id))).then_some(())
        })
        .await;
    }

    /// The next message.
    pub async fn message(&mut self) -> Msg {
        self.expect("a message", WAIT, |s| match s {
            Seen::Message(m) => Some(m.clone()),
            _ => None,
        })
        .await
    }

    /// The next message on `topic`; earlier messages on other topics stay pending.
    pub async fn message_on(&mut self, topic: &str) -> Msg {
        self.expect(&format!("a message on {topic}"), WAIT, |s| match s {
            Seen::Message(m) if m.topic == topic => Some(m.clone()),
            _ => None,
        })
        .await
    }

    /// Takes all pending messages.
    pub fn take_messages(&mut self) -> Vec<Msg> {
        let mut messages = Vec::new();
        self.pending.retain(|s| match s {
            Seen::Message(m) => {
                messages.push(m.clone());
                false
            }
            _ => true,
        });
        messages
    }

    /// Takes all pending session events.
    pub fn take_events(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        self.pending.retain(|s| match s {
            Seen::Event(e) => {
                events.push(*e);
                false
            }
            _ => true,
        });
        events
    }

    /// Everything reported so far.
    pub fn history(&self) -> &[Seen] {
        &self.history
    }

    /// Sends DISCONNECT and waits until the session stopped.
    pub async fn disconnect(&mut self) {
        self.client.disconnect();
        self.expect("Disconnected", WAIT, |s| {
            (*s == Seen::Event(Event::Disconnected)).then_some(())
        })
        .await;
    }

    /// Starts a stopped (disconnected) client again.
    pub fn restart(&mut self) {
        self.client.restart();
    }
}
