//! The classify example's image loading and ImageNet preprocessing
//! (`examples/support/imagenet.rs`): torchvision's size and crop
//! arithmetic, agreement with torchvision's preprocessed photos, colour
//! conversions and the errors for bad files.

#[path = "../examples/support/imagenet.rs"]
mod imagenet;

use std::fs;
use std::path::{Path, PathBuf};

use image::{GrayImage, ImageBuffer, Luma, LumaA, Rgb, RgbImage, Rgba};
use imagenet::{CROP_SIZE, LoadError, MEAN, STD, SizeError};
use safetensors::SafeTensors;

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Creates an empty directory for the files one test writes.
fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("incept-classify-{test}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn resize_size_matches_torchvision() {
    // (width, height) -> (width, height) from torchvision 0.20.1's
    // _compute_resized_output_size((height, width), [256]). The longer side
    // is truncated: 256 * 333 / 257 = 331.7 gives 331 and 256 * 7 / 5 = 358.4
    // gives 358.
    let cases = [
        ((300, 451), (256, 384)),
        ((451, 300), (384, 256)),
        ((256, 256), (256, 256)),
        ((224, 224), (256, 256)),
        ((300, 300), (256, 256)),
        ((600, 400), (384, 256)),
        ((1, 1000), (256, 256_000)),
        ((1000, 1), (256_000, 256)),
        ((3, 1000), (256, 85_333)),
        ((1000, 3), (85_333, 256)),
        ((257, 333), (256, 331)),
        ((5, 7), (256, 358)),
    ];
    for ((width, height), expected) in cases {
        assert_eq!(imagenet::resize_size(width, height), expected, "resize_size({width}, {height})");
    }
}

#[test]
fn crop_offset_matches_torchvision() {
    // (size, offset) from torchvision's int(round((size - 224) / 2.0)). Python
    // rounds halves to even, so 227 gives 2 (1.5), 229 gives 2 (2.5) and 231 gives 4 (3.5).
    let cases = [
        (224, 0),
        (225, 0),
        (226, 1),
        (227, 2),
        (228, 2),
        (229, 2),
        (230, 3),
        (231, 4),
        (256, 16),
        (257, 16),
        (259, 18),
        (384, 80),
        (385, 80),
        (455, 116),
    ];
    for (size, expected) in cases {
        assert_eq!(imagenet::crop_offset(size, CROP_SIZE), expected, "crop_offset({size}, 224)");
    }
}

#[test]
#[should_panic(expected = "does not fit")]
fn crop_offset_rejects_small_side() {
    imagenet::crop_offset(223, CROP_SIZE);
}

/// Largest and mean absolute difference, in 8-bit levels, between incept's
/// preprocessing of a photo and torchvision's sampled values of it.
fn compare_with_torchvision(photo: &str) -> (f32, f32) {
    let bytes = fs::read(repo_path("tests/fixtures/preprocess_photos.safetensors")).unwrap();
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let stride: usize = header.metadata().as_ref().unwrap()["stride"].parse().unwrap();
    let fixture = SafeTensors::deserialize(&bytes).unwrap();
    let view = fixture.tensor(photo).unwrap();
    let expected: Vec<f32> = view.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();

    let image = imagenet::load_rgb(&repo_path(&format!("data/photos/{photo}"))).unwrap();
    let input = imagenet::preprocess(&image).unwrap();
    assert_eq!(input.dims(), &[1, 3, 224, 224]);
    let plane: usize = 224 * 224;
    assert_eq!(expected.len(), (3 * plane).div_ceil(stride), "{photo}: fixture length for stride {stride}");

    let mut max_levels = 0.0f32;
    let mut total_levels = 0.0f32;
    for (sample, &reference) in expected.iter().enumerate() {
        let index = sample * stride;
        let channel = index / plane;
        // One 8-bit level is 1 / (255 * std) after Normalize.
        let levels = (input.data()[index] - reference).abs() * 255.0 * STD[channel];
        max_levels = max_levels.max(levels);
        total_levels += levels;
    }
    let mean_levels = total_levels / expected.len() as f32;
    eprintln!("{photo}: {} values, max {max_levels:.3} levels, mean {mean_levels:.4} levels", expected.len());
    (max_levels, mean_levels)
}

#[test]
fn preprocess_png_matches_torchvision() {
    // The PNG decodes to the same pixels in PIL and the image crate, so only
    // the resampling differs: PIL rounds its fixed-point passes, the image
    // crate computes in f32. Over all 150,528 values of astronaut.png the
    // difference was at most 1 level, mean 0.16 levels, with 84% equal
    // (torchvision 0.20.1 with Pillow 13.0).
    let (max_levels, mean_levels) = compare_with_torchvision("astronaut.png");
    assert!(max_levels <= 1.001, "astronaut.png: max difference {max_levels} levels, expected at most 1");
    assert!(mean_levels <= 0.3, "astronaut.png: mean difference {mean_levels} levels, expected at most 0.3");
}

