//! `pods/portforward`: the connection upgrade, the two wire protocols clients speak, and the
//! relay to the real address the pod's `kubesim.drctl.dev/port-forward` annotation names.
//!
//! - WebSocket, subprotocol `v4.channel.k8s.io` (also `portforward.k8s.io`, `v5.channel.k8s.io`,
//!   or none): kube-rs' `Api::<Pod>::portforward`. Ports come from `?ports=`; per port `i` a data
//!   channel `2i` and an error channel `2i+1`, each opened by a frame carrying the port as two
//!   little-endian bytes; every message is one channel byte then payload. One connection per
//!   WebSocket; when every port's target has closed, the server closes the WebSocket.
//! - WebSocket, subprotocol `SPDY/3.1+portforward.k8s.io`: kubectl 1.31+ tunnels SPDY through
//!   binary messages. And `Upgrade: SPDY/3.1` with `X-Stream-Protocol-Version:
//!   portforward.k8s.io`: kubectl's fallback. Both are served by [`crate::spdy`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::api::{Resp, Sim, error_response};
use crate::body::SimBody;
use crate::status::ApiError;
use crate::store::meta_str;

/// `PORT=HOST:PORT[,PORT=HOST:PORT...]`: where a pod's ports really are.
pub const PORT_FORWARD_ANNOTATION: &str = "kubesim.drctl.dev/port-forward";

const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
const SPDY_PROTOCOL: &str = "portforward.k8s.io";

/// What a relay reports toward the client of one forwarded connection.
pub enum Up {
    Data(Bytes),
    /// A failure, written on the error channel/stream (as the kubelet does).
    Error(String),
    /// The target closed (or never opened): the client side is closed.
    End,
}

/// The pod a port-forward connection was opened to; the target is looked up per forwarded
/// connection, so the annotation may change while a tunnel is open.
pub struct PodTarget {
    pub sim: Arc<Sim>,
    pub ns: String,
    pub name: String,
    pub uid: String,
}

impl PodTarget {
    fn lookup(&self, port: u16) -> Result<String, String> {
        let pods = {
            let store = self.sim.store();
            let rt = store.core("pods");
            store.get(&rt, &self.ns, &self.name)
        };
        let pod = pods.map_err(|e| e.to_string())?;
        let mapping = pod
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(PORT_FORWARD_ANNOTATION))
            .and_then(Value::as_str)
            .unwrap_or_default();
        parse_mapping(mapping, port).ok_or_else(|| {
            format!(
                "kubesim: the pod has no mapping for port {port} in its {PORT_FORWARD_ANNOTATION} annotation ({mapping:?})"
            )
        })
    }
}

/// The target for `port` in a `PORT=HOST:PORT,...` list.
pub fn parse_mapping(mapping: &str, port: u16) -> Option<String> {
    mapping.split(',').find_map(|entry| {
        let (p, addr) = entry.trim().split_once('=')?;
        (p.trim().parse::<u16>().ok()? == port).then(|| addr.trim().to_string())
    })
}

/// Connects to a loopback address only: the lab never reaches anything else.
async fn connect_loopback(addr: &str) -> Result<TcpStream, String> {
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| format!("resolving {addr}: {e}"))?
        .collect();
    let Some(sa) = addrs.iter().find(|a| a.ip().is_loopback()) else {
        return Err(format!(
            "kubesim forwards to loopback addresses only, not {addr}"
        ));
    };
    match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(sa)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(format!("failed to connect to {addr}: {e}")),
        Err(_) => Err(format!("failed to connect to {addr}: timed out")),
    }
}

