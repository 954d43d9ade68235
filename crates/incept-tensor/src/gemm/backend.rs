//! Choice of the GEMM implementation behind the f32 convolutions.

use std::cell::Cell;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use crate::{Result, TensorError};

/// Environment variable that selects the backend for a whole process:
/// `portable`, `avx2`, `avx512` or `auto`.
pub const BACKEND_ENV: &str = "INCEPT_GEMM";

/// An implementation of the matrix products inside `conv2d` and
/// `conv2d_backward` for `f32`.
///
/// `f64` always takes the portable path: it serves the reference kernels and
/// gradient checks, where speed does not matter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GemmBackend {
    /// im2col into a full column buffer, then `matrixmultiply`. Runs on every
    /// CPU and is the oracle the other backends are tested against.
    Portable,
    /// incept's packed GEMM with a 6x16 AVX2 + FMA micro-kernel. im2col is
    /// fused into the packing of B, and bias and ReLU into the store of C.
    Avx2,
    /// incept's packed GEMM with an 8x32 AVX-512F micro-kernel, otherwise as
    /// [`GemmBackend::Avx2`].
    Avx512,
}

impl GemmBackend {
    /// Every backend, slowest first.
    pub const ALL: [GemmBackend; 3] = [GemmBackend::Portable, GemmBackend::Avx2, GemmBackend::Avx512];

    /// True when this CPU has the instructions the backend needs.
    pub fn is_supported(self) -> bool {
        match self {
            GemmBackend::Portable => true,
            #[cfg(target_arch = "x86_64")]
            GemmBackend::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            GemmBackend::Avx512 => is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            GemmBackend::Avx2 | GemmBackend::Avx512 => false,
        }
    }

    /// Returns the fastest backend this CPU supports.
    pub fn best() -> GemmBackend {
        *GemmBackend::ALL.iter().rev().find(|b| b.is_supported()).unwrap_or(&GemmBackend::Portable)
    }

    /// Returns the name that [`FromStr`] accepts and `Display` prints.
    pub fn name(self) -> &'static str {
        match self {
            GemmBackend::Portable => "portable",
            GemmBackend::Avx2 => "avx2",
            GemmBackend::Avx512 => "avx512",
        }
    }
}

impl fmt::Display for GemmBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl FromStr for GemmBackend {
    type Err = TensorError;

    /// Parses a backend name; `auto` gives [`GemmBackend::best`].
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(GemmBackend::best()),
            "portable" => Ok(GemmBackend::Portable),
            "avx2" => Ok(GemmBackend::Avx2),
            "avx512" => Ok(GemmBackend::Avx512),
            _ => Err(TensorError::invalid(
                "GemmBackend",
                format!("unknown GEMM backend {s:?}; expected auto, portable, avx2 or avx512"),
            )),
        }
    }
}

thread_local! {
    static OVERRIDE: Cell<Option<GemmBackend>> = const { Cell::new(None) };
}

/// Runs `f` with convolutions called on this thread using `backend`, then
/// restores the previous choice. The kernels pass the choice on to the rayon
/// workers they start, so it covers the whole call.
///
/// # Errors
/// [`TensorError::InvalidArgument`] if this CPU does not support `backend`.
pub fn with_backend<R>(backend: GemmBackend, f: impl FnOnce() -> R) -> Result<R> {
    check_supported(backend)?;
    let previous = OVERRIDE.with(|o| o.replace(Some(backend)));
    // Restores the previous choice on return and on unwind.
    struct Restore(Option<GemmBackend>);
    impl Drop for Restore {
        fn drop(&mut self) {
            OVERRIDE.with(|o| o.set(self.0));
        }
    }
    let _restore = Restore(previous);
    Ok(f())
}

/// Returns the backend that convolutions called on this thread use: the one
/// set by [`with_backend`], else the one named by the `INCEPT_GEMM`
/// environment variable (read once per process), else [`GemmBackend::best`].
///
/// # Errors
/// [`TensorError::InvalidArgument`] if `INCEPT_GEMM` names an unknown
/// backend or one this CPU does not support.
pub fn current_backend() -> Result<GemmBackend> {
    if let Some(backend) = OVERRIDE.with(Cell::get) {
        return Ok(backend);
    }
    static FROM_ENV: OnceLock<std::result::Result<GemmBackend, String>> = OnceLock::new();
    let from_env = FROM_ENV.get_or_init(|| match std::env::var(BACKEND_ENV) {
        Err(_) => Ok(GemmBackend::best()),
        Ok(value) => match value.parse::<GemmBackend>() {
            Err(_) => Err(format!(
                "{BACKEND_ENV}={value:?} is not a GEMM backend; set it to auto, portable, avx2 or avx512, or unset it"
            )),
            Ok(backend) => check_supported(backend).map(|()| backend).map_err(|e| match e {
                TensorError::InvalidArgument { reason, .. } => format!("{BACKEND_ENV}={value:?}: {reason}"),
                other => format!("{BACKEND_ENV}={value:?}: {other}"),
            }),
        },
    });
    from_env.clone().map_err(|reason| TensorError::invalid("GemmBackend", reason))
}

fn check_supported(backend: GemmBackend) -> Result<()> {
    if backend.is_supported() {
        return Ok(());
    }
    let alternatives = match GemmBackend::best() {
        GemmBackend::Portable => "portable".to_string(),
        best => format!("{best} or portable"),
    };
    Err(TensorError::invalid(
        "GemmBackend",
        format!("this CPU does not support the {backend} GEMM backend; use {alternatives}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names_round_trip() {
        for backend in GemmBackend::ALL {
            assert_eq!(backend.name().parse::<GemmBackend>().unwrap(), backend);
        }
        assert_eq!("AUTO".parse::<GemmBackend>().unwrap(), GemmBackend::best());
        let err = "sse".parse::<GemmBackend>().unwrap_err().to_string();
        assert!(err.contains("unknown GEMM backend \"sse\""), "{err}");
    }

    /// Set in the child process of `invalid_env_value_is_reported`.
    const CHILD_MARKER: &str = "INCEPT_GEMM_ERROR_CHILD";

    #[test]
    fn invalid_env_value_is_reported() {
        if std::env::var_os(CHILD_MARKER).is_some() {
            // The variable is read once per process, so the check runs in a child.
            println!("error: {}", current_backend().unwrap_err());
            return;
        }
        let test_name = "gemm::backend::tests::invalid_env_value_is_reported";
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
            .env(CHILD_MARKER, "1")
            .env(BACKEND_ENV, "sse")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let expected = "error: GemmBackend: invalid argument: INCEPT_GEMM=\"sse\" is not a GEMM backend; \
                        set it to auto, portable, avx2 or avx512, or unset it";
        assert!(stdout.contains(expected), "child output:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    }

    #[test]
    fn override_is_scoped() {
        let outside = current_backend().unwrap();
        let inside = with_backend(GemmBackend::Portable, || current_backend().unwrap()).unwrap();
        assert_eq!(inside, GemmBackend::Portable);
        assert_eq!(current_backend().unwrap(), outside);
    }
}
