# shellcheck shell=bash
# Pins and the cache key shared by tests/lab/k8s/{install,up,smoke}. Sourced, not run.
#
# The Go pins live in the go.mod files (./go.mod: Kubernetes, ./kwok/go.mod, ./etcd/go.mod); the
# versions below must agree with them (install checks). The CRD pins are module versions fetched
# through the Go module proxy (the upstream projects' own manifests).

K8S_LAB_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

K8S_VERSION=v1.34.4
KWOK_VERSION=v0.7.0
ETCD_VERSION=v3.6.5 # kubeadm 1.34's DefaultEtcdVersion; Debian's 3.4.23 is below its minimum 3.5.24

# Upstream CRD manifests: module, version, path inside the module (files or globs).
ARGOCD_MODULE=github.com/argoproj/argo-cd/v3
ARGOCD_VERSION=v3.1.8
VELERO_MODULE=github.com/vmware-tanzu/velero
VELERO_VERSION=v1.18.3
ESO_MODULE=github.com/external-secrets/external-secrets
ESO_VERSION=v0.16.2 # serves external-secrets.io v1 (storage) and v1beta1; 1.x serves only v1
LONGHORN_MODULE=github.com/longhorn/longhorn-manager
LONGHORN_VERSION=v1.10.0 # v1.9.1: the proxy answers 403 "This module version is not available"

# Bump when the build flags or the cache layout change, so old caches are not reused.
K8S_LAB_BUILD_REV=2

K8S_LAB_CACHE_ROOT="${DRCTL_LAB_CACHE:-/var/cache/drctl-lab}"

k8s_lab_key() {
  {
    cat "$K8S_LAB_SRC/go.mod" "$K8S_LAB_SRC/go.sum" \
      "$K8S_LAB_SRC/kwok/go.mod" "$K8S_LAB_SRC/kwok/go.sum" \
      "$K8S_LAB_SRC/etcd/go.mod" "$K8S_LAB_SRC/etcd/go.sum"
    echo "$K8S_VERSION $KWOK_VERSION $ETCD_VERSION $K8S_LAB_BUILD_REV"
    echo "$ARGOCD_MODULE@$ARGOCD_VERSION $VELERO_MODULE@$VELERO_VERSION"
    echo "$ESO_MODULE@$ESO_VERSION $LONGHORN_MODULE@$LONGHORN_VERSION"
  } | sha256sum | cut -c1-12
}

# The versioned cache directory holding bin/ and crds/.
k8s_lab_dir() {
  printf '%s/k8s-%s-kwok-%s-etcd-%s-%s\n' "$K8S_LAB_CACHE_ROOT" \
    "${K8S_VERSION#v}" "${KWOK_VERSION#v}" "${ETCD_VERSION#v}" "$(k8s_lab_key)"
}

# kubectl the lab uses: $KUBECTL, else the 1.33 binary of the machine's google-cloud-sdk.
k8s_lab_kubectl() {
  if [[ -n ${KUBECTL:-} ]]; then
    printf '%s\n' "$KUBECTL"
  else
    printf '%s\n' /usr/lib/google-cloud-sdk/bin/kubectl.1.33
  fi
}
