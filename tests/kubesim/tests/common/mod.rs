//! Test support: starts the kubesim binary on a free port in a temp dir, drives the real
//! kubectl against it, keeps the simulator's log for a failing test, and stops it on drop.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a test waits for something before it fails rather than hangs. Generous on purpose:
/// the tests assert the order of events, never how fast they happen, and run on loaded
/// two-core machines (issue 17).
pub const PATIENCE: Duration = Duration::from_secs(60);

/// `kubectl wait` / `rollout status` / `delete` timeout matching `PATIENCE`.
pub const KUBECTL_TIMEOUT: &str = "--timeout=60s";

/// The fixed-version kubectl: $KUBECTL, else kubectl.1.32 beside the /usr/bin/kubectl dispatcher.
/// Missing kubectl fails the test (never a skip): run tests/lab/install.
pub fn kubectl_path() -> PathBuf {
    if let Some(p) = std::env::var_os("KUBECTL") {
        return PathBuf::from(p);
    }
    let dispatcher = std::fs::canonicalize("/usr/bin/kubectl").expect(
        "kubectl is required: /usr/bin/kubectl not found (run tests/lab/install, or set KUBECTL)",
    );
    let fixed = dispatcher.with_file_name("kubectl.1.32");
    assert!(
        fixed.exists(),
        "kubectl 1.32 is required at {} (run tests/lab/install, or set KUBECTL)",
        fixed.display()
    );
    fixed
}

pub struct Sim {
    child: Child,
    pub dir: tempfile::TempDir,
    pub addr: String,
    kubectl: PathBuf,
}

impl Sim {
    pub fn start() -> Sim {
        Sim::start_with("{}")
    }

