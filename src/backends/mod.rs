//! The systems drctl acts on, one module each. `Backends` holds one of each, built from
//! the environment (see docs/operations.md for the variables each reads); the engine's
//! `perform` routes every action to its backend's `perform` with one exhaustive match.

pub mod aws;
pub mod etcd;
pub mod kube;
pub mod process;
pub mod ssh;
pub mod vault;

/// Every backend of this build.
pub struct Backends {
    pub kube: kube::KubeBackend,
    pub vault: vault::VaultBackend,
    pub aws: aws::AwsBackend,
    pub ssh: ssh::SshBackend,
    pub etcd: etcd::EtcdBackend,
}

impl Backends {
    pub fn from_env() -> Self {
        Backends {
            kube: kube::KubeBackend::from_env(),
            vault: vault::VaultBackend::from_env(),
            aws: aws::AwsBackend::from_env(),
            ssh: ssh::SshBackend::from_env(),
            etcd: etcd::EtcdBackend::from_env(),
        }
    }
}

/// Every backend of this build (the name `commands` uses).
pub fn registry() -> Backends {
    Backends::from_env()
}
