//! kubesim: a stateful Kubernetes API simulator for drctl's tests. See docs/lab.md.

mod api;
mod body;
mod controllers;
mod discovery;
mod faults;
mod patch;
mod pod_hooks;
mod portforward;
mod proto;
mod scenario;
mod selector;
mod spdy;
mod status;
mod store;
mod table;
mod types;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::api::Sim;
use crate::scenario::Scenario;
use crate::store::{Scope, meta_str};

#[derive(Debug, thiserror::Error)]
enum MainError {
    #[error("{0}\nusage: kubesim [--port N] [--kubeconfig-out PATH] [--scenario FILE]")]
    Usage(String),
    #[error(transparent)]
    Scenario(#[from] scenario::ScenarioError),
    #[error("scenario object {index}: {message}")]
    Seed { index: usize, message: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot write kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        source: std::io::Error,
    },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

struct Args {
    port: u16,
    kubeconfig_out: Option<PathBuf>,
    scenario: Option<PathBuf>,
}

fn parse_args() -> Result<Args, MainError> {
    let mut args = Args {
        port: 0,
        kubeconfig_out: None,
        scenario: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| MainError::Usage(format!("{name} needs a value")))
        };
        match a.as_str() {
            "--port" => {
                let v = value("--port")?;
                args.port = v
                    .parse()
                    .map_err(|_| MainError::Usage(format!("--port: not a port: {v:?}")))?;
            }
            "--kubeconfig-out" => args.kubeconfig_out = Some(value("--kubeconfig-out")?.into()),
            "--scenario" => args.scenario = Some(value("--scenario")?.into()),
            "-h" | "--help" => return Err(MainError::Usage("kubesim".into())),
            other => return Err(MainError::Usage(format!("unknown argument {other:?}"))),
        }
    }
    Ok(args)
}

fn write_kubeconfig(path: &PathBuf, addr: SocketAddr) -> Result<(), MainError> {
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kubesim\n  cluster:\n    server: http://{addr}\nusers:\n- name: kubesim\n  user: {{}}\ncontexts:\n- name: kubesim\n  context:\n    cluster: kubesim\n    user: kubesim\n    namespace: default\ncurrent-context: kubesim\n"
    );
    let err = |source| MainError::Kubeconfig {
        path: path.display().to_string(),
        source,
    };
    // Written whole then renamed, so a reader polling for the file never sees half of it.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

fn seed(sim: &Sim) -> Result<(), MainError> {
    let mut store = sim.store();
    for (index, obj) in sim.scenario.objects.iter().enumerate() {
        let err = |message: String| MainError::Seed { index, message };
        let api_version = obj
            .get("apiVersion")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        let kind = obj.get("kind").and_then(|v| v.as_str()).unwrap_or_default();
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let rt = store
            .find_kind(group, kind)
            .ok_or_else(|| err(format!("unknown kind {kind} in {api_version:?}")))?;
        let ns = meta_str(obj, "namespace").to_string();
        let ns = if rt.namespaced && ns.is_empty() {
            "default".to_string()
        } else {
            ns
        };
        let ns_type = store.core("namespaces");
        if rt.namespaced && store.get(&ns_type, "", &ns).is_err() {
            let ns_obj = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            store
                .create(&ns_type, "", ns_obj, Scope::Internal)
                .map_err(|e| err(e.to_string()))?;
        }
        store
            .create(&rt, &ns, obj.clone(), Scope::Internal)
            .map_err(|e| err(e.to_string()))?;
    }
    Ok(())
}

/// `up_now`: SIGUSR1, which ends a `/_sim/down` outage at once (ignored while the API is up).
async fn serve(
    sim: Arc<Sim>,
    mut listener: TcpListener,
    mut up_now: tokio::signal::unix::Signal,
) -> Result<(), MainError> {
    let addr = listener.local_addr()?;
    loop {
        tokio::select! {
            _ = up_now.recv() => {}
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        eprintln!("kubesim: accept: {e}");
                        continue;
                    }
                };
                // Accepted between `/_sim/down` and the listener's close: refuse it, or a
                // client reconnecting in that instant would keep a live watch through the
                // outage.
                if sim
                    .faults
                    .lock()
                    .map(|f| f.down_until.is_some_and(|t| t > Instant::now()))
                    .unwrap_or(false)
                {
                    drop(stream);
                    continue;
                }
                let sim = sim.clone();
                let mut kill = sim.kill_conns.subscribe();
                tokio::spawn(async move {
                    let svc_sim = sim.clone();
                    let service = service_fn(move |req| {
                        let sim = svc_sim.clone();
                        async move { Ok::<_, std::convert::Infallible>(api::handle(sim, req).await) }
                    });
                    // Upgrades: pods/portforward (WebSocket or SPDY).
                    let conn = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades();
                    tokio::select! {
                        r = conn => {
                            if let Err(e) = r
                                && std::env::var_os("KUBESIM_DEBUG").is_some()
                            {
                                eprintln!("kubesim: connection: {e}");
                            }
                        }
                        _ = kill.changed() => {}
                    }
                });
            }
            _ = sim.down.notified() => {
                let until = sim
                    .faults
                    .lock()
                    .map(|f| f.down_until)
                    .unwrap_or(None)
                    .unwrap_or_else(Instant::now);
                drop(listener);
                eprintln!("kubesim: down (fault injection) until {:?} from now", until.saturating_duration_since(Instant::now()));
                tokio::select! {
                    _ = tokio::time::sleep_until(until.into()) => {}
                    _ = up_now.recv() => eprintln!("kubesim: SIGUSR1: the outage ends now"),
                }
                // The port may linger briefly; retry rather than give up the simulator.
                let mut tries = 0;
                listener = loop {
                    match TcpListener::bind(addr).await {
                        Ok(l) => break l,
                        Err(e) if tries < 50 => {
                            tries += 1;
                            eprintln!("kubesim: rebinding {addr}: {e}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(source) => return Err(MainError::Bind { addr: addr.to_string(), source }),
                    }
                };
                if let Ok(mut f) = sim.faults.lock() {
                    f.down_until = None;
                }
                eprintln!("kubesim: up again on {addr}");
            }
        }
    }
}

async fn run() -> Result<(), MainError> {
    let args = parse_args()?;
    let scenario = match &args.scenario {
        Some(p) => Scenario::load(p)?,
        None => Scenario::default(),
    };
    let faults = scenario.faults.clone();
    let sim = Arc::new(Sim::new(scenario));
    if let Ok(mut f) = sim.faults.lock() {
        *f = faults;
    }
    seed(&sim)?;
    // Loopback only: the lab never listens on another interface.
    let bind = format!("127.0.0.1:{}", args.port);
    let listener = TcpListener::bind(&bind)
        .await
        .map_err(|source| MainError::Bind {
            addr: bind.clone(),
            source,
        })?;
    let addr = listener.local_addr()?;
    if let Ok(mut a) = sim.addr.lock() {
        *a = addr.to_string();
    }
    // SIGUSR1 ends a `/_sim/down` outage at once: a test acts inside the outage for as long as
    // it needs (say, until its client has seen "connection refused"), then brings the API back,
    // instead of racing the outage's timer. Handled before the address is announced.
    let up_now = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())?;
    if let Some(path) = &args.kubeconfig_out {
        write_kubeconfig(path, addr)?;
    }
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{addr}")?;
        out.flush()?;
    }
    tokio::spawn(controllers::run(sim.clone()));
    tokio::spawn(pod_hooks::readiness(sim.clone()));
    serve(sim, listener, up_now).await
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("kubesim: {e}");
        std::process::exit(2);
    }
}
