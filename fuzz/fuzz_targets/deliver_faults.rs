//! Fuzz target `deliver_faults`: see `mdeliver_tests::fuzz_bodies::deliver_faults` for the properties.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mdeliver_tests::fuzz_bodies::deliver_faults(data));