/// Relays one forwarded connection: client bytes from `from_client` to the target, target
/// bytes to `up`. Ends when the target closes; `from_client` closing half-closes the target.
pub async fn forward_one(
    target: Arc<PodTarget>,
    port: u16,
    mut from_client: mpsc::Receiver<Bytes>,
    up: mpsc::Sender<Up>,
) {
    // The kubelet's wording (the pod's full name is NAME_NAMESPACE).
    let prefix = format!(
        "error forwarding port {port} to pod {}_{}, uid {}: ",
        target.name, target.ns, target.uid
    );
    let stream = match target.lookup(port) {
        Ok(addr) => connect_loopback(&addr).await,
        Err(e) => Err(e),
    };
    let stream = match stream {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "kubesim: port-forward {}/{}: {prefix}{e}",
                target.ns, target.name
            );
            let _ = up.send(Up::Error(format!("{prefix}{e}"))).await;
            let _ = up.send(Up::End).await;
            return;
        }
    };
    let (mut rd, mut wr) = stream.into_split();
    let to_target = async move {
        while let Some(b) = from_client.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
        // Keep the write half alive until the relay ends.
        std::future::pending::<()>().await;
    };
    let from_target = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if up
                        .send(Up::Data(Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
        let _ = up.send(Up::End).await;
    };
    tokio::select! {
        _ = to_target => {}
        _ = from_target => {}
    }
}

/// `Some((namespace, pod))` for `/api/v1/namespaces/NS/pods/NAME/portforward`.
pub fn match_path(path: &str) -> Option<(String, String)> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["api", "v1", "namespaces", ns, "pods", name, "portforward"] => {
            Some((ns.to_string(), name.to_string()))
        }
        _ => None,
    }
}

fn header_list(req: &Request<Incoming>, name: header::HeaderName) -> Vec<String> {
    req.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// `ports` (or the kubelet's `port`), repeated or comma-separated.
fn query_ports(query: Option<&str>) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for kv in query.unwrap_or_default().split('&') {
        let Some((k, v)) = kv.split_once('=') else {
            continue;
        };
        if k != "ports" && k != "port" {
            continue;
        }
        let v = v.replace("%2C", ",").replace("%2c", ",");
        for p in v.split(',').filter(|p| !p.is_empty()) {
            let n: u16 = p
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("invalid port {p:?}"))?;
            ports.push(n);
        }
    }
    Ok(ports)
}

enum Mode {
    Channels {
        protocol: Option<String>,
        ports: Vec<u16>,
    },
    Tunnel,
    Spdy,
}

fn bad_request(msg: impl Into<String>) -> Resp {
    error_response(&ApiError::BadRequest(msg.into()))
}

