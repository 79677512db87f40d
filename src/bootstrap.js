// Antiphon's progressive start: the first segments of a track, fetched over HTTP and verified
// with WebCrypto, playing before the wasm module has compiled.
//
// `bootstrap(audio, { creatorNodes, gateways, track })` needs nothing from the wasm module, so
// a page calls it before importing the module (or while it loads). It fetches the track's
// manifest and its first segments from the creator nodes' trustless gateways (and the given
// gateways) with `?format=raw`, checks every byte against its CID (sha2-256 only: a track with
// any other hash waits for the module), opens a MediaSource on `audio` and appends each
// segment at its place. When the page then calls `peer.attach(audio).load(track)`, the wasm
// player takes over what the bootstrap built: the open MediaSource, the appended segments
// (re-verified in Rust before they count) and the sources that sent bytes which did not
// verify, which it bans. `stats().startPath` says `"bootstrap"` when playback began here.
//
// wasm-bindgen ships this file with the package as a snippet, because the player imports
// `takeBootstrap` from it; it imports nothing.

const KEY = Symbol.for("antiphon.bootstrap");
const RAW = 0x55;
const DAG_CBOR = 0x71;
const SHA2_256 = 0x12;
/** The same limits as `antiphon_core::limits`. */
const MAX_MANIFEST_BYTES = 1 << 20;
const MAX_BLOCK_BYTES = 2 << 20;
const MAX_SEGMENTS = 8192;
/** Blocks read from the one CAR the bootstrap asks for: the manifest and segment 0. */
const MAX_CAR_BLOCKS = 4;
const MANIFEST_VERSION = 1;
const CODECS = ["audio/mpeg", "audio/aac"];
/** A request that takes longer fails, as the player's gateway requests do. */
const REQUEST_TIMEOUT_MS = 10_000;
/** How long a hand-over waits for the segment the bootstrap is fetching before it cuts it off. */
const HANDOVER_WAIT_MS = 1_500;
/** How long the second segment waits for the element to start playing the first. */
const FIRST_PLAY_WAIT_MS = 250;
/** Segments fetched at most before the wasm player takes over (1 + 2 + 4 s with the default ramp). */
const DEFAULT_MAX_SEGMENTS = 3;
const OPTION_KEYS = ["creatorNodes", "gateways", "track", "maxSegments"];

/** A User Timing mark (`antiphon:bootstrap:<what>`), for profiling a start in the browser's tools. */
function mark(what) {
  if (typeof performance.mark === "function") performance.mark(`antiphon:bootstrap:${what}`);
}

/** An error like the module's: `name` "AntiphonError" and a stable `code`. */
function antiphonError(code, message, extra = {}) {
  const error = new Error(message);
  error.name = "AntiphonError";
  return Object.assign(error, { code }, extra);
}

const BASE32 = "abcdefghijklmnopqrstuvwxyz234567";

function base32Decode(text) {
  const out = [];
  let bits = 0;
  let value = 0;
  for (const ch of text) {
    const v = BASE32.indexOf(ch);
    if (v < 0) return null;
    value = ((value << 5) | v) & 0x1fff;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((value >>> bits) & 0xff);
    }
  }
  return Uint8Array.from(out);
}

function base32Encode(bytes) {
  let out = "";
  let bits = 0;
  let value = 0;
  for (const b of bytes) {
    value = ((value << 8) | b) & 0x1fff;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += BASE32[(value >>> bits) & 31];
    }
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31];
  return out;
}

/** An unsigned varint at `pos`: `[value, next position]`, or `null` when malformed. */
function varint(bytes, pos) {
  let value = 0;
  for (let shift = 0; shift < 63 && pos < bytes.length; shift += 7) {
    const b = bytes[pos++];
    value += (b & 0x7f) * 2 ** shift;
    if (b < 0x80) return value <= Number.MAX_SAFE_INTEGER ? [value, pos] : null;
  }
  return null;
}

/**
 * A binary CIDv1: `{ codec, hash, digest, text }`, or `null` for anything else (CIDv0 and
 * malformed bytes: the wasm player deals with those).
 */
function parseCid(bytes) {
  let p = varint(bytes, 0);
  if (!p || p[0] !== 1) return null;
  const codec = varint(bytes, p[1]);
  if (!codec) return null;
  const hash = varint(bytes, codec[1]);
  if (!hash) return null;
  const length = varint(bytes, hash[1]);
  if (!length || length[1] + length[0] !== bytes.length) return null;
  return { codec: codec[0], hash: hash[0], digest: bytes.subarray(length[1]), text: `b${base32Encode(bytes)}` };
}

