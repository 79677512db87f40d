// The Helia player of the time-to-first-audio benchmark, bundled for Chromium by esbuild: a
// Helia node with WebSocket only (no bootstrap, routers or discovery), whose verified-fetch
// reads the track manifest and segment 0, which are appended to Media Source Extensions.
import { createHeliaLight } from "helia";
import { withLibp2pLight } from "@helia/libp2p";
import { withBitswap } from "@helia/bitswap";
import { createVerifiedFetch } from "@helia/verified-fetch";
import { webSockets } from "@libp2p/websockets";
import { noise } from "@libp2p/noise";
import { yamux } from "@libp2p/yamux";
import { identify } from "@libp2p/identify";
import { multiaddr } from "@multiformats/multiaddr";
import * as dagCbor from "@ipld/dag-cbor";

/** Starts Helia and connects it to the creator node at `addr`; returns a verified fetch. */
export async function startHelia(addr) {
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
  await helia.libp2p.dial(multiaddr(addr));
  return createVerifiedFetch(helia);
}

/** Fetches the manifest and segment 0 through verified-fetch and plays them in `audio`. */
export async function heliaPlay(verifiedFetch, audio, trackCid) {
  const raw = await verifiedFetch(`ipfs://${trackCid}`, { headers: { accept: "application/vnd.ipld.dag-cbor" }, session: false });
  const body = new Uint8Array(await raw.arrayBuffer());
  const type = raw.headers.get("content-type");
  if (!type || !type.startsWith("application/vnd.ipld.dag-cbor")) throw new Error(`manifest came back as ${raw.status} ${type}: ${new TextDecoder().decode(body).slice(0, 300)}`);
  const manifest = dagCbor.decode(body);
  const first = manifest.segments[0].cid.toString();
  const source = new MediaSource();
  audio.src = URL.createObjectURL(source);
  const [bytes] = await Promise.all([
    verifiedFetch(`ipfs://${first}`, { session: false }).then((r) => r.arrayBuffer()),
    new Promise((r) => source.addEventListener("sourceopen", r, { once: true })),
  ]);
  const buffer = source.addSourceBuffer(manifest.codec);
  buffer.appendBuffer(bytes);
  await audio.play();
}
