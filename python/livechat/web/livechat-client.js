// The livechat protocol (docs/protocol.md) for browsers: the JavaScript twin of the Python
// `livechat.client.LiveChatClient`. One WebSocket, msgpack in binary frames (the browser negotiates
// permessage-deflate by itself), requests matched to replies by `rid`, reconnect with exponential
// backoff and full jitter, re-join with `last_id` so missed comments are recovered (or a gap is
// reported), posts resent with their cmid after a reconnect, duplicate comments dropped.
//
// Events (CustomEvent, payload in `detail`):
//   status      {state: "connecting"|"open"|"reconnecting"|"closed", attempt?, delayMs?, code?, reason?, error?}
//   snapshot    {stream, snapshot}          the join reply (also after each reconnect; snapshot.gap)
//   comment     {stream, comment, source}   source: "tick" | "direct" | "missed"
//   delete      {stream, id, keep}          keep: the author who still sees it (shadow ban), or undefined
//   purge / ban / unban / pin / highlight / modes / gap   {stream, event}
//   state       {stream, slots}             changed state slots: n, rx, likes, tier
//   notice      {notice}                    banned / timed_out / unbanned
//   servererror {code, msg, fields}         an `err` that answers no request

import { decode, encode } from "./msgpack.js";

const REFUSED_TOKEN = new Set([4001, 4002]);
const TOKEN_EXPIRED = 4003;
const CLOSE_ABNORMAL = 1006;
const RID_MAX = Number.MAX_SAFE_INTEGER;

export class LiveChatError extends Error {
  constructor(code, message, fields = {}) {
    super(`${code}: ${message}`);
    this.code = code;
    this.fields = fields;
  }
}

/** Delay before attempt n: uniform in [0, min(max, initial * factor^n)] ("full jitter"). */
export class Backoff {
  constructor({ initialMs, maxMs, factor }, random = Math.random) {
    this.initialMs = initialMs;
    this.maxMs = maxMs;
    this.factor = factor;
    this.random = random;
    this.attempt = 0;
  }

  ceiling(attempt) {
    return Math.min(this.maxMs, this.initialMs * Math.pow(this.factor, Math.min(attempt, 64)));
  }

  next() {
    return this.random() * this.ceiling(this.attempt++);
  }

  reset() {
    this.attempt = 0;
  }
}

/** The `sub` claim of a JWT, unverified (only to recognise our own comments). */
export function tokenSubject(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
    return typeof claims.sub === "string" ? claims.sub : null;
  } catch (err) {
    return null;
  }
}

class SeenIds {
  constructor(capacity) {
    this.capacity = capacity;
    this.ids = new Set();
    this.order = [];
  }

  add(id) {
    const key = String(id);
    if (this.ids.has(key)) return false;
    this.ids.add(key);
    this.order.push(key);
    if (this.order.length > this.capacity) this.ids.delete(this.order.shift());
    return true;
  }

  clear() {
    this.ids.clear();
    this.order = [];
  }
}

function big(id) {
  return typeof id === "bigint" ? id : BigInt(id);
}

export class LiveChatClient extends EventTarget {
  /**
   * @param {object} options
   * @param {string} options.url    ws(s)://host/live
   * @param {string} [options.token] a JWT (sent as ?token=, browsers cannot set headers); none = read-only
   * @param {object} options.config the served ClientConfig (livechat-config.js)
   */
  constructor({ url, token, config }) {
    super();
    this.url = url;
    this.token = token || null;
    this.userId = this.token ? tokenSubject(this.token) : null;
    this.config = config;
    this.backoff = new Backoff({
      initialMs: config.reconnectInitialMs,
      maxMs: config.reconnectMaxMs,
      factor: config.reconnectFactor,
    });
    this.ws = null;
    this.generation = 0;
    this.ready = false;
    this.opening = false;
    this.closing = false;
    this.finalError = null;
    this.reconnectTimer = null;
    this.nextRid = 0;
    this.pending = new Map();
    this.views = new Map();
    this.lastError = null;
    this.reconnects = 0;
  }

