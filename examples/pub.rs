//! `pub`: publish messages from the command line, in the manner of `mosquitto_pub`.
//!
//! ```sh
//! cargo run --example pub -- --broker 127.0.0.1:1883 -t sensors/1 -q 1 -m 21.5
//! cargo run --example pub -- -t sensors/1 -m tick -n 10 --interval 500
//! printf 'a\nb\n' | cargo run --example pub -- -t lines -q 2   # one message per stdin line
//! ```
//!
//! It exits 0 once every message was acknowledged (QoS 1 and 2) or written (QoS 0) and it has
//! disconnected; 1 if the broker cannot be reached, refuses the connection or the
//! reconnect attempts run out; 2 for a bad argument. `-h` lists the options.

#[path = "support/cli.rs"]
mod cli;

use std::collections::HashSet;
use std::io::BufRead;
use std::process::ExitCode;
use std::time::Duration;

use cli::{Args, COMMON_USAGE, Common, EXIT_USAGE, Lifecycle};
use shearwater::client::{Buffers, Client, ClientError, ClientEvent, TokioClock};
use shearwater::packet::QoS;
use shearwater::session::{Event, OutgoingMessage, PublishError};
use shearwater::transport::tokio::TokioTransport;
use tokio::sync::mpsc;

const USAGE_HEAD: &str = "\
usage: pub -t TOPIC [-m MESSAGE] [options]

Publishes MESSAGE to TOPIC, or, without -m, each line of standard input as one message.

message:
  -t TOPIC               topic to publish to (required)
  -m MESSAGE             the payload (without it: one message per line of stdin)
  -q 0|1|2               QoS (default 0)
  -r                     retain
  -n N, -C N, --count N  publish -m N times (default 1), or stop after N stdin lines
  --interval MS          pause between messages (default 0)
";

/// The publish options.
struct Options {
    common: Common,
    topic: String,
    message: Option<String>,
    qos: QoS,
    retain: bool,
    count: Option<u64>,
    interval: Duration,
}

