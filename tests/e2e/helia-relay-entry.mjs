// Helia's browser stack for tests/e2e/helia-relay.test.mjs, bundled for Chromium by esbuild:
// WebSocket to reach the creator node, its circuit relay to reach an Antiphon browser, and
// js-libp2p's `/webrtc` transport to upgrade that relayed connection to a direct one, as a
// Helia dapp would configure it. Bitswap fetches over whatever connections are open.
import { createHeliaLight } from "helia";
import { withLibp2pLight } from "@helia/libp2p";
import { withBitswap } from "@helia/bitswap";
import { webSockets } from "@libp2p/websockets";
import { webRTC } from "@libp2p/webrtc";
import { circuitRelayTransport } from "@libp2p/circuit-relay-v2";
import { noise } from "@libp2p/noise";
import { yamux } from "@libp2p/yamux";
import { identify } from "@libp2p/identify";
import { multiaddr } from "@multiformats/multiaddr";
import { CID } from "multiformats/cid";

let helia;

/** Starts Helia with no bootstrap, routers or discovery. */
export async function start() {
  helia = withBitswap(
    withLibp2pLight(createHeliaLight(), {
      transports: [webSockets(), webRTC(), circuitRelayTransport()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: { identify: identify() },
      connectionGater: { denyDialMultiaddr: () => false },
    }),
  );
  await helia.start();
  return helia.libp2p.peerId.toString();
}

/** Every open connection: its peer, address and whether the relay limits it. */
export function connections() {
  return helia.libp2p.getConnections().map((c) => ({
    peer: c.remotePeer.toString(),
    addr: c.remoteAddr.toString(),
    limited: c.limits != null,
    status: c.status,
    streams: c.streams.map((s) => ({ protocol: s.protocol, direction: s.direction, status: s.status ?? `${s.readStatus}/${s.writeStatus}` })),
  }));
}

/** Dials `addr` (a `/p2p-circuit/webrtc/p2p/…` address) and describes the connection made. */
export async function dial(addr) {
  const c = await helia.libp2p.dial(multiaddr(addr), { signal: AbortSignal.timeout(30_000) });
  return { peer: c.remotePeer.toString(), addr: c.remoteAddr.toString(), limited: c.limits != null };
}

/** Fetches one block by Bitswap and returns its length and SHA-256 (hex). */
export async function getBlock(cid) {
  const got = await helia.blockstore.get(CID.parse(cid), { signal: AbortSignal.timeout(30_000) });
  // Newer blockstores answer with the block's chunks rather than one array.
  const bytes = got instanceof Uint8Array ? got : concat(await Array.fromAsync(got));
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return { bytes: bytes.length, sha256: Array.from(hash, (b) => b.toString(16).padStart(2, "0")).join("") };
}

function concat(chunks) {
  const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) all.set(c, (at += c.length) - c.length);
  return all;
}

/** Stops Helia, closing every connection. */
export async function stop() {
  await helia?.stop();
}
