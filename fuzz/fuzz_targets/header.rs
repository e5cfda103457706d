//! Fuzz target `header`: see `mdeliver_tests::fuzz_bodies::header` for the properties.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mdeliver_tests::fuzz_bodies::header(data));
