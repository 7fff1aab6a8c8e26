//! A connection's id: the one place that knows its bit layout.
//!
//! Python sees it as an int (`conn_id`); inside the edge it says which I/O thread owns the
//! connection and in which slot of that thread's slab it lives, so any thread can route a command
//! to it, and a serial that tells a reused slot's new connection from the one that left it.
//!
//! ```text
//!  63      56 55                                22 21                 0
//! +----------+------------------------------------+--------------------+
//! |  thread  |               serial               |        slot        |
//! +----------+------------------------------------+--------------------+
//! ```

/// An I/O thread's connection id (see the module docs for the layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(u64);

impl ConnId {
    /// Slot bits: 4M slots per thread.
    pub const SLOT_BITS: u32 = 22;
    /// Serial bits: a slot is reused by another connection only after 2^34 accepts on its thread.
    pub const SERIAL_BITS: u32 = 34;
    const THREAD_SHIFT: u32 = Self::SLOT_BITS + Self::SERIAL_BITS;
    const SLOT_MASK: u64 = (1 << Self::SLOT_BITS) - 1;
    const SERIAL_MASK: u64 = (1 << Self::SERIAL_BITS) - 1;
    /// Most I/O threads: thread indexes stay under 127, so the top bit is never set and an id is
    /// a positive signed 64-bit integer wherever it travels.
    pub const MAX_THREADS: usize = 127;
    /// Most open connections one thread holds (slots 0 to 2^22 - 2).
    pub const MAX_SLOTS: usize = (1 << Self::SLOT_BITS) - 1;

    /// The id of the connection in `slot` of thread `thread`, accepted as that thread's
    /// `serial`-th connection (serials wrap; see `next_serial`).
    pub fn new(thread: usize, serial: u64, slot: usize) -> Self {
        debug_assert!(thread < Self::MAX_THREADS, "thread {thread}");
        debug_assert!(serial <= Self::SERIAL_MASK, "serial {serial}");
        debug_assert!(slot < Self::MAX_SLOTS, "slot {slot}");
        Self(((thread as u64) << Self::THREAD_SHIFT) | (serial << Self::SLOT_BITS) | slot as u64)
    }

    /// An id as Python passed it back; any value is accepted, and one no thread owns is simply
    /// not found (`thread()` past the last thread, or a slot holding another id).
    pub fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The id as Python sees it.
    pub fn raw(self) -> u64 {
        self.0
    }

    /// Index of the I/O thread that owns the connection.
    pub fn thread(self) -> usize {
        (self.0 >> Self::THREAD_SHIFT) as usize
    }

    /// The connection's slot in its thread's slab.
    pub fn slot(self) -> usize {
        (self.0 & Self::SLOT_MASK) as usize
    }

    pub fn serial(self) -> u64 {
        (self.0 >> Self::SLOT_BITS) & Self::SERIAL_MASK
    }

    /// The serial after `serial`, wrapping within its bits.
    pub fn next_serial(serial: u64) -> u64 {
        (serial + 1) & Self::SERIAL_MASK
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX_SERIAL: u64 = (1 << ConnId::SERIAL_BITS) - 1;

    proptest! {
        #[test]
        fn parts_round_trip(
            thread in 0..ConnId::MAX_THREADS,
            serial in 0..=MAX_SERIAL,
            slot in 0..ConnId::MAX_SLOTS,
        ) {
            let id = ConnId::new(thread, serial, slot);
            prop_assert_eq!((id.thread(), id.serial(), id.slot()), (thread, serial, slot));
            prop_assert_eq!(ConnId::from_raw(id.raw()), id);
        }
    }

    #[test]
    fn fields_at_their_bounds_stay_in_their_bits() {
        let max = ConnId::new(ConnId::MAX_THREADS - 1, MAX_SERIAL, ConnId::MAX_SLOTS - 1);
        assert_eq!((max.thread(), max.serial(), max.slot()), (126, MAX_SERIAL, (1 << 22) - 2));
        assert!(i64::try_from(max.raw()).is_ok(), "an id is a positive i64");
        let zero = ConnId::new(0, 0, 0);
        assert_eq!((zero.thread(), zero.serial(), zero.slot()), (0, 0, 0));
        assert_eq!(ConnId::new(1, 0, 0).raw(), 1 << 56);
        assert_eq!(ConnId::new(0, 1, 0).raw(), 1 << 22);
        assert_eq!(ConnId::new(0, 0, 1).raw(), 1);
        assert_eq!(ConnId::new(2, 3, 5).raw(), (2 << 56) | (3 << 22) | 5);
    }

    #[test]
    fn serials_wrap_within_their_bits() {
        assert_eq!(ConnId::next_serial(0), 1);
        assert_eq!(ConnId::next_serial(MAX_SERIAL), 0);
    }

    #[test]
    fn any_raw_value_splits_without_panicking() {
        let id = ConnId::from_raw(u64::MAX);
        assert_eq!((id.thread(), id.serial(), id.slot()), (255, MAX_SERIAL, (1 << 22) - 1));
    }
}
