//! The kube-rs side of the conformance suite: typed API, dynamic API via discovery, watcher and
//! await_condition against kubesim, as drctl's Kubernetes backend will use them.

mod common;

use common::{PATIENCE, Sim};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{DynamicObject, GroupVersionKind};
use kube::discovery::Discovery;
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::json;

async fn client(sim: &Sim) -> Client {
    let kubeconfig = Kubeconfig::read_from(sim.kubeconfig()).expect("read kubesim's kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig to client config");
    Client::try_from(config).expect("build kube client")
}

/// Only so that a broken simulator fails the test instead of hanging it.
const WAIT: std::time::Duration = PATIENCE;

fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

#[tokio::test]
async fn typed_crud_and_status_errors() {
    let sim = Sim::start();
    let client = client(&sim).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "vault"}})).expect("namespace");
    let created = namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    assert!(created.metadata.uid.is_some());
    assert_eq!(
        created.status.and_then(|s| s.phase).as_deref(),
        Some("Active")
    );
    let err = namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect_err("duplicate");
    assert_eq!(api_code(&err), Some(409), "{err}");

    let secrets: Api<Secret> = Api::namespaced(client.clone(), "vault");
    let mut secret = Secret::default();
    secret.metadata.name = Some("vault-aws-kms".into());
    secret.metadata.labels = Some([("app".to_string(), "vault".to_string())].into());
    secret.data = Some([("AWS_REGION".to_string(), ByteString(b"us-east-1".to_vec()))].into());
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
    let got = secrets.get("vault-aws-kms").await.expect("get secret");
    assert_eq!(
        got.data.as_ref().expect("data")["AWS_REGION"].0,
        b"us-east-1"
    );
    assert_eq!(got.type_.as_deref(), Some("Opaque"));

    let listed = secrets
        .list(&ListParams::default().labels("app in (vault)"))
        .await
        .expect("list");
    assert_eq!(listed.items.len(), 1);
    let listed = secrets
        .list(&ListParams::default().fields("metadata.name=other"))
        .await
        .expect("list");
    assert!(listed.items.is_empty());

    let patched = secrets
        .patch(
            "vault-aws-kms",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"restored": "true"}}})),
        )
        .await
        .expect("merge patch");
    assert_eq!(patched.metadata.labels.expect("labels")["restored"], "true");
    // A stale resourceVersion in a replace is a 409 Conflict.
    let mut stale = got.clone();
    stale.metadata.resource_version = created.metadata.resource_version.clone();
    let err = secrets
        .replace("vault-aws-kms", &PostParams::default(), &stale)
        .await
        .expect_err("stale replace");
    assert_eq!(api_code(&err), Some(409), "{err}");

    secrets
        .delete("vault-aws-kms", &DeleteParams::default())
        .await
        .expect("delete");
    let err = secrets.get("vault-aws-kms").await.expect_err("gone");
    assert_eq!(api_code(&err), Some(404), "{err}");
    let err = Api::<Secret>::namespaced(client, "missing")
        .create(&PostParams::default(), &secret)
        .await
        .expect_err("no namespace");
    assert_eq!(api_code(&err), Some(404), "{err}");
}

#[tokio::test]
async fn dynamic_api_via_discovery_and_await_condition() {
    let sim = Sim::start_with("restoreCompleteAfterMs: 300");
    let client = client(&sim).await;
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .expect("discovery");
    let gvk = GroupVersionKind::gvk("velero.io", "v1", "Restore");
    let (ar, caps) = discovery
        .resolve_gvk(&gvk)
        .expect("velero Restore is discoverable");
    assert!(caps.supports_operation("watch"));
    let es = GroupVersionKind::gvk("external-secrets.io", "v1", "ExternalSecret");
    assert!(discovery.resolve_gvk(&es).is_some(), "ESO v1 is served");

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "velero"}})).expect("ns"),
        )
        .await
        .expect("create namespace");
    let restores: Api<DynamicObject> = Api::namespaced_with(client.clone(), "velero", &ar);
    let restore: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "velero.io/v1", "kind": "Restore",
        "metadata": {"name": "r1"}, "spec": {"backupName": "daily"}
    }))
    .expect("restore object");
    restores
        .create(&PostParams::default(), &restore)
        .await
        .expect("create restore");
    let done = tokio::time::timeout(
        WAIT,
        await_condition(restores, "r1", |o: Option<&DynamicObject>| {
            o.and_then(|o| o.data.pointer("/status/phase"))
                .and_then(|p| p.as_str())
                == Some("Completed")
        }),
    )
    .await
    .expect("restore completes in time")
    .expect("watch ok");
    assert!(done.is_some());
}