/// Serves `pods/NAME/portforward`: the upgrade response now, the tunnel in a task.
pub async fn handle(sim: Arc<Sim>, mut req: Request<Incoming>, ns: String, name: String) -> Resp {
    let pod = {
        let store = sim.store();
        let rt = store.core("pods");
        store.get(&rt, &ns, &name)
    };
    let pod = match pod {
        Ok(p) => p,
        Err(e) => return error_response(&e),
    };
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("Pending");
    if phase != "Running" {
        return bad_request(format!(
            "unable to upgrade connection: pod {name} is not running (phase {phase})"
        ));
    }
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let mut response = Response::new(SimBody::full(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    let mode = if upgrade == "websocket" {
        let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY) else {
            return bad_request("missing Sec-WebSocket-Key");
        };
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let Ok(accept) = HeaderValue::from_str(&accept) else {
            return bad_request("invalid Sec-WebSocket-Key");
        };
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        let offered = header_list(&req, header::SEC_WEBSOCKET_PROTOCOL);
        let chosen = [
            TUNNEL_PROTOCOL,
            "v4.channel.k8s.io",
            SPDY_PROTOCOL,
            "channel.k8s.io",
            "v5.channel.k8s.io",
        ]
        .into_iter()
        .find(|p| offered.iter().any(|o| o == p));
        if chosen.is_none() && !offered.is_empty() {
            return bad_request(format!(
                "unable to upgrade connection: requested protocol(s) are not supported: {offered:?}"
            ));
        }
        if let Some(p) = chosen {
            headers.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p));
        }
        if chosen == Some(TUNNEL_PROTOCOL) {
            Mode::Tunnel
        } else {
            let ports = match query_ports(req.uri().query()) {
                Ok(p) if !p.is_empty() => p,
                Ok(_) => return bad_request("query parameter \"ports\" is required"),
                Err(e) => return bad_request(e),
            };
            Mode::Channels {
                protocol: chosen.map(str::to_string),
                ports,
            }
        }
    } else if upgrade.starts_with("spdy/3.1") {
        let versions = header_list(
            &req,
            header::HeaderName::from_static("x-stream-protocol-version"),
        );
        if !versions.is_empty() && !versions.iter().any(|v| v == SPDY_PROTOCOL) {
            return bad_request(format!(
                "unable to upgrade: unable to negotiate protocol: client supports {versions:?}, server supports [\"{SPDY_PROTOCOL}\"]"
            ));
        }
        headers.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        headers.insert(
            header::HeaderName::from_static("x-stream-protocol-version"),
            HeaderValue::from_static(SPDY_PROTOCOL),
        );
        Mode::Spdy
    } else {
        return bad_request("Upgrade request required");
    };
    let target = Arc::new(PodTarget {
        sim: sim.clone(),
        ns,
        name,
        uid: meta_str(&pod, "uid").to_string(),
    });
    let on_upgrade = hyper::upgrade::on(&mut req);
    let mut kill = sim.kill_conns.subscribe();
    tokio::spawn(async move {
        let io = match on_upgrade.await {
            Ok(u) => TokioIo::new(u),
            Err(e) => {
                eprintln!("kubesim: port-forward upgrade failed: {e}");
                return;
            }
        };
        let what = format!("{}/{}", target.ns, target.name);
        eprintln!("kubesim: port-forward to pod {what} opened");
        let run = async {
            match mode {
                Mode::Spdy => {
                    let (rd, wr) = tokio::io::split(io);
                    crate::spdy::serve(rd, wr, target).await;
                }
                Mode::Tunnel => {
                    let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
                    tunnel(ws, target).await;
                }
                Mode::Channels { protocol, ports } => {
                    let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
                    let v5 = protocol.as_deref() == Some("v5.channel.k8s.io");
                    channels(ws, target, ports, v5).await;
                }
            }
        };
        tokio::select! {
            _ = run => {}
            _ = kill.changed() => {}
        }
        eprintln!("kubesim: port-forward to pod {what} closed");
    });
    response
}

fn debug(args: std::fmt::Arguments<'_>) {
    if std::env::var_os("KUBESIM_DEBUG").is_some() {
        eprintln!("kubesim: port-forward {args}");
    }
}

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// SPDY carried in WebSocket binary messages (no channel byte), bridged through a pipe.
async fn tunnel(ws: Ws, target: Arc<PodTarget>) {
    let (mut sink, mut stream) = ws.split();
    let (spdy_side, ws_side) = tokio::io::duplex(256 * 1024);
    let (mut from_spdy, mut to_spdy) = tokio::io::split(ws_side);
    let inbound = async move {
        loop {
            match stream.next().await {
                Some(Ok(Message::Binary(b))) => {
                    if to_spdy.write_all(&b).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(c))) => {
                    debug(format_args!("tunnel: client closed the WebSocket ({c:?})"));
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    eprintln!("kubesim: port-forward tunnel: {e}");
                    break;
                }
                None => {
                    debug(format_args!("tunnel: WebSocket ended"));
                    break;
                }
            }
        }
        let _ = to_spdy.shutdown().await;
    };
    let outbound = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from_spdy.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sink.send(Message::binary(buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = sink.send(Message::Close(None)).await;
        let _ = sink.close().await;
    };
    let (rd, wr) = tokio::io::split(spdy_side);
    tokio::join!(crate::spdy::serve(rd, wr, target), inbound, outbound);
}

