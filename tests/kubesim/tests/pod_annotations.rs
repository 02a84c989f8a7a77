//! The pod annotations that tie simulated pods to real processes: `port-forward` (through the
//! real `kubectl port-forward`, to a pod and to a Service), `ready-url` and `on-delete`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use common::{KUBECTL_TIMEOUT, PATIENCE, Sim, wait_until};

/// A tiny HTTP server on 127.0.0.1:0: answers every request with `status` (changeable) and a
/// body naming the path; counts the requests it served.
struct TinyHttp {
    addr: String,
    status: Arc<AtomicU16>,
    served: Arc<AtomicUsize>,
}

impl TinyHttp {
    fn start(status: u16) -> TinyHttp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the test server");
        let addr = listener.local_addr().expect("local addr").to_string();
        let status = Arc::new(AtomicU16::new(status));
        let served = Arc::new(AtomicUsize::new(0));
        let (st, sv) = (status.clone(), served.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let (st, sv) = (st.clone(), sv.clone());
                std::thread::spawn(move || {
                    let _ = conn.set_read_timeout(Some(PATIENCE));
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&head).into_owned();
                    let path = text.split_whitespace().nth(1).unwrap_or("?").to_string();
                    let code = st.load(Ordering::SeqCst);
                    let body = format!("tiny {code} {path}");
                    let _ = write!(
                        conn,
                        "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    sv.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        TinyHttp {
            addr,
            status,
            served,
        }
    }
}

/// One HTTP/1.1 GET over a fresh connection: (status, body), or the I/O error.
fn get(addr: &str, path: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(PATIENCE))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("{e} after {:?}", String::from_utf8_lossy(&raw)))?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP response: {text:?}"))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line: {head:?}"))?;
    Ok((code, body.to_string()))
}

/// `kubectl port-forward` running in the background; killed (by its own handle) on drop.
struct PortForward {
    child: Child,
    local: String,
    stderr_path: std::path::PathBuf,
}

