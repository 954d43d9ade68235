//! Image decoding and ImageNet preprocessing for the classify example.
//!
//! [`preprocess`] follows torchvision 0.20.1's ImageNet eval transform for
//! PIL images, `Resize(256)`, `CenterCrop(224)`, `ToTensor()` and
//! `Normalize(mean, std)`, with the same size and offset arithmetic. The
//! resampling is the image crate's, so pixels differ slightly from PIL's
//! (see [`preprocess`]).

use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};

use image::imageops::{self, FilterType};
use image::{ImageFormat, ImageReader, RgbImage};
use incept::tensor::Tensor;

/// Target of `Resize(256)`: the shorter side after resizing, in pixels.
pub const RESIZE_SIZE: u32 = 256;

/// Side of the square `CenterCrop(224)` takes, in pixels.
pub const CROP_SIZE: u32 = 224;

/// Per-channel (R, G, B) mean of ImageNet's training images on the 0..1
/// scale, as torchvision's `Normalize` uses it for ImageNet weights.
pub const MEAN: [f32; 3] = [0.485, 0.456, 0.406];

/// Per-channel (R, G, B) standard deviation matching [`MEAN`].
pub const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Largest image, before and after resizing, that the example accepts, in
/// pixels. It bounds memory: 64 megapixels are 192 MB as RGB8, and the
/// float image between the two resize passes (16 bytes a pixel, source
/// width by resized height) then stays under about 1 GB.
pub const MAX_PIXELS: u64 = 64_000_000;

/// The ImageNet-1k class names in index order, from torchvision 0.20.1's
/// `torchvision.models._meta._IMAGENET_CATEGORIES` (written by
/// `tools/make_imagenet_classes.py`). Lines starting with `#` are comments.
const IMAGENET_CLASSES_TXT: &str = include_str!("../../data/imagenet_classes.txt");

/// Number of classes in ImageNet-1k.
pub const IMAGENET_CLASS_COUNT: usize = 1000;

/// An image whose dimensions the preprocessing cannot take.
#[derive(Debug, thiserror::Error)]
pub enum SizeError {
    #[error("the image is {width}x{height} pixels; both sides must be at least 1 pixel")]
    ZeroSide { width: u32, height: u32 },
    #[error(
        "the image is {width}x{height} pixels ({:.1} megapixels), more than the limit of {} megapixels; \
         downscale it first",
        megapixels(.width, .height),
        MAX_PIXELS as f64 / 1e6
    )]
    TooLarge { width: u32, height: u32 },
    #[error(
        "resizing the {width}x{height} image to a shorter side of {} pixels would make it \
         {resized_width}x{resized_height} ({:.1} megapixels), more than the limit of {} megapixels; \
         crop it to a less extreme aspect ratio first",
        RESIZE_SIZE,
        megapixels(.resized_width, .resized_height),
        MAX_PIXELS as f64 / 1e6
    )]
    ResizedTooLarge { width: u32, height: u32, resized_width: u32, resized_height: u32 },
}

/// A failure to load an image file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{}: cannot read the file: {source}", .path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}: not a PNG or JPEG image ({detected})", .path.display())]
    UnsupportedFormat { path: PathBuf, detected: String },
    #[error("{}: cannot decode the image: {source}", .path.display())]
    Decode { path: PathBuf, source: image::ImageError },
    #[error("{}: {source}", .path.display())]
    Size { path: PathBuf, source: SizeError },
}

fn megapixels(width: &u32, height: &u32) -> f64 {
    (u64::from(*width) * u64::from(*height)) as f64 / 1e6
}

/// Decodes a PNG or JPEG file into 8-bit RGB.
///
/// The format comes from the file's first bytes, not its extension. The
/// dimensions are read from the header and checked with [`check_size`]
/// before any pixel is decoded, so a huge image is rejected without
/// allocating for it. Grayscale becomes three equal channels and an alpha
/// channel is dropped without compositing, as PIL's `convert("RGB")` does.
/// 16-bit samples are scaled to 8 bits with rounding. PIL differs there: it
/// keeps the high byte of 16-bit colour and clips 16-bit grayscale at 255.
/// The EXIF orientation is ignored, as in torchvision's datasets.
///
/// # Errors
/// - [`LoadError::Read`] if the file cannot be opened or read.
/// - [`LoadError::UnsupportedFormat`] if it is neither PNG nor JPEG.
/// - [`LoadError::Decode`] if its header or pixels are invalid, or need more
///   memory than the image crate's default limit of 512 MiB.
/// - [`LoadError::Size`] for the dimensions [`check_size`] rejects.
pub fn load_rgb(path: &Path) -> Result<RgbImage, LoadError> {
    let open = || -> Result<ImageReader<BufReader<File>>, LoadError> {
        let read_error = |source| LoadError::Read { path: path.to_path_buf(), source };
        // ImageReader::open would take the format from the extension when the
        // bytes match none, so a text file named .jpg would fail as a bad JPEG.
        let file = File::open(path).map_err(read_error)?;
        let reader = ImageReader::new(BufReader::new(file)).with_guessed_format().map_err(read_error)?;
        match reader.format() {
            Some(ImageFormat::Png | ImageFormat::Jpeg) => Ok(reader),
            Some(other) => Err(LoadError::UnsupportedFormat {
                path: path.to_path_buf(),
                detected: format!("its first bytes are those of {other:?}"),
            }),
            None => Err(LoadError::UnsupportedFormat {
                path: path.to_path_buf(),
                detected: "its first bytes match no known image format".to_string(),
            }),
        }
    };
    let decode_error = |source| LoadError::Decode { path: path.to_path_buf(), source };

    // The header pass consumes its reader, so the pixels need a second open.
    let (width, height) = open()?.into_dimensions().map_err(decode_error)?;
    check_size(width, height).map_err(|source| LoadError::Size { path: path.to_path_buf(), source })?;
    let image = open()?.decode().map_err(decode_error)?;
    Ok(image.into_rgb8())
}

