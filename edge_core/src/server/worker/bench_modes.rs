//! The two modes that are not the product, kept out of the app's path: echo (the Autobahn
//! testee) and fanout (the fan-out benchmark's server).

use std::sync::Arc;

use super::handler::{OnMessage, Out};
use crate::proto::deflate::DeflaterSet;
use crate::proto::frame::{self, OP_BINARY, OP_TEXT};
use crate::server::shared::Shared;

/// Echo mode: every message comes straight back, compressed when the connection negotiated
/// permessage-deflate and the message is at least `min_bytes`.
pub(super) struct Echo {
    /// Boxed: a compressor per window size is large, and `Messages` is as big as its largest mode.
    deflaters: Box<DeflaterSet>,
    min_bytes: usize,
}

impl Echo {
    pub fn new(level: u32, min_bytes: usize) -> Self {
        Self { deflaters: Box::new(DeflaterSet::new(level)), min_bytes }
    }
}

impl OnMessage for Echo {
    fn on_message(&mut self, out: &mut Out<'_>, data: &[u8], text: bool) {
        let op = if text { OP_TEXT } else { OP_BINARY };
        let replies = &mut *out.replies;
        if let Some(bits) = out.reply_window.filter(|_| data.len() >= self.min_bytes) {
            let mut z = Vec::with_capacity(data.len() / 2 + 16);
            self.deflaters.for_window(bits).compress(data, &mut z);
            frame::write_header(replies, true, true, op, z.len(), None);
            replies.extend_from_slice(&z);
        } else {
            frame::write_header(replies, true, false, op, data.len(), None);
            replies.extend_from_slice(data);
        }
    }
}

/// Fanout mode: every connection joins one stream (see `Worker::on_open`) and every message is
/// published to it as an event.
pub(super) struct Fanout {
    shared: Arc<Shared>,
    pub stream: u32,
}

impl Fanout {
    pub fn new(shared: Arc<Shared>, stream: &str) -> Self {
        // Pinned for good: connections join it on open, with no subscribe command.
        let stream = shared.hub().pin(stream);
        Self { shared, stream }
    }
}

impl OnMessage for Fanout {
    fn on_message(&mut self, _out: &mut Out<'_>, data: &[u8], text: bool) {
        let stream = self.stream;
        self.shared.with_hub(|h| h.publish_raw(stream, data, text));
    }
}
