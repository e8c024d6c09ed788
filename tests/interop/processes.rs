//! Real brokers as child processes: mosquitto and RabbitMQ (with its MQTT plugin), each on
//! private loopback ports with its own data, config and log directory, run as the current
//! user. The system services are never touched.
//!
//! This file only needs `std`, so other test binaries can include it with
//! `#[path = "../interop/processes.rs"] mod processes;`.
//!
//! ```ignore
//! let mut broker = Broker::mosquitto(&["max_inflight_messages 5"])?; // ready to serve
//! let addr = broker.addr();     // 127.0.0.1:<free port>
//! broker.kill();                // gone: the port refuses connections
//! broker.start()?;              // back on the same port, same directory
//! broker.restart()?;            // both
//! // dropped: killed, directory removed
//! ```
//!
//! # No leaked brokers
//!
//! Each broker runs under a small bash watchdog in its own process group, with the watchdog's
//! stdin a pipe from the test process. When that pipe closes (the handle is dropped, or the
//! test process exits, panics, aborts or is killed) the watchdog kills the broker's process
//! group and removes its directory. A broker therefore never outlives its test binary, even
//! one held in a `static`.

#![allow(dead_code, reason = "each test binary uses a different part")]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Which broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Eclipse mosquitto.
    Mosquitto,
    /// RabbitMQ with `rabbitmq_mqtt`.
    RabbitMq,
}

impl Kind {
    /// The name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Mosquitto => "mosquitto",
            Kind::RabbitMq => "rabbitmq",
        }
    }

    /// How long a start may take before it counts as failed.
    fn ready_timeout(self) -> Duration {
        match self {
            Kind::Mosquitto => Duration::from_secs(10),
            // A cold RabbitMQ node boots in about 10 s on two cores; leave room for slow CI.
            Kind::RabbitMq => Duration::from_secs(60),
        }
    }
}

/// A running (or killed, restartable) broker. Dropping it kills the broker and removes its
/// directory.
pub struct Broker {
    kind: Kind,
    /// The MQTT port on 127.0.0.1.
    port: u16,
    /// Data, configuration and logs.
    dir: PathBuf,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    process: Option<Watchdog>,
}

