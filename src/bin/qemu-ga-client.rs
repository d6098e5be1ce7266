//! qemu-ga-client: the host side. Connects to the agent's unix socket (an agent in
//! unix-listen mode, or the chardev socket QEMU/libvirt creates), synchronises with
//! 0xFF + guest-sync-delimited, sends one command and prints its reply.
//!
//! Exit status: 0 on `return`, 1 on `error` (desc on stderr), 2 on timeout or
//! connection failure.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use qga::protocol::framer::{Frame, Framer};
use qga::registry;
use serde_json::{json, Map, Value};

const USAGE: &str =
    "usage: qemu-ga-client [--socket PATH] [--timeout SECONDS] COMMAND [JSON-ARGUMENTS]
  --socket PATH      agent socket (default $QGA_SOCKET, else /var/run/qemu-ga.sock)
  --timeout SECONDS  how long to wait for each reply (default 30)
";

/// The socket when neither `--socket` nor `$QGA_SOCKET` names one: an agent run with
/// `-m unix-listen -p /var/run/qemu-ga.sock` next to its pidfile.
const DEFAULT_SOCKET: &str = "/var/run/qemu-ga.sock";

/// Longer than the agent's slowest command (a user check, killed after
/// `user-check-timeout`), so a slow check is answered rather than raced.
fn default_timeout() -> Duration {
    Duration::from_secs(3 * qga::config::Config::default().user_check_timeout)
}

/// Prints to stdout; a reader that went away (`| head`, `| true`) is no error: the
/// output is not wanted, so exit quietly instead of panicking on EPIPE.
fn print_or_exit(text: &str) {
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() != io::ErrorKind::BrokenPipe {
            eprintln!("qemu-ga-client: cannot write the reply: {e}");
            std::process::exit(2);
        }
        std::process::exit(0);
    }
}

struct Options {
    socket: PathBuf,
    timeout: Duration,
    command: String,
    arguments: Map<String, Value>,
}

enum Failure {
    /// The agent answered with an error.
    Agent(String),
    /// No usable answer: connection failure, timeout, garbage.
    Transport(String),
}

fn main() {
    let opts = match parse(std::env::args_os().skip(1)) {
        Ok(o) => o,
        Err(msg) => {
            eprintln!("qemu-ga-client: {msg}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let code = match run(&opts) {
        Ok(Some(value)) => {
            let text = serde_json::to_string_pretty(&value).unwrap_or_default();
            print_or_exit(&format!("{text}\n"));
            0
        }
        Ok(None) => 0,
        Err(Failure::Agent(desc)) => {
            eprintln!("{desc}");
            1
        }
        Err(Failure::Transport(msg)) => {
            eprintln!("qemu-ga-client: {msg}");
            2
        }
    };
    std::process::exit(code);
}

fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Options, String> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut socket = std::env::var_os("QGA_SOCKET")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
    let mut timeout = default_timeout();
    let mut positional = Vec::new();
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("socket") | Short('s') => {
                socket = parser.value().map_err(|e| e.to_string())?.into()
            }
            Long("timeout") | Short('t') => {
                let v: String = parser
                    .value()
                    .map_err(|e| e.to_string())?
                    .string()
                    .map_err(|e| e.to_string())?;
                let secs: f64 = v.parse().map_err(|_| format!("invalid timeout '{v}'"))?;
                if !(secs > 0.0 && secs < 1e6) {
                    return Err(format!("invalid timeout '{v}'"));
                }
                timeout = Duration::from_secs_f64(secs);
            }
            Long("help") | Short('h') => {
                print_or_exit(USAGE);
                std::process::exit(0);
            }
            Value(v) => positional.push(v.string().map_err(|e| e.to_string())?),
            other => return Err(other.unexpected().to_string()),
        }
    }
    let mut positional = positional.into_iter();
    let command = positional.next().ok_or("missing COMMAND")?;
    let arguments = match positional.next() {
        None => Map::new(),
        Some(text) => match serde_json::from_str(&text) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => {
                return Err(format!(
                    "JSON-ARGUMENTS must be a JSON object, got '{text}'"
                ))
            }
        },
    };
    if let Some(extra) = positional.next() {
        return Err(format!("unexpected argument '{extra}'"));
    }
    Ok(Options {
        socket,
        timeout,
        command,
        arguments,
    })
}

