//! Watch semantics and fault injection, over raw HTTP (what kube-rs and client-go see).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{PATIENCE, Sim, wait_until};

fn list_rv(sim: &Sim, path: &str) -> String {
    let (code, body) = sim.http("GET", path, "");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("list is JSON");
    v["metadata"]["resourceVersion"]
        .as_str()
        .expect("list has a resourceVersion")
        .to_string()
}

fn events(body: &str) -> Vec<serde_json::Value> {
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("each watch line is a JSON event"))
        .collect()
}

#[test]
fn watch_replays_from_a_resource_version_and_honours_timeout() {
    let sim = Sim::start();
    let rv = list_rv(&sim, "/api/v1/namespaces/default/configmaps");
    sim.kubectl(&["create", "configmap", "c", "--from-literal=a=1"]);
    sim.kubectl(&[
        "patch",
        "cm",
        "c",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"a":"2"}}"#,
    ]);
    sim.kubectl(&["delete", "cm", "c"]);
    let start = Instant::now();
    let reply = sim.request(
        "GET",
        &format!(
            "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=1"
        ),
        "",
    );
    let took = start.elapsed();
    assert_eq!(reply.code, 200);
    // Honoured: the server ended the watch itself, cleanly (its last chunk), and not before the
    // second was up. Without timeoutSeconds a watch runs 30 minutes, far beyond the read's
    // PATIENCE, so a clean end can only be that timeout: no upper bound on the time needed.
    assert!(
        reply.complete,
        "the watch ended by itself, cleanly, within {PATIENCE:?}: {:?}",
        reply.body
    );
    assert!(
        took >= Duration::from_millis(900),
        "timeoutSeconds=1 ended after {took:?}"
    );
    let body = reply.body;
    let evs = events(&body);
    let kinds: Vec<&str> = evs
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(kinds, ["ADDED", "MODIFIED", "DELETED"], "{body}");
    assert_eq!(evs[1]["object"]["data"]["a"], "2");
    let rvs: Vec<u64> = evs
        .iter()
        .map(|e| {
            e["object"]["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("numeric resourceVersion")
        })
        .collect();
    assert!(
        rvs.windows(2).all(|w| w[0] < w[1]),
        "resourceVersions increase: {rvs:?}"
    );
}

#[test]
fn expired_resource_version_is_410_gone() {
    let sim = Sim::start();
    let rv = list_rv(&sim, "/api/v1/configmaps");
    sim.kubectl(&["create", "configmap", "c", "--from-literal=a=1"]);
    assert_eq!(sim.http("POST", "/_sim/compact", "").0, 200);
    let (code, body) = sim.http(
        "GET",
        &format!("/api/v1/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=1"),
        "",
    );
    assert_eq!(code, 200);
    let evs = events(&body);
    assert_eq!(evs.len(), 1, "{body}");
    assert_eq!(evs[0]["type"], "ERROR");
    assert_eq!(evs[0]["object"]["code"], 410);
    assert_eq!(evs[0]["object"]["reason"], "Expired");
    // A fresh list gives a version that watches fine.
    let rv = list_rv(&sim, "/api/v1/configmaps");
    let (_, body) = sim.http(
        "GET",
        &format!("/api/v1/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=1"),
        "",
    );
    assert!(events(&body).is_empty(), "{body}");
}

#[test]
fn bookmarks_and_initial_events() {
    let sim = Sim::start();
    sim.kubectl(&["create", "configmap", "c", "--from-literal=a=1"]);
    let rv = list_rv(&sim, "/api/v1/configmaps");
    // Read the stream as it comes until a bookmark (the watch itself would run 10 minutes).
    let mut w = sim.open_watch(&format!(
        "/api/v1/configmaps?watch=1&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=600"
    ));
    let mut seen = Vec::new();
    loop {
        let ev = w
            .next_event()
            .unwrap_or_else(|| panic!("the watch ended without a bookmark: {seen:?}"));
        let bookmark = ev["type"] == "BOOKMARK";
        seen.push(ev);
        if bookmark {
            break;
        }
    }
    let bm = seen.last().expect("a bookmark");
    assert!(
        bm["object"]["metadata"]["resourceVersion"].is_string(),
        "{bm}"
    );
    drop(w);
    let mut w = sim.open_watch("/api/v1/namespaces/default/configmaps?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=600");
    let first = w.next_event().expect("the initial ADDED");
    assert_eq!(first["type"], "ADDED", "{first}");
    assert_eq!(first["object"]["metadata"]["name"], "c", "{first}");
    let second = w.next_event().expect("the initial-events-end bookmark");
    assert_eq!(second["type"], "BOOKMARK", "{second}");
    assert_eq!(
        second["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"], "true",
        "{second}"
    );
}

