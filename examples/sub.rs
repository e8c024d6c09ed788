//! `sub`: subscribe and print messages, in the manner of `mosquitto_sub`.
//!
//! ```sh
//! cargo run --example sub -- --broker 127.0.0.1:1883 -t 'sensors/#' -q 1
//! cargo run --example sub -- -t a/+ -t b/# -C 5 -v   # exit after 5 messages
//! ```
//!
//! Each message is printed on standard output as `TOPIC PAYLOAD` (the payload as UTF-8, with
//! invalid bytes replaced). It runs until `-C` messages arrived (then it disconnects and exits
//! 0) or forever; it exits 1 if the broker cannot be reached, refuses the connection or a
//! subscription, or the reconnect attempts run out; 2 for a bad argument. `-h` lists the
//! options.

#[path = "support/cli.rs"]
mod cli;

use std::io::Write;
use std::process::ExitCode;

use cli::{Args, COMMON_USAGE, Common, EXIT_USAGE, Lifecycle};
use shearwater::client::{Buffers, Client, ClientError, ClientEvent, TokioClock};
use shearwater::packet::{QoS, SubAckReturnCode, Subscription};
use shearwater::session::Event;
use shearwater::transport::tokio::TokioTransport;

/// Filters one SUBSCRIBE carries, and the subscription table's size.
const MAX_TOPICS: usize = 8;

const USAGE_HEAD: &str = "\
usage: sub -t FILTER [-t FILTER ...] [options]

Subscribes to the filters and prints each message as TOPIC PAYLOAD.

subscription:
  -t FILTER              topic filter, + and # allowed (required, up to 8)
  -q 0|1|2               QoS of the subscriptions (default 0)
  -C N, -n N, --count N  disconnect and exit after N messages
";

/// The subscribe options.
struct Options {
    common: Common,
    filters: Vec<String>,
    qos: QoS,
    count: Option<u64>,
}

fn parse(mut args: Args) -> Result<Options, String> {
    let mut common = Common::new();
    let (mut filters, mut qos, mut count) = (Vec::new(), QoS::AtMostOnce, None);
    while let Some(flag) = args.next_flag() {
        if common.parse(&flag, &mut args)? {
            continue;
        }
        match flag.as_str() {
            "-t" | "--topic" => filters.push(args.value(&flag)?),
            "-q" | "--qos" => qos = args.qos(&flag)?,
            "-C" | "-n" | "--count" => count = Some(args.number(&flag)?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    if filters.is_empty() {
        return Err("-t FILTER is required".into());
    }
    if filters.len() > MAX_TOPICS {
        return Err(format!("at most {MAX_TOPICS} filters"));
    }
    common.finish("sub")?;
    Ok(Options {
        common,
        filters,
        qos,
        count,
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
            eprintln!("sub: {message}\n\n{USAGE_HEAD}\n{COMMON_USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result = match runtime {
        Ok(rt) => rt.block_on(run(&options)),
        Err(e) => Err((1, format!("cannot start the tokio runtime: {e}"))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("sub: {message}");
            ExitCode::from(code)
        }
    }
}

/// Runs until done; `Err` holds the exit status and the reason.
async fn run(options: &Options) -> Result<(), (u8, String)> {
    let common = &options.common;
    let mut life = Lifecycle::new(common);
    let (mut rx, mut tx, mut outbox, mut filters) =
        ([0; 16 * 1024], [0; 1024], [0; 1024], [0; 2048]);
    let buffers = Buffers {
        rx: &mut rx,
        tx: &mut tx,
        outbox: &mut outbox,
        filters: &mut filters,
    };
    let transport = TokioTransport::with_host(&common.broker);
    let mut client: Client<'_, _, _, _, 4, MAX_TOPICS> = Client::new(
        common.config(),
        buffers,
        transport,
        TokioClock::new(),
        cli::rng(),
    )
    .map_err(|e| (EXIT_USAGE, format!("bad configuration: {e}")))?;
    life.log(format_args!(
        "client '{}' connecting to {}",
        common.client_id, common.broker
    ));

    let subscriptions: Vec<Subscription<'_>> = options
        .filters
        .iter()
        .map(|filter| Subscription {
            filter,
            qos: options.qos,
        })
        .collect();
    // Remembered, sent once up, and renewed after every reconnect without a session.
    client
        .subscribe(&subscriptions)
        .map_err(|e| (EXIT_USAGE, format!("cannot subscribe: {e}")))?;

    let mut received = 0u64;
    let mut disconnecting = false;
    let mut stdout = std::io::stdout().lock();
    loop {
        match client.poll().await {
            Ok(ClientEvent::Session(event)) => match event {
                Event::Subscribed { index, code, .. } => {
                    let filter = options.filters.get(usize::from(index)).map_or("?", |f| f);
                    if code == SubAckReturnCode::Failure {
                        return Err((
                            1,
                            format!("the broker refused the subscription to '{filter}'"),
                        ));
                    }
                    life.log(format_args!(
                        "subscribed to '{filter}': granted QoS {}",
                        code as u8
                    ));
                }
                other => life.event(&other).map_err(|e| (1, e))?,
            },
            Ok(ClientEvent::Message(m)) => {
                let payload = String::from_utf8_lossy(m.payload);
                let written =
                    writeln!(stdout, "{} {payload}", m.topic).and_then(|()| stdout.flush());
                if written.is_err() {
                    // Nobody reads any more (a closed pipe): stop like `mosquitto_sub` would.
                    return Err((1, "cannot write to standard output".into()));
                }
                life.log(format_args!(
                    "message on '{}': QoS {}{}{}",
                    m.topic,
                    m.qos as u8,
                    if m.retain { ", retained" } else { "" },
                    if m.dup { ", duplicate" } else { "" },
                ));
                received += 1;
                if options.count.is_some_and(|n| received >= n) && !disconnecting {
                    // This message's acknowledgement still goes out, before DISCONNECT.
                    life.log(format_args!("{received} messages: disconnecting"));
                    client.disconnect();
                    disconnecting = true;
                }
            }
            Err(ClientError::Stopped) if disconnecting => return Ok(()),
            Err(e) => return Err((1, format!("client stopped: {e}"))),
        }
    }
}
