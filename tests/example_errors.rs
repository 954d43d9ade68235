//! The example programs on missing files, unreadable files and bad options:
//! each exits with a non-zero status and an error that names the bad value,
//! without a panic message or a backtrace. Errors found by an example are
//! one line, `error: ...`, with exit code 1. Options that clap rejects give
//! clap's usual report, whose first line is `error: ...`, with exit code 2.
//!
//! The tests run the example binaries that `cargo test` builds into
//! `target/<profile>/examples/` before it runs any test. Every case fails
//! before an example trains or runs a network.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Maximum time one case may run. Each fails within a second or two on a 2-core
/// machine; one that starts training would take minutes.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Returns the path of the example binary `name`, next to the test
/// binaries' `deps` directory.
fn example_binary(name: &str) -> PathBuf {
    let test_binary = std::env::current_exe().expect("the path of this test binary");
    let profile_dir = test_binary.parent().and_then(Path::parent).expect("test binaries lie in target/<profile>/deps");
    let path = profile_dir.join("examples").join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{}: example binary not found; run `cargo test` without target options, which builds the examples \
         before the tests, or build them with `cargo build --examples` (with --release for a release test run)",
        path.display()
    );
    path
}

/// Creates an empty directory for one test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> Self {
        static NEXT_ID: AtomicUsize = AtomicUsize::new(0);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("incept-example-errors-{test}-{}-{id}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path(name);
        fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Exit code and standard error of one run.
struct Outcome {
    code: Option<i32>,
    stderr: String,
}

/// Runs the example `name` with `args` in `work_dir`, with backtraces on so
/// that a panic would show one, and kills it after [`TIMEOUT`].
fn run_example(name: &str, args: &[&str], work_dir: &Path) -> Outcome {
    run_example_with_env(name, args, &[], work_dir)
}

/// [`run_example`] with extra environment variables.
fn run_example_with_env(name: &str, args: &[&str], env: &[(&str, &str)], work_dir: &Path) -> Outcome {
    let stdout_path = work_dir.join(format!("{name}.stdout"));
    let stderr_path = work_dir.join(format!("{name}.stderr"));
    let mut child = Command::new(example_binary(name))
        .args(args)
        .current_dir(work_dir)
        .env("RUST_BACKTRACE", "1")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout_path).unwrap())
        .stderr(fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("{name}: cannot start the example: {e}"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name} {args:?}: still running after {TIMEOUT:?}; it should have failed at once");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Outcome { code: status.code(), stderr: fs::read_to_string(&stderr_path).unwrap() }
}

/// Checks that stderr shows no panic and no backtrace.
fn assert_no_panic(context: &str, stderr: &str) {
    assert!(!stderr.contains("panicked at"), "{context}: the example panicked:\n{stderr}");
    assert!(!stderr.to_lowercase().contains("backtrace"), "{context}: the example printed a backtrace:\n{stderr}");
}

/// Runs a case the example itself rejects: exit code 1 and exactly one
/// line on stderr, `error: ` followed by a message containing every string
/// of `expected`.
fn assert_error_line(name: &str, args: &[&str], work_dir: &Path, expected: &[&str]) {
    let context = format!("{name} {}", args.join(" "));
    let outcome = run_example(name, args, work_dir);
    assert_no_panic(&context, &outcome.stderr);
    assert_eq!(outcome.code, Some(1), "{context}: exit code; stderr:\n{}", outcome.stderr);
    let lines: Vec<&str> = outcome.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{context}: expected one line on stderr, got:\n{}", outcome.stderr);
    assert!(lines[0].starts_with("error: "), "{context}: {}", lines[0]);
    for part in expected {
        assert!(lines[0].contains(part), "{context}: expected {part:?} in\n{}", lines[0]);
    }
}

/// Runs a case clap rejects: exit code 2, and a first line that starts with
/// `error: ` and contains every string of `expected`.
fn assert_usage_error(name: &str, args: &[&str], work_dir: &Path, expected: &[&str]) {
    let context = format!("{name} {}", args.join(" "));
    let outcome = run_example(name, args, work_dir);
    assert_no_panic(&context, &outcome.stderr);
    assert_eq!(outcome.code, Some(2), "{context}: exit code; stderr:\n{}", outcome.stderr);
    let first = outcome.stderr.lines().next().unwrap_or_default();
    assert!(first.starts_with("error: "), "{context}: {}", outcome.stderr);
    for part in expected {
        assert!(first.contains(part), "{context}: expected {part:?} in\n{}", outcome.stderr);
    }
}

