//! What the `pub` and `sub` tools share: the connection options and their parsing (by hand, to
//! keep the dev-dependencies lean), the client's configuration, and the `-v` lifecycle log.
//!
//! Used by `#[path]` from `examples/pub.rs` and `examples/sub.rs`.

use std::fmt::Display;
use std::str::FromStr;
use std::time::Instant;

use rand_core::{OsRng, RngCore, TryRngCore, UnwrapErr};
use shearwater::packet::{QoS, Will};
use shearwater::session::{CloseReason, Config, Event};
use shearwater::time::Duration;

/// Exit status for a bad argument or configuration (as with mosquitto's tools, usage errors
/// are not connection errors).
pub const EXIT_USAGE: u8 = 2;

/// The connection options of both tools.
pub const COMMON_USAGE: &str = "\
connection:
  --broker HOST:PORT     broker address (default 127.0.0.1:1883)
  -i ID                  client identifier (default: tool name and random digits)
  -u USER, -P PASSWORD   credentials (a password needs a user)
  -k SECS                keep alive (default 20; must be below --idle-limit)
  --idle-limit SECS      idle timeout of proxies on the way (default 30)
  --no-clean             ask the broker to keep the session (needs -i)
  --attempts N           reconnect attempts after a lost connection (default 3);
                         a broker that refuses the first connection ends the tool at once
  --will-topic TOPIC     will message topic
  --will-payload TEXT    will message payload (default empty)
  --will-qos 0|1|2       will message QoS (default 0)
  --will-retain          retain the will message
  -v                     print the connection lifecycle on stderr
  -h, --help             this help";

/// Command-line arguments, one at a time.
pub struct Args {
    rest: std::vec::IntoIter<String>,
}

impl Args {
    /// The process's arguments after the program name.
    pub fn from_env() -> Self {
        Self {
            rest: std::env::args().skip(1).collect::<Vec<_>>().into_iter(),
        }
    }

    /// The next argument.
    pub fn next_flag(&mut self) -> Option<String> {
        self.rest.next()
    }

    /// The value that must follow `flag`.
    pub fn value(&mut self, flag: &str) -> Result<String, String> {
        self.rest
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))
    }

    /// The number that must follow `flag`.
    pub fn number<T: FromStr>(&mut self, flag: &str) -> Result<T, String> {
        let value = self.value(flag)?;
        value
            .parse()
            .map_err(|_| format!("{flag} wants a number, not '{value}'"))
    }

    /// The QoS that must follow `flag`.
    pub fn qos(&mut self, flag: &str) -> Result<QoS, String> {
        match self.value(flag)?.as_str() {
            "0" => Ok(QoS::AtMostOnce),
            "1" => Ok(QoS::AtLeastOnce),
            "2" => Ok(QoS::ExactlyOnce),
            other => Err(format!("{flag} wants 0, 1 or 2, not '{other}'")),
        }
    }
}

/// The connection options.
pub struct Common {
    /// `host:port`.
    pub broker: String,
    /// The client identifier.
    pub client_id: String,
    /// `-u`.
    pub username: Option<String>,
    /// `-P`.
    pub password: Option<String>,
    /// `-k`.
    pub keep_alive: u16,
    /// `--idle-limit`.
    pub idle_limit: u64,
    /// Not `--no-clean`.
    pub clean: bool,
    /// `--attempts`.
    pub attempts: u32,
    /// `--will-topic`.
    pub will_topic: Option<String>,
    /// `--will-payload`.
    pub will_payload: Option<String>,
    /// `--will-qos`.
    pub will_qos: QoS,
    /// `--will-retain`.
    pub will_retain: bool,
    /// `-v`.
    pub verbose: bool,
}

impl Common {
    /// The defaults.
    pub fn new() -> Self {
        Self {
            broker: "127.0.0.1:1883".into(),
            client_id: String::new(),
            username: None,
            password: None,
            keep_alive: 20,
            idle_limit: 30,
            clean: true,
            attempts: 3,
            will_topic: None,
            will_payload: None,
            will_qos: QoS::AtMostOnce,
            will_retain: false,
            verbose: false,
        }
    }

