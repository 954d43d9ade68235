//! Loads arbitrary bytes as a safetensors checkpoint into a small GoogLeNet:
//! the load may fail, but must not panic or allocate beyond the file's size.
#![no_main]

mod input_file;

use std::sync::OnceLock;

use incept::models::{GoogLeNet, GoogLeNetConfig, Variant};
use libfuzzer_sys::fuzz_target;

fn net() -> &'static GoogLeNet<f32> {
    static NET: OnceLock<GoogLeNet<f32>> = OnceLock::new();
    NET.get_or_init(|| {
        let config = GoogLeNetConfig { width: 0.05, ..GoogLeNetConfig::small(Variant::Torchvision, 1, 10) };
        GoogLeNet::new(config).expect("valid config")
    })
}

fuzz_target!(|data: &[u8]| {
    let path = input_file::write_input(data);
    let _ = net().load_state_dict(&path);
    let _ = GoogLeNet::<f32>::load(&path);
    let _ = GoogLeNet::<f32>::load_torchvision(&path);
});