fn text(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

#[test]
fn train_missing_and_unreadable_files() {
    let dir = TempDir::new("train-files");
    let work = &dir.0;
    let missing = dir.path("missing");
    let garbage = dir.write("garbage.bin", b"not a data set file\n");
    let directory = dir.path("a-directory");
    fs::create_dir(&directory).unwrap();
    // An IDX data directory whose training images are not an IDX file.
    let bad_data = dir.path("bad-data");
    fs::create_dir(&bad_data).unwrap();
    for name in
        ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    {
        fs::write(bad_data.join(name), b"not an IDX file").unwrap();
    }
    let cifar = dir.path("cifar");
    fs::create_dir(&cifar).unwrap();
    for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"] {
        fs::write(cifar.join(format!("{name}.bin")), [0u8; 3073 * 2 + 5]).unwrap();
    }

    let missing_dir = format!("{}: directory not found; ", text(&missing));
    assert_error_line("train", &["--data", text(&missing)], work, &[&missing_dir, "--data DIR"]);
    let file_dir = format!("{}: not a directory; ", text(&garbage));
    assert_error_line("train", &["--data", text(&garbage)], work, &[&file_dir, "--data DIR"]);
    let missing_file = format!("{}/train-images-idx3-ubyte.gz: Fashion-MNIST file not found", text(&directory));
    assert_error_line("train", &["--data", text(&directory)], work, &[&missing_file]);
    let bad_images = format!("{}/train-images-idx3-ubyte: invalid file: IDX magic number", text(&bad_data));
    assert_error_line("train", &["--data", text(&bad_data)], work, &[&bad_images]);
    assert_error_line("train", &["--dataset", "cifar10", "--data", text(&missing)], work, &[&missing_dir, "CIFAR-10"]);
    let missing_batch = format!("{}/data_batch_1.bin: CIFAR-10 file not found", text(&directory));
    assert_error_line("train", &["--dataset", "cifar10", "--data", text(&directory)], work, &[&missing_batch]);
    let bad_batch = format!("{}/data_batch_1.bin: invalid file: file size 6151 bytes is not a multiple", text(&cifar));
    assert_error_line("train", &["--dataset", "cifar10", "--data", text(&cifar)], work, &[&bad_batch]);

    let missing_checkpoint = dir.path("missing.safetensors");
    assert_error_line(
        "train",
        &["--resume", text(&missing_checkpoint)],
        work,
        &[&format!("{}: No such file or directory", text(&missing_checkpoint))],
    );
    assert_error_line(
        "train",
        &["--resume", text(&directory)],
        work,
        &[&format!("{}: Is a directory", text(&directory))],
    );
    assert_error_line(
        "train",
        &["--resume", text(&garbage)],
        work,
        &[&format!("{}: invalid file: the header length in the first 8 bytes is", text(&garbage))],
    );
    assert_error_line(
        "train",
        &["--out", text(&garbage)],
        work,
        &[&format!("{}: cannot create the run directory", text(&garbage))],
    );
}

#[test]
fn train_bad_options() {
    let dir = TempDir::new("train-options");
    let work = &dir.0;
    let tiny_images = dir.path("tiny-images");
    fs::create_dir(&tiny_images).unwrap();
    // Two 2x2 images per set: too small for --augment's 2-pixel crop padding.
    let images = [[0u8, 0, 8, 3], [0, 0, 0, 2], [0, 0, 0, 2], [0, 0, 0, 2]].concat();
    let labels = [[0u8, 0, 8, 1], [0, 0, 0, 2]].concat();
    for set in ["train", "t10k"] {
        fs::write(tiny_images.join(format!("{set}-images-idx3-ubyte")), [images.as_slice(), &[0; 8]].concat()).unwrap();
        fs::write(tiny_images.join(format!("{set}-labels-idx1-ubyte")), [labels.as_slice(), &[1, 2]].concat()).unwrap();
    }

    assert_error_line("train", &["--batch-size", "0"], work, &["batch size is 0, expected at least 1"]);
    assert_error_line("train", &["--epochs", "0"], work, &["epochs is 0, expected at least 1"]);
    assert_error_line("train", &["--width", "-1"], work, &["width = -1 must be a positive number"]);
    assert_error_line("train", &["--width", "nan"], work, &["width = NaN must be a positive number"]);
    assert_error_line("train", &["--lr", "-0.1"], work, &["learning rate -0.1 must be a positive number"]);
    assert_error_line("train", &["--weight-decay", "-1"], work, &["weight decay -1 must be zero or a positive number"]);
    assert_error_line("train", &["--threads", "0"], work, &["--threads 0: pass at least 1"]);
    assert_error_line("train", &["--max-batches", "0"], work, &["--max-batches 0 would train on nothing"]);
    assert_error_line(
        "train",
        &["--data", text(&tiny_images), "--augment"],
        work,
        &["crop padding 2 is not below the image size 2x2"],
    );

    assert_usage_error("train", &["--epochs", "abc"], work, &["'abc'", "--epochs"]);
    assert_usage_error("train", &["--batch-size", "-3"], work, &["'-3'", "--batch-size"]);
    assert_usage_error("train", &["--variant", "resnet"], work, &["'resnet'", "--variant"]);
    assert_usage_error("train", &["--dataset", "mnist"], work, &["'mnist'", "--dataset"]);
    assert_usage_error("train", &["--frobnicate"], work, &["'--frobnicate'"]);
}

