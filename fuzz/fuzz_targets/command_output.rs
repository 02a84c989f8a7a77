#![no_main]
//! `drctl::fuzzing::command_output`: see src/fuzzing.rs.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    drctl::fuzzing::command_output(data);
});
