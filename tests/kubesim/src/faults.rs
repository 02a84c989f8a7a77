//! Fault injection: added latency, 5xx answers, dropped watches, the API down for a while.
//! Set by the scenario file at start or at run time through `/_sim/...`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{Resp, Sim, error_response, json_response};
use crate::status::ApiError;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Faults {
    /// Added to every API request.
    pub latency_ms: u64,
    /// The next N API requests fail with `fail_code` (default 500).
    pub fail_next: u32,
    pub fail_code: Option<u16>,
    /// Only requests whose path contains this fail (all when unset).
    pub fail_path: Option<String>,
    /// Set by `/_sim/down`: the listener is closed until then.
    #[serde(skip)]
    pub down_until: Option<Instant>,
}

/// Applies latency and injected errors before a request is served.
pub async fn before_request(sim: &Arc<Sim>, path: &str) -> Option<ApiError> {
    let (latency, fail) = {
        let mut f = sim.faults.lock().unwrap_or_else(|p| p.into_inner());
        let applies = f.fail_path.as_deref().is_none_or(|p| path.contains(p));
        let fail = if f.fail_next > 0 && applies {
            f.fail_next -= 1;
            Some(f.fail_code.unwrap_or(500))
        } else {
            None
        };
        (f.latency_ms, fail)
    };
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    fail.map(|code| ApiError::Injected(format!("kubesim: injected failure ({code})"), code))
}

fn down_seconds(query: Option<&str>) -> Option<f64> {
    crate::api::query_map(query)
        .get("seconds")
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0 && *s < 3600.0)
}

/// `/_sim/*`: the admin API (never subject to faults).
pub async fn admin(sim: &Arc<Sim>, method: Method, path: &str, req: Request<Incoming>) -> Resp {
    let query = req.uri().query().map(str::to_string);
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return error_response(&ApiError::BadRequest(e.to_string())),
    };
    match (method, path.trim_end_matches('/')) {
        (Method::GET, "healthz") => json_response(200, &json!({"ok": true})),
        (Method::GET, "requests") => {
            let c = sim
                .requests
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            json_response(200, &json!(c))
        }
        (Method::DELETE, "requests") => {
            *sim.requests.lock().unwrap_or_else(|p| p.into_inner()) = Default::default();
            json_response(200, &json!({"ok": true}))
        }
        (Method::GET, "faults") => {
            let f = sim.faults.lock().unwrap_or_else(|p| p.into_inner()).clone();
            json_response(
                200,
                &json!({"latencyMs": f.latency_ms, "failNext": f.fail_next, "failCode": f.fail_code, "failPath": f.fail_path}),
            )
        }
        (Method::POST | Method::PUT, "faults") => match serde_json::from_slice::<Faults>(&body) {
            Ok(new) => {
                let mut f = sim.faults.lock().unwrap_or_else(|p| p.into_inner());
                let down = f.down_until;
                *f = Faults {
                    down_until: down,
                    ..new
                };
                json_response(200, &json!({"ok": true}))
            }
            Err(e) => error_response(&ApiError::BadRequest(format!("faults: {e}"))),
        },
        (Method::POST, "drop-watches") => {
            sim.drop_watches.send_modify(|n| *n += 1);
            json_response(200, &json!({"ok": true}))
        }
        (Method::POST, "down") => match down_seconds(query.as_deref()) {
            Some(secs) => {
                sim.faults
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .down_until = Some(Instant::now() + Duration::from_secs_f64(secs));
                // After this answer is written: close the listener and every open connection.
                let sim = sim.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    sim.drop_watches.send_modify(|n| *n += 1);
                    sim.kill_conns.send_modify(|n| *n += 1);
                    sim.down.notify_one();
                });
                json_response(200, &json!({"ok": true, "downForSeconds": secs}))
            }
            None => error_response(&ApiError::BadRequest(
                "down needs ?seconds=N (0 < N < 3600)".into(),
            )),
        },
        (Method::POST, "compact") => {
            sim.store().compact();
            json_response(200, &json!({"ok": true}))
        }
        (Method::POST, "pod-log") => {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            match (
                v.get("namespace").and_then(Value::as_str),
                v.get("name").and_then(Value::as_str),
                v.get("text").and_then(Value::as_str),
            ) {
                (Some(ns), Some(name), Some(text)) => {
                    let mut logs = sim.pod_logs.lock().unwrap_or_else(|p| p.into_inner());
                    logs.entry(format!("{ns}/{name}"))
                        .or_default()
                        .push_str(text);
                    json_response(200, &json!({"ok": true}))
                }
                _ => error_response(&ApiError::BadRequest(
                    "pod-log needs {\"namespace\", \"name\", \"text\"}".into(),
                )),
            }
        }
        _ => error_response(&ApiError::NoRoute),
    }
}