#[test]
fn classify_bad_files_and_options() {
    let dir = TempDir::new("classify");
    let work = &dir.0;
    let photo = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/photos/chelsea.jpg");
    let photo = text(&photo);
    let missing = dir.path("missing.jpg");
    let directory = dir.path("photos.jpg");
    fs::create_dir(&directory).unwrap();
    let not_image = dir.write("notes.jpg", b"not an image\n");
    let empty = dir.write("empty.png", b"");
    let truncated = dir.write("truncated.jpg", &fs::read(photo).unwrap()[..200]);
    let garbage_weights = dir.write("weights.safetensors", b"not safetensors");
    let missing_weights = dir.path("missing.safetensors");

    assert_error_line(
        "classify",
        &[text(&missing)],
        work,
        &[&format!("{}: cannot read the file: No such file or directory", text(&missing))],
    );
    assert_error_line(
        "classify",
        &[text(&directory)],
        work,
        &[&format!("{}: cannot read the file: Is a directory", text(&directory))],
    );
    assert_error_line(
        "classify",
        &[text(&not_image)],
        work,
        &[&format!("{}: not a PNG or JPEG image", text(&not_image))],
    );
    assert_error_line("classify", &[text(&empty)], work, &[&format!("{}: not a PNG or JPEG image", text(&empty))]);
    // The image crate's message for this file ends with a newline.
    assert_error_line(
        "classify",
        &[text(&truncated)],
        work,
        &[&format!("{}: cannot decode the image: ", text(&truncated))],
    );
    assert_error_line(
        "classify",
        &[photo, "--weights", text(&missing_weights)],
        work,
        &[&format!("{}: No such file or directory", text(&missing_weights))],
    );
    assert_error_line(
        "classify",
        &[photo, "--weights", text(&directory)],
        work,
        &[&format!("{}: Is a directory", text(&directory))],
    );
    assert_error_line(
        "classify",
        &[photo, "--weights", text(&garbage_weights)],
        work,
        &[&format!("{}: invalid file: ", text(&garbage_weights))],
    );

    assert_usage_error("classify", &[], work, &["required arguments were not provided"]);
    assert_usage_error("classify", &[photo, "--top", "3"], work, &["'--top'"]);
    assert_usage_error("classify", &[photo, "--weights"], work, &["'--weights <FILE.safetensors>'"]);
}

#[test]
fn unknown_gemm_backend_is_one_line() {
    let dir = TempDir::new("gemm_backend");
    let photo = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/photos/chelsea.jpg");
    let outcome = run_example_with_env("classify", &[text(&photo)], &[("INCEPT_GEMM", "sse")], &dir.0);
    assert_no_panic("INCEPT_GEMM=sse classify", &outcome.stderr);
    assert_eq!(outcome.code, Some(1), "exit code; stderr:\n{}", outcome.stderr);
    let lines: Vec<&str> = outcome.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr, got:\n{}", outcome.stderr);
    assert!(lines[0].contains("INCEPT_GEMM=\"sse\" is not a GEMM backend"), "{}", lines[0]);
}

#[test]
fn aux_gradients_bad_files_and_options() {
    let dir = TempDir::new("aux-gradients");
    let work = &dir.0;
    let missing = dir.path("missing");
    let garbage = dir.write("garbage.bin", b"x");

    let missing_dir = format!("{}: directory not found; ", text(&missing));
    assert_error_line("aux_gradients", &["--data", text(&missing)], work, &[&missing_dir]);
    assert_error_line(
        "aux_gradients",
        &["--iterations", "1", "--out", text(&garbage)],
        work,
        &[&format!("{}: cannot create the output directory", text(&garbage))],
    );
    assert_error_line("aux_gradients", &["--iterations", "0"], work, &["--iterations (0)", "must be at least 1"]);
    assert_error_line("aux_gradients", &["--lr", "-1"], work, &["--lr -1 must be a positive number"]);
    assert_error_line("aux_gradients", &["--width", "-1"], work, &["--width -1 must be a positive number"]);
    assert!(!dir.path("runs").exists(), "no case may create the default output directory");

    assert_usage_error("aux_gradients", &["--init", "xavier"], work, &["'xavier'", "--init"]);
    assert_usage_error("aux_gradients", &["--iterations", "many"], work, &["'many'", "--iterations"]);
}

#[test]
fn summary_and_bottleneck_bad_options() {
    let dir = TempDir::new("summary");
    let work = &dir.0;

    assert_error_line(
        "googlenet_summary",
        &["--input-size", "16"],
        work,
        &["--input-size 16: ", "does not fit an input of 1x1"],
    );
    assert_usage_error("googlenet_summary", &["--input-size", "0"], work, &["'0'", "--input-size", "1..=65536"]);
    assert_usage_error("googlenet_summary", &["--input-size", "-5"], work, &["'-5'", "--input-size"]);
    assert_usage_error("googlenet_summary", &["--variant", "resnet"], work, &["'resnet'", "--variant"]);
    assert_usage_error("bottleneck_cost", &["--runs", "0"], work, &["'0'", "--runs", "1..=65535"]);
    assert_usage_error("bottleneck_cost", &["--batch", "-1"], work, &["'-1'", "--batch", "1..=1024"]);
    assert_usage_error("bottleneck_cost", &["--batch", "2000"], work, &["'2000'", "--batch", "1..=1024"]);
}