  get connected() {
    return this.ready && this.ws !== null;
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  // -- lifecycle ----------------------------------------------------------------------------------

  /** Open the connection; resolves once the server accepted the token. */
  async connect() {
    if (this.ws || this.opening) throw new Error("already connected");
    this.opening = true;
    this.emit("status", { state: "connecting" });
    try {
      await this.open();
      this.ready = true;
      this.emit("status", { state: "open" });
    } catch (err) {
      this.dropSocket();
      throw err;
    } finally {
      this.opening = false;
    }
  }

  close() {
    if (this.finalError) return;
    this.closing = true;
    clearTimeout(this.reconnectTimer);
    if (this.ws) this.ws.close(1000);
    this.finish(new LiveChatError("closed", "the client was closed"));
  }

  open() {
    return new Promise((resolve, reject) => {
      const generation = ++this.generation;
      const query = this.token ? `?token=${encodeURIComponent(this.token)}` : "";
      const ws = new WebSocket(this.url + query);
      ws.binaryType = "arraybuffer";
      this.ws = ws;
      this.lastError = null;
      const timer = setTimeout(() => {
        reject(new LiveChatError("timeout", "connect timed out"));
        this.dropSocket();
      }, this.config.connectTimeoutMs);
      ws.onmessage = (e) => {
        if (generation === this.generation && e.data instanceof ArrayBuffer) this.receive(e.data);
      };
      ws.onclose = (e) => {
        clearTimeout(timer);
        this.onSocketClosed(generation, e.code || CLOSE_ABNORMAL, e.reason || "");
        reject(this.finalError || new LiveChatError("connection_lost", `closed with ${e.code}`));
      };
      ws.onopen = () => {
        // A ping proves the token was accepted: the server handles the open before any message.
        const { rid, promise } = this.submit(() => ({ op: "ping" }), { now: true });
        this.wait(rid, promise, this.config.connectTimeoutMs).then(
          () => { clearTimeout(timer); resolve(); },
          (err) => { clearTimeout(timer); reject(err); },
        );
      };
    });
  }

  dropSocket() {
    const ws = this.ws;
    this.ws = null;
    this.ready = false;
    this.generation++;
    if (ws) {
      ws.close();
      this.losePending(null, CLOSE_ABNORMAL, "abandoned by the client");
    }
  }

  losePending(finalError, code, reason) {
    for (const [rid, p] of this.pending) {
      if (finalError || (p.sent && !p.resend)) {
        this.pending.delete(rid);
        p.reject(finalError || new LiveChatError("connection_lost", `connection lost (close ${code}) ${reason}`));
      } else {
        p.sent = false;
      }
    }
  }

  onSocketClosed(generation, code, reason) {
    if (generation !== this.generation) return;
    this.ws = null;
    this.ready = false;
    let finalError = null;
    if (this.closing) {
      finalError = new LiveChatError("closed", "the client was closed");
    } else if (REFUSED_TOKEN.has(code) || code === TOKEN_EXPIRED) {
      const [errCode, msg] = this.lastError || [`close_${code}`, reason];
      finalError = new LiveChatError(errCode, msg, { close: code });
    }
    this.losePending(finalError, code, reason);
    if (finalError) {
      this.emit("status", { state: "closed", code, reason, error: finalError });
      if (!this.closing) this.finish(finalError);
      return;
    }
    if (!this.opening) this.scheduleReconnect(1);
  }

  scheduleReconnect(attempt) {
    if (this.closing || this.finalError) return;
    this.opening = true;
    const delayMs = this.backoff.next();
    this.emit("status", { state: "reconnecting", attempt, delayMs });
    this.reconnectTimer = setTimeout(async () => {
      if (this.closing) return;
      try {
        await this.open();
        await this.restore();
      } catch (err) {
        if (this.finalError) return;
        this.dropSocket();
        this.scheduleReconnect(attempt + 1);
        return;
      }
      this.opening = false;
      this.backoff.reset();
      this.reconnects++;
      this.emit("status", { state: "open", attempt });
    }, delayMs);
  }

  /** Re-join every stream, then send what waited for the connection (posts keep their cmid). */
  async restore() {
    const userJoins = new Set();
    for (const p of this.pending.values()) if (p.joinStream) userJoins.add(p.joinStream);
    for (const [rid, p] of this.pending) if (p.joinStream && !p.sent) this.send(rid, p);
    const waits = [];
    for (const [stream, view] of this.views) {
      if (view.joined && !userJoins.has(stream)) {
        const { rid, promise } = this.submit(() => this.joinMessage(stream), { now: true });
        waits.push(this.wait(rid, promise, this.config.requestTimeoutMs));
      }
    }
    await Promise.all(waits);
    if (!this.ws) throw new LiveChatError("connection_lost", "closed while re-joining");
    this.ready = true;
    for (const [rid, p] of this.pending) if (!p.sent) this.send(rid, p);
  }

  finish(error) {
    this.finalError = error;
    this.ready = false;
    this.opening = false;
    for (const p of this.pending.values()) p.reject(error);
    this.pending.clear();
  }

  // -- requests -----------------------------------------------------------------------------------

  submit(make, { resend = false, joinStream = null, now = false } = {}) {
    if (this.finalError) throw this.finalError;
    this.nextRid = this.nextRid < RID_MAX ? this.nextRid + 1 : 1;
    const rid = this.nextRid;
    let resolve;
    let reject;
    const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
    const p = { make, resolve, reject, resend, joinStream, sent: false };
    this.pending.set(rid, p);
    if (this.ws && (this.ready || now)) this.send(rid, p);
    return { rid, promise };
  }

  send(rid, p) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    p.sent = true;
    this.ws.send(encode({ ...p.make(), rid }));
  }

