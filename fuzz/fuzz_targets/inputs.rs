#![no_main]
//! `drctl::fuzzing::inputs`: see src/fuzzing.rs.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    drctl::fuzzing::inputs(data);
});
