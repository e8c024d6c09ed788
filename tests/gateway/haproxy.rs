//! HAProxy as a child process of the test: on a free loopback port, with its own temporary
//! directory for configuration, log and stats socket, killed (SIGKILL) and cleaned up on drop.
//! The system service is never touched.
//!
//! A missing binary fails the test with a message that says what to install: these tests never
//! pass silently without the processes they are about.

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a process may take to start listening.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
    listener.local_addr().expect("local address").port()
}

/// `name` on `PATH`, or in the sbin directories where Debian puts daemons (often not on a
/// user's `PATH`). Panics with an install hint when it is nowhere.
pub fn find_binary(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let sbin = ["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from);
    std::env::split_paths(&path)
        .chain(sbin)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` not found on PATH nor in /usr/sbin, /usr/local/sbin, /sbin: these tests \
                 need it (Debian/Ubuntu: `apt-get install -y {package}`)"
            )
        })
}

/// A fresh directory under the system's temporary directory, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `<tmp>/shearwater-gateway-<pid>-<n>-<label>`.
    pub fn new(label: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "shearwater-gateway-{}-{n}-{label}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create a temporary directory");
        Self { path }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// One child process with its log file; SIGKILLed on drop.
struct Process {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Process {
    fn spawn(name: &str, program: PathBuf, args: Vec<String>, log: PathBuf) -> Self {
        let mut process = Self {
            name: name.to_owned(),
            program,
            args,
            log,
            child: None,
        };
        process.start();
        process
    }

    fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        // Append, so that the log of a restarted process keeps its earlier life.
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the log file");
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.program.display()));
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = self.log_text();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The exit status and log, if the process ended.
    fn exited(&mut self) -> Option<String> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(format!(
            "{} exited ({status}); log:\n{}",
            self.name,
            self.log_tail(40)
        ))
    }

    /// Waits until `addr` accepts TCP connections and (if given) the log shows `ready`: the
    /// log proves that this process, not another one on the same port, is listening. Fails
    /// with the log if the process exits or the bounded wait runs out.
    async fn wait_ready(&mut self, addr: SocketAddr, ready: Option<&str>) -> Result<(), String> {
        let started = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(format!(
                    "{} exited during start-up ({status}); log:\n{}",
                    self.name,
                    self.log_tail(40)
                ));
            }
            let logged = ready.is_none_or(|marker| self.log_text().contains(marker));
            if logged {
                let attempt = tokio::time::timeout(
                    Duration::from_millis(500),
                    tokio::net::TcpStream::connect(addr),
                )
                .await;
                if let Ok(Ok(_stream)) = attempt {
                    return Ok(());
                }
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(format!(
                    "{} did not listen on {addr} within {READY_TIMEOUT:?}; log:\n{}",
                    self.name,
                    self.log_tail(40)
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- last lines of {}'s log:\n{}",
                self.name,
                self.log_tail(30)
            );
        }
    }
}

/// The state of one HAProxy server, from the stats socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStat {
    /// The server's name in the configuration.
    pub name: String,
    /// `UP`, `DOWN`, `UP 1/2`, ...
    pub status: String,
    /// Current sessions.
    pub sessions: u32,
}

/// HAProxy in TCP mode on a free loopback port, in front of the given servers, with the
/// timeouts of a typical MQTT gateway and a stats socket to watch the servers' states.
pub struct Haproxy {
    process: Process,
    port: u16,
    socket: PathBuf,
    _dir: TempDir,
}

impl Haproxy {
    /// The configuration used, for the report: every timeout is the typical gateway's.
    ///
    /// - `balance first`: every connection goes to the first server that is up, so the test
    ///   knows where the client lands and that it moves only when that server is down.
    /// - `check inter 1s fall 2 rise 2`: a dead server is marked down after two failed checks,
    ///   about 2 s; until then new connections are still sent to it (and fail).
    /// - `on-marked-down shutdown-sessions`: sessions on a server marked down are cut.
    pub fn config(port: u16, socket: &Path, servers: &[(&str, u16)]) -> String {
        let mut config = format!(
            "global\n\
             \x20   maxconn 256\n\
             \x20   stats socket {socket} mode 600 level admin\n\
             defaults\n\
             \x20   mode tcp\n\
             \x20   timeout client 30s\n\
             \x20   timeout server 30s\n\
             \x20   timeout tunnel 30s\n\
             \x20   timeout client-fin 15s\n\
             \x20   timeout server-fin 15s\n\
             \x20   timeout connect 5s\n\
             \x20   option abortonclose\n\
             frontend mqtt\n\
             \x20   bind 127.0.0.1:{port}\n\
             \x20   default_backend brokers\n\
             backend brokers\n\
             \x20   balance first\n",
            socket = socket.display()
        );
        for (name, server_port) in servers {
            config.push_str(&format!(
                "    server {name} 127.0.0.1:{server_port} check inter 1s fall 2 rise 2 \
                 on-marked-down shutdown-sessions\n"
            ));
        }
        config
    }

    /// Starts HAProxy in front of `servers` (name, port) and waits until it listens and its
    /// stats socket answers.
    pub async fn start(servers: &[(&str, u16)]) -> Self {
        let program = find_binary("haproxy", "haproxy");
        // A free port can be taken by another test between the probe and HAProxy's bind:
        // then try another one.
        for _ in 0..3 {
            let dir = TempDir::new("haproxy");
            let socket = dir.path().join("stats.sock");
            let config = dir.path().join("haproxy.cfg");
            let log = dir.path().join("haproxy.log");
            let port = free_port();
            fs::write(&config, Self::config(port, &socket, servers))
                .expect("write the haproxy configuration");
            // -db: stay in the foreground, no daemon.
            let args = vec![
                "-db".to_owned(),
                "-f".to_owned(),
                config.display().to_string(),
            ];
            let process = Process::spawn("haproxy", program.clone(), args, log);
            let mut haproxy = Self {
                process,
                port,
                socket,
                _dir: dir,
            };
            // HAProxy binds everything before it serves and exits if a bind fails: once the
            // stats socket in this instance's own directory answers, the frontend is ours.
            let started = Instant::now();
            let ready = loop {
                if haproxy.try_servers().await.is_some() {
                    break haproxy.process.wait_ready(addr(port), None).await;
                }
                if let Some(exit) = haproxy.process.exited() {
                    break Err(exit);
                }
                if started.elapsed() > READY_TIMEOUT {
                    break Err(format!(
                        "haproxy's stats socket did not answer; log:\n{}",
                        haproxy.process.log_tail(40)
                    ));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            match ready {
                Ok(()) => return haproxy,
                Err(e) if e.contains("Address already in use") => continue,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("haproxy: no free port after three tries");
    }

    /// The frontend's address: where clients connect.
    pub fn addr(&self) -> SocketAddr {
        addr(self.port)
    }

    /// The servers' states.
    pub async fn servers(&self) -> Vec<ServerStat> {
        self.try_servers()
            .await
            .expect("haproxy's stats socket does not answer")
    }

    /// Waits until `pred` holds for the servers' states (bounded by `timeout`); returns them.
    pub async fn wait_servers(
        &self,
        timeout: Duration,
        what: &str,
        mut pred: impl FnMut(&[ServerStat]) -> bool,
    ) -> Vec<ServerStat> {
        let started = Instant::now();
        loop {
            let servers = self.servers().await;
            if pred(&servers) {
                return servers;
            }
            assert!(
                started.elapsed() < timeout,
                "haproxy: {what} not reached within {timeout:?}: {servers:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn try_servers(&self) -> Option<Vec<ServerStat>> {
        let query = async {
            let mut stream = tokio::net::UnixStream::connect(&self.socket).await.ok()?;
            stream.write_all(b"show stat\n").await.ok()?;
            let mut csv = String::new();
            stream.read_to_string(&mut csv).await.ok()?;
            Some(csv)
        };
        let csv = tokio::time::timeout(Duration::from_secs(2), query)
            .await
            .ok()??;
        parse_stats(&csv)
    }
}

/// The server rows of HAProxy's `show stat` CSV.
fn parse_stats(csv: &str) -> Option<Vec<ServerStat>> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next()?.trim_start_matches("# ").split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name);
    let (sv, scur, status) = (column("svname")?, column("scur")?, column("status")?);
    let servers = lines
        .map(|line| line.split(',').collect::<Vec<_>>())
        .filter(|row| row.len() > status)
        .filter(|row| !matches!(row[sv], "FRONTEND" | "BACKEND"))
        .map(|row| ServerStat {
            name: row[sv].to_owned(),
            status: row[status].to_owned(),
            sessions: row[scur].parse().unwrap_or(0),
        })
        .collect();
    Some(servers)
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}
