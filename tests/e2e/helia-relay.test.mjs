// A Helia page in Chromium fetches a block from an Antiphon browser over `/webrtc`: js-libp2p
// dials the Antiphon browser through the creator node's circuit relay, the two exchange SDP
// over `/webrtc-signaling/0.0.1` on that relayed connection, and Bitswap runs on the direct
// connection. The node is then stopped, so the block can only come from the Antiphon browser.
// Runs only inside scripts/netns.sh.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createServer } from "node:http";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { build } from "esbuild";
import { HELIA_RELAY_PAGE_PORT, HOST, ROOT, assertInNamespace, ingestDemoTrack, launchBrowser, removeDir, startNode, startServingListener, stopNode, tempDir, trackManifest, waitInPage } from "./harness.mjs";

assertInNamespace();

test("a Helia page fetches a block from an Antiphon browser over /webrtc, signalled through the node's relay", async () => {
  const work = tempDir("e2e-helia-relay");
  const bundle = join(work, "helia.js");
  await build({ entryPoints: [join(ROOT, "tests", "e2e", "helia-relay-entry.mjs")], bundle: true, format: "esm", platform: "browser", outfile: bundle, logLevel: "error" });
  const site = createServer((req, res) => {
    if (req.url === "/helia.js") return res.setHeader("content-type", "text/javascript"), res.end(readFileSync(bundle));
    res.setHeader("content-type", "text/html");
    res.end(`<!doctype html><meta charset="utf-8"><script type="module">import * as helia from "/helia.js"; window.helia = helia; window.ready = true;</script>`);
  });
  await new Promise((r) => site.listen(HELIA_RELAY_PAGE_PORT, HOST, r));
  const { data, track } = ingestDemoTrack(work);
  const node = await startNode(data, 18720);
  const profile = tempDir("chromium");
  const browser = await launchBrowser(profile);
  const lines = [];
  const explain = (e) => {
    throw new Error(`${e.message}\nconsole:\n${lines.slice(-40).join("\n")}\nnode:\n${node.logs().split("\n").slice(-20).join("\n")}`);
  };
  try {
    // The Antiphon listener plays the whole track, so it holds every block, and is reachable
    // through the node's relay.
    const antiphon = await browser.newPage();
    antiphon.on("console", (m) => lines.push(`antiphon: ${m.text()}`));
    await antiphon.addInitScript(() => {
      window.pcs = [];
      const Real = window.RTCPeerConnection;
      window.RTCPeerConnection = class extends Real {
        constructor(...args) {
          super(...args);
          window.pcs.push(this);
        }
      };
    });
    await antiphon.goto(`${node.url}/?track=${track}`);
    await waitInPage(antiphon, () => window.antiphon && window.antiphon.Peer, null, 30_000);
    const { peerId, address } = await startServingListener(antiphon, node.url, track).catch(explain);
    assert.match(address, new RegExp(`/p2p-circuit/webrtc/p2p/${peerId}$`));

    // The block Helia will ask for, as the node serves it.
    const manifest = await trackManifest(node.url, track);
    const cid = manifest.segments[1].cid;
    const expected = Buffer.from(await (await fetch(`${node.url}/ipfs/${cid}?format=raw`)).arrayBuffer());

    const helia = await browser.newPage();
    helia.on("console", (m) => lines.push(`helia: ${m.text()}`));
    await helia.goto(`http://${HOST}:${HELIA_RELAY_PAGE_PORT}/`);
    await waitInPage(helia, () => window.ready, null, 30_000);
    await helia.evaluate(() => window.helia.start());
    const dialled = await helia.evaluate((addr) => window.helia.dial(addr), address).catch(explain);
    assert.equal(dialled.peer, peerId);
    assert.match(dialled.addr, /\/p2p-circuit\/webrtc\//, "Helia's connection is its /webrtc transport's");
    assert.equal(dialled.limited, false, "a direct connection, not the relay's limited one");
    // The Antiphon page reached its node over WebSocket: its one peer connection is Helia's.
    const pcs = await waitInPage(antiphon, () => window.pcs.length && window.pcs.map((pc) => pc.connectionState), null, 10_000).catch(explain);
    assert.deepEqual(pcs, ["connected"]);

    // No node from here on: the block can only come from the Antiphon browser.
    await stopNode(node);
    const got = await helia.evaluate((cid) => window.helia.getBlock(cid), cid).catch(explain);
    assert.equal(got.bytes, expected.length);
    assert.equal(got.sha256, createHash("sha256").update(expected).digest("hex"));
    const open = await helia.evaluate(() => window.helia.connections());
    assert.deepEqual(open.map((c) => [c.peer, c.limited]), [[peerId, false]], JSON.stringify(open));
    // Helia closes each want stream it opens and waits for the FIN_ACK (10 s if none comes):
    // the Antiphon browser acknowledges at once, so none of them lingers. (The block came on a
    // stream the Antiphon browser opened and keeps for its next message, as Bitswap allows.)
    const lingering = await waitInPage(helia, () => {
      const outbound = window.helia.connections()[0].streams.filter((s) => s.direction === "outbound");
      return outbound.length === 0 || null;
    }, null, 3_000).catch(async () => (await helia.evaluate(() => window.helia.connections()))[0].streams);
    assert.equal(lingering, true, JSON.stringify(lingering));
    await helia.evaluate(() => window.helia.stop());
  } finally {
    await browser.close();
    removeDir(profile);
    site.close();
    await stopNode(node);
    removeDir(work);
  }
});
