//! What the viewers of one process received, answerable by sequence-number window.
//!
//! Same contract as `bench/fanout/ledger.py`: `delivered(lo, hi)` counts deliveries (viewer x
//! carried message) of seqs in [lo, hi); `summarize(lo, hi)` adds their latency histogram and
//! maximum and forgets every seq below `hi`; a delivery of a forgotten seq counts nowhere. Where
//! the Python ledger keeps raw receive times and bins them after the step, this one bins each
//! delivery as it arrives into its seq's histogram (a few hundred buckets, not one sample per
//! viewer), so memory grows with messages, not with deliveries.

use std::collections::{BTreeMap, VecDeque};

use crate::latency;

/// A seq this far past the oldest one still held is garbage, not a message: refusing it bounds memory
/// (a record is ~50 bytes plus its histogram; the full ladder publishes ~32 000 messages).
const MAX_SEQ_AHEAD: u64 = 1 << 20;

#[derive(Default)]
struct SeqRecord {
    delivered: u64,
    max_ns: i64,
    first_bucket: u16,
    counts: Vec<u32>,
}

impl SeqRecord {
    fn add(&mut self, latency_ns: i64) {
        let bucket = latency::bucket(latency_ns);
        if self.counts.is_empty() {
            self.first_bucket = bucket;
            self.max_ns = latency_ns;
        } else if bucket < self.first_bucket {
            // Rare: later viewers of a message usually wait longer, so the histogram grows upward.
            let grow = usize::from(self.first_bucket - bucket);
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.first_bucket = bucket;
        }
        let index = usize::from(bucket - self.first_bucket);
        if index >= self.counts.len() {
            self.counts.resize(index + 1, 0);
        }
        self.counts[index] += 1;
        self.delivered += 1;
        self.max_ns = self.max_ns.max(latency_ns);
    }
}

/// Deliveries, latency histogram (bucket -> count) and the largest latency of one window.
pub struct Summary {
    pub delivered: u64,
    pub histogram: BTreeMap<u16, u64>,
    pub max_us: f64,
}

#[derive(Default)]
pub struct Ledger {
    /// The seq of `records[0]`; every seq below it has been summarized and forgotten.
    base: u64,
    records: VecDeque<SeqRecord>,
    /// A viewer whose next message does not start at the seq after its last one (loss/reorder).
    pub gaps: u64,
    pub malformed: u64,
    pub malformed_example: String,
    pub unexpected_text: u64,
    pub disconnects: u64,
    pub close_codes: BTreeMap<String, u64>,
    /// Set on exit: connections closing now are not counted as disconnects.
    pub closing: bool,
}

impl Ledger {
    /// One viewer received message `seq`, `latency_ns` after it was sent.
    pub fn record(&mut self, seq: u64, latency_ns: i64) {
        let Some(offset) = seq.checked_sub(self.base) else {
            return; // already summarized
        };
        if offset >= MAX_SEQ_AHEAD {
            self.reject(format!("seq {seq} is over {MAX_SEQ_AHEAD} past the oldest held ({})", self.base));
            return;
        }
        let index = offset as usize;
        if index >= self.records.len() {
            self.records.resize_with(index + 1, SeqRecord::default);
        }
        self.records[index].add(latency_ns);
    }

    /// Counts a received message that is not what the harness sends; keeps the first reason.
    pub fn reject(&mut self, why: String) {
        self.malformed += 1;
        if self.malformed_example.is_empty() {
            self.malformed_example = why;
        }
    }

    pub fn count_disconnect(&mut self, close_code: Option<u16>) {
        if self.closing {
            return;
        }
        self.disconnects += 1;
        let key = close_code.map_or_else(|| "no close frame".to_owned(), |code| code.to_string());
        *self.close_codes.entry(key).or_default() += 1;
    }

    fn window(&self, lo: u64, hi: u64) -> impl Iterator<Item = &SeqRecord> {
        let start = lo.saturating_sub(self.base).min(self.records.len() as u64) as usize;
        let end = hi.saturating_sub(self.base).min(self.records.len() as u64) as usize;
        self.records.range(start..end.max(start))
    }

