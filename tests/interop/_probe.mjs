import { multiaddr } from "@multiformats/multiaddr";
import { tcp } from "@libp2p/tcp";
import { webSockets } from "@libp2p/websockets";
import { webRTCDirect } from "@libp2p/webrtc";
import { startHelia } from "./helia.mjs";
const addr = process.argv[2];
const helia = await startHelia({ transports: [tcp(), webSockets(), webRTCDirect()] });
try {
  const t0 = performance.now();
  const conn = await helia.libp2p.dial(multiaddr(addr));
  console.log("dialed", conn.remoteAddr.toString(), Math.round(performance.now() - t0));
  const stream = await helia.libp2p.dialProtocol(multiaddr(addr), "/ipfs/bitswap/1.2.0");
  console.log("stream", stream.protocol, Math.round(performance.now() - t0));
  try { await stream.close({ signal: AbortSignal.timeout(4000) }); } catch (e) { console.log("close err", e.name, e.message); }
  console.log("closed", stream.status, stream.writeStatus, stream.readStatus, Math.round(performance.now() - t0));
} catch (e) { console.log("ERR", e); }
await helia.stop();
