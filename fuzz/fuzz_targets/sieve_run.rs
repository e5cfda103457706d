//! Fuzz target `sieve_run` (the Sieve interpreter): see `mdeliver_tests::fuzz_sieve::sieve_run` for the properties.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mdeliver_tests::fuzz_sieve::sieve_run(data));
