// A Helia node built from parts for tests: no bootstrap, DHT, mDNS, relay or routers, so it
// never reaches past 127.0.0.1 (INTEROP.md). TCP and WebSocket, noise, yamux, identify,
// Bitswap 1.2.0; dag-pb, raw and dag-cbor.
import { createHeliaLight } from "helia";
import { withLibp2pLight } from "@helia/libp2p";
import { withBitswap } from "@helia/bitswap";
import { tcp } from "@libp2p/tcp";
import { webSockets } from "@libp2p/websockets";
import { noise } from "@libp2p/noise";
import { yamux } from "@libp2p/yamux";
import { identify } from "@libp2p/identify";
import * as dagCbor from "@ipld/dag-cbor";

/** `transports` replaces the default TCP and WebSocket (e.g. to add WebRTC-direct). */
export async function startHelia({ listen = [], transports = [tcp(), webSockets()] } = {}) {
  const helia = withBitswap(
    // dag-cbor, so that pinning a track walks its manifest's links (the light build knows only
    // dag-pb and raw).
    withLibp2pLight(createHeliaLight({ codecs: [dagCbor] }), {
      addresses: { listen },
      transports,
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: { identify: identify() },
      // Loopback and plain ws:// are refused by default.
      connectionGater: { denyDialMultiaddr: () => false },
      // Every test connects from the same address, several times a second (one page, one
      // native dialer); js-libp2p's default of 5 inbound connections per second per host
      // refused the sixth in tests/e2e/helia.test.mjs.
      connectionManager: { inboundConnectionThreshold: 1000 },
    }),
  );
  await helia.start();
  return helia;
}
