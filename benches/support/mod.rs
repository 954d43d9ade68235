//! Settings shared by the criterion benchmarks.

use std::time::Duration;

use criterion::BenchmarkGroup;
use criterion::measurement::WallTime;

/// Warm-up time of a quick run.
const QUICK_WARM_UP: Duration = Duration::from_millis(500);

/// Measurement time of a quick run. Criterion still takes every sample, so a
/// benchmark whose 10 samples cannot fit runs at least 10 iterations.
const QUICK_MEASUREMENT: Duration = Duration::from_secs(1);

/// Sets a group's warm-up and measurement times, or shortens both to
/// `QUICK_WARM_UP` and `QUICK_MEASUREMENT` when the environment variable
/// `INCEPT_BENCH_QUICK` is `1`. Quick runs are for trying a script that reads
/// the results, such as `tools/perf_table.py --quick`; their figures are
/// noisier than those of a full run.
pub fn set_times(group: &mut BenchmarkGroup<'_, WallTime>, warm_up: Duration, measurement: Duration) {
    if std::env::var_os("INCEPT_BENCH_QUICK").is_some_and(|value| value == "1") {
        group.warm_up_time(warm_up.min(QUICK_WARM_UP));
        group.measurement_time(measurement.min(QUICK_MEASUREMENT));
    } else {
        group.warm_up_time(warm_up);
        group.measurement_time(measurement);
    }
}
