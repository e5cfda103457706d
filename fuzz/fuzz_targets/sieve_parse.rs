//! Fuzz target `sieve_parse` (the Sieve compiler): see `mdeliver_tests::fuzz_sieve::sieve_parse` for the properties.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mdeliver_tests::fuzz_sieve::sieve_parse(data));
