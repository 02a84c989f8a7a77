//! The one wait loop: a kube-runtime watcher (one list, then one watch resumed from the
//! last resourceVersion after a dropped connection, re-listed after a 410), a judge that
//! says whether the objects seen meet the condition, live progress, and the step's timeout.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject};
use kube::runtime::utils::Backoff;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;

use super::conn::{Conn, error_chain, short};
use super::resource::key_of;
use super::{KubeError, Out, Result};
use crate::runbook::text::Dur;

/// What the judge says about the objects seen so far.
#[derive(Default)]
pub(crate) struct Verdict {
    pub done: bool,
    /// "3/5 pods Ready".
    pub summary: String,
    /// The objects that do not meet the condition yet (shown, first few).
    pub late: Vec<String>,
    /// A state the wait cannot recover from (a Job Failed): fail now.
    pub failed: Option<String>,
}

impl Verdict {
    /// At the timeout: what is late.
    pub fn line(&self) -> String {
        late_line(&self.summary, &self.late, "late")
    }

    /// While waiting: what it still waits for (not late yet: the timeout decides that).
    pub fn progress(&self) -> String {
        late_line(&self.summary, &self.late, "waiting for")
    }
}

pub(crate) fn late_line(summary: &str, late: &[String], label: &str) -> String {
    const SHOWN: usize = 8;
    if late.is_empty() {
        return summary.to_owned();
    }
    let mut names = late
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if late.len() > SHOWN {
        names.push_str(&format!(" and {} more", late.len() - SHOWN));
    }
    format!("{summary}, {label}: {names}")
}

/// Retry soon after a dropped watch: the default (800 ms doubling to 30 s) would leave a
/// wait idle long after the API server came back.
struct Quick(Duration);

impl Iterator for Quick {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        let d = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(2));
        Some(d)
    }
}

impl Backoff for Quick {
    fn reset(&mut self) {
        self.0 = Duration::from_millis(200);
    }
}

/// The next item of a stream (drctl has no `futures` dependency; the watcher's own
/// extension trait brings `Stream` in).
async fn next<S>(s: &mut S) -> Option<S::Item>
where
    S: WatchStreamExt + Unpin,
{
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *s).poll_next(cx)).await
}

/// Watch `api` (narrowed by `cfg`) until `judge` says done; returns the objects by
/// `ns/name`. Ends early (before the engine's own bound) on the step's timeout, naming
/// what is late.
pub(crate) async fn until(
    conn: &Conn,
    out: &mut Out<'_>,
    api: Api<DynamicObject>,
    cfg: watcher::Config,
    what: &str,
    mut judge: impl FnMut(&BTreeMap<String, Value>) -> Verdict,
) -> Result<BTreeMap<String, Value>> {
    let mut stream = Box::pin(watcher(api, cfg).backoff(Quick(Duration::from_millis(200))));
    let mut objs: BTreeMap<String, Value> = BTreeMap::new();
    let mut relist: Option<BTreeMap<String, Value>> = None;
    let mut listed = false;
    let deadline = out.ctx.timeout.map(|t| {
        let margin = (t / 20).min(Duration::from_millis(500));
        (t, out.started + t.saturating_sub(margin))
    });
    let far = out.started + Duration::from_secs(86400 * 365);
    let mut shown = (String::new(), Instant::now() - Duration::from_secs(5));
    let mut interrupted: Option<String> = None;
    let mut resumed = 0u32;
    let mut last = Verdict::default();
    // Judging every object at each event would cost O(n²) over thousands of objects: judge
    // at most every JUDGE_EVERY, and once more when the events pause.
    let mut dirty = false;
    let mut judged = Instant::now() - JUDGE_EVERY;
    loop {
        let judge_now = tokio::select! {
            item = next(&mut stream) => {
                let ev = match item {
                    None => {
                        return Err(KubeError::Failed(format!(
                            "the watch of {what} ended unexpectedly"
                        )));
                    }
                    Some(Err(e)) => {
                        if let Some(fatal) = permanent(conn, &e, what) {
                            return Err(fatal);
                        }
                        let msg = e.to_string();
                        out.progress(format!(
                            "{}; watch interrupted ({msg}), resuming",
                            if listed { last.progress() } else { what.to_owned() }
                        ));
                        interrupted = Some(msg);
                        continue;
                    }
                    Some(Ok(ev)) => ev,
                };
                if interrupted.take().is_some() {
                    resumed += 1;
                }
                match ev {
                    watcher::Event::Init => relist = Some(BTreeMap::new()),
                    watcher::Event::InitApply(o) => {
                        let v = to_value(&o);
                        relist.get_or_insert_with(BTreeMap::new).insert(key_of(&v), v);
                    }
                    watcher::Event::InitDone => {
                        objs = relist.take().unwrap_or_default();
                        listed = true;
                    }
                    watcher::Event::Apply(o) => {
                        let v = to_value(&o);
                        objs.insert(key_of(&v), v);
                    }
                    watcher::Event::Delete(o) => {
                        objs.remove(&key_of(&to_value(&o)));
                    }
                }
                if !listed || relist.is_some() {
                    continue;
                }
                dirty = true;
                judged.elapsed() >= JUDGE_EVERY
            }
            _ = tokio::time::sleep_until((judged + JUDGE_EVERY).into()), if dirty => true,
            _ = tokio::time::sleep_until(deadline.map_or(far, |d| d.1).into()) => {
                let state = if listed {
                    judge(&objs).line()
                } else {
                    format!("{what}: the API server never answered the list")
                };
                let t = deadline.map_or(Duration::ZERO, |d| d.0);
                return Err(KubeError::Timeout(format!("{} ({state})", Dur::human(t))));
            }
        };
        if !judge_now {
            continue;
        }
        dirty = false;
        judged = Instant::now();
        let v = judge(&objs);
        if let Some(f) = v.failed {
            return Err(KubeError::Failed(f));
        }
        if v.done {
            if resumed > 0 {
                out.line(format!(
                    "the watch was resumed {resumed} time(s) after the connection dropped"
                ));
            }
            out.line(v.summary.clone());
            return Ok(objs);
        }
        let line = v.progress();
        if line != shown.0 && shown.1.elapsed() >= Duration::from_millis(250) {
            out.progress(line.clone());
            shown = (line, Instant::now());
        }
        last = v;
    }
}

const JUDGE_EVERY: Duration = Duration::from_millis(100);

/// Errors a resumed watch cannot get past: credentials, RBAC, a kind that is not served, a
/// server certificate that cannot be verified.
fn permanent(conn: &Conn, e: &watcher::Error, what: &str) -> Option<KubeError> {
    let status = match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s))
        | watcher::Error::WatchError(s) => s,
        watcher::Error::InitialListFailed(a @ kube::Error::Auth(_))
        | watcher::Error::WatchStartFailed(a @ kube::Error::Auth(_)) => {
            return Some(KubeError::Credentials {
                server: conn.server.clone(),
                detail: short(a),
            });
        }
        watcher::Error::InitialListFailed(e) | watcher::Error::WatchStartFailed(e) => {
            return conn.tls_error(&error_chain(e));
        }
        _ => return None,
    };
    matches!(status.code, 401 | 403 | 404)
        .then(|| conn.error(kube::Error::Api(status.clone()), what))
}

pub(crate) fn to_value(o: &DynamicObject) -> Value {
    serde_json::to_value(o).unwrap_or(Value::Null)
}
