#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| berth_sandbox::fuzz::in_root(data));