  wait(rid, promise, timeoutMs) {
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new LiveChatError("timeout", `no reply in ${timeoutMs} ms`)), timeoutMs);
    });
    return Promise.race([promise, timeout]).finally(() => {
      clearTimeout(timer);
      this.pending.delete(rid);
    });
  }

  request(make, options = {}) {
    const { rid, promise } = this.submit(make, options);
    return this.wait(rid, promise, this.config.requestTimeoutMs);
  }

  joinMessage(stream) {
    const view = this.views.get(stream);
    if (!view || !view.joined) return { op: "join", stream };
    // At least 1: an empty stream's first comments are recovered too.
    return { op: "join", stream, last_id: view.lastId > 0n ? view.lastId : 1n };
  }

  // -- operations ---------------------------------------------------------------------------------

  async join(stream) {
    if (!this.views.has(stream)) {
      this.views.set(stream, { stream, joined: false, lastId: 0n, seen: new SeenIds(this.config.dedupeIds), role: "viewer" });
    }
    try {
      return await this.request(() => this.joinMessage(stream), { resend: true, joinStream: stream });
    } catch (err) {
      const view = this.views.get(stream);
      if (view && !view.joined) this.views.delete(stream);
      throw err;
    }
  }

  leave(stream) {
    this.views.delete(stream);
    return this.request(() => ({ op: "leave", stream }));
  }

  view(stream) {
    return this.views.get(stream);
  }

  post(stream, text, { replyTo, cmid } = {}) {
    const id = cmid || (crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`);
    const message = { op: "post", stream, text, cmid: id, reply_to: replyTo };
    return this.request(() => message, { resend: true });
  }

  react(stream, emoji) { return this.request(() => ({ op: "react", stream, emoji })); }
  like(stream, id) { return this.request(() => ({ op: "like", stream, id })); }
  unlike(stream, id) { return this.request(() => ({ op: "unlike", stream, id })); }
  history(stream, { before, limit } = {}) { return this.request(() => ({ op: "history", stream, before, limit })); }
  ping() { return this.request(() => ({ op: "ping" })); }
  report(stream, fields) { return this.request(() => ({ op: "report", stream, ...fields })); }

  /** Moderator / broadcaster operations: delete, purge, timeout, ban, unban, pin, unpin,
   * highlight, slow, followers_only, comments (fields as in docs/protocol.md §2). */
  moderate(op, stream, fields = {}) {
    return this.request(() => ({ op, stream, ...fields }));
  }

  // -- inbound ------------------------------------------------------------------------------------

  /** Handle one binary message from the server (the socket's onmessage calls this). */
  receive(data) {
    let msg;
    try {
      msg = decode(data);
    } catch (err) {
      console.warn("livechat: dropping an undecodable message", err);
      return;
    }
    if (msg === null || typeof msg !== "object") return;
    switch (msg.t) {
      case "tick": return this.onEvents(msg, "tick");
      case "ev": return this.onEvents(msg, "direct");
      case "snapshot": return this.onSnapshot(msg);
      case "err": return this.onError(msg);
      case "notice": return this.emit("notice", { notice: msg });
      case "ack": case "ok": case "history": case "pong": return this.resolve(msg.rid, msg);
      default: return undefined;
    }
  }

  resolve(rid, value) {
    const p = this.pending.get(rid);
    if (p) p.resolve(value);
  }

  onEvents(msg, source) {
    const stream = msg.s;
    const view = this.views.get(stream);
    if (!view) return;
    for (const event of msg.e || []) {
      switch (event.k) {
        case "c":
          if (!view.seen.add(event.id)) break;
          if (big(event.id) > view.lastId) view.lastId = big(event.id);
          this.emit("comment", { stream, comment: event, source });
          break;
        case "del":
          this.emit("delete", { stream, id: event.id, keep: event.keep });
          break;
        case "gap":
          this.emit("gap", { stream, event });
          this.request(() => this.joinMessage(stream)).catch(() => {});
          break;
        case "purge": case "ban": case "unban": case "pin": case "modes":
          this.emit(event.k, { stream, event });
          break;
        case "hl":
          this.emit("highlight", { stream, event });
          break;
        default:
          break;
      }
    }
    if (msg.st && Object.keys(msg.st).length) this.emit("state", { stream, slots: msg.st });
  }

  onSnapshot(msg) {
    const view = this.views.get(msg.s);
    if (view) {
      if (msg.gap) view.seen.clear();
      const missed = (msg.missed || []).filter((c) => view.seen.add(c.id));
      for (const c of [...(msg.recent || []), ...(msg.missed || [])]) {
        view.seen.add(c.id);
        if (big(c.id) > view.lastId) view.lastId = big(c.id);
      }
      if (msg.last && big(msg.last) > view.lastId) view.lastId = big(msg.last);
      view.joined = true;
      view.role = msg.role;
      this.emit("snapshot", { stream: msg.s, snapshot: msg });
      for (const comment of missed) this.emit("comment", { stream: msg.s, comment, source: "missed" });
      for (const id of msg.del || []) this.emit("delete", { stream: msg.s, id });
    }
    this.resolve(msg.rid, msg);
  }

  onError(msg) {
    const p = msg.rid !== undefined ? this.pending.get(msg.rid) : undefined;
    if (!p) {
      this.lastError = [msg.code, msg.msg];
      this.emit("servererror", { code: msg.code, msg: msg.msg, fields: msg });
      return;
    }
    if (p.joinStream) {
      const view = this.views.get(p.joinStream);
      if (view && !view.joined) this.views.delete(p.joinStream);
    }
    p.reject(new LiveChatError(msg.code, msg.msg, msg));
  }
}
