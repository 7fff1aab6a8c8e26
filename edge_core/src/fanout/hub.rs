//! The stream hub: pending tick contents per stream, and when each stream's tick is due.
//!
//! Publishers (Python, or an I/O thread in fanout mode) append under one short lock; the ticker
//! takes whole pending buffers out under the same lock and builds frames outside it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::tick::TickParts;
use crate::proto::msgpack as mp;

/// Tick timing (all from `EdgeConfig`; no defaults here).
#[derive(Debug, Clone, Copy)]
pub struct TickTiming {
    pub min: Duration,
    pub max: Duration,
    /// A cap: frame deliveries per second one stream may cost (0 = no cap). Pacing by measured
    /// write time comes first; this only bounds a stream that the machine could serve faster.
    pub budget_deliveries: u64,
}

impl TickTiming {
    /// Shortest gap the budget cap allows between two frames of a stream with `subscribers`
    /// subscribers, within `min..=max`: 15 000 viewers at a 300 000/s cap = 50 ms.
    pub fn interval(&self, subscribers: u32) -> Duration {
        let per_frame = match self.budget_deliveries {
            0 => Duration::ZERO,
            b => Duration::from_micros(u64::from(subscribers) * 1_000_000 / b),
        };
        per_frame.clamp(self.min, self.max)
    }

    /// When a stream's next tick is due, given its previous one went at `last` and the I/O
    /// threads finished writing it at `written` (`None`: still writing).
    ///
    /// Guarantees: never before `last + interval(subscribers)` (so never before `min`, nor past
    /// the budget cap); as soon as that once the previous frame is written; while it is still
    /// being written, not before `last + max` (writing that falls behind stretches the ticks,
    /// and `max` bounds the stretch so one stalled thread cannot hold a stream's news back).
    pub fn due(&self, last: Instant, subscribers: u32, written: Option<Instant>) -> Instant {
        let floor = last + self.interval(subscribers);
        floor.max(written.unwrap_or(last + self.max))
    }
}

#[derive(Default)]
struct Pending {
    events: Vec<u8>,
    count: u32,
}

impl Pending {
    fn take(&mut self) -> (Vec<u8>, u32) {
        let cap = self.events.capacity().min(64 * 1024);
        let events = std::mem::replace(&mut self.events, Vec::with_capacity(if self.count > 0 { cap } else { 0 }));
        (events, std::mem::take(&mut self.count))
    }
}

struct Stream {
    name: Arc<str>,
    seq: u64,
    normal: Pending,
    priority: Pending,
    state: Vec<(Box<str>, Box<[u8]>)>,
    dirty: bool,
    last_flush: Option<Instant>,
    subscribers: u32,
    /// Subscribe commands on their way to an I/O thread (`HubState::pin`); a fan-out mode's
    /// stream stays pinned for good.
    pins: u32,
    /// I/O threads still writing this stream's previous frames (0 = all written).
    writing: u32,
    /// When the last of them finished (`None` while `writing > 0`).
    written_at: Option<Instant>,
}

/// One stream's tick, taken out of the hub, ready to be framed.
pub struct DueTick {
    pub stream_id: u32,
    pub name: Arc<str>,
    pub seq: u64,
    pub events: Vec<u8>,
    pub count: u32,
    pub state: Vec<(Box<str>, Box<[u8]>)>,
    pub priority: bool,
}

impl DueTick {
    pub fn parts(&self) -> TickParts<'_> {
        TickParts {
            stream: &self.name,
            seq: self.seq,
            events: &self.events,
            count: self.count,
            state: &self.state,
            priority: self.priority,
        }
    }
}

/// Streams by name and id, and what is pending for each. A stream is forgotten (its name, id
/// and buffers freed) once nothing refers to it: no subscriber, no subscribe on its way, nothing
/// pending, every frame written (issue 13: names joined once were kept forever).
#[derive(Default)]
pub struct HubState {
    ids: HashMap<Arc<str>, u32>,
    streams: HashMap<u32, Stream>,
    dirty: Vec<u32>,
    next_id: u32,
    /// The largest `seq` of a forgotten stream: a stream created again starts above it, so a
    /// name's sequence keeps increasing across its lives.
    seq_floor: u64,
    pub events_published: u64,
    /// Frames dispatched and fully written by every I/O thread, and the time that took (sum):
    /// the measured write time per frame that paces the ticks.
    pub frames_written: u64,
    pub write_ns: u64,
}

