#![no_main]
//! `drctl::fuzzing::server_json`: see src/fuzzing.rs.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    drctl::fuzzing::server_json(data);
});