    /// Takes `flag` (and its value) if it is a connection option; `Ok(false)` if it is not.
    pub fn parse(&mut self, flag: &str, args: &mut Args) -> Result<bool, String> {
        match flag {
            "--broker" | "-b" => {
                let broker = args.value(flag)?;
                if !broker.contains(':') {
                    return Err(format!("--broker wants HOST:PORT, not '{broker}'"));
                }
                self.broker = broker;
            }
            "-i" | "--id" => self.client_id = args.value(flag)?,
            "-u" | "--username" => self.username = Some(args.value(flag)?),
            "-P" | "--pw" | "--password" => self.password = Some(args.value(flag)?),
            "-k" | "--keepalive" => self.keep_alive = args.number(flag)?,
            "--idle-limit" => self.idle_limit = args.number(flag)?,
            "--no-clean" => self.clean = false,
            "--attempts" => self.attempts = args.number(flag)?,
            "--will-topic" => self.will_topic = Some(args.value(flag)?),
            "--will-payload" => self.will_payload = Some(args.value(flag)?),
            "--will-qos" => self.will_qos = args.qos(flag)?,
            "--will-retain" => self.will_retain = true,
            "-v" | "--verbose" => self.verbose = true,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Checks the options that depend on each other and fills in the defaults; `tool` names
    /// the default client identifier.
    pub fn finish(&mut self, tool: &str) -> Result<(), String> {
        if self.password.is_some() && self.username.is_none() {
            return Err("-P needs -u".into());
        }
        if self.will_topic.is_none()
            && (self.will_payload.is_some() || self.will_retain || self.will_qos != QoS::AtMostOnce)
        {
            return Err("--will-payload, --will-qos and --will-retain need --will-topic".into());
        }
        if self.client_id.is_empty() {
            if !self.clean {
                return Err("--no-clean needs a fixed client identifier (-i)".into());
            }
            self.client_id = format!("shearwater-{tool}-{:08x}", rng().next_u32());
        }
        Ok(())
    }

    /// The client configuration these options describe.
    pub fn config(&self) -> Config<'_> {
        let mut config = Config::new(&self.client_id);
        config.clean_session = self.clean;
        config.keep_alive_secs = self.keep_alive;
        config.idle_limit = Duration::from_secs(self.idle_limit);
        config.username = self.username.as_deref();
        config.password = self.password.as_deref().map(str::as_bytes);
        config.backoff.max_attempts = (self.attempts > 0).then_some(self.attempts);
        config.will = self.will_topic.as_deref().map(|topic| Will {
            topic,
            payload: self.will_payload.as_deref().unwrap_or("").as_bytes(),
            qos: self.will_qos,
            retain: self.will_retain,
        });
        config
    }
}

/// The operating system's random generator, for reconnect jitter and client identifiers.
pub fn rng() -> UnwrapErr<OsRng> {
    OsRng.unwrap_err()
}

/// Follows the session's lifecycle events: prints them with `-v`, and says when the tool
/// must stop.
pub struct Lifecycle {
    verbose: bool,
    start: Instant,
    broker: String,
    ever_up: bool,
}

impl Lifecycle {
    /// For the connection to `broker`.
    pub fn new(common: &Common) -> Self {
        Self {
            verbose: common.verbose,
            start: Instant::now(),
            broker: common.broker.clone(),
            ever_up: false,
        }
    }

    /// Prints `text` with `-v`.
    pub fn log(&self, text: impl Display) {
        if self.verbose {
            let ms = self.start.elapsed().as_secs_f64() * 1000.0;
            eprintln!("{ms:9.1} ms  {text}");
        }
    }

    /// Handles a lifecycle event; `Err` with the reason when the tool must stop: the first
    /// connection failed (a refused or unreachable broker ends the tool at once), or the
    /// reconnect attempts ran out.
    pub fn event(&mut self, event: &Event) -> Result<(), String> {
        match *event {
            Event::TransportConnected => self.log(format_args!("TCP connected to {}", self.broker)),
            Event::ConnAckReceived { session_present } => self.log(format_args!(
                "CONNACK: accepted (session present: {session_present})"
            )),
            Event::Up { session_present } => {
                self.ever_up = true;
                self.log(format_args!(
                    "first PINGRESP: up (session present: {session_present})"
                ));
            }
            Event::Down { reason, .. } if !self.ever_up => {
                return Err(match reason {
                    CloseReason::ConnectFailed => format!(
                        "cannot connect to {}: connection refused or unreachable",
                        self.broker
                    ),
                    reason => format!("connection to {} failed: {reason}", self.broker),
                });
            }
            Event::Down { reason, .. } => self.log(format_args!("down: {reason}")),
            Event::Reconnecting { failures, delay } => {
                self.log(format_args!(
                    "reconnecting in {delay} (failures: {failures})"
                ));
            }
            Event::GaveUp => {
                return Err(format!("gave up reconnecting to {}", self.broker));
            }
            Event::Disconnected => self.log("disconnected"),
            Event::EventsLost(n) => self.log(format_args!("{n} events lost")),
            _ => {}
        }
        Ok(())
    }
}
