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
//   notice      {notice}                    banned / timed_out / unbanned / kicked
//   servererror {code, msg, fields}         an `err` that answers no request

import { decode, encode } from "./msgpack.js";

// BEGIN CODES: generated from livechat/protocol/codes.py by `python tests/unit/test_codes_agree.py --write`
// (tests/unit/test_codes_agree.py fails when this block differs from codes.py).
export const CLOSE = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  PROTOCOL_ERROR: 1002,
  UNSUPPORTED: 1003,
  NO_STATUS: 1005,
  ABNORMAL: 1006,
  INVALID_PAYLOAD: 1007,
  POLICY: 1008,
  TOO_BIG: 1009,
  INTERNAL: 1011,
  AUTH_REQUIRED: 4001,
  AUTH_INVALID: 4002,
  AUTH_EXPIRED: 4003,
  TOO_MANY_ERRORS: 4005,
  SLOW_CONSUMER: 4008,
  WRITE_TIMEOUT: 4009,
  KICKED: 4010,
});
export const ERROR = Object.freeze({
  BAD_FRAME: "bad_frame",
  BAD_MSGPACK: "bad_msgpack",
  BAD_UTF8: "bad_utf8",
  UNKNOWN_OP: "unknown_op",
  BAD_FIELD: "bad_field",
  TEXT_EMPTY: "text_empty",
  TEXT_TOO_LONG: "text_too_long",
  BAD_TEXT: "bad_text",
  AUTH_REQUIRED: "auth_required",
  AUTH_INVALID: "auth_invalid",
  AUTH_EXPIRED: "auth_expired",
  READ_ONLY: "read_only",
  FORBIDDEN: "forbidden",
  NOT_JOINED: "not_joined",
  TOO_MANY_STREAMS: "too_many_streams",
  NOT_FOUND: "not_found",
  RATE_LIMITED: "rate_limited",
  SLOW_MODE: "slow_mode",
  STREAM_BUSY: "stream_busy",
  BANNED: "banned",
  TIMED_OUT: "timed_out",
  COMMENTS_OFF: "comments_off",
  FOLLOWERS_ONLY: "followers_only",
  REJECTED: "rejected",
  UNAVAILABLE: "unavailable",
  INTERNAL: "internal",
});
export const OP = Object.freeze({
  JOIN: "join",
  LEAVE: "leave",
  POST: "post",
  REACT: "react",
  LIKE: "like",
  UNLIKE: "unlike",
  HISTORY: "history",
  PING: "ping",
  REPORT: "report",
  REFRESH: "refresh",
  DELETE: "delete",
  PURGE: "purge",
  TIMEOUT: "timeout",
  BAN: "ban",
  UNBAN: "unban",
  PIN: "pin",
  UNPIN: "unpin",
  HIGHLIGHT: "highlight",
  SLOW: "slow",
  FOLLOWERS_ONLY: "followers_only",
  COMMENTS: "comments",
  HOLD: "hold",
  KICK: "kick",
  QUEUE: "queue",
  REVIEW: "review",
  FOLLOW: "follow",
  UNFOLLOW: "unfollow",
  TOP: "top",
});
export const MESSAGE = Object.freeze({
  TICK: "tick",
  DIRECT: "ev",
  ACK: "ack",
  ERROR: "err",
  OK: "ok",
  SNAPSHOT: "snapshot",
  HISTORY: "history",
  PONG: "pong",
  NOTICE: "notice",
  QUEUE: "queue",
  TOP: "top",
});
export const EVENT = Object.freeze({
  COMMENT: "c",
  DELETE: "del",
  PURGE: "purge",
  BAN: "ban",
  UNBAN: "unban",
  PIN: "pin",
  HIGHLIGHT: "hl",
  MODES: "modes",
  GAP: "gap",
  KICK: "kick",
});
export const STATE = Object.freeze({
  COUNTS: "n",
  REACTIONS: "rx",
  LIKES: "likes",
  TIER: "tier",
});
// END CODES

// Close codes after which reconnecting with the same token cannot help (docs/protocol.md §7).
const REFUSED_TOKEN = new Set([CLOSE.AUTH_REQUIRED, CLOSE.AUTH_INVALID, CLOSE.AUTH_EXPIRED]);
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

function unverifiedClaims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
    return claims && typeof claims === "object" ? claims : {};
  } catch (err) {
    return {};
  }
}

/** The `sub` claim of a JWT, unverified (only to recognise our own comments). */
export function tokenSubject(token) {
  const sub = unverifiedClaims(token).sub;
  return typeof sub === "string" ? sub : null;
}

/** The `exp` claim of a JWT (Unix seconds), unverified; null without one. */
export function tokenExpiry(token) {
  const exp = unverifiedClaims(token).exp;
  return typeof exp === "number" && Number.isFinite(exp) ? exp : null;
}

