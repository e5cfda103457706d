//! Fuzz target `mbox_split`: see `mdeliver_tests::fuzz_bodies::mbox_split` for the properties.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mdeliver_tests::fuzz_bodies::mbox_split(data));
