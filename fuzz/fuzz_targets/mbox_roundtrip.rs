//! Fuzz target `mbox_roundtrip`: see `mdeliver_tests::fuzz_bodies::mbox_roundtrip` for the properties.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mdeliver_tests::fuzz_bodies::mbox_roundtrip(data));