#[test]
fn field_selector_watch_sees_only_its_object() {
    let sim = Sim::start();
    let rv = list_rv(&sim, "/api/v1/namespaces/default/configmaps");
    sim.kubectl(&["create", "configmap", "a", "--from-literal=x=1"]);
    sim.kubectl(&["create", "configmap", "b", "--from-literal=x=1"]);
    let (_, body) = sim.http("GET", &format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}&fieldSelector=metadata.name%3Db&timeoutSeconds=1"), "");
    let evs = events(&body);
    assert_eq!(evs.len(), 1, "{body}");
    assert_eq!(evs[0]["object"]["metadata"]["name"], "b");
}

#[test]
fn injected_errors_and_latency() {
    let sim = Sim::start();
    let (code, _) = sim.http(
        "POST",
        "/_sim/faults",
        r#"{"failNext": 2, "failCode": 503}"#,
    );
    assert_eq!(code, 200);
    for _ in 0..2 {
        let (code, body) = sim.http("GET", "/api/v1/namespaces", "");
        assert_eq!(code, 503, "{body}");
        assert!(body.contains("\"reason\":\"ServiceUnavailable\""), "{body}");
    }
    assert_eq!(sim.http("GET", "/api/v1/namespaces", "").0, 200);
    sim.http(
        "POST",
        "/_sim/faults",
        r#"{"failNext": 1, "failPath": "/namespaces/default"}"#,
    );
    let err = sim.kubectl_fails(&["get", "ns", "default", "--request-timeout=60s"]);
    assert!(err.contains("injected failure"), "{err}");
    sim.http("POST", "/_sim/faults", r#"{"latencyMs": 400}"#);
    let start = Instant::now();
    assert_eq!(sim.http("GET", "/api/v1/namespaces/default", "").0, 200);
    assert!(start.elapsed() >= Duration::from_millis(400));
    sim.http("POST", "/_sim/faults", "{}");
    let (code, body) = sim.http("POST", "/_sim/faults", r#"{"nope": 1}"#);
    assert_eq!(code, 400, "unknown fault fields are rejected: {body}");
}

#[test]
fn api_down_for_a_while_then_back_with_its_state() {
    let sim = Sim::start();
    sim.kubectl(&["create", "namespace", "vault"]);
    // An outage far longer than the test: the test ends it (SIGUSR1) once kubectl has failed,
    // so a slow kubectl cannot miss it.
    assert_eq!(sim.http("POST", "/_sim/down?seconds=3000", "").0, 200);
    wait_until("listener closed", PATIENCE, || {
        TcpStream::connect(&sim.addr).is_err()
    });
    let err = sim.kubectl_fails(&["get", "ns", "vault", "--request-timeout=60s"]);
    assert!(
        err.contains("connection refused") || err.contains("Unable to connect"),
        "{err}"
    );
    // Still down after kubectl's attempt, however long it took.
    assert!(TcpStream::connect(&sim.addr).is_err(), "still down");
    sim.end_outage();
    wait_until("listener back", PATIENCE, || {
        TcpStream::connect(&sim.addr).is_ok()
    });
    assert_eq!(
        sim.kubectl(&["get", "ns", "vault", "-o", "name"]).trim(),
        "namespace/vault"
    );
}

#[test]
fn dropped_watch_ends_mid_stream() {
    let sim = Sim::start();
    let mut s = TcpStream::connect(&sim.addr).expect("connect");
    // The watch would run 10 minutes; reading stops with an error after 2.
    s.set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    write!(
        s,
        "GET /api/v1/configmaps?watch=1&timeoutSeconds=600 HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .expect("send");
    // The response head comes once the watch is subscribed: drop it only then.
    let mut raw = vec![0u8; 12];
    s.read_exact(&mut raw).expect("response head");
    assert_eq!(sim.http("POST", "/_sim/drop-watches", "").0, 200);
    let ended = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    assert!(ended.is_ok(), "the watch ended when dropped: {ended:?}");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "a dropped watch has no clean end of stream: {text:?}"
    );
}
