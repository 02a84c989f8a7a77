//! The systems drctl acts on, one module each, plugged into the engine through
//! `exec::backend::Backend`. `registry` builds the backends of this build from the
//! environment (see docs/operations.md for the variables each reads).

pub mod aws;
pub mod etcd;
pub mod kube;
pub mod process;
pub mod ssh;
pub mod vault;

use crate::exec::backend::Backends;

/// Every backend of this build.
pub fn registry() -> Backends {
    let mut b = Backends::new();
    b.register(Box::new(vault::VaultBackend::from_env()));
    b.register(Box::new(ssh::SshBackend::from_env()));
    b.register(Box::new(etcd::EtcdBackend::from_env()));
    b.register(Box::new(kube::KubeBackend::from_env()));
    b.register(Box::new(aws::AwsBackend::from_env()));
    b
}
