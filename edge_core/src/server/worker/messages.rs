//! What a client's data message does, chosen once per worker from the mode: app mode (the
//! product: validate, then hand to Python) is here; echo and fanout are in `bench_modes`.
//!
//! The decode loop is generic over `OnMessage`, so each mode gets its own copy of the loop with
//! its handler inlined; the mode is looked at once per read (`read::decode_frames`), not once
//! per message.

use std::sync::Arc;

use super::bench_modes::{Echo, Fanout};
use super::handler::{OnMessage, Out};
use crate::proto::frame::{self, OP_BINARY};
use crate::proto::{codes, msgpack};
use crate::server::events::Event;
use crate::server::shared::Shared;
use crate::settings::Mode;

/// The worker's message handler.
pub(super) enum Messages {
    App(App),
    Echo(Echo),
    Fanout(Fanout),
}

impl Messages {
    pub fn new(shared: &Arc<Shared>) -> Self {
        let s = &shared.settings;
        match s.mode {
            Mode::App => Self::App(App::new(s.validate_msgpack)),
            Mode::Echo => Self::Echo(Echo::new(s.deflate_level, s.deflate_min_bytes)),
            Mode::Fanout => Self::Fanout(Fanout::new(shared.clone(), &s.fanout_stream)),
        }
    }
}

/// App mode: every message goes to Python as an event; a binary one must be one msgpack value
/// (when `validate_msgpack`), else it gets an `err` and the connection stays open.
pub(super) struct App {
    validate: bool,
    /// The `bad_msgpack` error frame, encoded once.
    malformed: Box<[u8]>,
}

impl App {
    fn new(validate: bool) -> Self {
        Self { validate, malformed: malformed_error_frame().into_boxed_slice() }
    }
}

impl OnMessage for App {
    #[inline]
    fn on_message(&mut self, out: &mut Out<'_>, data: &[u8], text: bool) {
        if !text && self.validate && msgpack::validate(data).is_err() {
            out.replies.extend_from_slice(&self.malformed);
        } else {
            out.events.push(Event::Message { id: out.id, data: data.to_vec(), text });
        }
    }
}

/// The `err` every app-mode binary message that is not one msgpack value gets
/// (docs/protocol.md §6, code `bad_msgpack`).
fn malformed_error_frame() -> Vec<u8> {
    let mut p = Vec::with_capacity(80);
    msgpack::write_map_len(&mut p, 3);
    msgpack::write_str(&mut p, "t");
    msgpack::write_str(&mut p, "err");
    msgpack::write_str(&mut p, "code");
    msgpack::write_str(&mut p, codes::BAD_MSGPACK);
    msgpack::write_str(&mut p, "msg");
    msgpack::write_str(&mut p, "a binary message must be exactly one msgpack value");
    frame::encode_frame(OP_BINARY, false, &p)
}
