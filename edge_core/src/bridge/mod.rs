//! The Python module `livechat._edge`: the only code that holds the GIL. Every call that does
//! real work (start, stop, publish, fan-out sends) releases it with `py.detach`.

mod config;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::fanout::tick::{self, TickParts};
use crate::proto::codec::{self, Incoming, RxConfig, Scratch};
use crate::proto::deflate::{DeflateParams, Deflater, Inflater};
use crate::proto::{close, codes, frame, msgpack};
use crate::server::{self, ConnId, Event};
use crate::settings::Settings;

const EVENT_OPEN: u8 = 1;
const EVENT_MESSAGE: u8 = 2;
const EVENT_CLOSE: u8 = 3;

/// One WebSocket edge (see `_edge.pyi` for the guarantees).
#[pyclass(frozen, module = "livechat._edge")]
struct Edge {
    settings: Settings,
    running: Mutex<Option<Arc<server::Edge>>>,
}

impl Edge {
    fn core(&self) -> PyResult<Arc<server::Edge>> {
        server::sync::lock(&self.running).clone().ok_or_else(|| PyRuntimeError::new_err("edge is not started"))
    }
}

fn event_to_py<'py>(py: Python<'py>, e: Event) -> PyResult<Bound<'py, PyTuple>> {
    Ok(match e {
        Event::Open { id, path, peer, authorization } => {
            let data = (path, peer, authorization).into_pyobject(py)?;
            (EVENT_OPEN, id.raw(), data).into_pyobject(py)?
        }
        Event::Message { id, data, text } => {
            let payload = if text {
                // The codec validated the text as UTF-8.
                PyString::new(py, std::str::from_utf8(&data).unwrap_or_default()).into_any()
            } else {
                PyBytes::new(py, &data).into_any()
            };
            (EVENT_MESSAGE, id.raw(), payload).into_pyobject(py)?
        }
        Event::Close { id, code, reason } => (EVENT_CLOSE, id.raw(), (code, reason)).into_pyobject(py)?,
    })
}

#[pymethods]
impl Edge {
    #[new]
    fn new(config: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(Self { settings: config::extract(config)?, running: Mutex::new(None) })
    }

    fn start(&self, py: Python<'_>) -> PyResult<u16> {
        let mut running = server::sync::lock(&self.running);
        if running.is_some() {
            return Err(PyRuntimeError::new_err("edge already started"));
        }
        let settings = self.settings.clone();
        let edge = py.detach(|| server::Edge::start(settings)).map_err(|e| PyOSError::new_err(e.to_string()))?;
        let port = edge.port();
        *running = Some(Arc::new(edge));
        Ok(port)
    }

    fn fileno(&self) -> PyResult<i32> {
        Ok(self.core()?.events().fd())
    }

