#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gmsa_fuzz::manifests(data));
