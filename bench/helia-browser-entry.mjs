// The Helia side of the browser benchmark, bundled for Chromium by esbuild: a Helia node with
// WebSocket only (no bootstrap, routers or discovery), fetching one file by Bitswap.
import { createHeliaLight } from "helia";
import { withLibp2pLight } from "@helia/libp2p";
import { withBitswap } from "@helia/bitswap";
import { unixfs } from "@helia/unixfs";
import { webSockets } from "@libp2p/websockets";
import { noise } from "@libp2p/noise";
import { yamux } from "@libp2p/yamux";
import { identify } from "@libp2p/identify";
import { multiaddr } from "@multiformats/multiaddr";
import { CID } from "multiformats/cid";

export async function heliaCat(addr, cid) {
  const helia = withBitswap(
    withLibp2pLight(createHeliaLight(), {
      transports: [webSockets()],
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
    for await (const chunk of unixfs(helia).cat(CID.parse(cid), { signal: AbortSignal.timeout(300_000) })) bytes += chunk.length;
    return { bytes, ms: performance.now() - started };
  } finally {
    await helia.stop();
  }
}
