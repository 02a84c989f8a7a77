//! Conformance: the real kubectl (1.32) against kubesim, for the verbs drctl relies on.

mod common;

use std::process::Stdio;

use common::{KUBECTL_TIMEOUT, PATIENCE, Sim, b64decode, file_str, wait_until};

#[test]
fn get_all_namespaces_and_discovery() {
    let sim = Sim::start();
    let ns = sim.kubectl(&["get", "ns", "-o", "name"]);
    for want in [
        "namespace/default",
        "namespace/kube-system",
        "namespace/kube-public",
    ] {
        assert!(ns.contains(want), "missing {want} in {ns}");
    }
    let all = sim.kubectl_output(&["get", "pods", "-A"]);
    assert!(all.status.success());
    assert!(String::from_utf8_lossy(&all.stderr).contains("No resources found"));
    let resources = sim.kubectl(&["api-resources", "-o", "name"]);
    for want in [
        "pods",
        "deployments.apps",
        "restores.velero.io",
        "applications.argoproj.io",
        "externalsecrets.external-secrets.io",
        "clustersecretstores.external-secrets.io",
        "volumes.longhorn.io",
        "customresourcedefinitions.apiextensions.k8s.io",
    ] {
        assert!(
            resources.lines().any(|l| l == want),
            "api-resources lacks {want}:\n{resources}"
        );
    }
    let version = sim.kubectl(&["version", "-o", "json"]);
    assert!(version.contains("\"gitVersion\": \"v1.32.0\""), "{version}");
    // ESO is served at both versions.
    sim.kubectl(&["get", "externalsecrets.v1beta1.external-secrets.io", "-A"]);
    sim.kubectl(&["get", "externalsecrets.v1.external-secrets.io", "-A"]);
}

#[test]
fn create_namespace_and_secrets_from_literals_and_files() {
    let sim = Sim::start();
    // kubectl sends these creates as protobuf.
    assert_eq!(
        sim.kubectl(&["create", "namespace", "vault"]).trim(),
        "namespace/vault created"
    );
    let cloud = sim.path("cloud");
    std::fs::write(
        &cloud,
        "[default]\naws_access_key_id=AKIA\naws_secret_access_key=s3cr3t\n",
    )
    .expect("write credentials file");
    sim.kubectl(&[
        "create",
        "secret",
        "generic",
        "vault-aws-kms",
        "--namespace",
        "vault",
        "--from-literal=AWS_ACCESS_KEY_ID=AKIA",
        "--from-literal=AWS_REGION=us-east-1",
    ]);
    sim.kubectl(&[
        "create",
        "secret",
        "generic",
        "velero-offsite-credentials",
        "-n",
        "vault",
        &format!("--from-file=cloud={}", file_str(&cloud)),
    ]);
    let region = sim.kubectl(&[
        "get",
        "secret",
        "vault-aws-kms",
        "-n",
        "vault",
        "-o",
        "jsonpath={.data.AWS_REGION}",
    ]);
    assert_eq!(b64decode(&region), "us-east-1");
    let cloud_back = sim.kubectl(&[
        "get",
        "secret",
        "velero-offsite-credentials",
        "-n",
        "vault",
        "-o",
        "jsonpath={.data.cloud}",
    ]);
    assert!(b64decode(&cloud_back).contains("aws_secret_access_key=s3cr3t"));
    let typ = sim.kubectl(&[
        "get",
        "secret",
        "vault-aws-kms",
        "-n",
        "vault",
        "-o",
        "jsonpath={.type}",
    ]);
    assert_eq!(typ, "Opaque");
    sim.kubectl(&[
        "create",
        "configmap",
        "cfg",
        "-n",
        "vault",
        "--from-literal=a=b",
    ]);
    assert_eq!(
        sim.kubectl(&[
            "get",
            "cm",
            "cfg",
            "-n",
            "vault",
            "-o",
            "jsonpath={.data.a}"
        ]),
        "b"
    );
    sim.kubectl(&["create", "serviceaccount", "vault", "-n", "vault"]);
    assert_eq!(
        sim.kubectl(&["get", "sa", "vault", "-n", "vault", "-o", "name"])
            .trim(),
        "serviceaccount/vault"
    );
}

