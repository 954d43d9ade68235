//! Error reporting shared by the examples.

use std::fmt::Display;
use std::process::ExitCode;

/// Returns success for `Ok`, and for `Err` prints `error: ` and the error
/// as one line to standard error and returns exit code 1. Clap reports
/// invalid options itself, with exit code 2.
pub fn exit_code<E: Display>(result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", one_line(&err.to_string()));
            ExitCode::FAILURE
        }
    }
}

/// Joins the non-empty lines of `message`, trimmed, with "; ". Some
/// messages of other crates end with a newline, such as the image crate's
/// for a truncated JPEG.
fn one_line(message: &str) -> String {
    message.lines().map(str::trim).filter(|line| !line.is_empty()).collect::<Vec<_>>().join("; ")
}
