//! State shared between the I/O threads, the ticker and the Python bridge.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};

use super::conn_id::ConnId;
use super::events::EventSink;
use super::link::WorkerLink;
use super::sync::lock;
use crate::fanout::hub::HubState;
use crate::proto::origin::OriginPolicy;
use crate::proto::proxy::TrustedProxies;
use crate::settings::Settings;

/// A file served to plain GETs (the web page): content type and body.
pub type StaticFile = (String, Arc<[u8]>);

/// Everything the threads share.
pub struct Shared {
    /// Plain-GET paths (query stripped) → file; set from Python, read on each plain GET.
    pub static_files: RwLock<std::collections::HashMap<String, StaticFile>>,
    pub settings: Settings,
    /// Who may upgrade (built at start: the default needs the bound port).
    pub origins: OriginPolicy,
    /// Whose forwarding headers name the client (built at start from the settings).
    pub proxies: TrustedProxies,
    pub hub: Mutex<HubState>,
    pub ticker_wake: Condvar,
    pub events: EventSink,
    pub workers: Vec<WorkerLink>,
    pub open_connections: AtomicUsize,
    pub draining: AtomicBool,
    pub stopped: AtomicBool,
    pub frames_built: AtomicU64,
    pub ticks: AtomicU64,
    /// Time spent encoding and compressing tick frames, in nanoseconds (all ticks).
    pub tick_build_ns: AtomicU64,
}

impl Shared {
    pub fn hub(&self) -> MutexGuard<'_, HubState> {
        lock(&self.hub)
    }

    /// Publish-side helper: run `f` on the hub and wake the ticker if it asks to.
    pub fn with_hub(&self, f: impl FnOnce(&mut HubState) -> bool) {
        let wake = f(&mut self.hub());
        if wake {
            self.ticker_wake.notify_one();
        }
    }

    /// The thread owning a connection id, if the id is well formed.
    pub fn worker_of(&self, id: ConnId) -> Option<&WorkerLink> {
        self.workers.get(id.thread())
    }
}