#[test]
fn errors_are_kubernetes_statuses() {
    let sim = Sim::start();
    let err = sim.kubectl_fails(&["get", "secret", "nope", "-n", "default"]);
    assert!(
        err.contains("Error from server (NotFound): secrets \"nope\" not found"),
        "{err}"
    );
    sim.kubectl(&["create", "namespace", "dup"]);
    let err = sim.kubectl_fails(&["create", "namespace", "dup"]);
    assert!(
        err.contains("Error from server (AlreadyExists): namespaces \"dup\" already exists"),
        "{err}"
    );
    let err = sim.kubectl_fails(&[
        "create",
        "configmap",
        "x",
        "-n",
        "missing",
        "--from-literal=a=b",
    ]);
    assert!(err.contains("namespaces \"missing\" not found"), "{err}");
    let err = sim.kubectl_fails(&["apply", "-f", "-"]);
    assert!(err.contains("no objects passed to apply"), "{err}");
    let err = sim.kubectl_fails(&["get", "deployments.apps", "nope", "-n", "default"]);
    assert!(err.contains("deployments.apps \"nope\" not found"), "{err}");
}

#[test]
fn stale_resource_version_is_a_conflict() {
    let sim = Sim::start();
    sim.kubectl(&["create", "configmap", "c", "--from-literal=a=1"]);
    let stale = sim.kubectl(&["get", "cm", "c", "-o", "json"]);
    sim.kubectl(&[
        "patch",
        "cm",
        "c",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"a":"2"}}"#,
    ]);
    let file = sim.path("stale.json");
    std::fs::write(&file, stale.replace("\"1\"", "\"3\"")).expect("write stale object");
    let err = sim.kubectl_fails(&["replace", "-f", file_str(&file)]);
    assert!(
        err.contains("Conflict") && err.contains("the object has been modified"),
        "{err}"
    );
    assert_eq!(
        sim.kubectl(&["get", "cm", "c", "-o", "jsonpath={.data.a}"]),
        "2"
    );
}

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: vault-0
  namespace: vault
  labels: {app.kubernetes.io/name: vault}
spec:
  containers: [{name: vault, image: openbao/openbao}]
"#;

#[test]
fn wait_for_condition_and_jsonpath() {
    // The pod's clock starts when a client first watches pods (here `kubectl wait`): it is
    // Pending until then, however long `apply` and `get` take.
    let sim = Sim::start_with("podReadyAfterMs: 500\nclocksStartAtWatch: true");
    sim.kubectl(&["create", "namespace", "vault"]);
    sim.apply(POD);
    assert_eq!(
        sim.kubectl(&[
            "get",
            "pod",
            "vault-0",
            "-n",
            "vault",
            "-o",
            "jsonpath={.status.phase}"
        ]),
        "Pending"
    );
    let out = sim.kubectl(&[
        "-n",
        "vault",
        "wait",
        "--for=condition=ready",
        "pod/vault-0",
        KUBECTL_TIMEOUT,
    ]);
    assert_eq!(out.trim(), "pod/vault-0 condition met");
    let out = sim.kubectl(&[
        "-n",
        "vault",
        "wait",
        "--for=jsonpath={.status.phase}=Running",
        "pod/vault-0",
        KUBECTL_TIMEOUT,
    ]);
    assert_eq!(out.trim(), "pod/vault-0 condition met");
    let err = sim.kubectl_fails(&[
        "-n",
        "vault",
        "wait",
        "--for=jsonpath={.status.phase}=Failed",
        "pod/vault-0",
        "--timeout=1s",
    ]);
    assert!(err.contains("timed out waiting"), "{err}");
}