    #[pyo3(signature = (max_events = 4096))]
    fn drain<'py>(&self, py: Python<'py>, max_events: usize) -> PyResult<Bound<'py, PyList>> {
        let core = self.core()?;
        let events = py.detach(|| core.events().drain(max_events));
        let items = events.into_iter().map(|e| event_to_py(py, e)).collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }

    fn subscribe(&self, conn_id: u64, stream: &str) -> PyResult<bool> {
        Ok(self.core()?.subscribe(ConnId::from_raw(conn_id), stream))
    }

    fn unsubscribe(&self, conn_id: u64, stream: &str) -> PyResult<bool> {
        Ok(self.core()?.unsubscribe(ConnId::from_raw(conn_id), stream))
    }

    #[pyo3(signature = (stream, event, priority = false))]
    fn publish(&self, py: Python<'_>, stream: &str, event: &[u8], priority: bool) -> PyResult<()> {
        if msgpack::validate(event).is_err() {
            return Err(PyValueError::new_err("event must be exactly one msgpack value"));
        }
        let core = self.core()?;
        py.detach(|| core.publish(stream, event, priority));
        Ok(())
    }

    fn set_state(&self, stream: &str, key: &str, value: &[u8]) -> PyResult<()> {
        if msgpack::validate(value).is_err() {
            return Err(PyValueError::new_err("state value must be exactly one msgpack value"));
        }
        self.core()?.set_state(stream, key, value);
        Ok(())
    }

    #[pyo3(signature = (conn_id, data, binary = true))]
    fn send(&self, conn_id: u64, data: &[u8], binary: bool) -> PyResult<bool> {
        Ok(self.core()?.send(ConnId::from_raw(conn_id), data, binary))
    }

    #[pyo3(signature = (conn_ids, data, binary = true))]
    fn send_many(&self, py: Python<'_>, conn_ids: Vec<u64>, data: &[u8], binary: bool) -> PyResult<usize> {
        let core = self.core()?;
        // Same size and layout: collecting reuses the list's allocation.
        let ids: Vec<ConnId> = conn_ids.into_iter().map(ConnId::from_raw).collect();
        Ok(py.detach(|| core.send_many(&ids, data, binary)))
    }

    #[pyo3(signature = (items, binary = true))]
    fn send_batch(&self, py: Python<'_>, items: Vec<(u64, PyBackedBytes)>, binary: bool) -> PyResult<usize> {
        let core = self.core()?;
        // PyBackedBytes reads `bytes` in place: each payload is copied once, into its frame.
        let refs: Vec<(ConnId, &[u8])> = items.iter().map(|(id, d)| (ConnId::from_raw(*id), &d[..])).collect();
        Ok(py.detach(|| core.send_batch(&refs, binary)))
    }

    #[pyo3(signature = (conn_id, code = 1000, reason = ""))]
    fn close(&self, conn_id: u64, code: u16, reason: &str) -> PyResult<bool> {
        if !close::may_send(code) {
            return Err(PyValueError::new_err(format!("close code {code} may not be sent")));
        }
        Ok(self.core()?.close(ConnId::from_raw(conn_id), code, reason))
    }

    fn set_static(&self, path: &str, content_type: &str, body: &[u8]) -> PyResult<()> {
        self.core()?.set_static(path, content_type, body);
        Ok(())
    }

    fn stream_subscribers(&self, stream: &str) -> PyResult<u32> {
        Ok(self.core()?.stream_subscribers(stream))
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (total, per) = self.core()?.stats();
        let d = PyDict::new(py);
        for (k, v) in total {
            d.set_item(k, v)?;
        }
        let threads = PyList::empty(py);
        for t in per {
            let td = PyDict::new(py);
            for (k, v) in t {
                td.set_item(k, v)?;
            }
            threads.append(td)?;
        }
        d.set_item("threads", threads)?;
        Ok(d)
    }

    #[pyo3(signature = (drain_timeout_ms = 5000))]
    fn stop(&self, py: Python<'_>, drain_timeout_ms: u64) {
        let core = server::sync::lock(&self.running).take();
        if let Some(core) = core {
            py.detach(|| core.stop(Duration::from_millis(drain_timeout_ms)));
        }
    }

    #[getter]
    fn port(&self) -> PyResult<u16> {
        Ok(self.core()?.port())
    }
}

/// A whole frame: unmasked as the server sends it, or masked with `mask` as a client does.
#[pyfunction]
#[pyo3(signature = (payload, binary = true, mask = None))]
fn encode_frame<'py>(py: Python<'py>, payload: &[u8], binary: bool, mask: Option<[u8; 4]>) -> Bound<'py, PyBytes> {
    let op = if binary { frame::OP_BINARY } else { frame::OP_TEXT };
    let f = match mask {
        Some(m) => frame::encode_client_frame(true, false, op, payload, m),
        None => frame::encode_frame(op, false, payload),
    };
    PyBytes::new(py, &f)
}

