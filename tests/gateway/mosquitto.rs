//! mosquitto for these tests: the interop suite's broker process (private directory, free
//! port, a watchdog that never lets it outlive the test binary, ready once it answers CONNECT),
//! logging everything (so a test can count PINGREQs), started and restarted without blocking
//! the runtime the client under test runs on.

use std::net::SocketAddr;

use crate::processes::Broker;

/// One mosquitto broker.
pub struct Mosquitto {
    /// `None` only while a blocking start runs elsewhere.
    broker: Option<Broker>,
}

impl Mosquitto {
    /// Starts a broker with `extra` configuration lines (e.g. a bridge) and waits until it
    /// serves. A missing mosquitto fails the test with an install hint.
    pub async fn start(extra: &[&str]) -> Self {
        let mut config = vec!["log_type all".to_owned()];
        config.extend(extra.iter().map(|line| (*line).to_owned()));
        let broker = tokio::task::spawn_blocking(move || {
            let lines: Vec<&str> = config.iter().map(String::as_str).collect();
            Broker::mosquitto(&lines)
        })
        .await
        .expect("the start-up task")
        .unwrap_or_else(|e| panic!("mosquitto: {e}"));
        Self {
            broker: Some(broker),
        }
    }

    fn broker(&self) -> &Broker {
        self.broker.as_ref().expect("a broker")
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.broker().addr()
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.broker().port()
    }

    /// SIGKILL: the broker dies at once, as in a crash (no goodbye to its clients).
    pub fn kill(&mut self) {
        self.broker.as_mut().expect("a broker").kill();
    }

    /// Starts it again on the same port, with the same configuration.
    pub async fn restart(&mut self) {
        let mut broker = self.broker.take().expect("a broker");
        let broker = tokio::task::spawn_blocking(move || broker.start().map(|()| broker))
            .await
            .expect("the restart task")
            .unwrap_or_else(|e| panic!("mosquitto restart: {e}"));
        self.broker = Some(broker);
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.broker().dir().join("broker.log")).unwrap_or_default()
    }
}
