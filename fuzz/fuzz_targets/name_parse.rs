//! Fuzz target `name_parse`: see `mdeliver_tests::fuzz_bodies::name_parse` for the properties.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mdeliver_tests::fuzz_bodies::name_parse(data));
