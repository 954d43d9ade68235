//! Reads arbitrary bytes as IDX image and label files (raw or gzip).
#![no_main]

mod input_file;

use incept::models::data::{read_idx_images, read_idx_labels};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = input_file::write_input(data);
    let _ = read_idx_images(&path);
    let _ = read_idx_labels(&path);
});
