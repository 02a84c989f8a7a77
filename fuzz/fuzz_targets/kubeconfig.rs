#![no_main]
//! `drctl::fuzzing::kubeconfig`: see src/fuzzing.rs.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    drctl::fuzzing::kubeconfig(data);
});
