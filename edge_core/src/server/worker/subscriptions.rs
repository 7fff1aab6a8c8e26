//! The thread's stream index: which local connections each stream's tick frames go to.

use super::Worker;

impl Worker {
    pub(super) fn subscribe_local(&mut self, slot: usize, stream: u32) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        if conn.subs.iter().any(|(s, _)| *s == stream) {
            return;
        }
        let list = self.streams.entry(stream).or_default();
        conn.subs.push((stream, list.len() as u32));
        list.push(slot as u32);
        self.ctx.shared.hub().add_subscribers(stream, 1);
    }

    pub(super) fn unsubscribe_local(&mut self, slot: usize, stream: u32) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        let Some(i) = conn.subs.iter().position(|(s, _)| *s == stream) else {
            return;
        };
        let (_, pos) = conn.subs.swap_remove(i);
        let Some(list) = self.streams.get_mut(&stream) else {
            return;
        };
        list.swap_remove(pos as usize);
        // The last subscriber moved into `pos`: tell it where it now sits.
        if let Some(&moved) = list.get(pos as usize) {
            if let Some(m) = self.conns.get_mut(moved as usize) {
                if let Some(e) = m.subs.iter_mut().find(|(s, _)| *s == stream) {
                    e.1 = pos;
                }
            }
        }
        if list.is_empty() {
            self.streams.remove(&stream);
        }
        self.ctx.shared.hub().add_subscribers(stream, -1);
    }
}
