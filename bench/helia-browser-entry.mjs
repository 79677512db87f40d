// The Helia side of the browser benchmark, bundled for Chromium by esbuild: a Helia node with
// WebSocket and WebRTC-direct (no bootstrap, routers or discovery), fetching one file by
// Bitswap.
import { createHeliaLight } from "helia";
import { withLibp2pLight } from "@helia/libp2p";
import { withBitswap } from "@helia/bitswap";
import { unixfs } from "@helia/unixfs";
import { webSockets } from "@libp2p/websockets";
import { webRTCDirect } from "@libp2p/webrtc";
import { noise } from "@libp2p/noise";
import { yamux } from "@libp2p/yamux";
import { identify } from "@libp2p/identify";
import { multiaddr } from "@multiformats/multiaddr";
import { CID } from "multiformats/cid";

/** Fetches `cid` from `addr`; with `digest`, also returns the SHA-256 of the bytes (hex). */
export async function heliaCat(addr, cid, { digest = false } = {}) {
  const helia = withBitswap(
    withLibp2pLight(createHeliaLight(), {
      transports: [webSockets(), webRTCDirect()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: { identify: identify() },
      connectionGater: { denyDialMultiaddr: () => false },
    }),
  );
  await helia.start();
  try {
    const started = performance.now();
    await helia.libp2p.dial(multiaddr(addr));
    let bytes = 0;
    const chunks = [];
    for await (const chunk of unixfs(helia).cat(CID.parse(cid), { signal: AbortSignal.timeout(300_000) })) {
      bytes += chunk.length;
      if (digest) chunks.push(chunk);
    }
    const ms = performance.now() - started;
    if (!digest) return { bytes, ms };
    const all = new Uint8Array(bytes);
    let at = 0;
    for (const c of chunks) all.set(c, (at += c.length) - c.length);
    const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", all));
    return { bytes, ms, sha256: Array.from(hash, (b) => b.toString(16).padStart(2, "0")).join("") };
  } finally {
    await helia.stop();
  }
}
