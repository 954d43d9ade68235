//! Reads arbitrary bytes as a CIFAR-10 binary batch.
#![no_main]

mod input_file;

use incept::models::data::read_cifar10_batch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = input_file::write_input(data);
    let _ = read_cifar10_batch(&path);
});