impl HubState {
    /// The stream's id, created on first use. An id is reused only after 2^32 others, and only
    /// when it was forgotten (nothing refers to it then).
    pub fn intern(&mut self, name: &str) -> u32 {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let mut id = self.next_id;
        while self.streams.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        self.next_id = id.wrapping_add(1);
        let name: Arc<str> = Arc::from(name);
        self.ids.insert(name.clone(), id);
        self.streams.insert(
            id,
            Stream {
                name,
                seq: self.seq_floor,
                normal: Pending::default(),
                priority: Pending::default(),
                state: Vec::new(),
                dirty: false,
                last_flush: None,
                subscribers: 0,
                pins: 0,
                writing: 0,
                written_at: None,
            },
        );
        id
    }

    /// `intern`, and keep the stream until `unpin`: for a subscribe command on its way to the
    /// connection's I/O thread, which counts the subscriber and then unpins.
    pub fn pin(&mut self, name: &str) -> u32 {
        let id = self.intern(name);
        if let Some(s) = self.streams.get_mut(&id) {
            s.pins += 1;
        }
        id
    }

    pub fn unpin(&mut self, id: u32) {
        if let Some(s) = self.streams.get_mut(&id) {
            s.pins = s.pins.saturating_sub(1);
            self.forget_if_unused(id);
        }
    }

    /// The id of a stream that exists now (no interning).
    pub fn id_of(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    /// Streams held now.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    fn forget_if_unused(&mut self, id: u32) {
        let Some(s) = self.streams.get(&id) else { return };
        if s.subscribers == 0 && s.pins == 0 && !s.dirty && s.writing == 0 {
            self.seq_floor = self.seq_floor.max(s.seq);
            self.ids.remove(&s.name);
            self.streams.remove(&id);
        }
    }

    fn mark_dirty(&mut self, id: u32) -> bool {
        let s = self.streams.get_mut(&id).expect("interned");
        if s.dirty {
            return false;
        }
        s.dirty = true;
        self.dirty.push(id);
        self.dirty.len() == 1
    }

    /// Append one msgpack event. Returns true when the ticker should be woken (first dirty stream).
    pub fn publish(&mut self, id: u32, event: &[u8], priority: bool) -> bool {
        let s = self.streams.get_mut(&id).expect("interned");
        let p = if priority { &mut s.priority } else { &mut s.normal };
        p.events.extend_from_slice(event);
        p.count += 1;
        self.events_published += 1;
        self.mark_dirty(id)
    }

    /// Publish a client's raw message as an event: msgpack bin (binary) or str (text).
    pub fn publish_raw(&mut self, id: u32, payload: &[u8], text: bool) -> bool {
        let s = self.streams.get_mut(&id).expect("interned");
        if text {
            // The codec validated the text as UTF-8.
            mp::write_str(&mut s.normal.events, std::str::from_utf8(payload).unwrap_or(""));
        } else {
            mp::write_bin(&mut s.normal.events, payload);
        }
        s.normal.count += 1;
        self.events_published += 1;
        self.mark_dirty(id)
    }

    /// Set a latest-value slot for the next tick.
    pub fn set_state(&mut self, id: u32, key: &str, value: &[u8]) -> bool {
        let s = self.streams.get_mut(&id).expect("interned");
        match s.state.iter_mut().find(|(k, _)| &**k == key) {
            Some(slot) => slot.1 = value.into(),
            None => s.state.push((key.into(), value.into())),
        }
        self.mark_dirty(id)
    }

    /// Count subscribers (summed over I/O threads) for tick timing and `stream_subscribers`.
    pub fn add_subscribers(&mut self, id: u32, delta: i32) {
        if let Some(s) = self.streams.get_mut(&id) {
            s.subscribers = s.subscribers.saturating_add_signed(delta);
            self.forget_if_unused(id);
        }
    }

    pub fn subscribers(&self, name: &str) -> u32 {
        self.ids.get(name).and_then(|id| self.streams.get(id)).map_or(0, |s| s.subscribers)
    }