#[tokio::test]
async fn watcher_and_pod_job_crd_conditions() {
    let sim = Sim::start_with("podReadyAfterMs: 300\njobCompleteAfterMs: 300");
    let client = client(&sim).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "vault"}})).expect("ns"),
        )
        .await
        .expect("create namespace");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "vault");
    let stream = watcher(pods.clone(), watcher::Config::default()).applied_objects();
    let ready = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(pod) = stream.try_next().await.expect("watch stream") {
            let ready = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if ready {
                return pod.metadata.name;
            }
        }
        None
    });
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "vault-0"},
        "spec": {"containers": [{"name": "vault", "image": "openbao"}]}
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    let name = tokio::time::timeout(WAIT, ready)
        .await
        .expect("watcher sees Ready")
        .expect("task");
    assert_eq!(name.as_deref(), Some("vault-0"));
    tokio::time::timeout(
        WAIT,
        await_condition(pods, "vault-0", conditions::is_pod_running()),
    )
    .await
    .expect("running in time")
    .expect("watch ok");

    let jobs: Api<Job> = Api::namespaced(client.clone(), "vault");
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": "vault-auto-unseal"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "unseal", "image": "openbao"}]}}}
    }))
    .expect("job");
    jobs.create(&PostParams::default(), &job)
        .await
        .expect("create job");
    tokio::time::timeout(
        WAIT,
        await_condition(jobs, "vault-auto-unseal", conditions::is_job_completed()),
    )
    .await
    .expect("job completes in time")
    .expect("watch ok");

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"kind": "Widget", "plural": "widgets"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    }))
    .expect("crd");
    crds.patch(
        "widgets.example.com",
        &PatchParams::apply("drctl-test"),
        &Patch::Apply(&crd),
    )
    .await
    .expect("server-side apply creates the CRD");
    tokio::time::timeout(
        WAIT,
        await_condition(
            crds,
            "widgets.example.com",
            conditions::is_crd_established(),
        ),
    )
    .await
    .expect("established in time")
    .expect("watch ok");
    let discovery = Discovery::new(client).run().await.expect("discovery");
    assert!(
        discovery
            .resolve_gvk(&GroupVersionKind::gvk("example.com", "v1", "Widget"))
            .is_some()
    );
}

