//! The interface every message handler of a worker implements (app mode in `messages`, the
//! benchmark modes in `bench_modes`): one whole data message in, replies and events out.

use crate::server::conn_id::ConnId;
use crate::server::events::Event;

/// Where a handler's output goes, for one connection's read.
pub(super) struct Out<'a> {
    pub id: ConnId,
    /// Frames to queue on the connection after this read.
    pub replies: &'a mut Vec<u8>,
    /// Events for Python, pushed once per loop pass.
    pub events: &'a mut Vec<Event>,
    /// The connection's permessage-deflate window for what it is sent, if it negotiated one.
    pub reply_window: Option<u8>,
}

pub(super) trait OnMessage {
    /// One whole data message (reassembled, inflated, text checked as UTF-8) from an open
    /// connection.
    fn on_message(&mut self, out: &mut Out<'_>, data: &[u8], text: bool);
}