#[test]
fn patch_merge_json_strategic_and_label() {
    let sim = Sim::start();
    sim.kubectl(&["create", "namespace", "vault"]);
    sim.apply(POD);
    sim.kubectl(&[
        "-n",
        "vault",
        "patch",
        "pod",
        "vault-0",
        "--type",
        "merge",
        "-p",
        r#"{"metadata":{"annotations":{"a":"1"}}}"#,
    ]);
    sim.kubectl(&[
        "-n",
        "vault",
        "patch",
        "pod",
        "vault-0",
        "--type",
        "json",
        "-p",
        r#"[{"op":"add","path":"/metadata/labels/tier","value":"db"}]"#,
    ]);
    sim.kubectl(&[
        "-n",
        "vault",
        "patch",
        "pod",
        "vault-0",
        "-p",
        r#"{"spec":{"containers":[{"name":"vault","image":"openbao/openbao:2.7"}]}}"#,
    ]);
    sim.kubectl(&["-n", "vault", "label", "pod", "vault-0", "restored=true"]);
    let obj = sim.kubectl(&["-n", "vault", "get", "pod", "vault-0", "-o", "jsonpath={.metadata.annotations.a} {.metadata.labels.tier} {.metadata.labels.restored} {.spec.containers[0].image} {.spec.containers[0].name}"]);
    assert_eq!(obj, "1 db true openbao/openbao:2.7 vault");
    // Label selectors, equality and set-based.
    let names = sim.kubectl(&[
        "get",
        "pods",
        "-A",
        "-l",
        "tier in (db,cache),restored=true",
        "-o",
        "name",
    ]);
    assert_eq!(names.trim(), "pod/vault-0");
    let none = sim.kubectl_output(&["get", "pods", "-A", "-l", "tier notin (db)", "-o", "name"]);
    assert!(String::from_utf8_lossy(&none.stdout).trim().is_empty());
    let by_field = sim.kubectl(&[
        "get",
        "pods",
        "-A",
        "--field-selector",
        "metadata.namespace=vault,metadata.name=vault-0",
        "-o",
        "name",
    ]);
    assert_eq!(by_field.trim(), "pod/vault-0");
    let err = sim.kubectl_fails(&[
        "-n",
        "vault",
        "patch",
        "pod",
        "vault-0",
        "--type",
        "json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/labels/nope"}]"#,
    ]);
    assert!(
        err.contains("Invalid") || err.contains("does not exist"),
        "{err}"
    );
}

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {kind: Widget, plural: widgets, singular: widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: string, jsonPath: .spec.size}
"#;

#[test]
fn apply_crd_custom_resource_and_status_subresource() {
    let sim = Sim::start();
    sim.apply(CRD);
    let out = sim.kubectl(&[
        "wait",
        "--for=condition=established",
        "crd/widgets.example.com",
        KUBECTL_TIMEOUT,
    ]);
    assert!(out.contains("condition met"), "{out}");
    let w = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1, namespace: default}\nspec: {size: large}\nstatus: {ready: true}\n";
    assert!(sim.apply(w).contains("widget.example.com/w1 created"));
    let table = sim.kubectl(&["get", "wd"]);
    assert!(table.contains("SIZE") && table.contains("large"), "{table}");
    // Status in a main-resource write is ignored (status subresource).
    assert_eq!(
        sim.kubectl(&["get", "widget", "w1", "-o", "jsonpath={.status}"]),
        ""
    );
    assert!(
        sim.apply(&w.replace("large", "small"))
            .contains("configured")
    );
    assert_eq!(
        sim.kubectl(&[
            "get",
            "widget",
            "w1",
            "-o",
            "jsonpath={.spec.size} {.metadata.generation}"
        ]),
        "small 2"
    );
    sim.kubectl(&[
        "patch",
        "widget",
        "w1",
        "--subresource=status",
        "--type",
        "merge",
        "-p",
        r#"{"status":{"phase":"Ready"}}"#,
    ]);
    assert_eq!(
        sim.kubectl(&[
            "get",
            "widget",
            "w1",
            "-o",
            "jsonpath={.status.phase} {.metadata.generation}"
        ]),
        "Ready 2"
    );
    // Deleting the CRD removes its objects and its discovery entry.
    sim.kubectl(&["delete", "crd", "widgets.example.com"]);
    let err = sim.kubectl_fails(&["get", "widgets.example.com"]);
    assert!(
        err.contains("doesn't have a resource type") || err.contains("the server doesn't have"),
        "{err}"
    );
}

