//! The client under test, driven in its own tokio task exactly as an application would drive
//! it: `poll` in a loop, raced (`select!`) against the application's own requests, which relies
//! on `poll` being cancel-safe. Every event is time-stamped when `poll` returns it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use shearwater::client::{Buffers, Client, ClientEvent, TokioClock};
use shearwater::packet::{QoS, Subscription};
use shearwater::rand::SplitMix64;
use shearwater::session::{
    CloseReason, Config, Event, OutgoingMessage, PublishError, PublishId, State,
};
use shearwater::transport::tokio::TokioTransport;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// The client as the tests build it: 64 stored messages, 8 subscriptions.
pub type TestClient = Client<'static, TokioTransport, TokioClock, SplitMix64, 64, 8, 8>;

/// What `poll` returned, owned.
#[derive(Debug, Clone, PartialEq)]
pub enum Ev {
    /// A session event.
    Session(Event),
    /// An application message.
    Message {
        /// Its topic.
        topic: String,
        /// Its payload.
        payload: Vec<u8>,
    },
    /// `poll` reported the session stopped.
    Stopped,
}

impl Ev {
    /// `Up`.
    pub fn is_up(&self) -> bool {
        matches!(self, Ev::Session(Event::Up { .. }))
    }

    /// The reason, if this is `Down`.
    pub fn down_reason(&self) -> Option<CloseReason> {
        match self {
            Ev::Session(Event::Down { reason, .. }) => Some(*reason),
            _ => None,
        }
    }

    /// `Published(id)`.
    pub fn published(&self) -> Option<PublishId> {
        match self {
            Ev::Session(Event::Published(id)) => Some(*id),
            _ => None,
        }
    }
}

/// An event and when `poll` returned it.
#[derive(Debug, Clone)]
pub struct Stamped {
    /// When.
    pub at: Instant,
    /// What.
    pub ev: Ev,
}

enum Request {
    Publish {
        topic: String,
        payload: Vec<u8>,
        qos: QoS,
        reply: oneshot::Sender<Result<PublishId, PublishError>>,
    },
    State(oneshot::Sender<State>),
}

/// The application's side of a running client: requests, answered by its task. Cheap to
/// clone, so a test can publish from a task of its own.
#[derive(Clone)]
pub struct ClientHandle {
    name: &'static str,
    requests: mpsc::UnboundedSender<Request>,
}

impl ClientHandle {
    /// Hands a message to the client.
    pub async fn publish(
        &self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
    ) -> Result<PublishId, PublishError> {
        let (reply, answer) = oneshot::channel();
        self.request(Request::Publish {
            topic: topic.to_owned(),
            payload: payload.to_vec(),
            qos,
            reply,
        });
        answer.await.expect("the client task answers")
    }

    /// The session's state.
    pub async fn state(&self) -> State {
        let (reply, answer) = oneshot::channel();
        self.request(Request::State(reply));
        answer.await.expect("the client task answers")
    }

    fn request(&self, request: Request) {
        assert!(
            self.requests.send(request).is_ok(),
            "client {}: its task ended",
            self.name
        );
    }
}

/// A client running in its own task. Dropping it stops the task (and closes the socket).
pub struct ClientTask {
    handle: ClientHandle,
    events: mpsc::UnboundedReceiver<Stamped>,
    /// Every event received so far through [`next`](Self::next), in order.
    pub history: Vec<Stamped>,
    task: JoinHandle<()>,
}

/// A leaked buffer: the client borrows its memory for `'static`, as firmware would.
fn buffer(len: usize) -> &'static mut [u8] {
    Box::leak(vec![0u8; len].into_boxed_slice())
}

impl ClientTask {
    /// Builds a client for `addr` and starts driving it; it connects at once. `subscriptions`
    /// are made before the first connect.
    pub fn spawn(
        config: Config<'static>,
        addr: SocketAddr,
        seed: u64,
        subscriptions: &[(&str, QoS)],
    ) -> Self {
        let name = config.client_id;
        let buffers = Buffers {
            rx: buffer(4096),
            tx: buffer(4096),
            outbox: buffer(16 * 1024),
            filters: buffer(512),
        };
        let mut client: TestClient = Client::new(
            config,
            buffers,
            TokioTransport::new(addr),
            TokioClock::new(),
            SplitMix64::new(seed),
        )
        .expect("a valid configuration");
        for (filter, qos) in subscriptions {
            client
                .subscribe(&[Subscription { filter, qos: *qos }])
                .expect("subscribe");
        }
        let (requests, requests_rx) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(drive(client, requests_rx, events_tx));
        Self {
            handle: ClientHandle { name, requests },
            events,
            history: Vec::new(),
            task,
        }
    }

