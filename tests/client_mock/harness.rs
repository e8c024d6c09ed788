//! A client over the scripted transport and the virtual clock, with helpers that turn what
//! `poll` returns into owned values.

use std::cell::{RefCell, RefMut};
use std::rc::Rc;

use shearwater::client::{Buffers, Client, ClientError, ClientEvent};
use shearwater::packet::{Packet, QoS};
use shearwater::rand::SplitMix64;
use shearwater::session::{Config, Event, OutgoingMessage, PublishId};

use crate::clock::{Limit, Outcome, Time, VirtualClock, drive};
use crate::transport::{Net, Pkt, Rx, ScriptedTransport, Sent};

/// The client type under test.
pub type TestClient = Client<'static, ScriptedTransport, VirtualClock, SplitMix64>;

/// An application message, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    /// Topic name.
    pub topic: String,
    /// Payload.
    pub payload: Vec<u8>,
    /// QoS it came with.
    pub qos: QoS,
    /// DUP flag.
    pub dup: bool,
    /// It carries an acknowledgement to send.
    pub acked: bool,
}

/// What `poll` returned, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ev {
    /// A session event.
    Session(Event),
    /// A message.
    Message(Msg),
}

impl Ev {
    /// The owned form of `event`.
    pub fn from_client(event: ClientEvent<'_>) -> Self {
        match event {
            ClientEvent::Session(e) => Ev::Session(e),
            ClientEvent::Message(m) => Ev::Message(Msg {
                topic: m.topic.to_owned(),
                payload: m.payload.to_vec(),
                qos: m.qos,
                dup: m.dup,
                acked: m.ack.is_some(),
            }),
        }
    }
}

/// One result of `poll`, owned.
pub type Step = Result<Ev, ClientError>;

/// Buffer sizes of a test client.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Receive buffer.
    pub rx: usize,
    /// Transmit buffer.
    pub tx: usize,
}

impl Default for Sizes {
    fn default() -> Self {
        Self { rx: 512, tx: 512 }
    }
}

/// The client, the network behind it and the virtual time.
pub struct Harness {
    /// The client under test.
    pub client: TestClient,
    /// Its network.
    pub net: Rc<RefCell<Net>>,
    /// Its time.
    pub time: Rc<Time>,
    /// Everything `poll` returned so far, with the virtual time.
    pub history: Vec<(u64, Step)>,
}

/// The default test configuration: keepalive 20 s, ping timeout 5 s, backoff 1 s to 60 s.
pub fn config() -> Config<'static> {
    let mut config = Config::new("mock-client");
    config.max_packet_size = 512;
    config
}

/// A QoS 1 message.
pub fn qos1<'m>(topic: &'m str, payload: &'m [u8]) -> OutgoingMessage<'m> {
    OutgoingMessage::new(topic, payload).qos(QoS::AtLeastOnce)
}

impl Harness {
    /// A client with the default configuration and buffers.
    pub fn new() -> Self {
        Self::with(config(), Sizes::default())
    }

    /// A client with `config` and buffers of `sizes`.
    pub fn with(config: Config<'static>, sizes: Sizes) -> Self {
        let time = Rc::new(Time::default());
        let net = Rc::new(RefCell::new(Net::new(time.clone())));
        let leak = |n: usize| -> &'static mut [u8] { Box::leak(vec![0u8; n].into_boxed_slice()) };
        let buffers = Buffers {
            rx: leak(sizes.rx),
            tx: leak(sizes.tx),
            outbox: leak(4096),
            filters: leak(512),
        };
        let client = Client::new(
            config,
            buffers,
            ScriptedTransport::new(net.clone()),
            VirtualClock::new(time.clone()),
            SplitMix64::new(0x5EED),
        )
        .expect("valid configuration");
        Self {
            client,
            net,
            time,
            history: Vec::new(),
        }
    }

    /// Milliseconds of virtual time.
    pub fn now(&self) -> u64 {
        self.time.now()
    }