/** A token is refreshed this long before its `exp` (or half its remaining life when shorter). */
export const REFRESH_AHEAD_MS = 60000;

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
   * @param {() => Promise<string>} [options.tokenProvider] called for a fresh token on every
   *   (re)connect and ahead of each token's `exp`, then sent as a `refresh` op (docs/protocol.md §1)
   * @param {object} options.config the served ClientConfig (livechat-config.js)
   */
  constructor({ url, token, tokenProvider, config }) {
    super();
    this.url = url;
    this.token = token || null;
    this.tokenProvider = tokenProvider || null;
    this.refreshTimer = null;
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
    clearTimeout(this.refreshTimer);
    if (this.ws) this.ws.close(CLOSE.NORMAL);
    this.finish(new LiveChatError("closed", "the client was closed"));
  }

  async open() {
    if (this.tokenProvider) {
      this.token = await this.tokenProvider();
      this.userId = tokenSubject(this.token);
    }
    await this.openSocket();
    this.scheduleRefresh();
  }

  /** With a tokenProvider: send a `refresh` with a new token ahead of the current one's expiry. */
  scheduleRefresh() {
    clearTimeout(this.refreshTimer);
    const exp = tokenExpiry(this.token);
    if (!this.tokenProvider || exp === null || this.closing || this.finalError) return;
    const leftMs = exp * 1000 - Date.now();
    const delayMs = Math.max(0, leftMs - Math.min(REFRESH_AHEAD_MS, leftMs / 2));
    this.refreshTimer = setTimeout(() => this.refresh(), delayMs);
  }

  async refresh() {
    try {
      const token = await this.tokenProvider();
      await this.request(() => ({ op: OP.REFRESH, token }));
      this.token = token;
      this.userId = tokenSubject(token);
      this.scheduleRefresh();
    } catch (err) {
      // The connection stays on its old token; at its expiry (4003) the reconnect takes a new one.
      this.emit("refresh_failed", { error: err });
    }
  }

  openSocket() {
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
        this.onSocketClosed(generation, e.code || CLOSE.ABNORMAL, e.reason || "");
        reject(this.finalError || new LiveChatError("connection_lost", `closed with ${e.code}`));
      };
      ws.onopen = () => {
        // A ping proves the token was accepted: the server handles the open before any message.
        const { rid, promise } = this.submit(() => ({ op: OP.PING }), { now: true });
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
      this.losePending(null, CLOSE.ABNORMAL, "abandoned by the client");
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
    } else if (REFUSED_TOKEN.has(code) && !(code === CLOSE.AUTH_EXPIRED && this.tokenProvider)) {
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
    clearTimeout(this.refreshTimer);
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
    if (!view || !view.joined) return { op: OP.JOIN, stream };
    // At least 1: an empty stream's first comments are recovered too.
    return { op: OP.JOIN, stream, last_id: view.lastId > 0n ? view.lastId : 1n };
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
    return this.request(() => ({ op: OP.LEAVE, stream }));
  }

  view(stream) {
    return this.views.get(stream);
  }

  post(stream, text, { replyTo, cmid } = {}) {
    const id = cmid || (crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`);
    const message = { op: OP.POST, stream, text, cmid: id, reply_to: replyTo };
    return this.request(() => message, { resend: true });
  }

  react(stream, emoji) { return this.request(() => ({ op: OP.REACT, stream, emoji })); }
  like(stream, id) { return this.request(() => ({ op: OP.LIKE, stream, id })); }
  unlike(stream, id) { return this.request(() => ({ op: OP.UNLIKE, stream, id })); }
  history(stream, { before, limit } = {}) { return this.request(() => ({ op: OP.HISTORY, stream, before, limit })); }
  ping() { return this.request(() => ({ op: OP.PING })); }
  /** Report a comment and/or a user: fields {id?, user?, reason?}; 3 reporters of a comment flag it. */
  report(stream, fields) { return this.request(() => ({ op: OP.REPORT, stream, ...fields })); }
  /** Follow the stream's channel (signed in); following again keeps the first follow time. */
  follow(stream) { return this.request(() => ({ op: OP.FOLLOW, stream })); }
  /** Stop following; a later follow starts the follow age anew. */
  unfollow(stream) { return this.request(() => ({ op: OP.UNFOLLOW, stream })); }
  /** Moderators: a page of the moderation queue ({flagged, reports, more}); ``before``: a report id. */
  queue(stream, { limit, before } = {}) { return this.request(() => ({ op: OP.QUEUE, stream, limit, before })); }
  /** Moderators: approve (it stays) or dismiss (it is deleted) a flagged comment. */
  review(stream, id, approve) {
    return this.request(() => ({ op: OP.REVIEW, stream, id, action: approve ? "approve" : "dismiss" }));
  }
  kick(stream, user) { return this.request(() => ({ op: OP.KICK, stream, user })); }
  /** The stream's top comments, best first: {items, scores} (scores[i] is items[i]'s); anyone may ask.
   * ``limit``: 1..50, default 10. The server ranks a stream at most once a second. */
  top(stream, { limit } = {}) { return this.request(() => ({ op: OP.TOP, stream, limit })); }

  /** Moderator / broadcaster operations: delete, purge, timeout, ban, unban, kick, pin, unpin,
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
      case MESSAGE.TICK: return this.onEvents(msg, "tick");
      case MESSAGE.DIRECT: return this.onEvents(msg, "direct");
      case MESSAGE.SNAPSHOT: return this.onSnapshot(msg);
      case MESSAGE.ERROR: return this.onError(msg);
      case MESSAGE.NOTICE: return this.emit("notice", { notice: msg });
      case MESSAGE.ACK: case MESSAGE.OK: case MESSAGE.HISTORY: case MESSAGE.PONG: case MESSAGE.QUEUE: case MESSAGE.TOP:
        return this.resolve(msg.rid, msg);
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
        case EVENT.COMMENT:
          if (!view.seen.add(event.id)) break;
          if (big(event.id) > view.lastId) view.lastId = big(event.id);
          this.emit("comment", { stream, comment: event, source });
          break;
        case EVENT.DELETE:
          this.emit("delete", { stream, id: event.id, keep: event.keep });
          break;
        case EVENT.GAP:
          this.emit("gap", { stream, event });
          this.request(() => this.joinMessage(stream)).catch(() => {});
          break;
        case EVENT.PURGE: case EVENT.BAN: case EVENT.UNBAN: case EVENT.PIN: case EVENT.MODES:
          this.emit(event.k, { stream, event });
          break;
        case EVENT.HIGHLIGHT:
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