    /// Starts the simulator with a scenario (YAML or JSON text).
    pub fn start_with(scenario: &str) -> Sim {
        let kubectl = kubectl_path();
        let dir = tempfile::tempdir().expect("create temp dir");
        let scenario_path = dir.path().join("scenario.yaml");
        std::fs::write(&scenario_path, scenario).expect("write scenario");
        let log = std::fs::File::create(dir.path().join("kubesim.log")).expect("create log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_kubesim"))
            .args(["--port", "0", "--kubeconfig-out"])
            .arg(dir.path().join("kubeconfig"))
            .arg("--scenario")
            .arg(&scenario_path)
            .env("KUBESIM_DEBUG", "1")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start kubesim");
        let stdout = child.stdout.take().expect("kubesim stdout");
        let mut first = String::new();
        BufReader::new(stdout)
            .read_line(&mut first)
            .expect("read kubesim's first line");
        let addr = first
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!("kubesim did not report its address: {first:?}")
            })
            .to_string();
        Sim {
            child,
            dir,
            addr,
            kubectl,
        }
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// The simulator's process id (the process this test started).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Ends a `/_sim/down` outage now (SIGUSR1 to this test's simulator), so a test acts
    /// inside an outage as long as it needs instead of racing the outage's timer.
    pub fn end_outage(&self) {
        let status = Command::new("kill")
            .args(["-USR1", &self.pid().to_string()])
            .status()
            .expect("run kill -USR1");
        assert!(status.success(), "kill -USR1 {}: {status}", self.pid());
    }

    /// `GET /_sim/requests`: the API requests served so far, by kind.
    pub fn requests(&self) -> serde_json::Value {
        let (code, body) = self.http("GET", "/_sim/requests", "");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).expect("request counts are JSON")
    }

    /// Waits until the simulator has received at least `n` watch requests.
    pub fn wait_for_watches(&self, n: u64) {
        wait_until(&format!("{n} watch request(s)"), PATIENCE, || {
            self.requests()["watch"].as_u64().unwrap_or(0) >= n
        });
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn kubectl_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.kubectl);
        c.arg("--kubeconfig")
            .arg(self.kubeconfig())
            .arg("--cache-dir")
            .arg(self.dir.path().join("kube-cache"))
            .args(args)
            .stdin(Stdio::null());
        c
    }

    /// Runs kubectl; returns its output whatever the exit code.
    pub fn kubectl_output(&self, args: &[&str]) -> Output {
        self.kubectl_cmd(args).output().expect("run kubectl")
    }

    /// Runs kubectl and returns stdout; panics with stderr and the simulator's log on failure.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let out = self.kubectl_output(args);
        if !out.status.success() {
            panic!(
                "kubectl {args:?} failed ({}):\nstdout: {}\nstderr: {}\n--- kubesim log (tail) ---\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log_tail()
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl expecting failure; returns stderr.
    pub fn kubectl_fails(&self, args: &[&str]) -> String {
        let out = self.kubectl_output(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should have failed, printed {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub fn apply(&self, yaml: &str) -> String {
        static N: AtomicUsize = AtomicUsize::new(0);
        let file = self.path(&format!(
            "manifest-{}.yaml",
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&file, yaml).expect("write manifest");
        self.kubectl(&["apply", "-f", file.to_str().expect("utf-8 path")])
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.path("kubesim.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// A plain HTTP/1.1 request to the simulator: (status code, body).
    pub fn http(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let r = self.request(method, path, body);
        (r.code, r.body)
    }

    /// A plain HTTP/1.1 request; also says whether the server ended the response cleanly.
    /// Reading gives up after `PATIENCE` (then `complete` is false).
    pub fn request(&self, method: &str, path: &str, body: &str) -> Reply {
        let mut s = TcpStream::connect(&self.addr).expect("connect to kubesim");
        s.set_read_timeout(Some(PATIENCE)).expect("set timeout");
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .expect("send request");
        let mut raw = Vec::new();
        let read = s.read_to_end(&mut raw);
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let (body, terminated) = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(rest)
        } else {
            (rest.to_string(), true)
        };
        Reply {
            code,
            body,
            complete: read.is_ok() && terminated,
        }
    }

    /// Opens a watch (or any streamed GET) and returns once the response head has arrived:
    /// kubesim subscribes a watch before it answers, so from then on it sees every change.
    pub fn open_watch(&self, path: &str) -> WatchStream {
        let mut s = TcpStream::connect(&self.addr).expect("connect to kubesim");
        s.set_read_timeout(Some(PATIENCE)).expect("set timeout");
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .expect("send watch request");
        let mut r = BufReader::new(s);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            let n = r
                .read_line(&mut line)
                .expect("read the watch's response head");
            assert!(
                n > 0,
                "connection closed inside the response head: {head:?}"
            );
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        assert!(head.starts_with("HTTP/1.1 200"), "watch {path}: {head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("transfer-encoding: chunked"),
            "a watch streams chunks: {head}"
        );
        WatchStream {
            r,
            pending: String::new(),
            path: path.to_string(),
        }
    }

    /// Starts `kubectl ARGS` in the background (a `get -w`, say) and reads its stdout line by
    /// line as it comes; the process is killed (by its own handle) when the value is dropped.
    pub fn kubectl_stream(&self, args: &[&str]) -> Streamed {
        static N: AtomicUsize = AtomicUsize::new(0);
        let stderr_path = self.path(&format!(
            "kubectl-stream-{}.err",
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let stderr = std::fs::File::create(&stderr_path).expect("create stderr file");
        let mut child = self
            .kubectl_cmd(args)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start kubectl");
        let stdout = child.stdout.take().expect("kubectl stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Streamed {
            child,
            rx,
            seen: Vec::new(),
            stderr_path,
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }
}

/// What `Sim::request` got back.
pub struct Reply {
    pub code: u16,
    pub body: String,
    /// The server ended the response itself, cleanly (the chunked body's last chunk, or the
    /// whole non-chunked body), before the read timeout.
    pub complete: bool,
}

/// The body of a chunked response; and whether its terminating zero-size chunk was there.
fn dechunk(mut s: &str) -> (String, bool) {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 {
            return (out, true);
        }
        if rest.len() < n {
            out.push_str(&rest[..rest.len().min(n)]);
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    (out, false)
}

/// An open watch read event by event (see `Sim::open_watch`); the connection closes on drop.
pub struct WatchStream {
    r: BufReader<TcpStream>,
    pending: String,
    path: String,
}

impl WatchStream {
    /// The next event, or None when the server ended the stream cleanly. Panics when the
    /// stream breaks or nothing comes for `PATIENCE`.
    pub fn next_event(&mut self) -> Option<serde_json::Value> {
        loop {
            if let Some((line, rest)) = self.pending.split_once('\n') {
                let line = line.trim().to_string();
                self.pending = rest.to_string();
                if line.is_empty() {
                    continue;
                }
                return Some(serde_json::from_str(&line).unwrap_or_else(|e| {
                    panic!(
                        "watch {}: a line that is no JSON event ({e}): {line}",
                        self.path
                    )
                }));
            }
            let mut size = String::new();
            let n = self
                .r
                .read_line(&mut size)
                .unwrap_or_else(|e| panic!("watch {}: reading a chunk: {e}", self.path));
            assert!(n > 0, "watch {}: cut without its last chunk", self.path);
            let size = usize::from_str_radix(size.trim(), 16)
                .unwrap_or_else(|_| panic!("watch {}: bad chunk size {size:?}", self.path));
            if size == 0 {
                assert!(
                    self.pending.trim().is_empty(),
                    "watch {}: ended inside an event: {:?}",
                    self.path,
                    self.pending
                );
                return None;
            }
            let mut chunk = vec![0u8; size + 2];
            self.r
                .read_exact(&mut chunk)
                .unwrap_or_else(|e| panic!("watch {}: reading a chunk: {e}", self.path));
            chunk.truncate(size);
            self.pending.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

/// A background kubectl whose stdout is read line by line (`Sim::kubectl_stream`).
pub struct Streamed {
    child: Child,
    rx: mpsc::Receiver<String>,
    /// Every line read so far, in order.
    pub seen: Vec<String>,
    stderr_path: PathBuf,
    args: Vec<String>,
}

impl Streamed {
    /// Reads lines until one satisfies `want` and returns it; panics (with everything seen and
    /// kubectl's stderr) if kubectl ends first or nothing matches within `PATIENCE`.
    pub fn wait_for(&mut self, what: &str, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if want(&line) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "kubectl {:?}: no line with {what} ({e}); saw {:#?}\nstderr: {}",
                    self.args,
                    self.seen,
                    self.stderr()
                ),
            }
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for Streamed {
    fn drop(&mut self) {
        // Stops exactly the kubectl this test started (by its handle).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        // Stops exactly the process this test started (by its PID).
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- kubesim log ({}) ---\n{}",
                self.dir.path().display(),
                self.log_tail()
            );
        }
    }
}

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn b64decode(s: &str) -> String {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .expect("valid base64 from the simulator");
    String::from_utf8(bytes).expect("utf-8 secret value")
}

pub fn file_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