/// Decode client frames as the edge does; returns the data messages and the bytes consumed.
#[pyfunction]
#[pyo3(signature = (data, max_message = 1 << 20, deflate = false))]
fn decode_client_frames<'py>(
    py: Python<'py>,
    data: &[u8],
    max_message: usize,
    deflate: bool,
) -> PyResult<(Bound<'py, PyList>, usize)> {
    let mut buf = data.to_vec();
    let cfg = RxConfig {
        max_message,
        deflate: deflate.then_some(DeflateParams { client_no_context_takeover: true, server_max_window_bits: 15 }),
    };
    let mut st = codec::RxState::default();
    let mut scratch = Scratch::default();
    let mut out: Vec<Vec<u8>> = Vec::new();
    let used = codec::decode(&mut st, &cfg, &mut buf, &mut scratch, |m| {
        if let Incoming::Binary(b) | Incoming::Text(b) = m {
            out.push(b.to_vec());
        }
        true
    })
    .map_err(|e| PyValueError::new_err(format!("close {}: {}", e.code, e.reason)))?;
    Ok((PyList::new(py, out.iter().map(|b| PyBytes::new(py, b)))?, used))
}

/// permessage-deflate compression of one message (no context takeover, tail stripped).
#[pyfunction]
#[pyo3(signature = (data, level = 3))]
fn deflate<'py>(py: Python<'py>, data: &[u8], level: u32) -> Bound<'py, PyBytes> {
    let mut out = Vec::new();
    Deflater::new(level).compress(data, &mut out);
    PyBytes::new(py, &out)
}

/// Inflate one permessage-deflate message, refusing output past `max_size`.
#[pyfunction]
#[pyo3(signature = (data, max_size = 1 << 20))]
fn inflate<'py>(py: Python<'py>, data: &[u8], max_size: usize) -> PyResult<Bound<'py, PyBytes>> {
    let mut out = Vec::new();
    Inflater::default()
        .inflate(data, &mut out, max_size)
        .map_err(|e| PyValueError::new_err(format!("inflate: {e:?}")))?;
    Ok(PyBytes::new(py, &out))
}

/// Whether `data` is exactly one msgpack value (the edge's inbound check).
#[pyfunction]
fn msgpack_valid(data: &[u8]) -> bool {
    msgpack::validate(data).is_ok()
}

/// The msgpack payload of a tick frame holding `events` (each one msgpack value).
#[pyfunction]
fn encode_tick<'py>(py: Python<'py>, stream: &str, seq: u64, events: Vec<Vec<u8>>) -> Bound<'py, PyBytes> {
    let joined: Vec<u8> = events.concat();
    let parts = TickParts { stream, seq, events: &joined, count: events.len() as u32, state: &[], priority: false };
    PyBytes::new(py, &tick::encode_tick(&parts))
}

#[pymodule(gil_used = false)]
fn _edge(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Edge>()?;
    m.add_function(wrap_pyfunction!(encode_frame, m)?)?;
    m.add_function(wrap_pyfunction!(decode_client_frames, m)?)?;
    m.add_function(wrap_pyfunction!(deflate, m)?)?;
    m.add_function(wrap_pyfunction!(inflate, m)?)?;
    m.add_function(wrap_pyfunction!(msgpack_valid, m)?)?;
    m.add_function(wrap_pyfunction!(encode_tick, m)?)?;
    m.add("EVENT_OPEN", EVENT_OPEN)?;
    m.add("EVENT_MESSAGE", EVENT_MESSAGE)?;
    m.add("EVENT_CLOSE", EVENT_CLOSE)?;
    for (name, code) in [
        ("CLOSE_NORMAL", codes::NORMAL),
        ("CLOSE_GOING_AWAY", codes::GOING_AWAY),
        ("CLOSE_PROTOCOL_ERROR", codes::PROTOCOL_ERROR),
        ("CLOSE_UNSUPPORTED", codes::UNSUPPORTED),
        ("CLOSE_INVALID_PAYLOAD", codes::INVALID_PAYLOAD),
        ("CLOSE_POLICY", codes::POLICY),
        ("CLOSE_TOO_BIG", codes::TOO_BIG),
        ("CLOSE_INTERNAL", codes::INTERNAL),
        ("CLOSE_SLOW_CONSUMER", codes::SLOW_CONSUMER),
        ("CLOSE_WRITE_TIMEOUT", codes::WRITE_TIMEOUT),
    ] {
        m.add(name, code)?;
    }
    Ok(())
}