#[test]
fn preprocess_jpeg_matches_torchvision() {
    // JPEG adds the decoders' differences: zune-jpeg (the image crate) and
    // libjpeg-turbo (Pillow 13.0) decoded 12% (chelsea) and 16% (coffee) of
    // the pixel values differently, by up to 4 levels. Over all 150,528
    // values the end-to-end difference was at most 3 levels, mean 0.33
    // (chelsea) and 0.30 (coffee). The bounds leave room for the 4 levels
    // of decoding plus 1 of resampling.
    for photo in ["chelsea.jpg", "coffee.jpg"] {
        let (max_levels, mean_levels) = compare_with_torchvision(photo);
        assert!(max_levels <= 5.0, "{photo}: max difference {max_levels} levels, expected at most 5");
        assert!(mean_levels <= 0.5, "{photo}: mean difference {mean_levels} levels, expected at most 0.5");
    }
}

#[test]
fn preprocess_normalises_constant_image() {
    // A 1x1 image is upscaled to 256x256 and stays one colour, so every value
    // of a channel is (level / 255 - mean) / std.
    let color = [200u8, 100, 0];
    let image = RgbImage::from_pixel(1, 1, Rgb(color));
    let input = imagenet::preprocess(&image).unwrap();
    for (channel, plane) in input.data().chunks_exact(224 * 224).enumerate() {
        let expected = (f32::from(color[channel]) / 255.0 - MEAN[channel]) / STD[channel];
        assert!(plane.iter().all(|&v| v == expected), "channel {channel}: expected every value to be {expected}");
    }
}

#[test]
fn thin_images_upscale_before_crop() {
    // Resize(256) scales the shorter side up to 256 before CenterCrop(224),
    // as in torchvision, so no side is ever smaller than the crop and nothing
    // is padded. A 300x1 image becomes 76800x256, cropped at x=38288, y=16.
    assert_eq!(imagenet::resize_size(300, 1), (76_800, 256));
    assert_eq!(imagenet::resize_size(1, 300), (256, 76_800));
    assert_eq!(imagenet::crop_offset(76_800, CROP_SIZE), 38_288);
    assert_eq!(imagenet::crop_offset(256, CROP_SIZE), 16);

    // The crop's 224 columns sample source x from 149.06 to 149.94, so only
    // pixels 149 and 150 reach it. With those two coloured and the rest
    // black, every value of a channel is the colour's.
    let color = [200u8, 100, 50];
    for (width, height) in [(300, 1), (1, 300)] {
        let mut image = RgbImage::new(width, height);
        for middle in [149, 150] {
            let (x, y) = if width > height { (middle, 0) } else { (0, middle) };
            image.put_pixel(x, y, Rgb(color));
        }
        let input = imagenet::preprocess(&image).unwrap();
        assert_eq!(input.dims(), &[1, 3, 224, 224]);
        for (channel, plane) in input.data().chunks_exact(224 * 224).enumerate() {
            let expected = (f32::from(color[channel]) / 255.0 - MEAN[channel]) / STD[channel];
            assert!(
                plane.iter().all(|&v| v == expected),
                "{width}x{height}, channel {channel}: expected every value to be {expected}"
            );
        }
    }
}

#[test]
fn check_size_limits() {
    assert!(imagenet::check_size(8000, 8000).is_ok(), "64,000,000 pixels is at the limit");
    assert!(matches!(imagenet::check_size(8001, 8000), Err(SizeError::TooLarge { .. })));
    assert!(matches!(imagenet::check_size(0, 10), Err(SizeError::ZeroSide { .. })));
    assert!(matches!(imagenet::check_size(10, 0), Err(SizeError::ZeroSide { .. })));
    // 1x1000 resizes to 256x256000, 65.5 megapixels.
    let error = imagenet::check_size(1, 1000).unwrap_err();
    assert!(matches!(error, SizeError::ResizedTooLarge { resized_width: 256, resized_height: 256_000, .. }));
    assert!(error.to_string().contains("256x256000"), "message: {error}");
}

