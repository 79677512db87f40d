//! The TypeScript types of what the module's functions take and return, written by hand:
//! wasm-bindgen types plain JS objects as `any`. The exported functions name these with
//! `unchecked_param_type` / `unchecked_return_type`; `tests/package` compiles a page against
//! them under `strict`.

use wasm_bindgen::prelude::*;

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
// wasm-bindgen declares `[Symbol.dispose]()` on every class; with `lib` below `esnext` that
// symbol is unknown to TypeScript. Declaring it here lets the types compile under
// `lib: ["es2022", "dom"]` and merges with the declaration of newer libs.
declare global {
  interface SymbolConstructor {
    readonly dispose: unique symbol;
  }
}

/** What the module writes to the console; `"warn"` by default. */
export type LogLevel = "silent" | "error" | "warn" | "info" | "debug";

/** The `code` of every error the module throws or rejects with. */
export type ErrorCode =
  | "INVALID_CID" | "INVALID_ADDRESS" | "DIAL_FAILED" | "HTTP_FAILED" | "FETCH_FAILED"
  | "VERIFICATION_FAILED" | "INVALID_MANIFEST" | "INVALID_SEGMENT" | "MEDIA_UNSUPPORTED"
  | "MEDIA_FAILED" | "STOPPED" | "INVALID_ARGUMENT" | "NOT_LOADED";

/** The errors the module throws and rejects with (`name` is `"AntiphonError"`). */
export interface AntiphonError extends Error {
  code: ErrorCode;
  /** The CID concerned, when there is one. */
  cid?: string;
  /** `DIAL_FAILED` from `Peer.start`: each creator node's failure, in configured order. */
  failures?: Array<Error & { target: string; code: ErrorCode }>;
}

/** `Peer.start`'s and `Peer.connect`'s options. */
export interface StartOptions {
  /** Creator nodes: HTTP base URLs (their `/peer` lists their addresses) or multiaddrs. */
  creatorNodes?: string[];
  /** Trustless HTTP gateways (base URLs); every block from them is verified. */
  gateways?: string[];
  /** Use only this transport (default: WebRTC-direct first, then WebSocket). */
  transport?: "webrtc-direct" | "websocket";
  /** Per dial, in ms (default 10000). */
  dialTimeoutMs?: number;
  /** Head start of each address over the next, in ms (default 1500). */
  staggerMs?: number;
  /** Serve verified blocks to other browsers (default true). */
  serve?: boolean;
  /**
   * Sign a receipt for every block another browser sent and post them to a creator node, so
   * that serving can be credited (default true; `docs/receipts.md`).
   */
  receipts?: boolean;
  /**
   * What this peer uploads to other browsers at most: `perPeerBytesPerSec` (default 262144,
   * 2 Mbit/s, six times a 320 kb/s stream; averaged over a second) and `maxPeers` served at
   * once (default 4; 0 serves nobody). A peer past `maxPeers` is told DONT_HAVE and asks
   * elsewhere.
   */
  upload?: { perPeerBytesPerSec?: number; maxPeers?: number };
  /** Sets the module's console level (see `setLogLevel`). */
  logLevel?: LogLevel;
}

/** `peer.attach`'s options. */
export interface AttachOptions {
  /** Seconds fetched ahead of the playhead (default 30, at least one segment). */
  windowSecs?: number;
}

/** `peer.cat`'s options. */
export interface CatOptions {
  /** Largest file accepted, in bytes (default 64 MiB). */
  maxBytes?: number;
}

/** One configured creator node, as `peer.creatorNodes` lists it. */
export interface CreatorNode {
  /** As configured: an HTTP base URL or a multiaddr. */
  target: string;
  state: "dialling" | "connected" | "failed" | "closed";
  peerId?: string;
  transport?: "webrtc-direct" | "websocket";
  addr?: string;
  dialMs?: number;
  /** Why it failed (`state: "failed"`). */
  code?: ErrorCode;
  error?: string;
}

/** One dial to the first connected creator node (`peer.dialAttempts`). */
export interface DialAttempt {
  transport: "webrtc-direct" | "websocket" | "other";
  addr: string;
  ms: number;
  error?: string;
}

/** A browser this peer is connected to directly (`peer.browsers`). */
export interface BrowserLink {
  peerId: string;
  addr: string;
}

/** Where a segment is in its life. */
export type SegmentState = "pending" | "fetching" | "verified" | "appended" | "failed";

