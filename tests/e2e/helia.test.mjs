// The browser peer (wasm, in headless Chromium) and a Helia peer running in Node, over
// WebSocket and over WebRTC-direct (Helia's @libp2p/webrtc listener): the wasm peer fetches a
// multi-block file from Helia and checks its sha256, and Helia fetches a block back from the
// wasm peer on the same connection. Runs only inside scripts/netns.sh, under Node 22 (Helia's
// requirement).
//
// Over WebRTC-direct this needs the FIN_ACK of the libp2p WebRTC spec: Helia's Bitswap closes
// its side of every incoming stream before reading it, and js-libp2p waits up to 10 s for the
// FIN_ACK before it reads on; without one ("Incoming Bitswap stream timed out after 10000ms")
// the fetch fails. The wasm peer's streams (antiphon_core::datachannel) send it.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash, createCipheriv } from "node:crypto";
import { createServer } from "node:http";
import { readFileSync, existsSync } from "node:fs";
import { extname, join } from "node:path";
import { unixfs } from "@helia/unixfs";
import { webSockets } from "@libp2p/websockets";
import { webRTCDirect } from "@libp2p/webrtc";
import { fixedSize } from "ipfs-unixfs-importer/chunker";
import { balanced } from "ipfs-unixfs-importer/layout";
import { startHelia } from "../interop/helia.mjs";
import { HOST, WWW, assertInNamespace, launchBrowser, removeDir, tempDir, waitInPage } from "./harness.mjs";

assertInNamespace();

let helia;
let page;
let browser;
let profile;
let site;
let file;

before(async () => {
  helia = await startHelia({
    listen: [`/ip4/${HOST}/tcp/0/ws`, `/ip4/${HOST}/udp/0/webrtc-direct`],
    transports: [webSockets(), webRTCDirect()],
  });
  const cipher = createCipheriv("aes-128-ctr", Buffer.alloc(16, 5), Buffer.alloc(16, 0));
  const bytes = Buffer.concat([cipher.update(Buffer.alloc(3 * 1024 * 1024 + 99)), cipher.final()]);
  const cid = await unixfs(helia).addBytes(bytes, {
    cidVersion: 1,
    rawLeaves: true,
    chunker: fixedSize({ chunkSize: 256 * 1024 }),
    layout: balanced({ maxChildrenPerNode: 174 }),
  });
  file = { cid: cid.toString(), sha: createHash("sha256").update(bytes).digest("hex"), bytes: bytes.length };

  // The demo page's bundle, served as static files: the tests use only `window.antiphon.Peer`.
  assert.ok(existsSync(join(WWW, "index.html")), "make www first");
  const types = { ".js": "text/javascript", ".wasm": "application/wasm", ".html": "text/html" };
  site = createServer((req, res) => {
    const url = req.url.split("?")[0];
    const path = join(WWW, url === "/" ? "index.html" : url);
    if (!path.startsWith(WWW) || !existsSync(path) || (url !== "/" && url.endsWith("/"))) {
      res.statusCode = 404;
      return res.end();
    }
    res.setHeader("content-type", types[extname(path)] || "application/octet-stream");
    res.end(readFileSync(path));
  });
  await new Promise((r) => site.listen(0, HOST, r));
  profile = tempDir("chromium-helia");
  browser = await launchBrowser(profile);
  page = await browser.newPage();
  // `node=` points the demo's own player at nothing, so it stays out of the way.
  await page.goto(`http://${HOST}:${site.address().port}/?node=http://${HOST}:9`);
  await waitInPage(page, () => window.antiphon && window.antiphon.Peer, null, 30_000);
});

after(async () => {
  await browser?.close();
  if (profile) removeDir(profile);
  site?.close();
  await helia?.stop();
});

/** Helia's listen address whose text contains `part` (e.g. "/ws/"); fails if it has none. */
function heliaAddr(part) {
  const addr = helia.libp2p.getMultiaddrs().map(String).find((a) => a.includes(part));
  assert.ok(addr, `Helia listens on ${part}: ${helia.libp2p.getMultiaddrs()}`);
  return addr;
}

/** Helia's connection to the wasm peer `peerId`, if it has one. */
function heliaConnectionTo(peerId) {
  return helia.libp2p.getConnections().find((c) => c.remotePeer.toString() === peerId);
}

test("the wasm peer connects to Helia over WebRTC-direct", async () => {
  const addr = heliaAddr("/webrtc-direct/");
  const transport = await page.evaluate(async (addr) => (await window.antiphon.Peer.connect(addr)).transport, addr);
  assert.equal(transport, "webrtc-direct");
});

