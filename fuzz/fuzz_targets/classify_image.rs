//! Decodes arbitrary bytes as a PNG or JPEG and preprocesses the image as the
//! classify example does (size checks from the header, resize, crop, normalise).
#![no_main]

mod input_file;

#[allow(dead_code)]
#[path = "../../examples/support/imagenet.rs"]
mod imagenet;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = input_file::write_input(data);
    if let Ok(image) = imagenet::load_rgb(&path) {
        let _ = imagenet::preprocess(&image);
    }
});
