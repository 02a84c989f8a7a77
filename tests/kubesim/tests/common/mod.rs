//! Test support: starts the kubesim binary on a free port in a temp dir, drives the real
//! kubectl against it, keeps the simulator's log for a failing test, and stops it on drop.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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
        let mut s = TcpStream::connect(&self.addr).expect("connect to kubesim");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("set timeout");
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .expect("send request");
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(rest)
        } else {
            rest.to_string()
        };
        (code, body)
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            out.push_str(&rest[..rest.len().min(n)]);
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
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
