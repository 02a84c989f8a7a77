#![no_main]
//! A real journal (one of the seeds under tests/fuzz/seeds/journal, chosen by the first
//! byte) cut at any byte: `drctl::fuzzing::journal_truncated`.

use libfuzzer_sys::fuzz_target;

const JOURNALS: &[&[u8]] = &[
    include_bytes!("../../tests/fuzz/seeds/journal/etcd-restore-rehearsal.json"),
    include_bytes!("../../tests/fuzz/seeds/journal/local-run-finished.json"),
    include_bytes!("../../tests/fuzz/seeds/journal/local-run-interrupted.json"),
    include_bytes!("../../tests/fuzz/seeds/journal/local-run-failed.json"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let full = JOURNALS[usize::from(which) % JOURNALS.len()];
    let mut cut = [0u8; 4];
    for (c, b) in cut.iter_mut().zip(rest) {
        *c = *b;
    }
    drctl::fuzzing::journal_truncated(full, u32::from_le_bytes(cut) as usize);
});