impl Broker {
    /// Starts mosquitto on a free loopback port, with `extra_config` appended to its
    /// configuration file (one directive per entry), and waits until it answers CONNECT.
    pub fn mosquitto(extra_config: &[&str]) -> Result<Self, String> {
        let program = find_program("SHEARWATER_MOSQUITTO", "mosquitto")?;
        let mut last_error = String::new();
        // A free port can be taken between our probe and the broker's bind: try again.
        for _ in 0..3 {
            let dir = new_dir(Kind::Mosquitto)?;
            let [port] = free_ports::<1>()?;
            let user = current_user();
            let mut config = format!(
                "listener {port} 127.0.0.1\n\
                 allow_anonymous true\n\
                 persistence true\n\
                 persistence_location {}/\n\
                 log_dest stderr\n\
                 log_type error\nlog_type warning\nlog_type notice\nlog_type information\n\
                 connection_messages true\n\
                 user {user}\n",
                dir.display()
            );
            for line in extra_config {
                config.push_str(line);
                config.push('\n');
            }
            let conf = dir.join("mosquitto.conf");
            write(&conf, &config)?;
            let mut broker = Broker {
                kind: Kind::Mosquitto,
                port,
                dir,
                program: program.clone(),
                args: vec!["-c".into(), conf.display().to_string()],
                env: Vec::new(),
                process: None,
            };
            match broker.start() {
                Ok(()) => return Ok(broker),
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    /// Starts a RabbitMQ node with the MQTT plugin on free loopback ports (MQTT, Erlang
    /// distribution and a private epmd; no AMQP listener), anonymous access allowed, and waits
    /// until it answers CONNECT. Takes about 10 s.
    pub fn rabbitmq() -> Result<Self, String> {
        let server = find_program("SHEARWATER_RABBITMQ_SERVER", "rabbitmq-server")?;
        let epmd = find_program("SHEARWATER_EPMD", "epmd")?;
        let mut last_error = String::new();
        for _ in 0..3 {
            let dir = new_dir(Kind::RabbitMq)?;
            let [port, node_port, dist_port, epmd_port] = free_ports::<4>()?;
            let config = format!(
                "listeners.tcp = none\n\
                 mqtt.listeners.tcp.default = 127.0.0.1:{port}\n\
                 mqtt.allow_anonymous = true\n\
                 mqtt.default_user = guest\n\
                 mqtt.default_pass = guest\n\
                 loopback_users = none\n\
                 log.file = false\n\
                 log.console = true\n\
                 log.console.level = info\n"
            );
            write(&dir.join("rabbitmq.conf"), &config)?;
            write(&dir.join("rabbitmq-env.conf"), "")?;
            write(&dir.join("enabled_plugins"), "[rabbitmq_mqtt].\n")?;
            let d = |name: &str| dir.join(name).display().to_string();
            let node = format!("shearwater-test-{}@localhost", std::process::id());
            let env = vec![
                ("HOME".into(), d("")),
                ("RABBITMQ_NODENAME".into(), node),
                ("RABBITMQ_NODE_IP_ADDRESS".into(), "127.0.0.1".into()),
                ("RABBITMQ_NODE_PORT".into(), node_port.to_string()),
                ("RABBITMQ_DIST_PORT".into(), dist_port.to_string()),
                ("ERL_EPMD_PORT".into(), epmd_port.to_string()),
                ("ERL_EPMD_ADDRESS".into(), "127.0.0.1".into()),
                ("RABBITMQ_CONFIG_FILE".into(), d("rabbitmq.conf")),
                ("RABBITMQ_CONF_ENV_FILE".into(), d("rabbitmq-env.conf")),
                ("RABBITMQ_ADVANCED_CONFIG_FILE".into(), d("advanced.config")),
                ("RABBITMQ_ENABLED_PLUGINS_FILE".into(), d("enabled_plugins")),
                ("RABBITMQ_MNESIA_BASE".into(), d("mnesia")),
                ("RABBITMQ_LOG_BASE".into(), d("log")),
                ("RABBITMQ_PLUGINS_EXPAND_DIR".into(), d("plugins-expand")),
                ("RABBITMQ_PID_FILE".into(), d("rabbitmq.pid")),
                // epmd is ours (below), in the broker's process group: erl must not start
                // a daemonized one that would outlive the test.
                (
                    "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS".into(),
                    "-start_epmd false".into(),
                ),
            ];
            // Start our epmd on the private port, wait (bounded) until it answers, then
            // become the node.
            let launcher = "\"$1\" -port \"$ERL_EPMD_PORT\" & \
                 i=0; until \"$1\" -port \"$ERL_EPMD_PORT\" -names >/dev/null 2>&1; do \
                   i=$((i+1)); [ $i -lt 100 ] || { echo 'epmd did not start' >&2; exit 1; }; \
                   sleep 0.05; \
                 done; \
                 exec \"$2\"";
            let mut broker = Broker {
                kind: Kind::RabbitMq,
                port,
                dir,
                program: "sh".into(),
                args: vec![
                    "-c".into(),
                    launcher.into(),
                    "rabbitmq-launcher".into(),
                    epmd.display().to_string(),
                    server.display().to_string(),
                ],
                env,
                process: None,
            };
            match broker.start() {
                Ok(()) => return Ok(broker),
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    /// Which broker this is.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The MQTT port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The MQTT address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The broker's directory (data, configuration, `broker.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the broker process is running.
    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(Watchdog::broker_alive)
    }

    /// Kills the broker at once (SIGKILL to its process group: no goodbye to clients, no
    /// final save). Its directory stays, for [`start`](Self::start). Idempotent.
    pub fn kill(&mut self) {
        if let Some(process) = self.process.take() {
            process.stop(true);
        }
    }

    /// Starts the (killed) broker again on the same port and directory, and waits until it
    /// answers CONNECT.
    pub fn start(&mut self) -> Result<(), String> {
        self.kill();
        let log = self.dir.join("broker.log");
        let process = Watchdog::spawn(&self.dir, &log, &self.program, &self.args, &self.env)
            .map_err(|e| {
                format!(
                    "{}: cannot start {}: {e}",
                    self.kind.name(),
                    self.program.display()
                )
            })?;
        self.process = Some(process);
        let deadline = Instant::now() + self.kind.ready_timeout();
        loop {
            if !self.is_running() {
                let tail = self.log_tail(30);
                self.kill();
                return Err(format!(
                    "{} exited during startup (port {}); log:\n{tail}",
                    self.kind.name(),
                    self.port
                ));
            }
            let last = match probe(self.addr()) {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                let tail = self.log_tail(30);
                self.kill();
                return Err(format!(
                    "{} did not answer CONNECT on port {} within {:?} (last: {last}); log:\n{tail}",
                    self.kind.name(),
                    self.port,
                    self.kind.ready_timeout()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills and starts the broker (same port, same directory).
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        self.start()
    }

    /// The last `lines` lines of the broker's output, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(self.dir.join("broker.log")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(process) = self.process.take() {
            process.stop(false);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The broker's version as its package or binary reports it, for reports.
pub fn version(kind: Kind) -> String {
    let package = match kind {
        Kind::Mosquitto => "mosquitto",
        Kind::RabbitMq => "rabbitmq-server",
    };
    Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", package])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "unknown version".into())
}

/// The bash watchdog around one broker process (see the module docs).
struct Watchdog {
    child: Child,
    stdin: Option<ChildStdin>,
    /// The broker job's pid, which is also its process group id.
    broker_pid: u32,
}

/// `$1` directory, `$2` log file, the rest the broker's command line.
const WATCHDOG: &str = r#"
dir=$1 log=$2; shift 2
set -m                       # the broker job gets its own process group
"$@" </dev/null >>"$log" 2>&1 &
broker=$!
echo "$broker"
IFS= read -r cmd || cmd=     # a line from the test process, or EOF when it is gone
kill -KILL -- "-$broker" 2>/dev/null
wait "$broker" 2>/dev/null
[ "$cmd" = keep ] || rm -rf -- "$dir"
"#;

impl Watchdog {
    fn spawn(
        dir: &Path,
        log: &Path,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
    ) -> std::io::Result<Self> {
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("broker-watchdog")
            .arg(dir)
            .arg(log)
            .arg(program)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            // Its own group: a Ctrl-C meant for the test run does not reach it before the
            // test process is gone, and then it cleans up.
            .process_group(0)
            .spawn()?;
        let stdin = child.stdin.take();
        let mut line = String::new();
        let read = child
            .stdout
            .take()
            .map(|out| BufReader::new(out).read_line(&mut line));
        let broker_pid = match (read, line.trim().parse()) {
            (Some(Ok(_)), Ok(pid)) => pid,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(std::io::Error::other("the watchdog did not report a pid"));
            }
        };
        Ok(Self {
            child,
            stdin,
            broker_pid,
        })
    }

    /// The broker process exists and is not a zombie.
    fn broker_alive(&mut self) -> bool {
        match fs::read_to_string(format!("/proc/{}/stat", self.broker_pid)) {
            // The state follows the parenthesised command name.
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
            // No /proc (not Linux): ask whether the watchdog is still there.
            Err(_) if !Path::new("/proc/self").exists() => {
                matches!(self.child.try_wait(), Ok(None))
            }
            Err(_) => false,
        }
    }

    /// Kills the broker group; with `keep` the watchdog leaves the directory.
    fn stop(mut self, keep: bool) {
        // Dropping stdin closes the pipe: EOF for the watchdog.
        if let Some(mut stdin) = self.stdin.take()
            && keep
        {
            let _ = stdin.write_all(b"keep\n");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() >= deadline => {
                    // The watchdog is stuck: end it and the broker group ourselves, by id.
                    let _ = Command::new("kill")
                        .args(["-KILL", "--", &format!("-{}", self.broker_pid)])
                        .status();
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // `stop` consumed the pipe already; if not, closing it here stops the broker.
        self.stdin.take();
    }
}

/// An MQTT 3.1.1 CONNECT (clean session, keep alive 10 s, client id `probe-<pid>`), a
/// successful CONNACK, then DISCONNECT: the broker serves.
pub fn probe(addr: SocketAddr) -> Result<(), String> {
    let timeout = Duration::from_secs(2);
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let id = format!("probe-{}", std::process::id());
    let mut connect = vec![0x10, 0];
    connect.extend_from_slice(&[0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 10]);
    connect.extend_from_slice(&(id.len() as u16).to_be_bytes());
    connect.extend_from_slice(id.as_bytes());
    connect[1] = (connect.len() - 2) as u8;
    stream
        .write_all(&connect)
        .map_err(|e| format!("write CONNECT: {e}"))?;
    let mut connack = [0u8; 4];
    stream
        .read_exact(&mut connack)
        .map_err(|e| format!("read CONNACK: {e}"))?;
    if connack[0] != 0x20 || connack[1] != 2 || connack[3] != 0 {
        return Err(format!("CONNACK {connack:02x?}"));
    }
    let _ = stream.write_all(&[0xE0, 0]);
    Ok(())
}

/// `N` distinct free loopback ports (held together while probing, so they differ).
fn free_ports<const N: usize>() -> Result<[u16; N], String> {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("no free port: {e}"))?;
    let mut ports = [0; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr().map_err(|e| e.to_string())?.port();
    }
    Ok(ports)
}

/// A fresh directory under the system temp directory.
fn new_dir(kind: Kind) -> Result<PathBuf, String> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "shearwater-{}-{}-{n}",
        kind.name(),
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The program from `$env_var`, else `name` on `PATH` or in the sbin and RabbitMQ
/// directories Debian uses; a clear error if it is not installed.
fn find_program(env_var: &str, name: &str) -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(env_var).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("{env_var}={} is not a file", path.display()))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = [
        "/usr/sbin",
        "/usr/local/sbin",
        "/sbin",
        "/usr/lib/rabbitmq/bin",
    ];
    // The Debian /usr/sbin/rabbitmq-server wrapper switches to the `rabbitmq` user; the
    // real script is in /usr/lib/rabbitmq/bin, so that comes first.
    let dirs: Vec<PathBuf> = if name == "rabbitmq-server" {
        std::iter::once(PathBuf::from("/usr/lib/rabbitmq/bin"))
            .chain(std::env::split_paths(&path))
            .collect()
    } else {
        std::env::split_paths(&path)
            .chain(extra.iter().map(PathBuf::from))
            .collect()
    };
    dirs.into_iter()
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true");
            format!(
                "`{name}` is not installed{}: run .ci/brokers.sh (apt-get install mosquitto \
                 rabbitmq-server) or set {env_var} to its path",
                if ci { " on this CI machine" } else { "" }
            )
        })
}

/// The current user's name, for mosquitto's `user` (which otherwise switches from root to a
/// `mosquitto` user that cannot write our directory).
fn current_user() -> String {
    Command::new("id")
        .arg("-un")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|u| !u.is_empty())
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "root".into())
}