for (const transport of ["websocket", "webrtc-direct"]) {
  test(`the wasm peer fetches a file from Helia over ${transport}`, async () => {
    const pattern = transport === "websocket" ? "/ws/" : "/webrtc-direct/";
    const addr = heliaAddr(pattern);
    const result = await page.evaluate(
      async ({ addr, cid }) => {
        const started = performance.now();
        const peer = await window.antiphon.Peer.connect(addr);
        let bytes;
        try {
          bytes = await peer.cat(cid);
        } catch (e) {
          const chain = [];
          for (let c = e; c; c = c.cause) chain.push(`${c.code || ""} ${c.message}`);
          throw new Error(chain.join(" <- "));
        }
        const ms = performance.now() - started;
        // The page is not a secure context (http://10.200.0.1), so no crypto.subtle here: the
        // bytes go back to Node to be hashed.
        let binary = "";
        for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
        return { transport: peer.transport, length: bytes.length, ms, base64: btoa(binary) };
      },
      { addr, cid: file.cid },
    );
    assert.equal(result.transport, transport);
    assert.equal(result.length, file.bytes);
    assert.equal(createHash("sha256").update(Buffer.from(result.base64, "base64")).digest("hex"), file.sha);
  });
}

// The wasm peer only answers identify (it never asks): Helia must still learn from it what the
// peer is and that it serves Bitswap, and fetch from it the block it lost. (Helia also records
// Bitswap from the stream the wasm peer opens to it; the agent version and `/ipfs/id/1.0.0`
// come only from the answer.)
for (const [transport, pattern, seed] of [["websocket", "/ws/", 9], ["webrtc-direct", "/webrtc-direct/", 10]]) test(`Helia learns from the wasm peer's identify answer that it serves Bitswap, and fetches from it over ${transport}`, async () => {
  const cipher = createCipheriv("aes-128-ctr", Buffer.alloc(16, seed), Buffer.alloc(16, 0));
  const bytes = Buffer.concat([cipher.update(Buffer.alloc(100_000)), cipher.final()]);
  const cid = await unixfs(helia).addBytes(bytes, { cidVersion: 1, rawLeaves: true });
  const addr = heliaAddr(pattern);
  const local = await page.evaluate(
    async ({ addr, cid }) => {
      window.servingPeer = await window.antiphon.Peer.connect(addr);
      await window.servingPeer.cat(cid);
      return window.servingPeer.localPeerId;
    },
    { addr, cid: cid.toString() },
  );
  const connection = heliaConnectionTo(local);
  assert.ok(connection, `Helia is connected to the wasm peer ${local}`);

  let known;
  for (let i = 0; i < 100; i++) {
    known = await helia.libp2p.peerStore.get(connection.remotePeer).catch(() => undefined);
    if (known?.protocols.includes("/ipfs/bitswap/1.2.0")) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(known?.protocols.includes("/ipfs/bitswap/1.2.0"), `protocols: ${known?.protocols}`);
  assert.ok(known.protocols.includes("/ipfs/id/1.0.0"), `protocols: ${known.protocols}`);
  assert.match(new TextDecoder().decode(known.metadata.get("AgentVersion")), /^antiphon-browser\//);

  // Beneath Helia's pinning and reproviding layer (this Helia has no content routers).
  await helia.blockstore.unwrap().delete(cid);
  assert.equal(await helia.blockstore.has(cid), false);
  const got = await helia.blockstore.get(cid, { signal: AbortSignal.timeout(10_000) });
  const back = got instanceof Uint8Array ? got : Buffer.concat(await Array.fromAsync(got));
  assert.ok(Buffer.from(back).equals(bytes), "the block Helia got back is the one it lost");
  await page.evaluate(() => window.servingPeer.close());
});

// This Helia does not speak ping. The wasm peer opens its streams without waiting for the
// remote's answer, so the refusal reaches it as an I/O error on its first ping: that must count
// as "ping unsupported" and not as a broken connection. And a WebSocket connection reports its
// own close, so it is not watched for pings at all: it outlives the 15 s after which a silent
// WebRTC connection is closed (antiphon_core::liveness::DEAD_AFTER).
test("a WebSocket connection to a peer that does not speak ping stays open", async () => {
  assert.ok(!helia.libp2p.getProtocols().includes("/ipfs/ping/1.0.0"), "this Helia answers ping");
  const addr = heliaAddr("/ws/");
  const local = await page.evaluate(async (addr) => {
    window.pinglessPeer = await window.antiphon.Peer.connect(addr);
    return window.pinglessPeer.localPeerId;
  }, addr);
  const connected = () => heliaConnectionTo(local) !== undefined;
  assert.ok(connected(), "Helia sees the connection");
  // The first ping goes out when the connection opens (a refused one closed it after about 1 s
  // when this was written).
  await new Promise((r) => setTimeout(r, 6000));
  assert.ok(connected(), "the wasm peer closed the connection after its ping was refused");
  // Watched, it would be closed at the first 5 s housekeeping tick at least 15 s after it opened.
  await new Promise((r) => setTimeout(r, 15_000));
  assert.ok(connected(), "the wasm peer closed the connection for answering no ping");
  await page.evaluate(() => window.pinglessPeer.close());
});
