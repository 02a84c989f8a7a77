//! End-to-end runs of the Kubernetes-side runbooks on kubesim.

use super::Drive;
use crate::lab::KubeSim;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(crate::root().join("tests/fixtures/kube").join(name))
        .expect("a kube fixture")
}

#[test]
fn harness_smoke_argocd_app_stuck() {
    let sim = KubeSim::start_with_scenario(&fixture("argocd-app-stuck.yaml"));
    let d = Drive::new("argocd-app-stuck")
        .envs(sim.env())
        .set("app", "nextcloud");
    let r = d.rehearse();
    r.assert_clean_rehearsal("rehearsal");
    let full = d.run();
    full.assert_ok("full run");
    let sim2 = KubeSim::start_with_scenario(&fixture("argocd-app-stuck.yaml"));
    let d2 = Drive::new("argocd-app-stuck")
        .envs(sim2.env())
        .set("app", "nextcloud");
    let c = d2.crash_and_resume(&full.started(), &|_| "rerun".to_owned());
    eprintln!("{:?} {} {:?}", c.step, c.mid_step, c.resolved);
}