#[tokio::test]
async fn watcher_recovers_from_a_dropped_watch() {
    let sim = Sim::start();
    let client = client(&sim).await;
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), "default");
    let mut stream = Box::pin(
        watcher(cms.clone(), watcher::Config::default())
            .applied_objects()
            .boxed(),
    );
    let make = |name: &str| -> k8s_openapi::api::core::v1::ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": name}, "data": {"a": "b"}}))
            .expect("configmap")
    };
    cms.create(&PostParams::default(), &make("before"))
        .await
        .expect("create");
    let first = tokio::time::timeout(WAIT, stream.try_next())
        .await
        .expect("event")
        .expect("ok")
        .expect("some");
    assert_eq!(first.metadata.name.as_deref(), Some("before"));
    // `before` came from the watcher's initial list, which was over by then: an object created
    // now can only reach it through its watch. Once it has, that watch is open (and subscribed
    // to the drop), so the drop below surely cuts a live watch.
    cms.create(&PostParams::default(), &make("live"))
        .await
        .expect("create");
    let live = tokio::time::timeout(WAIT, stream.try_next())
        .await
        .expect("event")
        .expect("ok")
        .expect("some");
    assert_eq!(live.metadata.name.as_deref(), Some("live"));
    let before_drop = sim.requests();
    assert_eq!(sim.http("POST", "/_sim/drop-watches", "").0, 200);
    cms.create(&PostParams::default(), &make("after"))
        .await
        .expect("create");
    // The watcher re-lists or re-watches after the cut and still sees the new object.
    let seen = tokio::time::timeout(WAIT, async {
        loop {
            match stream.next().await {
                Some(Ok(cm)) if cm.metadata.name.as_deref() == Some("after") => return true,
                Some(_) => continue,
                None => return false,
            }
        }
    })
    .await
    .expect("the watcher recovers in time");
    assert!(seen);
    // It did so with a new request (a re-watch or a re-list), not over the cut watch.
    let after = sim.requests();
    let n =
        |v: &serde_json::Value| v["watch"].as_u64().unwrap_or(0) + v["list"].as_u64().unwrap_or(0);
    assert!(
        n(&after) > n(&before_drop),
        "requests before the drop {before_drop}, after {after}"
    );
}

/// `Api::<Pod>::portforward` (the WebSocket channel protocol drctl uses) through kubesim to a
/// real server named by the pod's `kubesim.drctl.dev/port-forward` annotation.
#[tokio::test]
async fn portforward_relays_to_the_annotated_address() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the test server");
    let addr = server.local_addr().expect("local addr");
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = server.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                if let Ok(n) = conn.read(&mut buf).await {
                    let mut reply = b"echo:".to_vec();
                    reply.extend_from_slice(&buf[..n]);
                    let _ = conn.write_all(&reply).await;
                }
            });
        }
    });
    let sim = Sim::start_with(&format!(
        "podReadyAfterMs: 50\nobjects:\n- apiVersion: v1\n  kind: Pod\n  metadata: {{name: vault-0, namespace: vault, annotations: {{kubesim.drctl.dev/port-forward: \"8200={addr}\"}}}}\n  spec: {{containers: [{{name: vault, image: openbao}}]}}\n"
    ));
    let client = client(&sim).await;
    let pods: Api<Pod> = Api::namespaced(client, "vault");
    tokio::time::timeout(
        WAIT,
        await_condition(pods.clone(), "vault-0", conditions::is_pod_running()),
    )
    .await
    .expect("vault-0 running in time")
    .expect("vault-0 running");

    let mut pf = pods
        .portforward("vault-0", &[8200])
        .await
        .expect("portforward");
    let mut stream = pf.take_stream(8200).expect("stream for 8200");
    stream.write_all(b"ping").await.expect("write");
    let mut got = Vec::new();
    // The target closes after its reply: kubesim closes the WebSocket, the stream ends.
    tokio::time::timeout(WAIT, stream.read_to_end(&mut got))
        .await
        .expect("reply in time")
        .expect("read");
    assert_eq!(got, b"echo:ping");
    drop(stream);
    // It ends (kube-rs 5 reports SendAfterClosing here, as against a kubelet that closed
    // first: the close it sends once its stream is dropped comes after the server's).
    let _ = tokio::time::timeout(WAIT, pf.join())
        .await
        .expect("forwarder ends");

    // A port without a mapping: the error channel says why.
    let mut pf = pods
        .portforward("vault-0", &[9999])
        .await
        .expect("portforward");
    let err = pf.take_error(9999).expect("error future");
    let msg = tokio::time::timeout(WAIT, err)
        .await
        .expect("error in time")
        .expect("an error message");
    assert!(
        msg.starts_with("error forwarding port 9999 to pod vault-0_vault, uid "),
        "{msg}"
    );

    // A missing pod: 404 before any upgrade.
    let err = pods
        .portforward("nope", &[8200])
        .await
        .err()
        .expect("missing pod");
    assert_eq!(api_code(&err), Some(404), "{err}");
}
