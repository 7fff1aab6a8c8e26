//! Latency histogram buckets, identical to `bench/fanout/latency.py`.
//!
//! A latency of `v` µs lands in bucket `floor(ln(v) / ln(1.01))`, values under 1 µs in bucket 0,
//! the last of 2 100 buckets (1.2e9 µs, 20 minutes) catching anything longer. The Python side
//! merges these indices across processes and reads percentiles from them.

pub const BUCKETS: u16 = 2100;

/// The bucket index of a latency given in nanoseconds (negative latencies land in bucket 0).
pub fn bucket(latency_ns: i64) -> u16 {
    // Same arithmetic as numpy there: µs as float64, clamp at 1, natural log over ln(1.01).
    let micros = (latency_ns as f64 / 1000.0).max(1.0);
    let index = (micros.ln() / 1.01f64.ln()).floor();
    if index >= f64::from(BUCKETS - 1) {
        BUCKETS - 1
    } else {
        index as u16
    }
}

#[cfg(test)]
mod tests {
    use super::{bucket, BUCKETS};

    #[test]
    fn matches_the_python_histogram() {
        // Reference values from numpy: floor(log(max(us, 1)) / log(1.01)).
        assert_eq!(bucket(-5), 0);
        assert_eq!(bucket(999), 0);
        assert_eq!(bucket(1_000), 0);
        assert_eq!(bucket(1_010), 1);
        assert_eq!(bucket(100_000), 462);
        assert_eq!(bucket(250_000_000), 1249);
        assert_eq!(bucket(i64::MAX), BUCKETS - 1);
    }

    #[test]
    fn is_monotonic() {
        let mut last = 0;
        for micros in 1..200_000i64 {
            let index = bucket(micros * 1000);
            assert!(index >= last);
            last = index;
        }
    }
}
