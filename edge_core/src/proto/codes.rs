//! Every close code and error code the edge writes or reports, one named constant each.
//!
//! `python/livechat/protocol/codes.py` is the source of truth (`CloseCode`, `ErrorCode`;
//! docs/protocol.md documents each code) and a test there parses this file: keep one constant to
//! a line, `pub const NAME: u16 = N;` or `pub const NAME: &str = "...";`, NAME being the Python
//! member's name.

// Close codes (`CloseCode`): RFC 6455 §7.4.1; 4xxx are livechat's own.
pub const NORMAL: u16 = 1000;
pub const GOING_AWAY: u16 = 1001;
pub const PROTOCOL_ERROR: u16 = 1002;
pub const UNSUPPORTED: u16 = 1003;
/// Reported, never sent: the peer's close frame carried no code.
pub const NO_STATUS: u16 = 1005;
/// Reported, never sent: the connection ended without a close frame.
pub const ABNORMAL: u16 = 1006;
pub const INVALID_PAYLOAD: u16 = 1007;
pub const POLICY: u16 = 1008;
pub const TOO_BIG: u16 = 1009;
pub const INTERNAL: u16 = 1011;
/// The send queue passed its hard cap (the client reads slower than the stream moves).
pub const SLOW_CONSUMER: u16 = 4008;
/// Queued bytes made no write progress for `write_timeout_ms`.
pub const WRITE_TIMEOUT: u16 = 4009;

// Error codes (`ErrorCode`): the `code` of an `err` message the edge sends by itself.
/// An app-mode binary message that is not exactly one msgpack value (docs/protocol.md §6).
pub const BAD_MSGPACK: &str = "bad_msgpack";