/** The kinds of source a player fetches from. */
export type SourceKind = "node" | "peer" | "gateway";

/** `player.stats()`. */
export interface Stats {
  /** The manifest CID of the loaded track. */
  track?: string;
  /** The first creator node connection's transport. */
  transport?: "webrtc-direct" | "websocket";
  remotePeerId?: string;
  /** Each segment's state, by index (an array of states, not counts). */
  segments: SegmentState[];
  /** Indexes of the segments appended to the output. */
  appended: number[];
  /** Verified segment bytes in all. */
  bytes: number;
  durationSecs?: number;
  bufferedAheadSecs: number;
  /** `"MediaSource"` or `"ManagedMediaSource"` when MSE plays the track. */
  mediaSource?: string;
  /** The output in use: the MSE class, or `"WebAudio"`. */
  output?: string;
  currentTime?: number;
  evictions: number;
  nudges: number;
  /** Web Audio output only: segments decoded and their decode times. */
  decode?: { segments: number; meanMs: number; longestMs: number };
  /** Every segment has been appended. */
  ended: boolean;
  /** Sources banned for sending bytes that did not verify. */
  banned: string[];
  rebuffers: number;
  rebufferMs: number;
  timeToFirstAudioMs?: number;
  /** How playback began: "bootstrap" (the page's `bootstrap()` appended the first segments over HTTP before the module ran) or "peer"; set by `load`. */
  startPath?: "bootstrap" | "peer";
  /** Segment bytes by kind of source; every kind is present (0 if it sent nothing). */
  bytesBySourceKind: Record<SourceKind, number>;
  /** Segment bytes by sender (peer ID or gateway URL). */
  bytesBySource: Record<string, number>;
  errorCode?: ErrorCode;
  error?: string;
}

/** What became of a peer's receipts (`peer.receipts`). */
export interface ReceiptCounts {
  signed: number;
  /** Taken by the creator node. */
  accepted: number;
  /** Refused by the creator node (its log and `/metrics` say why). */
  refused: number;
  /** Dropped unsent: the queue was full, or no node took the batch. */
  dropped: number;
  pending: number;
  /** Time spent signing, in milliseconds. */
  signMs: number;
}

/** One verified block (`player.provenance()`). */
export interface ProvenanceEntry {
  cid: string;
  /** The peer ID or gateway URL that sent it. */
  from: string;
  bytes: number;
  /** Milliseconds since `load`. */
  atMs: number;
}

// Methods whose last argument may be left out: wasm-bindgen cannot mark a typed argument
// optional, so these merge into the generated classes.
export interface Peer {
  /**
   * A player that plays tracks from this peer's sources into `element`. Throws
   * `INVALID_ARGUMENT` for anything but an audio or video element, `STOPPED` after `close()`.
   */
  attach(element: HTMLMediaElement, options?: AttachOptions): Player;
  /** Fetches a UnixFS file (or one raw block) by CID, every block verified. */
  cat(cid: string, options?: CatOptions): Promise<Uint8Array>;
}
export declare namespace Peer {
  /**
   * Starts a peer: dials every creator node at once and resolves when the first is connected.
   * Rejects with `DIAL_FAILED` (each node's failure in `failures`) only when none could be
   * reached and no gateway was given.
   */
  function start(options?: StartOptions): Promise<Peer>;
  /** `Peer.start` with one creator node; rejects when that node cannot be reached. */
  function connect(target: string, options?: StartOptions): Promise<Peer>;
}

/** Events a player sends to its `onEvent` listener, told apart by `type`. */
export type PlayerEvent =
  | { type: "manifest"; cid: string; segments: number; durationSecs: number; codec: string }
  | {
      type: "segment"; index: number; cid: string; peer: string; sourceKind: SourceKind;
      bytes: number; blocks: number; latencyMs: number; hedged: boolean;
    }
  | { type: "sourceFailed"; source: string; index: number; code: ErrorCode }
  | { type: "sourceBanned"; source: string; kind: SourceKind }
  | { type: "stall"; atSecs: number }
  | { type: "recovered"; atSecs: number; stalledMs: number }
  | { type: "nudge"; fromSecs: number; toSecs: number }
  | { type: "ended" }
  | { type: "playbackEnded" }
  | { type: "error"; code: ErrorCode; message: string; cid?: string; index?: number };
"#;