impl PortForward {
    fn start(sim: &Sim, ns: &str, target: &str, port: &str) -> PortForward {
        static N: AtomicUsize = AtomicUsize::new(0);
        let stderr_path = sim.path(&format!(
            "port-forward-{}.err",
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let stderr = std::fs::File::create(&stderr_path).expect("create stderr file");
        let mut child = sim
            .kubectl_cmd(&["-n", ns, "port-forward", target, &format!(":{port}")])
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start kubectl port-forward");
        let stdout = child.stdout.take().expect("kubectl stdout");
        let (tx, rx) = mpsc::channel();
        // Drains stdout for kubectl's whole life: with the pipe closed, its next line
        // ("Handling connection for ...") would kill it with SIGPIPE.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + PATIENCE;
        let local = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("Forwarding from 127.0.0.1:") {
                        let port = rest.split_whitespace().next().unwrap_or_default();
                        break format!("127.0.0.1:{port}");
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "kubectl port-forward {target} printed no local address:\n{}\n--- kubesim log ---\n{}",
                        std::fs::read_to_string(&stderr_path).unwrap_or_default(),
                        sim.log_tail()
                    );
                }
            }
        };
        PortForward {
            child,
            local,
            stderr_path,
        }
    }

    /// A GET through the forward; panics with kubectl's stderr on failure.
    fn get(&self, path: &str) -> (u16, String) {
        get(&self.local, path).unwrap_or_else(|e| {
            panic!(
                "GET {path} through {}: {e}\n--- kubectl stderr ---\n{}",
                self.local,
                self.stderr()
            )
        })
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn vault_scenario(mapping: &str) -> String {
    format!(
        r#"
podReadyAfterMs: 100
objects:
- apiVersion: v1
  kind: Pod
  metadata:
    name: vault-0
    namespace: vault
    labels: {{app.kubernetes.io/name: vault, component: server}}
    annotations: {{kubesim.drctl.dev/port-forward: "{mapping}"}}
  spec:
    containers: [{{name: vault, image: openbao, ports: [{{name: http, containerPort: 8200}}]}}]
- apiVersion: v1
  kind: Service
  metadata: {{name: vault, namespace: vault}}
  spec:
    selector: {{app.kubernetes.io/name: vault, component: server}}
    ports: [{{name: http, port: 80, targetPort: 8200}}]
"#
    )
}

fn wait_running(sim: &Sim, ns: &str, pod: &str) {
    wait_until(&format!("{ns}/{pod} Running"), PATIENCE, || {
        sim.kubectl_output(&[
            "-n",
            ns,
            "get",
            "pod",
            pod,
            "-o",
            "jsonpath={.status.phase}",
        ])
        .stdout
            == b"Running"
    });
}

#[test]
fn kubectl_port_forward_to_a_pod_and_a_service() {
    let target = TinyHttp::start(200);
    let sim = Sim::start_with(&vault_scenario(&format!("8200={}", target.addr)));
    wait_running(&sim, "vault", "vault-0");

    let pf = PortForward::start(&sim, "vault", "pod/vault-0", "8200");
    assert_eq!(
        pf.get("/v1/sys/health"),
        (200, "tiny 200 /v1/sys/health".into())
    );
    // Several connections through one tunnel.
    assert_eq!(pf.get("/again").1, "tiny 200 /again");
    drop(pf);

    // svc/vault port 80 -> targetPort 8200 of a pod the selector picks (resolved by kubectl).
    let pf = PortForward::start(&sim, "vault", "svc/vault", "80");
    assert_eq!(
        pf.get("/via-service"),
        (200, "tiny 200 /via-service".into())
    );
    assert!(target.served.load(Ordering::SeqCst) >= 3);
}

#[test]
fn port_forward_errors() {
    // A port that refuses: bound once to learn a free port, then closed.
    let refused = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").to_string()
    };
    let sim = Sim::start_with(&vault_scenario(&format!("8200={refused}")));
    wait_running(&sim, "vault", "vault-0");

    // No mapping for the port: the kubelet-style error on the error stream, and kubectl gives up.
    let pf = PortForward::start(&sim, "vault", "pod/vault-0", "8300");
    let _ = get(&pf.local, "/");
    wait_until("kubectl reports the error", PATIENCE, || {
        pf.stderr()
            .contains("error forwarding port 8300 to pod vault-0_vault, uid ")
            && pf.stderr().contains("no mapping for port 8300")
    });
    drop(pf);

    // A target that refuses the connection.
    let pf = PortForward::start(&sim, "vault", "pod/vault-0", "8200");
    let _ = get(&pf.local, "/");
    wait_until("kubectl reports the refusal", PATIENCE, || {
        let e = pf.stderr();
        e.contains("error forwarding port 8200 to pod vault-0_vault")
            && e.contains(&format!("failed to connect to {refused}"))
    });
    drop(pf);

    // A pod that does not exist: 404 from the API, and kubectl says NotFound.
    let (code, body) = sim.http(
        "GET",
        "/api/v1/namespaces/vault/pods/nope/portforward?ports=8200",
        "",
    );
    assert_eq!(code, 404, "{body}");
    assert!(body.contains(r#"pods \"nope\" not found"#), "{body}");
    let err = sim.kubectl_fails(&["-n", "vault", "port-forward", "pod/nope", ":8200"]);
    assert!(err.contains(r#"pods "nope" not found"#), "{err}");
    // A plain GET (no upgrade) is refused.
    let (code, body) = sim.http(
        "GET",
        "/api/v1/namespaces/vault/pods/vault-0/portforward?ports=8200",
        "",
    );
    assert_eq!(code, 400, "{body}");
}

/// Pod template annotations reach the pods the controllers create (so a StatefulSet's
/// template can carry the port-forward mapping).
#[test]
fn statefulset_template_annotations_reach_its_pods() {
    let target = TinyHttp::start(200);
    let sim = Sim::start_with("podReadyAfterMs: 100\n");
    sim.kubectl(&["create", "namespace", "vault"]);
    sim.apply(&format!(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: vault, namespace: vault}}\nspec:\n  replicas: 1\n  serviceName: vault\n  selector: {{matchLabels: {{app: vault}}}}\n  template:\n    metadata:\n      labels: {{app: vault}}\n      annotations: {{kubesim.drctl.dev/port-forward: \"8200={}\"}}\n    spec: {{containers: [{{name: vault, image: openbao}}]}}\n",
        target.addr
    ));
    wait_until("vault-0 created", PATIENCE, || {
        sim.kubectl_output(&["-n", "vault", "get", "pod", "vault-0"])
            .status
            .success()
    });
    wait_running(&sim, "vault", "vault-0");
    let pf = PortForward::start(&sim, "vault", "pod/vault-0", "8200");
    assert_eq!(pf.get("/sts").1, "tiny 200 /sts");
}

fn ready_state(sim: &Sim, ns: &str, pod: &str) -> String {
    sim.kubectl(&[
        "-n",
        ns,
        "get",
        "pod",
        pod,
        "-o",
        r#"jsonpath={.status.phase} {.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="ContainersReady")].status} {.status.containerStatuses[0].ready} {.metadata.resourceVersion}"#,
    ])
}

#[test]
fn readiness_follows_a_real_url() {
    let health = TinyHttp::start(503);
    let sim = Sim::start_with(&format!(
        r#"
podReadyAfterMs: 100
objects:
- apiVersion: v1
  kind: Pod
  metadata:
    name: vault-0
    namespace: vault
    annotations: {{kubesim.drctl.dev/ready-url: "http://{}/v1/sys/health"}}
  spec: {{containers: [{{name: vault, image: openbao}}]}}
"#,
        health.addr
    ));
    // Watch the Ready condition from the start, as a client waiting for the pod would.
    let mut watch = sim
        .kubectl_cmd(&[
            "-n",
            "vault",
            "get",
            "pod",
            "vault-0",
            "-w",
            "-o",
            r#"jsonpath={.metadata.resourceVersion} {.status.conditions[?(@.type=="Ready")].status}{"\n"}"#,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start kubectl get -w");
    let stdout = watch.stdout.take().expect("watch stdout");
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut seen: Vec<String> = Vec::new();
    let wait_for = |want: &str, seen: &mut Vec<String>| {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let hit = line.ends_with(&format!(" {want}"));
                    seen.push(line);
                    if hit {
                        return;
                    }
                }
                Err(_) => panic!(
                    "watch did not see Ready={want}; saw {seen:?}\n{}",
                    sim.log_tail()
                ),
            }
        }
    };

    // Running, but the URL answers 503: not Ready, and probes do not rewrite the pod.
    wait_running(&sim, "vault", "vault-0");
    let before = health.served.load(Ordering::SeqCst);
    wait_until("three probes", PATIENCE, || {
        health.served.load(Ordering::SeqCst) >= before + 3
    });
    let state = ready_state(&sim, "vault", "vault-0");
    assert!(state.starts_with("Running False False false "), "{state}");
    let before = health.served.load(Ordering::SeqCst);
    wait_until("three more probes", PATIENCE, || {
        health.served.load(Ordering::SeqCst) >= before + 3
    });
    assert_eq!(
        ready_state(&sim, "vault", "vault-0"),
        state,
        "no update while unchanged"
    );

    health.status.store(200, Ordering::SeqCst);
    wait_for("True", &mut seen);
    let state = ready_state(&sim, "vault", "vault-0");
    assert!(state.starts_with("Running True True true "), "{state}");
    sim.kubectl(&[
        "-n",
        "vault",
        "wait",
        "--for=condition=Ready",
        "pod/vault-0",
        KUBECTL_TIMEOUT,
    ]);

    // 429 (a standby Vault) is not 200: not Ready.
    health.status.store(429, Ordering::SeqCst);
    wait_for("False", &mut seen);
    assert!(ready_state(&sim, "vault", "vault-0").starts_with("Running False False false "));

    // And back.
    health.status.store(200, Ordering::SeqCst);
    wait_for("True", &mut seen);
    let _ = watch.kill();
    let _ = watch.wait();
    // Each transition was its own event with a newer resourceVersion.
    let rvs: Vec<u64> = seen
        .iter()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(rvs.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
}

#[test]
fn readiness_url_refused_is_not_ready() {
    let refused = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").to_string()
    };
    let sim = Sim::start_with(&format!(
        r#"
podReadyAfterMs: 50
objects:
- apiVersion: v1
  kind: Pod
  metadata:
    name: web
    namespace: default
    annotations: {{kubesim.drctl.dev/ready-url: "http://{refused}/"}}
  spec: {{containers: [{{name: web, image: x}}]}}
"#
    ));
    wait_running(&sim, "default", "web");
    // Now the URL starts answering 200: Ready follows within a probe period or two.
    let state = ready_state(&sim, "default", "web");
    assert!(state.starts_with("Running False"), "{state}");
    let listener = TcpListener::bind(&refused).expect("rebind the refused port");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { continue };
            let mut buf = [0u8; 1024];
            let _ = c.read(&mut buf);
            let _ =
                c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    sim.kubectl(&["wait", "--for=condition=Ready", "pod/web", KUBECTL_TIMEOUT]);
}

#[test]
fn on_delete_runs_before_the_replacement_pod() {
    let sim = Sim::start_with("podReadyAfterMs: 100\n");
    let dir = sim.dir.path().to_str().expect("utf-8 dir").to_string();
    // The command records that it started, waits for the test's go-ahead, then records its
    // environment and finishes.
    let cmd = format!(
        "echo started > {dir}/hook-started; echo hook says hello; while [ ! -f {dir}/release ]; do sleep 0.05; done; echo \"$KUBESIM_POD_NAMESPACE/$KUBESIM_POD_NAME\" > {dir}/hook-done.tmp; mv {dir}/hook-done.tmp {dir}/hook-done"
    );
    sim.kubectl(&["create", "namespace", "vault"]);
    let manifest = serde_json::json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "vault", "namespace": "vault"},
        "spec": {"replicas": 1, "serviceName": "vault", "selector": {"matchLabels": {"app": "vault"}},
                 "template": {"metadata": {"labels": {"app": "vault"},
                                           "annotations": {"kubesim.drctl.dev/on-delete": cmd}},
                              "spec": {"containers": [{"name": "vault", "image": "openbao"}]}}}
    });
    sim.apply(&manifest.to_string());
    wait_until("vault-0 created", PATIENCE, || {
        sim.kubectl_output(&["-n", "vault", "get", "pod", "vault-0"])
            .status
            .success()
    });
    wait_running(&sim, "vault", "vault-0");
    let uid = sim.kubectl(&[
        "-n",
        "vault",
        "get",
        "pod",
        "vault-0",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);

    // The DELETE returns while the command still runs (it waits for `release`).
    sim.kubectl(&["-n", "vault", "delete", "pod", "vault-0", "--wait=false"]);
    let started = std::path::Path::new(&dir).join("hook-started");
    let done = std::path::Path::new(&dir).join("hook-done");
    wait_until("the command started", PATIENCE, || started.exists());
    assert!(!done.exists());
    // While it runs, the StatefulSet does not bring vault-0 back. Proved by order, not by time:
    // a second StatefulSet created now gets its pod from a controller pass that began after
    // the command started, and a pass reconciles every StatefulSet under one store lock, so
    // once witness-0 exists a whole later pass has left vault-0 missing. Two such passes.
    for n in 0..2 {
        sim.apply(&format!(
            "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: witness{n}, namespace: vault}}\nspec:\n  replicas: 1\n  serviceName: witness{n}\n  selector: {{matchLabels: {{app: witness{n}}}}}\n  template:\n    metadata: {{labels: {{app: witness{n}}}}}\n    spec: {{containers: [{{name: w, image: x}}]}}\n"
        ));
        wait_until(&format!("witness{n}-0 created"), PATIENCE, || {
            sim.kubectl_output(&["-n", "vault", "get", "pod", &format!("witness{n}-0")])
                .status
                .success()
        });
        let out = sim.kubectl_output(&["-n", "vault", "get", "pod", "vault-0", "-o", "name"]);
        assert!(
            !out.status.success(),
            "replacement created while the on-delete command runs"
        );
    }
    assert!(!done.exists(), "the command waits for its release");
    std::fs::write(std::path::Path::new(&dir).join("release"), "").expect("write release");
    wait_until("the replacement vault-0", PATIENCE, || {
        let new_uid = sim.kubectl_output(&[
            "-n",
            "vault",
            "get",
            "pod",
            "vault-0",
            "-o",
            "jsonpath={.metadata.uid}",
        ]);
        new_uid.status.success() && !new_uid.stdout.is_empty() && new_uid.stdout != uid.as_bytes()
    });
    // The replacement exists only once the command has finished.
    assert_eq!(
        std::fs::read_to_string(&done).expect("the command finished first"),
        "vault/vault-0\n"
    );
    wait_until("output in kubesim's log", PATIENCE, || {
        let log = std::fs::read_to_string(sim.path("kubesim.log")).unwrap_or_default();
        log.contains("kubesim: on-delete vault/vault-0: hook says hello")
            && log.contains("kubesim: on-delete vault/vault-0: finished")
    });
    wait_running(&sim, "vault", "vault-0");
}

#[test]
fn on_delete_command_is_killed_after_the_timeout() {
    let sim = Sim::start_with(
        r#"
podReadyAfterMs: 50
onDeleteTimeoutMs: 300
objects:
- apiVersion: v1
  kind: Pod
  metadata:
    name: stuck
    namespace: default
    annotations: {kubesim.drctl.dev/on-delete: "echo sleeping; sleep 30"}
  spec: {containers: [{name: c, image: x}]}
"#,
    );
    sim.kubectl(&["delete", "pod", "stuck"]);
    wait_until("the command killed", PATIENCE, || {
        std::fs::read_to_string(sim.path("kubesim.log"))
            .unwrap_or_default()
            .contains("kubesim: on-delete default/stuck: still running after 300ms: killed")
    });
}