/// Checks that an image of `width` x `height` pixels can be preprocessed:
/// no side is zero, and neither it nor its `Resize(256)` result is larger
/// than [`MAX_PIXELS`].
///
/// # Errors
/// The [`SizeError`] that names the violated limit.
pub fn check_size(width: u32, height: u32) -> Result<(), SizeError> {
    if width == 0 || height == 0 {
        return Err(SizeError::ZeroSide { width, height });
    }
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(SizeError::TooLarge { width, height });
    }
    let (resized_width, resized_height) = resize_size(width, height);
    if u64::from(resized_width) * u64::from(resized_height) > MAX_PIXELS {
        return Err(SizeError::ResizedTooLarge { width, height, resized_width, resized_height });
    }
    Ok(())
}

/// Returns the `(width, height)` that `Resize(256)` gives an image of
/// `width` x `height` pixels: the shorter side becomes 256 and the longer
/// one `int(256 * long / short)`, truncated, not rounded.
///
/// This is torchvision 0.20.1's `_compute_resized_output_size` without
/// `max_size`. The quotient is computed in `f64` as Python's true division
/// computes it, so the truncation lands on the same integer. A square image
/// becomes 256x256. Both sides must be at least 1.
pub fn resize_size(width: u32, height: u32) -> (u32, u32) {
    assert!(width > 0, "resize_size needs a non-empty image, got width 0");
    assert!(height > 0, "resize_size needs a non-empty image, got height 0");
    let (short, long) = if width <= height { (width, height) } else { (height, width) };
    // 256 * long is below 2^53, so the product is exact in f64 and the
    // division is rounded once, as in Python.
    let new_long = (f64::from(RESIZE_SIZE) * f64::from(long) / f64::from(short)) as u32;
    if width <= height { (RESIZE_SIZE, new_long) } else { (new_long, RESIZE_SIZE) }
}

/// Returns where a center crop of `crop` pixels starts along a side of
/// `size` pixels: torchvision's `int(round((size - crop) / 2.0))`.
///
/// Python's `round` rounds halves to even, so an odd margin of 33 starts at
/// 16 and one of 35 at 18.
///
/// # Panics
/// If `size < crop`, where torchvision would pad the image first; after
/// `Resize(256)` every side is at least 256, so a 224 crop always fits.
pub fn crop_offset(size: u32, crop: u32) -> u32 {
    let margin = size.checked_sub(crop).unwrap_or_else(|| panic!("a {crop}-pixel crop does not fit in {size} pixels"));
    let half = margin / 2;
    let is_tie = margin % 2 == 1;
    if is_tie && half % 2 == 1 { half + 1 } else { half }
}

/// Turns an RGB image into the `[1, 3, 224, 224]` input of an ImageNet
/// network, as torchvision's eval transform does for a PIL image.
///
/// Steps: resize to [`resize_size`] with the image crate's
/// `FilterType::Triangle`, crop the center 224x224 at [`crop_offset`],
/// divide by 255 and normalise each channel with [`MEAN`] and [`STD`], in
/// `f32` and the same order of operations as torchvision.
///
/// PIL's bilinear filter and the image crate's triangle filter have the
/// same weights, a triangle whose support grows with the downscale ratio
/// (plain bilinear when upscaling). They differ in rounding: PIL uses fixed
/// point and stores its horizontal pass as 8-bit integers, the image crate
/// runs the vertical pass first and keeps it in `f32`. On
/// `data/photos/astronaut.png`, 84% of the values equal torchvision's
/// (Pillow 13.0) and the rest differ by one 8-bit level;
/// `tests/classify_preprocess.rs` checks this. An image that is already at
/// the resized size is copied without resampling, as in torchvision.
///
/// # Errors
/// The [`SizeError`] of [`check_size`].
pub fn preprocess(image: &RgbImage) -> Result<Tensor<f32>, SizeError> {
    let (width, height) = image.dimensions();
    check_size(width, height)?;
    let (resized_width, resized_height) = resize_size(width, height);
    let resized = imageops::resize(image, resized_width, resized_height, FilterType::Triangle);

    let top = crop_offset(resized_height, CROP_SIZE);
    let left = crop_offset(resized_width, CROP_SIZE);
    let side = CROP_SIZE as usize;
    let mut values = vec![0.0f32; 3 * side * side];
    for (channel, plane) in values.chunks_exact_mut(side * side).enumerate() {
        for y in 0..side {
            for x in 0..side {
                let level = resized.get_pixel(left + x as u32, top + y as u32)[channel];
                // ToTensor divides by 255, then Normalize subtracts and divides, all in f32.
                plane[y * side + x] = (f32::from(level) / 255.0 - MEAN[channel]) / STD[channel];
            }
        }
    }
    Ok(Tensor::from_vec(values, [1, 3, side, side]).expect("the buffer has 3 * 224 * 224 values"))
}

/// Returns the 1000 ImageNet class names, index `i` being the name of
/// output `i` of torchvision's ImageNet classifiers.
pub fn imagenet_classes() -> Vec<&'static str> {
    let names: Vec<&str> =
        IMAGENET_CLASSES_TXT.lines().filter(|line| !line.starts_with('#') && !line.is_empty()).collect();
    assert_eq!(names.len(), IMAGENET_CLASS_COUNT, "data/imagenet_classes.txt must list 1000 class names");
    names
}
