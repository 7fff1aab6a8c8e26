//! Incremental UTF-8 validation across frame and read boundaries.

/// Validates a text message fed in pieces; a code point may be split anywhere.
///
/// Holds at most 3 bytes of an unfinished code point, so it fails as soon as a piece makes the
/// message invalid rather than at the end (Autobahn 6.4 "fail fast").
#[derive(Default, Debug, Clone)]
pub struct Utf8Validator {
    pending: [u8; 4],
    pending_len: u8,
}

/// The bytes fed so far can never be the prefix of valid UTF-8.
#[derive(Debug, PartialEq, Eq)]
pub struct InvalidUtf8;

fn sequence_len(lead: u8) -> usize {
    match lead {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 1,
    }
}

impl Utf8Validator {
    /// Feed the next piece; `last` marks the end of the message.
    pub fn feed(&mut self, mut data: &[u8], last: bool) -> Result<(), InvalidUtf8> {
        if self.pending_len > 0 {
            let have = usize::from(self.pending_len);
            let need = sequence_len(self.pending[0]);
            let take = (need - have).min(data.len());
            self.pending[have..have + take].copy_from_slice(&data[..take]);
            let now = have + take;
            data = &data[take..];
            match simdutf8::compat::from_utf8(&self.pending[..now]) {
                Ok(_) => self.pending_len = 0,
                Err(e) if e.error_len().is_none() && data.is_empty() && !last => {
                    self.pending_len = u8::try_from(now).unwrap_or(0);
                    return Ok(());
                }
                Err(_) => return Err(InvalidUtf8),
            }
        }
        match simdutf8::compat::from_utf8(data) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() && !last => {
                let tail = &data[e.valid_up_to()..];
                self.pending[..tail.len()].copy_from_slice(tail);
                self.pending_len = u8::try_from(tail.len()).unwrap_or(0);
                Ok(())
            }
            Err(_) => Err(InvalidUtf8),
        }
    }

    /// Forget any partial code point (the next message starts clean).
    pub fn reset(&mut self) {
        self.pending_len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn feed_split(data: &[u8], cuts: &[usize]) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Validator::default();
        let mut start = 0;
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
        points.sort_unstable();
        for p in points {
            v.feed(&data[start..p], false)?;
            start = p;
        }
        v.feed(&data[start..], true)
    }

    #[test]
    fn fails_fast_on_bad_continuation() {
        let mut v = Utf8Validator::default();
        assert!(v.feed(&[0xCE], false).is_ok());
        assert_eq!(v.feed(&[0x41], false), Err(InvalidUtf8));
        let mut v = Utf8Validator::default();
        assert_eq!(v.feed(&[0xF5], false), Err(InvalidUtf8));
        let mut v = Utf8Validator::default();
        assert_eq!(v.feed(&[0xE2, 0x82], true), Err(InvalidUtf8));
    }

    proptest! {
        #[test]
        fn split_anywhere_agrees_with_whole(s in "\\PC{0,40}", cuts in proptest::collection::vec(0usize..200, 0..5)) {
            prop_assert!(feed_split(s.as_bytes(), &cuts).is_ok());
        }

        #[test]
        fn random_bytes_agree_with_std(data in proptest::collection::vec(any::<u8>(), 0..40),
                                       cuts in proptest::collection::vec(0usize..200, 0..5)) {
            let whole = std::str::from_utf8(&data).is_ok();
            prop_assert_eq!(feed_split(&data, &cuts).is_ok(), whole);
        }
    }
}
