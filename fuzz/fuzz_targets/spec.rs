//! Arbitrary text through everything a pipeline file goes through before a stage runs: parsing,
//! checking, resolution, planning (stage keys) and the DAG rendering. Any outcome but a panic,
//! an abort or a hang is fine: a malformed spec must come back as an error.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    robarch::plan::fuzz_one(text);
});
