// Types of `antiphon/bootstrap.js` (src/bootstrap.js): a start over HTTP that needs nothing
// from the wasm module.

/** Options of `bootstrap(audio, options)`. */
export interface BootstrapOptions {
  /** The track's manifest CID (CIDv1, base32). */
  track: string;
  /** Creator nodes as `Peer.start` takes them; their HTTP URLs are asked first (multiaddrs are skipped). */
  creatorNodes?: string[];
  /** HTTP trustless gateways, asked after the creator nodes. */
  gateways?: string[];
  /** Most segments fetched before the player takes over (default 3, at most 64). */
  maxSegments?: number;
}

/** Something the bootstrap could not do; the player does it instead. */
export interface BootstrapFailure {
  /** The base URL that failed, when one did. */
  source: string | null;
  /** The segment, or `null` for the manifest. */
  index: number | null;
  code: "HTTP_FAILED" | "VERIFICATION_FAILED" | "INVALID_MANIFEST" | "MEDIA_UNSUPPORTED" | "MEDIA_FAILED" | "UNSUPPORTED_HASH" | "INSECURE_CONTEXT";
  message: string;
  cid?: string;
}

/** A running bootstrap. */
export interface Bootstrap {
  track: string;
  /** `true` once the first segment is appended (the element can play); `false` if the bootstrap stopped before that. */
  started: Promise<boolean>;
  /** Resolves once the bootstrap has stopped (never rejects): the segments it appended, what failed, and when (ms since `bootstrap()`). */
  done: Promise<{ appended: number[]; failures: BootstrapFailure[]; manifestAtMs?: number; appendedAtMs: number[] }>;
  /** Stops it and lets go of the element (unless a player has taken it over). */
  cancel(): void;
}

/**
 * Starts `options.track` on `audio` over HTTP, verifying every byte with WebCrypto (sha2-256),
 * before the wasm module has loaded. `peer.attach(audio).load(track)` takes over what it built.
 * Throws `INVALID_ARGUMENT` for bad arguments; otherwise never fails.
 */
export function bootstrap(audio: HTMLMediaElement, options: BootstrapOptions): Bootstrap;
