//! What a viewer does with each complete binary message: decode, check order, record latency.

use crate::ledger::Ledger;
use crate::payload::{self, BenchMessage};

pub struct Receiver {
    pub ledger: Ledger,
    tick_frames: bool,
    /// Reused for every message so the receive path allocates nothing.
    carried: Vec<BenchMessage>,
}

impl Receiver {
    pub fn new(tick_frames: bool) -> Self {
        Receiver { ledger: Ledger::default(), tick_frames, carried: Vec::new() }
    }

    /// One viewer got `message` at `now_ns`; `expect` is that viewer's next expected seq.
    pub fn on_binary(&mut self, expect: &mut u64, message: &[u8], now_ns: i64) {
        self.carried.clear();
        if let Err(why) = payload::decode_into(message, self.tick_frames, &mut self.carried) {
            self.ledger.reject(why);
            return;
        }
        let (Some(first), Some(last)) = (self.carried.first(), self.carried.last()) else {
            return; // a tick frame with no bench messages says nothing about order
        };
        if first.seq != *expect {
            self.ledger.gaps += 1;
        }
        *expect = last.seq.wrapping_add(1);
        for message in &self.carried {
            self.ledger.record(message.seq, now_ns - message.sent_ns);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Receiver;

    fn encode(seq: u64, sent_ns: i64) -> Vec<u8> {
        let mut message = vec![0xc4, 98];
        message.extend_from_slice(b"LCB1");
        message.extend_from_slice(&seq.to_le_bytes());
        message.extend_from_slice(&sent_ns.to_le_bytes());
        message.resize(100, 0);
        message
    }

    #[test]
    fn gaps_are_per_viewer_and_latency_is_receive_minus_send() {
        let mut receiver = Receiver::new(false);
        let (mut viewer_a, mut viewer_b) = (0, 0);
        for seq in 0..3 {
            receiver.on_binary(&mut viewer_a, &encode(seq, 1_000), 3_000);
        }
        receiver.on_binary(&mut viewer_b, &encode(0, 1_000), 5_000);
        receiver.on_binary(&mut viewer_b, &encode(2, 1_000), 5_000); // seq 1 lost
        assert_eq!(receiver.ledger.gaps, 1);
        assert_eq!(viewer_b, 3);
        assert_eq!(receiver.ledger.delivered(0, 3), 5);
        assert_eq!(receiver.ledger.summarize(0, 3).max_us, 4.0);
    }

    #[test]
    fn malformed_messages_are_counted_not_recorded() {
        let mut receiver = Receiver::new(false);
        let mut expect = 0;
        receiver.on_binary(&mut expect, b"hello", 1);
        receiver.on_binary(&mut expect, &[0u8; 100], 1);
        assert_eq!(receiver.ledger.malformed, 2);
        assert!(receiver.ledger.malformed_example.starts_with("not a bench message: b'hello'"));
        assert_eq!((expect, receiver.ledger.gaps), (0, 0));
    }
}
