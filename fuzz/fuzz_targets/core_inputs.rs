//! The `core_inputs` target; its body is `tour_sim::fuzz::core_inputs::run`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tour_sim::fuzz::core_inputs::run(data));
