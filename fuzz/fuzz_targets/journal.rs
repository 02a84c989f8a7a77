#![no_main]
//! `drctl::fuzzing::journal_bytes`: see src/fuzzing.rs.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    drctl::fuzzing::journal_bytes(data);
});
