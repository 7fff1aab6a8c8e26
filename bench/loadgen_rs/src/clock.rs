//! The clock every bench process shares.
//!
//! The publisher stamps each message with Python's `time.monotonic_ns()`, which on Linux is
//! `clock_gettime(CLOCK_MONOTONIC)`: one clock for every process on the machine. `std::time::Instant`
//! reads the same clock but never exposes its value, so it cannot be subtracted from a stamp.

/// CLOCK_MONOTONIC in nanoseconds, directly comparable with Python's `time.monotonic_ns()`.
pub fn monotonic_ns() -> i64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    now.tv_sec * 1_000_000_000 + now.tv_nsec
}

#[cfg(test)]
mod tests {
    use super::monotonic_ns;

    #[test]
    fn advances_with_std_instant() {
        let start = std::time::Instant::now();
        let first = monotonic_ns();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let second = monotonic_ns();
        let elapsed = i64::try_from(start.elapsed().as_nanos()).unwrap();
        assert!(second - first >= 20_000_000);
        // Both read CLOCK_MONOTONIC: the two intervals agree to well under a millisecond.
        assert!((second - first - elapsed).abs() < 1_000_000, "{} vs {elapsed}", second - first);
    }
}