    /// The network, to script or inspect.
    pub fn net(&self) -> RefMut<'_, Net> {
        self.net.borrow_mut()
    }

    /// Queues `packet` for the client to read.
    pub fn send(&self, packet: &Packet<'_>) {
        self.net().send(packet);
    }

    /// Queues a receive-script item.
    pub fn push_rx(&self, rx: Rx) {
        self.net().rx.push_back(rx);
    }

    /// Every packet the client wrote, with connection and time.
    pub fn sent(&self) -> Vec<Sent> {
        self.net.borrow().broker.log.clone()
    }

    /// Every packet the client wrote.
    pub fn packets(&self) -> Vec<Pkt> {
        self.net.borrow().broker.packets()
    }

    /// Calls `poll` once, letting virtual time run up to `until` and dropping the future after
    /// `polls` pending polls if given.
    pub fn poll_once(&mut self, until: u64, polls: Option<usize>) -> Outcome<Step> {
        let client = &mut self.client;
        let outcome = drive(
            &self.time,
            async { client.poll().await.map(Ev::from_client) },
            Limit { until, polls },
        );
        if let Outcome::Ready(step) = &outcome {
            self.history.push((self.time.now(), step.clone()));
        }
        outcome
    }

    /// Calls `poll` once with virtual time up to `until`; `None` if nothing came by then.
    pub fn next_until(&mut self, until: u64) -> Option<Step> {
        match self.poll_once(until, None) {
            Outcome::Ready(step) => Some(step),
            Outcome::TimeUp => None,
            Outcome::Stuck => panic!("stuck at {} ms: nothing can happen", self.now()),
            Outcome::Cancelled => unreachable!("no poll limit"),
        }
    }

    /// The next `poll` result within a minute of virtual time.
    #[track_caller]
    pub fn next(&mut self) -> Step {
        let until = self.now() + 60_000;
        self.next_until(until)
            .unwrap_or_else(|| panic!("nothing within a minute, at {} ms", self.now()))
    }

    /// Polls until `stop` holds for a result (returned with everything before it), giving up
    /// at virtual time `until`.
    #[track_caller]
    pub fn run_until(&mut self, until: u64, mut stop: impl FnMut(&Step) -> bool) -> Vec<Step> {
        let mut seen = Vec::new();
        while let Some(step) = self.next_until(until) {
            let done = stop(&step);
            seen.push(step);
            if done {
                return seen;
            }
        }
        panic!(
            "condition not met by {until} ms; saw {seen:#?}\nwire: {:#?}",
            self.sent()
        );
    }

    /// Polls until the session is up; returns what came before.
    #[track_caller]
    pub fn run_until_up(&mut self) -> Vec<Step> {
        let until = self.now() + 120_000;
        self.run_until(until, |s| matches!(s, Ok(Ev::Session(Event::Up { .. }))))
    }

    /// Polls until the event `event` comes.
    #[track_caller]
    pub fn run_until_event(&mut self, event: Event) -> Vec<Step> {
        let until = self.now() + 120_000;
        self.run_until(until, |s| *s == Ok(Ev::Session(event)))
    }

    /// Polls and collects results until nothing more comes by `until`.
    pub fn drain_until(&mut self, until: u64) -> Vec<Step> {
        let mut seen = Vec::new();
        while let Some(step) = self.next_until(until) {
            seen.push(step);
        }
        seen
    }

    /// Publishes, expecting the client to accept.
    #[track_caller]
    pub fn publish(&mut self, message: &OutgoingMessage<'_>) -> PublishId {
        self.client.publish(message).expect("publish accepted")
    }

    /// Asserts that the client's stream decoded cleanly on every connection.
    #[track_caller]
    pub fn assert_clean_stream(&self) {
        let net = self.net.borrow();
        assert!(
            net.broker.stream_errors.is_empty(),
            "corrupt stream: {:?}",
            net.broker.stream_errors
        );
    }
}