    /// Take every tick due at `now` (priority frame first) and return when the next is due.
    /// `writers` I/O threads will each report the taken frames written (`frames_written`).
    pub fn take_due(
        &mut self,
        now: Instant,
        timing: &TickTiming,
        writers: u32,
        out: &mut Vec<DueTick>,
    ) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut still_dirty = Vec::new();
        for id in std::mem::take(&mut self.dirty) {
            let Some(s) = self.streams.get_mut(&id) else {
                continue;
            };
            let written = if s.writing == 0 { s.written_at } else { None };
            let due_at = s.last_flush.map_or(now, |t| timing.due(t, s.subscribers, written));
            if due_at > now {
                next = Some(next.map_or(due_at, |n| n.min(due_at)));
                still_dirty.push(id);
                continue;
            }
            s.dirty = false;
            s.last_flush = Some(now);
            let before = out.len();
            if s.priority.count > 0 {
                let (events, count) = s.priority.take();
                s.seq += 1;
                out.push(DueTick {
                    stream_id: id,
                    name: s.name.clone(),
                    seq: s.seq,
                    events,
                    count,
                    state: Vec::new(),
                    priority: true,
                });
            }
            if s.normal.count > 0 || !s.state.is_empty() {
                let (events, count) = s.normal.take();
                s.seq += 1;
                let state = std::mem::take(&mut s.state);
                out.push(DueTick {
                    stream_id: id,
                    name: s.name.clone(),
                    seq: s.seq,
                    events,
                    count,
                    state,
                    priority: false,
                });
            }
            if out.len() > before {
                // Overlapping dispatches (past `max`) add up: written once all are.
                s.writing += writers;
                s.written_at = None;
            } else {
                self.forget_if_unused(id);
            }
        }
        self.dirty = still_dirty;
        next
    }

    /// One I/O thread has written (or queued, for a slow consumer) the frames of these streams
    /// it was handed, each (stream, when the ticker sent it). Returns true when a stream with
    /// news waiting is now free, so the ticker should be woken.
    pub fn frames_written(&mut self, done: &[(u32, Instant)], now: Instant) -> bool {
        let mut wake = false;
        for (id, sent) in done {
            let Some(s) = self.streams.get_mut(id) else {
                continue;
            };
            if s.writing == 0 {
                continue;
            }
            s.writing -= 1;
            if s.writing == 0 {
                s.written_at = Some(now);
                self.frames_written += 1;
                self.write_ns += now.saturating_duration_since(*sent).as_nanos() as u64;
                wake |= s.dirty;
                self.forget_if_unused(*id);
            }
        }
        wake
    }

    /// Whether anything is waiting (shutdown flushes until this is false).
    pub fn has_pending(&self) -> bool {
        !self.dirty.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: TickTiming =
        TickTiming { min: Duration::from_millis(10), max: Duration::from_millis(100), budget_deliveries: 300_000 };
    const UNCAPPED: TickTiming = TickTiming { budget_deliveries: 0, ..T };

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn budget_cap_scales_with_audience() {
        assert_eq!(T.interval(10), ms(10));
        assert_eq!(T.interval(15_000), ms(50));
        assert_eq!(T.interval(1_000_000), ms(100));
        assert_eq!(UNCAPPED.interval(1_000_000), ms(10));
    }

    #[test]
    fn due_rule() {
        let t0 = Instant::now();
        // Written quickly: due at min.
        assert_eq!(UNCAPPED.due(t0, 15_000, Some(t0 + ms(3))), t0 + ms(10));
        // Written slowly: due as soon as written (the measured write time is the spacing).
        assert_eq!(UNCAPPED.due(t0, 15_000, Some(t0 + ms(70))), t0 + ms(70));
        // Still writing: not before max.
        assert_eq!(UNCAPPED.due(t0, 15_000, None), t0 + ms(100));
        // The budget stays a cap: written fast, still not before subscribers / budget.
        assert_eq!(T.due(t0, 15_000, Some(t0 + ms(3))), t0 + ms(50));
        assert_eq!(T.due(t0, 15_000, Some(t0 + ms(70))), t0 + ms(70));
    }

    #[test]
    fn first_event_goes_at_once_then_waits_for_the_writers() {
        let mut h = HubState::default();
        let id = h.intern("s");
        h.add_subscribers(id, 15_000);
        let t0 = Instant::now();
        assert!(h.publish(id, &[0x01], false));
        let mut due = Vec::new();
        assert_eq!(h.take_due(t0, &UNCAPPED, 2, &mut due), None);
        assert_eq!((due.len(), due[0].count, due[0].seq), (1, 1, 1));
        due.clear();
        h.publish(id, &[0x02], false);
        h.publish(id, &[0x03], true);
        h.set_state(id, "n", &[0x05]);
        h.set_state(id, "n", &[0x06]);
        // Past min, but two threads are still writing frame 1: due at max at the latest.
        assert_eq!(h.take_due(t0 + ms(20), &UNCAPPED, 2, &mut due), Some(t0 + ms(100)));
        assert!(due.is_empty());
        assert!(!h.frames_written(&[(id, t0)], t0 + ms(30)), "one of two threads done");
        assert_eq!(h.take_due(t0 + ms(31), &UNCAPPED, 2, &mut due), Some(t0 + ms(100)));
        assert!(h.frames_written(&[(id, t0)], t0 + ms(40)), "the last thread frees a stream with news");
        assert_eq!((h.frames_written, h.write_ns), (1, 40_000_000));
        h.take_due(t0 + ms(40), &UNCAPPED, 2, &mut due);
        assert_eq!(due.len(), 2);
        assert!(due[0].priority && due[0].events == [0x03] && due[0].seq == 2);
        assert!(!due[1].priority && due[1].events == [0x02] && due[1].seq == 3);
        assert_eq!(&*due[1].state[0].1, &[0x06]);
        assert!(!h.has_pending());
    }

    #[test]
    fn a_stream_is_forgotten_once_nothing_refers_to_it() {
        let mut h = HubState::default();
        let t0 = Instant::now();
        let mut due = Vec::new();
        // A subscribe on its way pins the stream; the owner thread counts it, then unpins.
        let id = h.pin("s");
        h.add_subscribers(id, 1);
        h.unpin(id);
        h.publish(id, &[0x01], false);
        h.take_due(t0, &UNCAPPED, 2, &mut due);
        assert_eq!(due[0].seq, 1);
        // The last subscriber leaves while the frame is being written: kept until it is written.
        h.add_subscribers(id, -1);
        assert_eq!(h.id_of("s"), Some(id));
        h.frames_written(&[(id, t0)], t0 + ms(1));
        assert_eq!(h.id_of("s"), Some(id), "one of two threads still writing");
        h.frames_written(&[(id, t0)], t0 + ms(2));
        assert_eq!((h.id_of("s"), h.len()), (None, 0));
        // Created again: a new id, and its sequence continues above the old one's.
        let again = h.pin("s");
        assert_ne!(again, id);
        h.unpin(again);
        assert!(h.is_empty(), "a subscribe that found its connection gone leaves nothing");
        let again = h.intern("s");
        h.add_subscribers(again, 1);
        h.publish(again, &[0x02], false);
        due.clear();
        h.take_due(t0 + ms(50), &UNCAPPED, 1, &mut due);
        assert_eq!(due[0].seq, 2);
        // News pending for a stream nobody watches (a publish) keeps it until its tick is out.
        h.add_subscribers(again, -1);
        assert_eq!(h.len(), 1);
        h.frames_written(&[(again, t0)], t0 + ms(51));
        assert!(h.is_empty());
        let other = h.intern("t");
        h.publish(other, &[0x03], false);
        h.add_subscribers(other, 1);
        h.add_subscribers(other, -1);
        assert_eq!(h.len(), 1, "dirty");
        // A pinned stream (fan-out mode) stays with no subscriber.
        let fan = h.pin("fan");
        h.add_subscribers(fan, 1);
        h.add_subscribers(fan, -1);
        assert_eq!(h.id_of("fan"), Some(fan));
    }

    #[test]
    fn a_quick_write_leaves_min_as_the_spacing() {
        let mut h = HubState::default();
        let id = h.intern("s");
        h.add_subscribers(id, 5);
        let t0 = Instant::now();
        let mut due = Vec::new();
        h.publish(id, &[0x01], false);
        h.take_due(t0, &UNCAPPED, 1, &mut due);
        h.frames_written(&[(id, t0)], t0 + ms(1));
        h.publish(id, &[0x02], false);
        assert_eq!(h.take_due(t0 + ms(2), &UNCAPPED, 1, &mut due), Some(t0 + ms(10)));
    }

    #[test]
    fn writing_that_falls_behind_stretches_to_max_and_overlaps_add_up() {
        let mut h = HubState::default();
        let id = h.intern("s");
        let t0 = Instant::now();
        let mut due = Vec::new();
        h.publish(id, &[0x01], false);
        h.take_due(t0, &UNCAPPED, 1, &mut due);
        h.publish(id, &[0x02], false);
        h.take_due(t0 + ms(100), &UNCAPPED, 1, &mut due);
        assert_eq!(due.len(), 2, "past max the next frame goes even though the first is unwritten");
        h.publish(id, &[0x03], false);
        assert!(!h.frames_written(&[(id, t0)], t0 + ms(120)), "one of two dispatches written");
        assert!(h.frames_written(&[(id, t0 + ms(100))], t0 + ms(130)));
        assert_eq!(h.take_due(t0 + ms(129), &UNCAPPED, 1, &mut due), Some(t0 + ms(130)));
    }
}