/** A CID in its text form: CIDv1 in lower-case base32 (`b...`) only, or `null`. */
function parseCidText(text) {
  if (typeof text !== "string" || text.length > 512 || text[0] !== "b") return null;
  const bytes = base32Decode(text.slice(1));
  const cid = bytes && parseCid(bytes);
  return cid && cid.text === text ? cid : null;
}

/** Where the binary CID starting at `pos` ends, or `null` when it is malformed. */
function cidEnd(bytes, pos) {
  let p = [0, pos];
  for (let i = 0; i < 4 && p; i++) p = varint(bytes, p[1]);
  if (!p) return null;
  const end = p[1] + p[0];
  return end <= bytes.length ? end : null;
}

/**
 * The blocks of a CARv1 (`[{ cid, bytes }]`, in order), their CIDs read but nothing verified
 * yet; at most `MAX_CAR_BLOCKS`.
 */
function readCar(bytes) {
  const fail = (why) => {
    throw new Error(`not a CARv1: ${why}`);
  };
  const header = varint(bytes, 0);
  if (!header || header[1] + header[0] > bytes.length) fail("truncated header");
  if (decodeCbor(bytes.subarray(header[1], header[1] + header[0])).version !== 1) fail("not version 1");
  const blocks = [];
  for (let pos = header[1] + header[0]; pos < bytes.length; ) {
    const length = varint(bytes, pos);
    const end = length && length[1] + length[0];
    const at = length && cidEnd(bytes, length[1]);
    if (!at || end > bytes.length || at > end) fail("truncated section");
    const cid = parseCid(bytes.subarray(length[1], at));
    if (!cid || blocks.length === MAX_CAR_BLOCKS) fail("an unreadable CID or too many blocks");
    blocks.push({ cid, bytes: bytes.subarray(at, end) });
    pos = end;
  }
  return blocks;
}

/**
 * Decodes dag-cbor as far as a manifest needs: integers, strings, bytes, arrays, maps with
 * string keys, booleans, null and CIDs (tag 42). Lengths are checked against the bytes left
 * before anything is allocated, and nesting is bounded.
 */
function decodeCbor(bytes) {
  let pos = 0;
  const fail = (why) => {
    throw new Error(`not a manifest: ${why} at byte ${pos}`);
  };
  const take = (n) => {
    if (n > bytes.length - pos) fail("truncated");
    const out = bytes.subarray(pos, pos + n);
    pos += n;
    return out;
  };
  const item = (depth) => {
    if (depth > 16) fail("nested too deep");
    const first = take(1)[0];
    const major = first >> 5;
    const info = first & 31;
    if (major === 7) {
      if (info === 20) return false;
      if (info === 21) return true;
      if (info === 22) return null;
      fail("a float or simple value");
    }
    let arg = info;
    if (info >= 24 && info <= 27) {
      arg = 0;
      for (const b of take(1 << (info - 24))) arg = arg * 256 + b;
      if (arg > Number.MAX_SAFE_INTEGER) fail("an integer too large");
    } else if (info > 27) fail("an indefinite length");
    switch (major) {
      case 0:
        return arg;
      case 1:
        return -1 - arg;
      case 2:
        return take(arg);
      case 3:
        return new TextDecoder("utf-8", { fatal: true }).decode(take(arg));
      case 4: {
        if (arg > bytes.length - pos) fail("an array longer than its bytes");
        const out = [];
        for (let i = 0; i < arg; i++) out.push(item(depth + 1));
        return out;
      }
      case 5: {
        if (arg > bytes.length - pos) fail("a map longer than its bytes");
        const out = Object.create(null);
        for (let i = 0; i < arg; i++) {
          const key = item(depth + 1);
          if (typeof key !== "string") fail("a map key that is not a string");
          out[key] = item(depth + 1);
        }
        return out;
      }
      default: {
        if (arg !== 42) fail(`tag ${arg}`);
        const link = item(depth + 1);
        const cid = link instanceof Uint8Array && link[0] === 0 ? parseCid(link.subarray(1)) : null;
        return cid || { unreadable: true };
      }
    }
  };
  const value = item(0);
  if (pos !== bytes.length) fail("bytes after the end");
  return value;
}

