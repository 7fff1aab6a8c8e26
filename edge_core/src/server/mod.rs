//! The running edge: I/O threads, the ticker thread, and the handle the bridge calls.

pub mod conn;
pub mod conn_id;
pub mod events;
pub mod link;
pub mod listener;
pub mod shared;
pub mod sink;
pub mod stats;
pub mod sync;
pub mod worker;

use std::io;
use std::net::ToSocketAddrs;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::fanout::hub::HubState;
use crate::fanout::tick::{self, SharedFrame};
use crate::proto::deflate::Deflater;
use crate::proto::origin::OriginPolicy;
use crate::proto::proxy::TrustedProxies;
use crate::settings::Settings;
pub use conn_id::ConnId;
pub use events::Event;
use events::EventSink;
use link::{Cmd, WorkerLink};
use shared::Shared;
pub use stats::Counters;
use sync::lock;

/// A started edge. Dropping it stops it.
pub struct Edge {
    shared: Arc<Shared>,
    /// Compresses direct sends at or over `deflate_min_bytes` (acks and errors are smaller and
    /// never touch it); one reused compressor, not a fresh zlib state per send.
    send_deflater: Mutex<Deflater>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    port: u16,
}

impl Edge {
    /// Bind the listener once (or adopt the one named by `LIVECHAT_LISTEN_FD`), give every I/O
    /// thread a duplicate of it, and start the I/O threads and the ticker.
    pub fn start(settings: Settings) -> io::Result<Self> {
        let n = settings.io_threads.clamp(1, ConnId::MAX_THREADS);
        let first = match listener::inherited_fd()? {
            Some(fd) => listener::adopt(fd, settings.port, &settings)?,
            None => {
                let addr = (settings.host.as_str(), settings.port)
                    .to_socket_addrs()?
                    .next()
                    .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "host resolves to nothing"))?;
                listener::bind(addr, &settings)?
            }
        };
        let port = first.local_addr()?.port();
        let listeners = listener::per_thread(first, n)?;
        let mut polls = Vec::with_capacity(n);
        let mut links = Vec::with_capacity(n);
        for _ in 0..n {
            let poll = mio::Poll::new()?;
            links.push(WorkerLink::new(mio::Waker::new(poll.registry(), worker::WAKER)?));
            polls.push(poll);
        }
        let origins = if settings.allowed_origins.is_empty() {
            OriginPolicy::default_for(settings.public_url.as_deref(), &settings.host, port)
        } else {
            OriginPolicy::new(&settings.allowed_origins)
        }
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let proxies = TrustedProxies::new(&settings.trusted_proxies)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let shared = Arc::new(Shared {
            static_files: std::sync::RwLock::new(std::collections::HashMap::new()),
            settings,
            origins,
            proxies,
            hub: Mutex::new(HubState::default()),
            ticker_wake: Condvar::new(),
            events: EventSink::new()?,
            workers: links,
            open_connections: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            frames_built: AtomicU64::new(0),
            ticks: AtomicU64::new(0),
            tick_build_ns: AtomicU64::new(0),
        });
        let mut threads = Vec::with_capacity(n + 1);
        for (i, (poll, l)) in polls.into_iter().zip(listeners).enumerate() {
            let w = worker::Worker::new(i, poll, mio::net::TcpListener::from_std(l), shared.clone())?;
            threads.push(std::thread::Builder::new().name(format!("lc-io-{i}")).spawn(move || w.run())?);
        }
        let t = shared.clone();
        threads.push(std::thread::Builder::new().name("lc-ticker".into()).spawn(move || run_ticker(&t))?);
        let send_deflater = Mutex::new(Deflater::new(shared.settings.deflate_level));
        Ok(Self { shared, send_deflater, threads: Mutex::new(threads), port })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn events(&self) -> &EventSink {
        &self.shared.events
    }

    /// Queue `cmd` on the thread owning `id`; false when the connection is already gone.
    fn to_owner(&self, id: ConnId, cmd: impl FnOnce() -> Cmd) -> bool {
        match self.shared.worker_of(id) {
            Some(w) if w.is_live(id) => {
                w.send(cmd());
                true
            }
            _ => false,
        }
    }

    pub fn subscribe(&self, id: ConnId, stream: &str) -> bool {
        // Pinned until the owner thread has counted the subscriber (or found the connection
        // gone): the stream cannot be forgotten while the command is on its way.
        let sid = self.shared.hub().pin(stream);
        let sent = self.to_owner(id, || Cmd::Subscribe(id, sid));
        if !sent {
            self.shared.hub().unpin(sid);
        }
        sent
    }

    pub fn unsubscribe(&self, id: ConnId, stream: &str) -> bool {
        // A stream that does not exist has no subscriber to remove (and is not created for it).
        match self.shared.hub().id_of(stream) {
            Some(sid) => self.to_owner(id, || Cmd::Unsubscribe(id, sid)),
            None => self.shared.worker_of(id).is_some_and(|w| w.is_live(id)),
        }
    }

    pub fn publish(&self, stream: &str, event: &[u8], priority: bool) {
        self.shared.with_hub(|h| {
            let id = h.intern(stream);
            h.publish(id, event, priority)
        });
    }

    pub fn set_state(&self, stream: &str, key: &str, value: &[u8]) {
        self.shared.with_hub(|h| {
            let id = h.intern(stream);
            h.set_state(id, key, value)
        });
    }

    fn single_frame(&self, data: &[u8], binary: bool) -> Arc<SharedFrame> {
        let s = &self.shared.settings;
        if !s.deflate || data.len() < s.deflate_min_bytes {
            return Arc::new(SharedFrame::message(data, binary, None));
        }
        let mut d = lock(&self.send_deflater);
        Arc::new(SharedFrame::message(data, binary, Some((&mut d, s.deflate_min_bytes))))
    }

    /// Many direct sends in one call (a batch of acks): one command per I/O thread. Returns how
    /// many of the connections were open.
    pub fn send_batch(&self, items: &[(ConnId, &[u8])], binary: bool) -> usize {
        let mut per_thread: Vec<Vec<(ConnId, Arc<SharedFrame>)>> = vec![Vec::new(); self.shared.workers.len()];
        let mut n = 0;
        for &(id, data) in items {
            let Some(w) = self.shared.worker_of(id) else { continue };
            if w.is_live(id) {
                per_thread[id.thread()].push((id, self.single_frame(data, binary)));
                n += 1;
            }
        }
        for (w, batch) in self.shared.workers.iter().zip(per_thread) {
            if !batch.is_empty() {
                w.send(Cmd::SendBatch(batch));
            }
        }
        n
    }

    pub fn send(&self, id: ConnId, data: &[u8], binary: bool) -> bool {
        self.to_owner(id, || Cmd::Send(id, self.single_frame(data, binary)))
    }

    /// Returns how many of the ids were open connections.
    pub fn send_many(&self, ids: &[ConnId], data: &[u8], binary: bool) -> usize {
        let f = self.single_frame(data, binary);
        let mut per_thread: Vec<Vec<ConnId>> = vec![Vec::new(); self.shared.workers.len()];
        let mut n = 0;
        for &id in ids {
            if let Some(v) = per_thread.get_mut(id.thread()) {
                if self.shared.workers[id.thread()].is_live(id) {
                    v.push(id);
                    n += 1;
                }
            }
        }
        for (w, ids) in self.shared.workers.iter().zip(per_thread) {
            if !ids.is_empty() {
                w.send(Cmd::SendMany(ids, f.clone()));
            }
        }
        n
    }

    pub fn close(&self, id: ConnId, code: u16, reason: &str) -> bool {
        self.to_owner(id, || Cmd::Close(id, code, reason.to_owned()))
    }

    /// Serve `body` to plain GETs of `path` (exact match, query ignored).
    pub fn set_static(&self, path: &str, content_type: &str, body: &[u8]) {
        let mut files = self.shared.static_files.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        files.insert(path.to_owned(), (content_type.to_owned(), Arc::from(body)));
    }

    pub fn stream_subscribers(&self, stream: &str) -> u32 {
        self.shared.hub().subscribers(stream)
    }

    /// Totals, then per-thread counters.
    pub fn stats(&self) -> (Counters, Vec<Counters>) {
        let per: Vec<_> = self.shared.workers.iter().map(|w| w.stats.snapshot()).collect();
        let mut total: Counters = per[0].iter().map(|(k, _)| (*k, 0)).collect();
        for t in &per {
            for (i, (_, v)) in t.iter().enumerate() {
                total[i].1 += v;
            }
        }
        let published = self.shared.hub().events_published;
        total.push(("events_published", published));
        total.push(("ticks", self.shared.ticks.load(Ordering::Relaxed)));
        total.push(("frames_built", self.shared.frames_built.load(Ordering::Relaxed)));
        total.push(("tick_build_ns", self.shared.tick_build_ns.load(Ordering::Relaxed)));
        total.push(("io_threads", per.len() as u64));
        (total, per)
    }

    /// Flush pending ticks, then close every connection with 1001 and join the threads.
    pub fn stop(&self, drain: Duration) {
        if self.shared.draining.swap(true, Ordering::SeqCst) {
            return;
        }
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.shared.ticker_wake.notify_all();
        let mut threads = lock(&self.threads);
        // The ticker is last: join it first so its final ticks are queued before the closes.
        if let Some(t) = threads.pop() {
            let _ = t.join();
        }
        for w in &self.shared.workers {
            w.send(Cmd::Shutdown(drain));
        }
        for t in threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.stop(Duration::from_millis(0));
    }
}

