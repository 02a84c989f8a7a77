//! The in-process action harness: one action of a backend, run as the engine runs a step
//! (a run's values, an event bus, the cancel channel, the operator), and what came of it.

use std::time::{Duration, Instant};

use drctl::backends::Backends;
use drctl::exec::backend::{ActionCtx, ActionError, ActionResult, Cancel, EventBus};
use drctl::exec::context::{RunInfo, Values};
use drctl::exec::prompt::Operator;
use drctl::runbook::Action;
use drctl::secret::Redactor;
use serde_json::Value;

use super::events::Events;

/// The one place the tests call a backend: through the engine's own dispatch, so the
/// routing the engine uses is the routing tested.
fn dispatch<'a>(
    backends: &'a Backends,
    action: &'a Action,
    ctx: &'a ActionCtx<'a>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<ActionResult, ActionError>> + 'a>> {
    // Boxed: `block_on` keeps the future it runs on the test thread's stack.
    Box::pin(drctl::exec::engine::perform(action, ctx, backends))
}

/// The harness's own bound around an action: it turns a hang into a failure.
#[derive(Clone, Copy, Debug)]
pub enum Bound {
    /// At the action's timeout, as the engine bounds a step (none without a timeout).
    AtTimeout,
    /// Two seconds after the action's timeout (or ten minutes without one): the backend's
    /// own timeout error is the one the test sees.
    AfterTimeout,
}

/// When the operator presses Ctrl-C during the action.
#[derive(Clone, Copy)]
pub enum CtrlC<'a> {
    Never,
    /// This long after the action started.
    After(Duration),
    /// As soon as this holds (polled every 5 ms).
    When(&'a dyn Fn() -> bool),
}

/// How one action runs.
pub struct Opts<'a> {
    /// A rehearsal.
    pub dry_run: bool,
    /// The step captures a secret from its output (no output line is shown).
    pub quiet: bool,
    /// The step's timeout (`ActionCtx::timeout`).
    pub timeout: Option<Duration>,
    pub bound: Bound,
    /// The run's inputs: name, value, and whether it is secret (then redacted).
    pub inputs: Vec<(&'static str, String, bool)>,
    /// The kubeconfig of the run's Kubernetes target (as `kube.use` sets it).
    pub kubeconfig: Option<String>,
    pub ctrl_c: CtrlC<'a>,
}

impl Default for Opts<'_> {
    fn default() -> Self {
        Opts {
            dry_run: false,
            quiet: false,
            timeout: Some(Duration::from_secs(60)),
            bound: Bound::AtTimeout,
            inputs: Vec::new(),
            kubeconfig: None,
            ctrl_c: CtrlC::Never,
        }
    }
}

/// What one action did: its result, the events it emitted, the run's redactor.
pub struct Run {
    pub result: Result<ActionResult, ActionError>,
    /// Every event, as JSON, one a line.
    pub events: String,
    /// The output lines, each with the time it arrived.
    pub output: Vec<(Instant, String)>,
    pub redactor: Redactor,
    /// How long the action took.
    pub elapsed: Duration,
}

impl Run {
    pub fn ok(&self) -> &ActionResult {
        match &self.result {
            Ok(r) => r,
            Err(e) => panic!("action failed: {e}\nevents:\n{}", self.events),
        }
    }

    pub fn value(&self) -> &Value {
        &self.ok().value
    }

    /// The result's lines, joined.
    pub fn lines(&self) -> String {
        self.ok().lines.join("\n")
    }

    pub fn err(&self) -> String {
        match &self.result {
            Ok(r) => panic!(
                "action succeeded: {:?}\n{}\noutput: {:?}",
                r.value,
                r.lines.join("\n"),
                self.text()
            ),
            Err(e) => e.to_string(),
        }
    }

    /// The output lines, without their times.
    pub fn text(&self) -> Vec<&str> {
        self.output.iter().map(|(_, l)| l.as_str()).collect()
    }

    /// Every text the run produced that could reach a screen, log or journal.
    pub fn visible(&self) -> String {
        let mut s = self.events.clone();
        match &self.result {
            Ok(r) => s.push_str(&r.lines.join("\n")),
            Err(e) => s.push_str(&e.to_string()),
        }
        s
    }

