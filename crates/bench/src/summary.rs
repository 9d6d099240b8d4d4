//! The summaries every benchmark reports: percentiles of latencies and medians of runs.

use std::time::Duration;

/// The `p` quantile (0.0..=1.0) of `sorted` latencies, in microseconds (0 for none).
pub fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index].as_secs_f64() * 1e6
}

/// The median of `values` (the upper one of an even count; 0 for none); sorts them.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}
