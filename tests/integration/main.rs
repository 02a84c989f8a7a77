//! The integration test binary: drives the real `drctl` executable. The support code the
//! tests share is in `support/`, the lab's servers in `lab.rs`.

mod attack_templates;
mod backend_aws;
mod backend_kube;
mod backend_ssh;
mod backend_vault;
mod cli;
mod e2e;
mod engine;
mod fixtures;
mod fuzz;
mod fuzz_regressions;
mod lab;
mod operator_time;
mod print;
mod pty;
mod schema;
mod support;
mod term;
mod tls;
mod trust;