/** What the bootstrap needs of a manifest, checked; the player validates all of it again. */
function readManifest(bytes) {
  const m = decodeCbor(bytes);
  const uint = (v) => Number.isSafeInteger(v) && v > 0;
  if (!m || m.version !== MANIFEST_VERSION) throw new Error(`not a manifest of version ${MANIFEST_VERSION}`);
  if (!CODECS.includes(m.codec)) throw new Error(`codec ${String(m.codec).slice(0, 64)} is not one of ${CODECS.join(", ")}`);
  if (!uint(m.sample_rate) || m.sample_rate < 8000 || m.sample_rate > 192000) throw new Error("sample rate out of range");
  if (!Array.isArray(m.segments) || !m.segments.length || m.segments.length > MAX_SEGMENTS) throw new Error("segment count out of range");
  let start = 0;
  const segments = m.segments.map((s, index) => {
    if (!s || !s.cid || !uint(s.bytes) || !uint(s.samples)) throw new Error(`segment ${index} is malformed`);
    const out = { index, cid: s.cid, bytes: s.bytes, startSecs: start / m.sample_rate };
    start += s.samples;
    return out;
  });
  return { codec: m.codec, durationSecs: start / m.sample_rate, segments };
}

/** Throws unless WebCrypto can check `cid`: sha2-256, in a secure context. */
function checkable(cid) {
  if (cid.hash !== SHA2_256 || cid.digest.length !== 32) {
    throw antiphonError("UNSUPPORTED_HASH", `${cid.text} uses multihash 0x${cid.hash.toString(16)}: the module verifies it`, { cid: cid.text });
  }
  if (!(globalThis.crypto && globalThis.crypto.subtle)) {
    throw antiphonError("INSECURE_CONTEXT", "no WebCrypto here (the page is not a secure context): the module verifies the track");
  }
}

/**
 * Whether `bytes` hash to `cid`'s digest (sha2-256, see `checkable`); `digest` is their
 * SHA-256 if it is already on its way.
 */
async function matches(cid, bytes, digest = crypto.subtle.digest("SHA-256", bytes)) {
  const got = new Uint8Array(await digest);
  return got.length === cid.digest.length && got.every((b, i) => b === cid.digest[i]);
}

/** `GET {base}/ipfs/{cid}?format=raw`, read chunk by chunk and refused past `max` bytes. */
function fetchRaw(base, cid, max, signal) {
  return fetchBody(`${base}/ipfs/${cid.text}?format=raw`, "application/vnd.ipld.raw", max, signal, cid);
}

/** `GET url` with `accept`, read chunk by chunk and refused past `max` bytes. */
async function fetchBody(url, accept, max, signal, cid) {
  const http = (reason) => antiphonError("HTTP_FAILED", `${url}: ${reason}`, { cid: cid.text });
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(), REQUEST_TIMEOUT_MS);
  const stop = () => timeout.abort();
  signal.addEventListener("abort", stop);
  try {
    const response = await fetch(url, { headers: { Accept: accept }, signal: timeout.signal, priority: "high" });
    if (!response.ok) throw http(`status ${response.status}`);
    const declared = response.headers.get("content-length");
    if (Number(declared) > max) throw http(`a body over ${max} bytes`);
    // A declared length is all the browser lets through: the body can be taken in one piece.
    if (declared !== null && /^\d+$/.test(declared)) return new Uint8Array(await response.arrayBuffer());
    const reader = response.body.getReader();
    const chunks = [];
    let length = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      length += value.length;
      if (length > max) {
        reader.cancel().catch(() => {});
        throw http(`a body over ${max} bytes`);
      }
      chunks.push(value);
    }
    const out = new Uint8Array(length);
    let at = 0;
    for (const c of chunks) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  } catch (e) {
    throw e.code ? e : http(timeout.signal.aborted && !signal.aborted ? `no answer in ${REQUEST_TIMEOUT_MS} ms` : String(e.message || e));
  } finally {
    clearTimeout(timer);
    signal.removeEventListener("abort", stop);
  }
}

/** Waits for `event` (or `error`) on `target`. */
function once(target, event) {
  return new Promise((resolve, reject) => {
    const done = (ok) => (e) => {
      target.removeEventListener(event, onEvent);
      target.removeEventListener("error", onError);
      ok ? resolve(e) : reject(new Error(`${event} failed`));
    };
    const onEvent = done(true);
    const onError = done(false);
    target.addEventListener(event, onEvent);
    target.addEventListener("error", onError);
  });
}

