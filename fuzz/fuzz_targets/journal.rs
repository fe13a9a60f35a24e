//! The `journal` target; its body is `tour_sim::fuzz::journal::run`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tour_sim::fuzz::journal::run(data));