    /// Deliveries so far of messages with seq in [lo, hi), summed over viewers.
    pub fn delivered(&self, lo: u64, hi: u64) -> u64 {
        self.window(lo, hi).map(|record| record.delivered).sum()
    }

    /// Deliveries and latency histogram for seq in [lo, hi); forgets every seq below `hi`.
    pub fn summarize(&mut self, lo: u64, hi: u64) -> Summary {
        let mut summary = Summary { delivered: 0, histogram: BTreeMap::new(), max_us: 0.0 };
        let mut max_ns = None;
        for record in self.window(lo, hi).filter(|record| record.delivered > 0) {
            summary.delivered += record.delivered;
            max_ns = max_ns.max(Some(record.max_ns));
            for (offset, &count) in record.counts.iter().enumerate().filter(|(_, &count)| count > 0) {
                let bucket = record.first_bucket + offset as u16;
                *summary.histogram.entry(bucket).or_default() += u64::from(count);
            }
        }
        summary.max_us = max_ns.map_or(0.0, |ns| (ns as f64 / 1000.0).max(0.0));
        let forget = hi.saturating_sub(self.base).min(self.records.len() as u64) as usize;
        self.records.drain(..forget);
        self.base = self.base.max(hi);
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::Ledger;
    use crate::latency::bucket;

    #[test]
    fn counts_each_viewer_once_and_keeps_windows_apart() {
        let mut ledger = Ledger::default();
        // Two viewers get seqs 0..4, sent at seq ms, received at 5 and 6 ms.
        for received_ms in [5, 6] {
            for seq in 0..4u64 {
                ledger.record(seq, (received_ms - seq as i64) * 1_000_000);
            }
        }
        assert_eq!(ledger.delivered(0, 2), 4);
        let first = ledger.summarize(0, 2);
        assert_eq!(first.delivered, 4);
        assert_eq!(first.max_us, 6000.0);
        assert_eq!(first.histogram.values().sum::<u64>(), 4);
        assert_eq!(first.histogram[&bucket(6_000_000)], 1);
        assert_eq!(ledger.delivered(0, 2), 0, "summarized seqs are forgotten");
        // A late delivery of a forgotten seq counts nowhere.
        ledger.record(1, 9_000_000);
        assert_eq!(ledger.delivered(0, 4), 4);
        let second = ledger.summarize(2, 4);
        assert_eq!(second.delivered, 4);
        assert_eq!(second.max_us, 4000.0); // seq 2: sent at 2 ms, last received at 6 ms
    }

    #[test]
    fn histogram_grows_both_ways() {
        let mut ledger = Ledger::default();
        for latency_us in [500, 100, 90_000, 7, 100] {
            ledger.record(3, latency_us * 1000);
        }
        let summary = ledger.summarize(0, 10);
        assert_eq!(summary.delivered, 5);
        assert_eq!(summary.histogram[&bucket(100_000)], 2);
        assert_eq!(summary.histogram[&bucket(7_000)], 1);
        assert_eq!(summary.histogram.len(), 4);
        assert_eq!(summary.max_us, 90_000.0);
    }

    #[test]
    fn windows_past_the_data_are_empty_and_garbage_seqs_are_refused() {
        let mut ledger = Ledger::default();
        assert_eq!(ledger.delivered(10, 20), 0);
        assert_eq!(ledger.summarize(10, 20).delivered, 0);
        ledger.record(5, 1); // below the new base of 20
        ledger.record(u64::MAX, 1);
        assert_eq!(ledger.malformed, 1);
        assert!(ledger.malformed_example.contains("past the oldest held"));
        assert_eq!(ledger.delivered(0, u64::MAX), 0);
    }

    #[test]
    fn disconnects_count_until_closing() {
        let mut ledger = Ledger::default();
        ledger.count_disconnect(Some(1001));
        ledger.count_disconnect(None);
        ledger.closing = true;
        ledger.count_disconnect(Some(1001));
        assert_eq!(ledger.disconnects, 2);
        assert_eq!(ledger.close_codes["1001"], 1);
        assert_eq!(ledger.close_codes["no close frame"], 1);
    }
}
