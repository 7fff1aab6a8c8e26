// msgpack (https://github.com/msgpack/msgpack/blob/master/spec.md) for the livechat page: the whole
// format except the timestamp extension, which livechat does not use (times are integer ms).
//
// Integers beyond 2^53 (livechat's 64-bit comment ids) decode as BigInt and everything else as
// Number, so an id compares and round-trips exactly; encode() writes a BigInt as a 64-bit integer.
// Maps decode to plain objects keyed by String(key) (livechat's `likes` map has id keys).

const utf8Decoder = new TextDecoder("utf-8", { fatal: true });
const utf8Encoder = new TextEncoder();
const MAX_DEPTH = 64;

export class MsgpackError extends Error {}

export class Ext {
  constructor(type, data) {
    this.type = type;
    this.data = data;
  }
}

class Reader {
  constructor(bytes) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 0;
  }

  need(n) {
    if (this.pos + n > this.bytes.byteLength) {
      throw new MsgpackError(`truncated: need ${n} bytes at offset ${this.pos}`);
    }
    const at = this.pos;
    this.pos += n;
    return at;
  }

  u8() { return this.view.getUint8(this.need(1)); }
  u16() { return this.view.getUint16(this.need(2)); }
  u32() { return this.view.getUint32(this.need(4)); }
  i8() { return this.view.getInt8(this.need(1)); }
  i16() { return this.view.getInt16(this.need(2)); }
  i32() { return this.view.getInt32(this.need(4)); }
  u64() { return narrow(this.view.getBigUint64(this.need(8))); }
  i64() { return narrow(this.view.getBigInt64(this.need(8))); }
  f32() { return this.view.getFloat32(this.need(4)); }
  f64() { return this.view.getFloat64(this.need(8)); }

  raw(n) {
    const at = this.need(n);
    return this.bytes.subarray(at, at + n);
  }

  str(n) {
    try {
      return utf8Decoder.decode(this.raw(n));
    } catch (err) {
      throw new MsgpackError(`invalid UTF-8 in a string at offset ${this.pos - n}`);
    }
  }

  array(n, depth) {
    const out = new Array(n);
    for (let i = 0; i < n; i++) out[i] = this.value(depth);
    return out;
  }

  map(n, depth) {
    const out = {};
    for (let i = 0; i < n; i++) {
      const key = String(this.value(depth));
      const value = this.value(depth);
      // defineProperty: a "__proto__" key must stay data, never replace the prototype.
      Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
    }
    return out;
  }

  value(depth = 0) {
    if (depth > MAX_DEPTH) throw new MsgpackError(`nested deeper than ${MAX_DEPTH}`);
    const d = depth + 1;
    const b = this.u8();
    if (b <= 0x7f) return b;
    if (b >= 0xe0) return b - 0x100;
    if ((b & 0xf0) === 0x80) return this.map(b & 0x0f, d);
    if ((b & 0xf0) === 0x90) return this.array(b & 0x0f, d);
    if ((b & 0xe0) === 0xa0) return this.str(b & 0x1f);
    switch (b) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return this.raw(this.u8()).slice();
      case 0xc5: return this.raw(this.u16()).slice();
      case 0xc6: return this.raw(this.u32()).slice();
      case 0xc7: { const n = this.u8(); return new Ext(this.i8(), this.raw(n).slice()); }
      case 0xc8: { const n = this.u16(); return new Ext(this.i8(), this.raw(n).slice()); }
      case 0xc9: { const n = this.u32(); return new Ext(this.i8(), this.raw(n).slice()); }
      case 0xca: return this.f32();
      case 0xcb: return this.f64();
      case 0xcc: return this.u8();
      case 0xcd: return this.u16();
      case 0xce: return this.u32();
      case 0xcf: return this.u64();
      case 0xd0: return this.i8();
      case 0xd1: return this.i16();
      case 0xd2: return this.i32();
      case 0xd3: return this.i64();
      case 0xd4: return new Ext(this.i8(), this.raw(1).slice());
      case 0xd5: return new Ext(this.i8(), this.raw(2).slice());
      case 0xd6: return new Ext(this.i8(), this.raw(4).slice());
      case 0xd7: return new Ext(this.i8(), this.raw(8).slice());
      case 0xd8: return new Ext(this.i8(), this.raw(16).slice());
      case 0xd9: return this.str(this.u8());
      case 0xda: return this.str(this.u16());
      case 0xdb: return this.str(this.u32());
      case 0xdc: return this.array(this.u16(), d);
      case 0xdd: return this.array(this.u32(), d);
      case 0xde: return this.map(this.u16(), d);
      case 0xdf: return this.map(this.u32(), d);
      default: throw new MsgpackError(`0xc1 is never used (offset ${this.pos - 1})`);
    }
  }
}

function narrow(big) {
  const n = Number(big);
  return Number.isSafeInteger(n) ? n : big;
}

/** Decode exactly one msgpack value from an ArrayBuffer or Uint8Array. */
export function decode(data) {
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  const reader = new Reader(bytes);
  const value = reader.value();
  if (reader.pos !== bytes.byteLength) {
    throw new MsgpackError(`${bytes.byteLength - reader.pos} bytes left after one value`);
  }
  return value;
}

class Writer {
  constructor() {
    this.buf = new Uint8Array(256);
    this.view = new DataView(this.buf.buffer);
    this.pos = 0;
  }