fn parse(mut args: Args) -> Result<Options, String> {
    let mut common = Common::new();
    let (mut topic, mut message, mut qos, mut retain) = (None, None, QoS::AtMostOnce, false);
    let (mut count, mut interval) = (None, 0u64);
    while let Some(flag) = args.next_flag() {
        if common.parse(&flag, &mut args)? {
            continue;
        }
        match flag.as_str() {
            "-t" | "--topic" => topic = Some(args.value(&flag)?),
            "-m" | "--message" => message = Some(args.value(&flag)?),
            "-q" | "--qos" => qos = args.qos(&flag)?,
            "-r" | "--retain" => retain = true,
            "-n" | "-C" | "--count" => count = Some(args.number(&flag)?),
            "--interval" => interval = args.number(&flag)?,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    common.finish("pub")?;
    Ok(Options {
        common,
        topic: topic.ok_or("-t TOPIC is required")?,
        message,
        qos,
        retain,
        count,
        interval: Duration::from_millis(interval),
    })
}

fn main() -> ExitCode {
    let options = match parse(Args::from_env()) {
        Ok(options) => options,
        Err(message) if message.is_empty() => {
            println!("{USAGE_HEAD}\n{COMMON_USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("pub: {message}\n\n{USAGE_HEAD}\n{COMMON_USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result = match runtime {
        Ok(rt) => rt.block_on(run(&options)),
        Err(e) => Err(Failure::Run(format!("cannot start the tokio runtime: {e}"))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("pub: {message}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(Failure::Run(message)) => {
            eprintln!("pub: {message}");
            ExitCode::FAILURE
        }
    }
}

enum Failure {
    /// A bad argument that only the client's configuration check found.
    Usage(String),
    /// Anything that went wrong on the way.
    Run(String),
}

/// Feeds the payloads to publish into a channel: `-m` repeated, or the lines of stdin. The
/// channel holds one payload, so a slow broker slows the reading down.
fn start_source(options: &Options) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(1);
    let count = options.count;
    let interval = options.interval;
    match &options.message {
        Some(message) => {
            let message = message.clone().into_bytes();
            tokio::spawn(async move {
                for i in 0..count.unwrap_or(1) {
                    if i > 0 && !interval.is_zero() {
                        tokio::time::sleep(interval).await;
                    }
                    if tx.send(message.clone()).await.is_err() {
                        return;
                    }
                }
            });
        }
        None => {
            // Stdin blocks: read it on a thread of its own.
            std::thread::spawn(move || {
                let lines = std::io::stdin().lock().lines();
                for (i, line) in lines.map_while(Result::ok).enumerate() {
                    if count.is_some_and(|n| i as u64 >= n) {
                        return;
                    }
                    if i > 0 && !interval.is_zero() {
                        std::thread::sleep(interval);
                    }
                    if tx.blocking_send(line.into_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    }
    rx
}

async fn run(options: &Options) -> Result<(), Failure> {
    let common = &options.common;
    let mut life = Lifecycle::new(common);
    let (mut rx, mut tx, mut outbox, mut filters) = ([0; 8192], [0; 8192], [0; 32 * 1024], [0; 64]);
    let buffers = Buffers {
        rx: &mut rx,
        tx: &mut tx,
        outbox: &mut outbox,
        filters: &mut filters,
    };
    let transport = TokioTransport::with_host(&common.broker);
    let mut client: Client<'_, _, _, _> = Client::new(
        common.config(),
        buffers,
        transport,
        TokioClock::new(),
        cli::rng(),
    )
    .map_err(|e| Failure::Usage(format!("bad configuration: {e}")))?;
    life.log(format_args!(
        "client '{}' connecting to {}",
        common.client_id, common.broker
    ));

    let mut source = start_source(options);
    let mut source_done = false;
    // The next payload, read from the source but not yet accepted by the client.
    let mut held: Option<Vec<u8>> = None;
    // Accepted and not yet acknowledged (QoS 1, 2) or written (QoS 0).
    let mut outstanding = HashSet::new();
    let mut disconnecting = false;
    loop {
        if let Some(payload) = &held {
            let message = OutgoingMessage::new(&options.topic, payload)
                .qos(options.qos)
                .retain(options.retain);
            match client.publish(&message) {
                Ok(id) => {
                    life.log(format_args!("publish {id}: {} bytes", payload.len()));
                    outstanding.insert(id);
                    held = None;
                }
                // The outbound store is full: wait for acknowledgements.
                Err(PublishError::StoreFull | PublishError::StoreBytesFull) => {}
                Err(PublishError::Invalid(e)) => {
                    return Err(Failure::Usage(format!("cannot publish: {e}")));
                }
                Err(e) => return Err(Failure::Run(format!("cannot publish: {e}"))),
            }
        }
        if source_done && held.is_none() && outstanding.is_empty() && !disconnecting {
            life.log("all messages delivered: disconnecting");
            client.disconnect();
            disconnecting = true;
        }
        tokio::select! {
            // `poll` is cancel-safe: losing the race to the source loses nothing.
            result = client.poll() => match result {
                Ok(ClientEvent::Session(event)) => {
                    match event {
                        Event::Published(id) => {
                            outstanding.remove(&id);
                            life.log(format_args!("acknowledged {id}"));
                        }
                        Event::Expired(id) => {
                            return Err(Failure::Run(format!("message {id} expired")));
                        }
                        other => life.event(&other).map_err(Failure::Run)?,
                    }
                }
                Ok(ClientEvent::Message(m)) => {
                    life.log(format_args!("unexpected message on '{}'", m.topic));
                }
                Err(ClientError::Stopped) if disconnecting => return Ok(()),
                Err(e) => return Err(Failure::Run(format!("client stopped: {e}"))),
            },
            payload = source.recv(), if held.is_none() && !source_done => match payload {
                Some(payload) => held = Some(payload),
                None => source_done = true,
            },
        }
    }
}