    /// A handle for requests.
    pub fn handle(&self) -> ClientHandle {
        self.handle.clone()
    }

    /// Hands a message to the client.
    pub async fn publish(
        &self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
    ) -> Result<PublishId, PublishError> {
        self.handle.publish(topic, payload, qos).await
    }

    /// The session's state.
    pub async fn state(&self) -> State {
        self.handle.state().await
    }

    /// Whether an event matching `pred` was received already.
    pub fn seen(&self, mut pred: impl FnMut(&Ev) -> bool) -> bool {
        self.history.iter().any(|s| pred(&s.ev))
    }

    /// Waits until every message in `ids` was acknowledged (`Published`), counting events
    /// received earlier too; panics after `timeout`.
    pub async fn wait_published(&mut self, timeout: Duration, ids: &[PublishId]) {
        let mut pending: Vec<PublishId> = ids
            .iter()
            .copied()
            .filter(|id| !self.seen(|ev| ev.published() == Some(*id)))
            .collect();
        while !pending.is_empty() {
            let what = format!("Published for {pending:?}");
            let done = self
                .wait_for(timeout, &what, |ev| {
                    ev.published().is_some_and(|id| pending.contains(&id))
                })
                .await;
            pending.retain(|id| Some(*id) != done.ev.published());
        }
    }

    /// The next event within `timeout`, or `None`.
    pub async fn next(&mut self, timeout: Duration) -> Option<Stamped> {
        let stamped = tokio::time::timeout(timeout, self.events.recv())
            .await
            .ok()??;
        self.history.push(stamped.clone());
        Some(stamped)
    }

    /// Events until `pred` matches one (returned); panics with the history after `timeout`.
    pub async fn wait_for(
        &mut self,
        timeout: Duration,
        what: &str,
        mut pred: impl FnMut(&Ev) -> bool,
    ) -> Stamped {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Some(stamped) if pred(&stamped.ev) => return stamped,
                Some(_) => {}
                None => panic!(
                    "client {}: {what} did not happen within {timeout:?}; events:\n{}",
                    self.handle.name,
                    self.describe_history()
                ),
            }
        }
    }

    /// All events during `duration`.
    pub async fn collect_for(&mut self, duration: Duration) -> Vec<Stamped> {
        let deadline = Instant::now() + duration;
        let mut events = Vec::new();
        while let Some(stamped) = self
            .next(deadline.saturating_duration_since(Instant::now()))
            .await
        {
            events.push(stamped);
        }
        events
    }

    /// The history, one event a line, with times relative to the first event.
    pub fn describe_history(&self) -> String {
        let Some(first) = self.history.first() else {
            return "  (no events)".to_owned();
        };
        self.history
            .iter()
            .map(|s| {
                format!(
                    "  {:>8.3}s {:?}",
                    s.at.duration_since(first.at).as_secs_f64(),
                    s.ev
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for ClientTask {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The application loop: poll, and serve the test's requests between polls.
async fn drive(
    mut client: TestClient,
    mut requests: mpsc::UnboundedReceiver<Request>,
    events: mpsc::UnboundedSender<Stamped>,
) {
    loop {
        let polled = tokio::select! {
            biased;
            request = requests.recv() => {
                match request {
                    Some(request) => serve(&mut client, request),
                    None => return,
                }
                continue;
            }
            polled = async {
                match client.poll().await {
                    Ok(ClientEvent::Session(event)) => Ev::Session(event),
                    Ok(ClientEvent::Message(m)) => Ev::Message {
                        topic: m.topic.to_owned(),
                        payload: m.payload.to_vec(),
                    },
                    Err(_) => Ev::Stopped,
                }
            } => polled,
        };
        let stopped = polled == Ev::Stopped;
        if events
            .send(Stamped {
                at: Instant::now(),
                ev: polled,
            })
            .is_err()
            || stopped
        {
            return;
        }
    }
}

fn serve(client: &mut TestClient, request: Request) {
    match request {
        Request::Publish {
            topic,
            payload,
            qos,
            reply,
        } => {
            let message = OutgoingMessage::new(&topic, &payload).qos(qos);
            let _ = reply.send(client.publish(&message));
        }
        Request::State(reply) => {
            let _ = reply.send(client.session().state());
        }
    }
}

/// The `Reconnecting` delays in `events`, as (failures, delay).
pub fn reconnect_delays(events: &[Stamped]) -> Vec<(u32, Duration)> {
    events
        .iter()
        .filter_map(|s| match s.ev {
            Ev::Session(Event::Reconnecting { failures, delay }) => {
                Some((failures, Duration::from_millis(delay.as_millis())))
            }
            _ => None,
        })
        .collect()
}

/// Seconds, for printing.
pub fn secs(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}