  room(n) {
    if (this.pos + n <= this.buf.byteLength) return;
    let size = this.buf.byteLength * 2;
    while (size < this.pos + n) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.buf.subarray(0, this.pos));
    this.buf = grown;
    this.view = new DataView(grown.buffer);
  }

  u8(v) { this.room(1); this.view.setUint8(this.pos, v); this.pos += 1; }
  u16(v) { this.room(2); this.view.setUint16(this.pos, v); this.pos += 2; }
  u32(v) { this.room(4); this.view.setUint32(this.pos, v); this.pos += 4; }
  bytes(b) { this.room(b.byteLength); this.buf.set(b, this.pos); this.pos += b.byteLength; }

  header(n, fix, fixMax, c16, c32) {
    if (n <= fixMax) this.u8(fix | n);
    else if (n <= 0xffff) { this.u8(c16); this.u16(n); }
    else { this.u8(c32); this.u32(n); }
  }

  int(v) {
    if (v >= 0) {
      if (v <= 0x7f) this.u8(v);
      else if (v <= 0xff) { this.u8(0xcc); this.u8(v); }
      else if (v <= 0xffff) { this.u8(0xcd); this.u16(v); }
      else if (v <= 0xffffffff) { this.u8(0xce); this.u32(v); }
      else this.big(BigInt(v));
    } else {
      if (v >= -32) this.u8(v & 0xff);
      else if (v >= -0x80) { this.u8(0xd0); this.room(1); this.view.setInt8(this.pos, v); this.pos += 1; }
      else if (v >= -0x8000) { this.u8(0xd1); this.room(2); this.view.setInt16(this.pos, v); this.pos += 2; }
      else if (v >= -0x80000000) { this.u8(0xd2); this.room(4); this.view.setInt32(this.pos, v); this.pos += 4; }
      else this.big(BigInt(v));
    }
  }

  big(v) {
    if (v >= 0n) {
      if (v > 0xffffffffffffffffn) throw new MsgpackError(`${v} does not fit 64 bits`);
      if (v <= 0xffffffffn) return this.int(Number(v));
      this.u8(0xcf); this.room(8); this.view.setBigUint64(this.pos, v); this.pos += 8;
    } else {
      if (v < -0x8000000000000000n) throw new MsgpackError(`${v} does not fit 64 bits`);
      if (v >= -0x80000000n) return this.int(Number(v));
      this.u8(0xd3); this.room(8); this.view.setBigInt64(this.pos, v); this.pos += 8;
    }
  }

  value(v, depth = 0) {
    if (depth > MAX_DEPTH) throw new MsgpackError(`nested deeper than ${MAX_DEPTH}`);
    const d = depth + 1;
    if (v === null || v === undefined) return this.u8(0xc0);
    switch (typeof v) {
      case "boolean": return this.u8(v ? 0xc3 : 0xc2);
      case "number":
        if (Number.isSafeInteger(v)) return this.int(v);
        this.u8(0xcb); this.room(8); this.view.setFloat64(this.pos, v); this.pos += 8;
        return;
      case "bigint": return this.big(v);
      case "string": {
        const b = utf8Encoder.encode(v);
        if (b.byteLength <= 31) this.u8(0xa0 | b.byteLength);
        else if (b.byteLength <= 0xff) { this.u8(0xd9); this.u8(b.byteLength); }
        else if (b.byteLength <= 0xffff) { this.u8(0xda); this.u16(b.byteLength); }
        else { this.u8(0xdb); this.u32(b.byteLength); }
        return this.bytes(b);
      }
      default: break;
    }
    if (v instanceof Uint8Array) {
      if (v.byteLength <= 0xff) { this.u8(0xc4); this.u8(v.byteLength); }
      else if (v.byteLength <= 0xffff) { this.u8(0xc5); this.u16(v.byteLength); }
      else { this.u8(0xc6); this.u32(v.byteLength); }
      return this.bytes(v);
    }
    if (v instanceof Ext) {
      const n = v.data.byteLength;
      const fixext = { 1: 0xd4, 2: 0xd5, 4: 0xd6, 8: 0xd7, 16: 0xd8 }[n];
      if (fixext !== undefined) this.u8(fixext);
      else if (n <= 0xff) { this.u8(0xc7); this.u8(n); }
      else if (n <= 0xffff) { this.u8(0xc8); this.u16(n); }
      else { this.u8(0xc9); this.u32(n); }
      this.u8(v.type & 0xff);
      return this.bytes(v.data);
    }
    if (Array.isArray(v)) {
      this.header(v.length, 0x90, 15, 0xdc, 0xdd);
      for (const item of v) this.value(item, d);
      return;
    }
    if (typeof v === "object") {
      const keys = Object.keys(v).filter((k) => v[k] !== undefined);
      this.header(keys.length, 0x80, 15, 0xde, 0xdf);
      for (const k of keys) {
        this.value(k, d);
        this.value(v[k], d);
      }
      return;
    }
    throw new MsgpackError(`cannot encode a ${typeof v}`);
  }
}

/** Encode one value; object keys with undefined values are left out. Returns a Uint8Array. */
export function encode(value) {
  const w = new Writer();
  w.value(value);
  return w.buf.slice(0, w.pos);
}