function mediaSourceClass() {
  for (const kind of ["MediaSource", "ManagedMediaSource"]) if (typeof globalThis[kind] === "function") return [globalThis[kind], kind];
  return [null, null];
}

function baseUrls(list, name) {
  if (list === undefined) return [];
  if (!Array.isArray(list) || list.length > 16) throw antiphonError("INVALID_ARGUMENT", `${name} must be an array of at most 16 URLs`);
  return list.filter((u) => {
    if (typeof u !== "string" || u.length > 2048) throw antiphonError("INVALID_ARGUMENT", `${name} holds something that is not a URL`);
    return /^https?:\/\//.test(u);
  }).map((u) => u.replace(/\/+$/, ""));
}

/**
 * Starts playing `options.track` on `audio` from HTTP, verifying every byte, before the wasm
 * module is there. `options`: `{ track, creatorNodes?, gateways?, maxSegments? }`, the HTTP
 * base URLs as `Peer.start` takes them (multiaddrs are skipped); `maxSegments` (default 3)
 * bounds what is fetched before the player takes over.
 *
 * Returns `{ track, started, done, cancel() }`. `started` resolves to `true` once the first
 * segment is appended (the element can play), or to `false` when the bootstrap stopped
 * before that; a page on a slow link may wait for it before it imports the module, so that the
 * two do not share the link. `done` resolves once the bootstrap has stopped, to `{ appended,
 * failures, manifestAtMs, appendedAtMs }` (times since `bootstrap()`; every failure has a `code`: `HTTP_FAILED`,
 * `VERIFICATION_FAILED`, `INVALID_MANIFEST`, `MEDIA_UNSUPPORTED`, and for a track the module
 * must verify `UNSUPPORTED_HASH` (not sha2-256) or `INSECURE_CONTEXT` (no WebCrypto)). It never rejects: what it could not do, the player does.
 */
export function bootstrap(audio, options) {
  if (!audio || typeof audio.play !== "function") throw antiphonError("INVALID_ARGUMENT", "audio must be an <audio> or <video> element");
  if (!options || typeof options !== "object") throw antiphonError("INVALID_ARGUMENT", "options must be an object");
  for (const key of Object.keys(options)) if (!OPTION_KEYS.includes(key)) throw antiphonError("INVALID_ARGUMENT", `unknown option ${key}`);
  const track = parseCidText(options.track);
  if (!track) throw antiphonError("INVALID_ARGUMENT", "track must be a CIDv1 in base32 (bafy...)");
  const maxSegments = options.maxSegments === undefined ? DEFAULT_MAX_SEGMENTS : options.maxSegments;
  if (!Number.isSafeInteger(maxSegments) || maxSegments < 0 || maxSegments > 64) throw antiphonError("INVALID_ARGUMENT", "maxSegments must be an integer from 0 to 64");
  const origins = [...baseUrls(options.creatorNodes, "creatorNodes"), ...baseUrls(options.gateways, "gateways")];
  if (audio[KEY]) audio[KEY].cancel();

  const run = new Run(audio, track, origins, maxSegments);
  audio[KEY] = run;
  return { track: track.text, started: run.started, done: run.done, cancel: () => run.cancel() };
}

/** One bootstrap of one track on one element. */
class Run {
  constructor(audio, track, origins, maxSegments) {
    Object.assign(this, { audio, track, origins, maxSegments });
    this.startedAt = performance.now();
    mark("start");
    this.playingAt = undefined;
    this.appended = [];
    this.failures = [];
    this.banned = new Set();
    this.stopping = false;
    this.abort = new AbortController();
    this.onPlaying = () => {
      if (this.playingAt === undefined) this.playingAt = performance.now();
    };
    audio.addEventListener("playing", this.onPlaying);
    const ran = this.run().catch((e) => this.failed(null, null, e));
    this.done = ran.then(() => ({
      appended: this.appended.map((s) => s.index),
      failures: this.failures,
      manifestAtMs: this.manifestAtMs,
      appendedAtMs: this.appended.map((s) => s.atMs),
    }));
    this.started = new Promise((resolve) => (this.onStarted = resolve));
    ran.then(() => this.onStarted(false));
  }

  failed(source, index, error) {
    this.failures.push({ source, index, code: error.code || "MEDIA_FAILED", message: String(error.message || error), cid: error.cid });
  }

