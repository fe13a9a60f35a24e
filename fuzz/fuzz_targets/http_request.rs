//! The `http_request` target; its body is `tour_sim::fuzz::http_request::run`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tour_sim::fuzz::http_request::run(data));