#[test]
fn get_watch_streams_changes() {
    let sim = Sim::start_with("podReadyAfterMs: 500");
    sim.kubectl(&["create", "namespace", "vault"]);
    let mut watch = sim.kubectl_stream(&[
        "get",
        "pods",
        "-n",
        "vault",
        "-w",
        "-o",
        "custom-columns=NAME:.metadata.name,PHASE:.status.phase",
    ]);
    // The pod is created only once kubectl watches: every one of its changes is streamed.
    sim.wait_for_watches(1);
    sim.apply(POD);
    // Pending first, then Running (a line is NAME and PHASE; kubectl is killed on drop).
    let row = |want: &'static str| {
        move |l: &str| l.split_whitespace().collect::<Vec<_>>() == ["vault-0", want]
    };
    watch.wait_for("vault-0 Pending", row("Pending"));
    assert!(
        !watch.seen.iter().any(|l| row("Running")(l)),
        "Running before Pending: {:?}",
        watch.seen
    );
    watch.wait_for("vault-0 Running, after Pending", row("Running"));
}

#[test]
fn delete_and_namespace_cascade() {
    let sim = Sim::start();
    sim.kubectl(&["create", "namespace", "backups"]);
    sim.kubectl(&[
        "create",
        "configmap",
        "c",
        "-n",
        "backups",
        "--from-literal=a=b",
    ]);
    sim.kubectl(&[
        "create",
        "secret",
        "generic",
        "s",
        "-n",
        "backups",
        "--from-literal=a=b",
    ]);
    sim.apply("apiVersion: velero.io/v1\nkind: Restore\nmetadata: {name: r1, namespace: backups, finalizers: [restores.velero.io/external-resources-finalizer]}\nspec: {backupName: b1}\n");
    let out = sim.kubectl(&["delete", "secret", "s", "-n", "backups"]);
    assert_eq!(out.trim(), "secret \"s\" deleted");
    // The Restore's finalizer holds the namespace in Terminating.
    let del = sim
        .kubectl_cmd(&["delete", "namespace", "backups", "--timeout=120s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kubectl delete namespace");
    wait_until("namespace Terminating", PATIENCE, || {
        sim.kubectl(&["get", "ns", "backups", "-o", "jsonpath={.status.phase}"]) == "Terminating"
    });
    let err = sim.kubectl_fails(&[
        "create",
        "configmap",
        "d",
        "-n",
        "backups",
        "--from-literal=a=b",
    ]);
    assert!(err.contains("because it is being terminated"), "{err}");
    wait_until("configmap cascade-deleted", PATIENCE, || {
        !sim.kubectl_output(&["get", "cm", "c", "-n", "backups"])
            .status
            .success()
    });
    assert!(
        !sim.kubectl(&[
            "get",
            "restore",
            "r1",
            "-n",
            "backups",
            "-o",
            "jsonpath={.metadata.deletionTimestamp}"
        ])
        .is_empty()
    );
    sim.kubectl(&[
        "patch",
        "restore",
        "r1",
        "-n",
        "backups",
        "--type",
        "merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    let out = del
        .wait_with_output()
        .expect("kubectl delete namespace returns");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = sim.kubectl_fails(&["get", "ns", "backups"]);
    assert!(err.contains("namespaces \"backups\" not found"), "{err}");
}