  /**
   * The manifest and segment 0 in one request where the gateway paths through dag-cbor
   * (`/ipfs/{track}/segments/0/cid?format=car&dag-scope=entity`, a trustless-gateway CAR):
   * `{ manifest, blocks, from }` with the manifest verified, the other blocks not yet; `null`
   * when no origin gave one (the manifest is then asked for alone). A manifest that does not
   * verify bans its origin.
   */
  async manifestAndFirst() {
    const track = this.track;
    for (const base of this.origins) {
      if (this.banned.has(base) || this.abort.signal.aborted) continue;
      const asked = performance.now();
      const url = `${base}/ipfs/${track.text}/segments/0/cid?format=car&dag-scope=entity`;
      let blocks;
      try {
        blocks = readCar(await fetchBody(url, "application/vnd.ipld.car", MAX_MANIFEST_BYTES + MAX_BLOCK_BYTES + 4096, this.abort.signal, track));
        mark("car");
      } catch {
        continue; // Not every gateway paths through dag-cbor: the raw requests follow.
      }
      const manifest = blocks.find((b) => b.cid.text === track.text);
      if (!manifest) continue;
      // Every block is hashed at once, side by side, rather than each when it is needed.
      for (const b of blocks) b.digest = b.cid.hash === SHA2_256 ? crypto.subtle.digest("SHA-256", b.bytes) : undefined;
      for (const b of blocks) b.digest?.catch(() => {});
      if (await matches(track, manifest.bytes, manifest.digest)) return { manifest: { bytes: manifest.bytes, from: base, latencyMs: performance.now() - asked }, blocks, from: base };
      this.corrupt(base, null, track);
    }
    return null;
  }

  /** `base` sent bytes for `cid` that do not hash to it: it is not asked again. */
  corrupt(base, index, cid) {
    this.banned.add(base);
    this.failed(base, index, antiphonError("VERIFICATION_FAILED", `${base} sent bytes for ${cid.text} that do not hash to it`, { cid: cid.text }));
  }

  /** `segment` from the first request's CAR, verified; a block that does not verify bans its origin. */
  async fromCar(first, segment) {
    const block = first && !this.banned.has(first.from) && first.blocks.find((b) => b.cid.text === segment.cid.text);
    if (!block) return null;
    if (await matches(segment.cid, block.bytes, block.digest)) return { bytes: block.bytes, from: first.from, latencyMs: first.manifest.latencyMs };
    this.corrupt(first.from, segment.index, segment.cid);
    return null;
  }

  /** Fetches one block from each origin in turn until one verifies; a mismatch bans the origin. */
  async fetchVerified(cid, max, index) {
    checkable(cid);
    for (const base of this.origins) {
      if (this.banned.has(base) || this.abort.signal.aborted) continue;
      const asked = performance.now();
      try {
        const bytes = await fetchRaw(base, cid, max, this.abort.signal);
        if (await matches(cid, bytes)) return { bytes, from: base, latencyMs: performance.now() - asked };
        this.corrupt(base, index, cid);
      } catch (e) {
        if (!this.abort.signal.aborted) this.failed(base, index, e);
      }
    }
    return null;
  }