    /// `visible`, and the result's value too.
    pub fn visible_with_value(&self) -> String {
        let mut s = self.visible();
        if let Ok(r) = &self.result {
            s.push_str(&r.value.to_string());
        }
        s
    }
}

/// A runtime that outlives single actions: what an action leaves running (a port-forward)
/// keeps running between them.
pub struct Harness {
    rt: tokio::runtime::Runtime,
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new()
    }
}

impl Harness {
    pub fn new() -> Harness {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        Harness {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime"),
        }
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Runs `action` with `backend` as the engine runs a step.
    pub fn perform(
        &self,
        backend: &Backends,
        action: &Action,
        op: &dyn Operator,
        opts: Opts,
    ) -> Run {
        let redactor = Redactor::new();
        let mut values = Values::new(
            RunInfo {
                id: "test-run".into(),
                runbook: "test".into(),
                operator: "tester".into(),
                dry_run: opts.dry_run,
                started_at: "now".into(),
                failed_step: None,
            },
            redactor.clone(),
        );
        values.kube.kubeconfig = opts.kubeconfig.clone();
        for (k, v, secret) in &opts.inputs {
            if *secret {
                redactor.add(v);
            }
            values
                .inputs
                .insert((*k).to_owned(), minijinja::Value::from(v.clone()));
        }
        let bus = EventBus::new(redactor.clone());
        let events = Events::default();
        bus.add(Box::new(events.clone()));
        let (tx, cancel) = Cancel::never();
        let ctx = ActionCtx {
            step_id: "step",
            values: &values,
            dry_run: opts.dry_run,
            bus: &bus,
            cancel: &cancel,
            timeout: opts.timeout,
            quiet: opts.quiet,
            operator: op,
        };
        let bound = match opts.bound {
            Bound::AtTimeout => opts.timeout,
            Bound::AfterTimeout => {
                Some(opts.timeout.unwrap_or(Duration::from_secs(600)) + Duration::from_secs(2))
            }
        };
        let started = Instant::now();
        let result = self.rt.block_on(async {
            let ctrl_c = async {
                match opts.ctrl_c {
                    CtrlC::Never => {}
                    CtrlC::After(after) => {
                        tokio::time::sleep(after).await;
                        let _ = tx.send(1);
                    }
                    CtrlC::When(pressed) => {
                        while !pressed() {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        let _ = tx.send(1);
                    }
                }
                std::future::pending::<()>().await
            };
            let fut = dispatch(backend, action, &ctx);
            let bounded = async {
                match bound {
                    Some(t) => tokio::time::timeout(t, fut)
                        .await
                        .unwrap_or_else(|_| Err(ActionError::Timeout(format!("{t:?}")))),
                    None => fut.await,
                }
            };
            tokio::select! {
                r = bounded => r,
                () = ctrl_c => unreachable!("the Ctrl-C task never ends"),
            }
        });
        let elapsed = started.elapsed();
        Run {
            result,
            events: events.json(),
            output: events.output(),
            redactor,
            elapsed,
        }
    }
}

/// Runs `action` with `backend` on a runtime of its own.
pub fn perform(backend: &Backends, action: &Action, op: &dyn Operator, opts: Opts) -> Run {
    Harness::new().perform(backend, action, op, opts)
}

/// The backends of this build with `self` in place of the one from the environment: a
/// backend under test reached through the engine's dispatch.
pub trait Alone {
    fn alone(self) -> Backends;
}

macro_rules! alone {
    ($($field:ident: $ty:ty),*) => {$(
        impl Alone for $ty {
            fn alone(self) -> Backends {
                Backends {
                    $field: self,
                    ..Backends::from_env()
                }
            }
        }
    )*};
}

alone!(
    kube: drctl::backends::kube::KubeBackend,
    vault: drctl::backends::vault::VaultBackend,
    aws: drctl::backends::aws::AwsBackend,
    ssh: drctl::backends::ssh::SshBackend,
    etcd: drctl::backends::etcd::EtcdBackend
);
