//! Writes a fuzz input to a per-process file, for readers that take a path.

use std::path::PathBuf;

/// Writes `data` to a file in the temporary directory and returns its path;
/// each process reuses one file.
pub fn write_input(data: &[u8]) -> PathBuf {
    let path = std::env::temp_dir().join(format!("incept-fuzz-{}.bin", std::process::id()));
    std::fs::write(&path, data).expect("the temporary directory is writable");
    path
}
