//! Pure protocol code: no sockets, no threads, no Python. Bytes in, bytes or values out.

pub mod close;
pub mod codec;
pub mod codes;
pub mod deflate;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod msgpack;
pub mod origin;
pub mod proxy;
pub mod utf8;
