#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| berth_shim::fuzz::task_service(data));