fn run_ticker(shared: &Shared) {
    let s = &shared.settings;
    let mut deflater = Deflater::new(s.deflate_level);
    let mut due = Vec::new();
    let mut hub = shared.hub();
    loop {
        let now = Instant::now();
        let stopping = shared.stopped.load(Ordering::SeqCst);
        let next = hub.take_due(now, &s.tick, shared.workers.len() as u32, &mut due);
        if !due.is_empty() {
            drop(hub);
            let build_start = Instant::now();
            let frames: Vec<(u32, Arc<SharedFrame>)> = due
                .drain(..)
                .map(|t| {
                    let d = s.deflate.then_some((&mut deflater, s.deflate_min_bytes));
                    (t.stream_id, Arc::new(tick::build(&t.parts(), d)))
                })
                .collect();
            shared.frames_built.fetch_add(frames.len() as u64, Ordering::Relaxed);
            shared.tick_build_ns.fetch_add(build_start.elapsed().as_nanos() as u64, Ordering::Relaxed);
            shared.ticks.fetch_add(1, Ordering::Relaxed);
            let frames = Arc::new(frames);
            let sent = Instant::now();
            for w in &shared.workers {
                w.send(Cmd::Ticks(frames.clone(), sent));
            }
            hub = shared.hub();
            continue;
        }
        if stopping && !hub.has_pending() {
            return;
        }
        let wait = match (next, stopping) {
            (Some(t), _) => t.saturating_duration_since(now),
            (None, true) => Duration::from_millis(1),
            (None, false) => Duration::from_secs(1),
        };
        hub = shared.ticker_wake.wait_timeout(hub, wait).unwrap_or_else(std::sync::PoisonError::into_inner).0;
    }
}
