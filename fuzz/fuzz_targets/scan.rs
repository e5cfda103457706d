//! Fuzz target `scan`: see `mdeliver_tests::fuzz_bodies::scan_faults` for the properties.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mdeliver_tests::fuzz_bodies::scan_faults(data));