/// The channel protocol (kube-rs): one relay per requested port.
async fn channels(ws: Ws, target: Arc<PodTarget>, ports: Vec<u16>, v5: bool) {
    let (mut sink, mut stream) = ws.split();
    let (out, mut out_rx) = mpsc::channel::<Vec<u8>>(64);
    let writer = async move {
        while let Some(frame) = out_rx.recv().await {
            if sink.send(Message::binary(frame)).await.is_err() {
                return;
            }
        }
        let _ = sink.send(Message::Close(None)).await;
        let _ = sink.close().await;
    };
    let mut inbound = Vec::new();
    let mut relays = Vec::new();
    for (i, port) in ports.iter().copied().enumerate() {
        let (data_ch, err_ch) = ((2 * i) as u8, (2 * i + 1) as u8);
        let [lo, hi] = port.to_le_bytes();
        for ch in [data_ch, err_ch] {
            let _ = out.send(vec![ch, lo, hi]).await;
        }
        let (tx, rx) = mpsc::channel::<Bytes>(64);
        inbound.push(Some(tx));
        let (up_tx, mut up_rx) = mpsc::channel::<Up>(16);
        let out = out.clone();
        let target = target.clone();
        relays.push(tokio::spawn(async move {
            let convert = async {
                while let Some(up) = up_rx.recv().await {
                    let frame = match up {
                        Up::Data(b) => [&[data_ch][..], &b].concat(),
                        Up::Error(msg) => [&[err_ch][..], msg.as_bytes()].concat(),
                        Up::End => return,
                    };
                    if out.send(frame).await.is_err() {
                        return;
                    }
                }
            };
            tokio::join!(forward_one(target, port, rx, up_tx), convert);
        }));
    }
    drop(out);
    let reader = async {
        while let Some(Ok(msg)) = stream.next().await {
            match msg {
                Message::Binary(b) if !b.is_empty() => {
                    let ch = b[0];
                    if ch == 255 && v5 {
                        // v5 close signal: the client is done writing to a channel.
                        if let Some(slot) = b.get(1).and_then(|c| inbound.get_mut(*c as usize / 2))
                            && b[1] % 2 == 0
                        {
                            *slot = None;
                        }
                        continue;
                    }
                    if ch % 2 != 0 || b.len() == 1 {
                        continue;
                    }
                    if let Some(Some(tx)) = inbound.get((ch / 2) as usize)
                        && tx.send(b.slice(1..)).await.is_err()
                    {
                        inbound[(ch / 2) as usize] = None;
                    }
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
    };
    let all_done = async {
        for r in &mut relays {
            let _ = r.await;
        }
    };
    // Ends when every port's target has closed (the writer then closes the WebSocket) or when
    // the client closes it.
    tokio::select! {
        _ = async { tokio::join!(all_done, writer) } => {}
        _ = reader => {}
    }
    for r in relays {
        r.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_and_ports_parse() {
        let m = "8200=127.0.0.1:41234, 8201 = localhost:9";
        assert_eq!(parse_mapping(m, 8200).as_deref(), Some("127.0.0.1:41234"));
        assert_eq!(parse_mapping(m, 8201).as_deref(), Some("localhost:9"));
        assert_eq!(parse_mapping(m, 80), None);
        assert_eq!(parse_mapping("", 80), None);
        assert_eq!(query_ports(Some("&ports=80%2C1234")), Ok(vec![80, 1234]));
        assert_eq!(query_ports(Some("ports=80&ports=81")), Ok(vec![80, 81]));
        assert!(query_ports(Some("ports=x")).is_err());
        assert_eq!(
            match_path("/api/v1/namespaces/vault/pods/vault-0/portforward"),
            Some(("vault".into(), "vault-0".into()))
        );
        assert_eq!(match_path("/api/v1/namespaces/vault/pods/vault-0"), None);
    }
}