fn run(opts: &Options) -> Result<Option<Value>, Failure> {
    let mut conn = Connection::open(opts)?;
    let id = random_id();
    let sync = json!({"execute": "guest-sync-delimited", "arguments": {"id": id}});
    // 0xFF first: it flushes whatever a previous client left half-sent in the agent.
    conn.send(&[&[0xFF][..], sync.to_string().as_bytes(), b"\n"].concat())?;
    conn.await_sync(id)?;

    let request = json!({"execute": opts.command, "arguments": opts.arguments});
    conn.send(format!("{request}\n").as_bytes())?;
    let expects_reply = registry::find(&opts.command).is_none_or(|c| c.success_response);
    if !expects_reply {
        // Success sends nothing; only an error would come back, and quickly.
        conn.deadline = Instant::now() + opts.timeout.min(Duration::from_secs(2));
    } else {
        conn.deadline = Instant::now() + opts.timeout;
    }
    match conn.next_reply() {
        Ok(reply) => interpret(reply).map(Some),
        Err(Failure::Transport(_)) if !expects_reply => Ok(None),
        Err(e) => Err(e),
    }
}

fn interpret(mut reply: Value) -> Result<Value, Failure> {
    if let Some(v) = reply.get_mut("return") {
        return Ok(v.take());
    }
    if let Some(err) = reply.get("error") {
        let class = err.get("class").and_then(Value::as_str).unwrap_or("?");
        let desc = err.get("desc").and_then(Value::as_str).unwrap_or("");
        return Err(Failure::Agent(format!("{class}: {desc}")));
    }
    Err(Failure::Transport(format!("unexpected reply: {reply}")))
}

struct Connection {
    stream: UnixStream,
    framer: Framer,
    pending: Vec<u8>,
    deadline: Instant,
}

impl Connection {
    fn open(opts: &Options) -> Result<Connection, Failure> {
        let stream = UnixStream::connect(&opts.socket).map_err(|e| {
            Failure::Transport(format!(
                "cannot connect to '{}': {e}",
                opts.socket.display()
            ))
        })?;
        Ok(Connection {
            stream,
            framer: Framer::default(),
            pending: Vec::new(),
            deadline: Instant::now() + opts.timeout,
        })
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        self.stream
            .write_all(bytes)
            .map_err(|e| Failure::Transport(format!("cannot send: {e}")))
    }

    /// Discards everything up to the 0xFF-delimited reply carrying `id`.
    fn await_sync(&mut self, id: i64) -> Result<(), Failure> {
        let mut after_delimiter = false;
        loop {
            match self.next_frame()? {
                // Our framer reports the agent's 0xFF as a reset: the delimiter.
                Frame::Error(_) => after_delimiter = true,
                Frame::Text(text) if after_delimiter => {
                    let reply: Value = serde_json::from_slice(&text).unwrap_or(Value::Null);
                    if reply.get("return").and_then(Value::as_i64) == Some(id) {
                        return Ok(());
                    }
                    after_delimiter = false;
                }
                Frame::Text(_) => {}
            }
        }
    }

    fn next_reply(&mut self) -> Result<Value, Failure> {
        loop {
            if let Frame::Text(text) = self.next_frame()? {
                return serde_json::from_slice(&text)
                    .map_err(|e| Failure::Transport(format!("malformed reply: {e}")));
            }
        }
    }

    fn next_frame(&mut self) -> Result<Frame, Failure> {
        loop {
            if !self.pending.is_empty() {
                let (n, frame) = self.framer.feed(&self.pending);
                self.pending.drain(..n);
                if let Some(frame) = frame {
                    return Ok(frame);
                }
            }
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Failure::Transport("timed out waiting for the agent".into()));
            }
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|e| Failure::Transport(e.to_string()))?;
            let mut buf = [0u8; 65536];
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(Failure::Transport("agent closed the connection".into())),
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(Failure::Transport("timed out waiting for the agent".into()))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Failure::Transport(format!("cannot read: {e}"))),
            }
        }
    }
}

/// A sync id that another client is unlikely to have used (libvirt uses timestamps).
fn random_id() -> i64 {
    let mut bytes = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_err()
    {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        bytes = (t.as_nanos() as u64 ^ u64::from(std::process::id())).to_le_bytes();
    }
    // Positive and within 2^53, so every JSON implementation keeps it exact.
    (u64::from_le_bytes(bytes) & ((1 << 53) - 1)) as i64
}