  async run() {
    const [MediaSourceClass, kind] = mediaSourceClass();
    if (!MediaSourceClass || !this.origins.length) return;
    if (this.track.codec !== DAG_CBOR) {
      this.failed(null, null, antiphonError("INVALID_MANIFEST", `${this.track.text} is not dag-cbor`, { cid: this.track.text }));
      return;
    }
    checkable(this.track);
    // The request goes out first; the MediaSource opens while it is on its way.
    const asked = this.manifestAndFirst();
    const source = new MediaSourceClass();
    if (kind === "ManagedMediaSource") this.audio.disableRemotePlayback = true;
    const url = URL.createObjectURL(source);
    const opened = once(source, "sourceopen");
    this.audio.src = url;
    this.media = { source, url, kind, buffer: null };
    const first = await asked;
    const manifestBlock = first ? first.manifest : await this.fetchVerified(this.track, MAX_MANIFEST_BYTES, null);
    if (!manifestBlock) return;
    let manifest;
    try {
      manifest = readManifest(manifestBlock.bytes);
    } catch (e) {
      this.failed(manifestBlock.from, null, antiphonError("INVALID_MANIFEST", e.message, { cid: this.track.text }));
      return;
    }
    this.manifest = { ...manifest, block: manifestBlock.bytes, from: manifestBlock.from };
    this.manifestAtMs = performance.now() - this.startedAt;
    mark("manifest");
    if (!MediaSourceClass.isTypeSupported(manifest.codec)) {
      this.failed(null, null, antiphonError("MEDIA_UNSUPPORTED", `this browser's ${kind} refuses ${manifest.codec}`));
      return;
    }
    await opened;
    mark("sourceopen");
    const buffer = source.addSourceBuffer(manifest.codec);
    this.media.buffer = buffer;
    source.duration = manifest.durationSecs;
    // A hand-over (`stopping`) ends the fetching, not what is already here: segment 0 from the
    // first request is still appended, so a player that takes over at once starts from it.
    for (const segment of manifest.segments.slice(0, this.maxSegments)) {
      // The next segment waits until the element plays the first (at most FIRST_PLAY_WAIT_MS):
      // appended while the element starts, it delayed the start by 5–10 ms.
      if (segment.index === 1 && !this.stopping) await this.firstPlay();
      const cid = segment.cid;
      if (cid.unreadable || cid.codec !== RAW || segment.bytes > MAX_BLOCK_BYTES) return;
      checkable(cid);
      let got = await this.fromCar(first, segment);
      if (!got && this.stopping) return;
      got = got || (await this.fetchVerified(cid, segment.bytes, segment.index));
      if (!got || got.bytes.length !== segment.bytes) return;
      mark(`verified:${segment.index}`);
      buffer.timestampOffset = segment.startSecs;
      const appended = once(buffer, "updateend");
      buffer.appendBuffer(got.bytes);
      await appended;
      this.appended.push({ index: segment.index, cid: cid.text, bytes: got.bytes, from: got.from, latencyMs: got.latencyMs, atMs: performance.now() - this.startedAt });
      mark(`appended:${segment.index}`);
      this.onStarted(true);
    }
  }

  /** Resolves once the element has played since the bootstrap began, or after `FIRST_PLAY_WAIT_MS`. */
  firstPlay() {
    if (this.playingAt !== undefined) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.audio.removeEventListener("playing", done);
        resolve();
      };
      const timer = setTimeout(done, FIRST_PLAY_WAIT_MS);
      this.audio.addEventListener("playing", done);
    });
  }

  /** Stops: what is in flight is cut off, and the element let go of unless handed over. */
  cancel() {
    this.stopping = true;
    this.abort.abort();
    this.audio.removeEventListener("playing", this.onPlaying);
    if (this.audio[KEY] === this) delete this.audio[KEY];
    if (this.media && !this.handedOver) {
      URL.revokeObjectURL(this.media.url);
      if (this.audio.src === this.media.url) {
        this.audio.removeAttribute("src");
        this.audio.load();
      }
    }
  }

  /** Stops at the next segment (waiting at most `HANDOVER_WAIT_MS` for the one on its way) and gives the player what it built. */
  async handOver() {
    this.stopping = true;
    const cut = setTimeout(() => this.abort.abort(), HANDOVER_WAIT_MS);
    // What is not done by then (a MediaSource that never opens) is not handed over.
    let settled = false;
    await Promise.race([this.done.then(() => (settled = true)), new Promise((r) => setTimeout(r, 2 * HANDOVER_WAIT_MS))]);
    clearTimeout(cut);
    const media = this.media;
    const usable = settled && media && media.buffer && !media.buffer.updating && media.source.readyState === "open" && this.audio.src === media.url;
    this.handedOver = Boolean(usable && this.appended.length);
    this.cancel();
    return {
      manifest: this.manifest ? this.manifest.block : undefined,
      mediaSource: this.handedOver ? media.source : undefined,
      sourceBuffer: this.handedOver ? media.buffer : undefined,
      objectUrl: this.handedOver ? media.url : undefined,
      kind: this.handedOver ? media.kind : undefined,
      segments: this.handedOver ? this.appended : [],
      failures: this.failures,
      startedAt: this.startedAt,
      playingAt: this.handedOver ? this.playingAt : undefined,
    };
  }
}

/**
 * For the player's `load(track)` on `audio`: the bootstrap's hand-over (a promise) when one
 * runs there for that track; `undefined` when none does. A bootstrap of another track is
 * cancelled.
 */
export function takeBootstrap(audio, track) {
  const run = audio[KEY];
  if (!run) return undefined;
  if (run.track.text !== track) {
    run.cancel();
    return undefined;
  }
  delete audio[KEY];
  return run.handOver();
}