#[test]
fn load_converts_to_rgb8() {
    let dir = temp_dir("convert");

    let gray = dir.join("gray.png");
    GrayImage::from_raw(2, 1, vec![10, 250]).unwrap().save(&gray).unwrap();
    let rgb = imagenet::load_rgb(&gray).unwrap();
    assert_eq!(rgb.as_raw(), &[10, 10, 10, 250, 250, 250], "grayscale repeats into three channels");

    let gray_alpha = dir.join("gray_alpha.png");
    ImageBuffer::<LumaA<u8>, _>::from_raw(1, 1, vec![77, 0]).unwrap().save(&gray_alpha).unwrap();
    assert_eq!(imagenet::load_rgb(&gray_alpha).unwrap().as_raw(), &[77, 77, 77], "alpha is dropped");

    let rgba = dir.join("rgba.png");
    ImageBuffer::<Rgba<u8>, _>::from_raw(1, 1, vec![1, 2, 3, 0]).unwrap().save(&rgba).unwrap();
    assert_eq!(imagenet::load_rgb(&rgba).unwrap().as_raw(), &[1, 2, 3], "alpha is dropped, not composited");

    // 16-bit samples scale to 8 bits with rounding: 0x12ff / 257 = 18.99.
    let rgb16 = dir.join("rgb16.png");
    ImageBuffer::<Rgb<u16>, _>::from_raw(1, 1, vec![0x12ff, 0xffff, 0]).unwrap().save(&rgb16).unwrap();
    assert_eq!(imagenet::load_rgb(&rgb16).unwrap().as_raw(), &[19, 255, 0]);

    let gray16 = dir.join("gray16.png");
    ImageBuffer::<Luma<u16>, _>::from_raw(1, 1, vec![5000]).unwrap().save(&gray16).unwrap();
    assert_eq!(imagenet::load_rgb(&gray16).unwrap().as_raw(), &[19, 19, 19], "5000 / 257 = 19.46");

    // The format comes from the bytes, so a JPEG named .png still loads.
    let jpeg = dir.join("photo.png");
    fs::copy(repo_path("data/photos/chelsea.jpg"), &jpeg).unwrap();
    assert_eq!(imagenet::load_rgb(&jpeg).unwrap().dimensions(), (451, 300));

    fs::remove_dir_all(&dir).unwrap();
}

/// CRC-32 (ISO-HDLC, as PNG uses) of `bytes`.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// Builds a PNG file whose header claims `width` x `height` 8-bit RGB
/// pixels, followed by one IDAT chunk with a single zlib-compressed zero
/// byte, far too little data for any real size.
fn png_with_header(width: u32, height: u32) -> Vec<u8> {
    let chunk = |kind: &[u8; 4], data: &[u8]| {
        let mut out = (data.len() as u32).to_be_bytes().to_vec();
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
        out
    };
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    // Bit depth 8, colour type 2 (RGB), deflate, adaptive filtering, no interlace.
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    png.extend(chunk(b"IDAT", &[0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01]));
    png.extend(chunk(b"IEND", &[]));
    png
}

#[test]
fn load_reports_bad_files() {
    let dir = temp_dir("errors");

    let missing = dir.join("missing.jpg");
    let error = imagenet::load_rgb(&missing).unwrap_err();
    assert!(matches!(error, LoadError::Read { .. }), "missing file: {error}");
    assert!(error.to_string().contains("missing.jpg"), "message: {error}");

    let text = dir.join("notes.jpg");
    fs::write(&text, "not an image").unwrap();
    let error = imagenet::load_rgb(&text).unwrap_err();
    assert!(matches!(error, LoadError::UnsupportedFormat { .. }), "text file: {error}");

    let truncated = dir.join("truncated.jpg");
    let photo = fs::read(repo_path("data/photos/chelsea.jpg")).unwrap();
    fs::write(&truncated, &photo[..200]).unwrap();
    let error = imagenet::load_rgb(&truncated).unwrap_err();
    assert!(matches!(error, LoadError::Decode { .. }), "truncated JPEG: {error}");

    // The header's size is rejected before any pixel is decoded.
    let huge = dir.join("huge.png");
    fs::write(&huge, png_with_header(100_000, 100_000)).unwrap();
    let error = imagenet::load_rgb(&huge).unwrap_err();
    assert!(
        matches!(error, LoadError::Size { source: SizeError::TooLarge { width: 100_000, height: 100_000 }, .. }),
        "huge PNG: {error}"
    );
    assert!(error.to_string().contains("100000x100000"), "message: {error}");

    let thin = dir.join("thin.png");
    fs::write(&thin, png_with_header(1, 1000)).unwrap();
    let error = imagenet::load_rgb(&thin).unwrap_err();
    assert!(matches!(error, LoadError::Size { source: SizeError::ResizedTooLarge { .. }, .. }), "1x1000 PNG: {error}");

    // PNG forbids a zero side, so the decoder rejects the header itself.
    let empty = dir.join("empty.png");
    fs::write(&empty, png_with_header(0, 10)).unwrap();
    let error = imagenet::load_rgb(&empty).unwrap_err();
    assert!(
        matches!(error, LoadError::Decode { .. } | LoadError::Size { source: SizeError::ZeroSide { .. }, .. }),
        "0x10 PNG: {error}"
    );

    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn imagenet_classes_in_index_order() {
    let classes = imagenet::imagenet_classes();
    assert_eq!(classes.len(), 1000);
    assert_eq!(classes[0], "tench");
    assert_eq!(classes[281], "tabby");
    assert_eq!(classes[967], "espresso");
    assert_eq!(classes[999], "toilet tissue");
}
