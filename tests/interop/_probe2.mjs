import { multiaddr } from "@multiformats/multiaddr";
import { tcp } from "@libp2p/tcp";
import { webSockets } from "@libp2p/websockets";
import { webRTCDirect } from "@libp2p/webrtc";
import { unixfs } from "@helia/unixfs";
import { CID } from "multiformats/cid";
import { startHelia } from "./helia.mjs";
const [addr, cid] = process.argv.slice(2);
const helia = await startHelia({ transports: [tcp(), webSockets(), webRTCDirect()] });
try {
  const t0 = performance.now();
  await helia.libp2p.dial(multiaddr(addr));
  let n = 0;
  for await (const c of unixfs(helia).cat(CID.parse(cid), { signal: AbortSignal.timeout(15000) })) n += c.length;
  console.log("got", n, Math.round(performance.now() - t0));
} catch (e) { console.log("ERR", e.name, e.message); }
await helia.stop();
