// Helia in headless Chromium (its browser bundle: bench/helia-browser-entry.mjs, bundled here
// by esbuild) fetches a multi-block file from antiphon-node over WebRTC-direct and over
// WebSocket, and checks its sha256. The node's WebRTC-direct listener is ours (str0m, with the
// spec's FIN_ACK): js-libp2p closes the write side of each Bitswap stream and waits for the
// acknowledgement before it reads on. Runs only inside scripts/netns.sh.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash, createCipheriv } from "node:crypto";
import { createServer } from "node:http";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { build } from "esbuild";
import { HELIA_PAGE_PORT, HOST, ROOT, assertInNamespace, launchBrowser, nodeCli, removeDir, startNode, stopNode, tempDir } from "./harness.mjs";

assertInNamespace();

const work = tempDir("e2e-helia-browser");
let node, browser, profile, page, site, file;

before(async () => {
  const bundle = join(work, "helia.js");
  await build({ entryPoints: [join(ROOT, "bench", "helia-browser-entry.mjs")], bundle: true, format: "esm", platform: "browser", outfile: bundle, logLevel: "error" });
  const cipher = createCipheriv("aes-128-ctr", Buffer.alloc(16, 7), Buffer.alloc(16, 0));
  const bytes = Buffer.concat([cipher.update(Buffer.alloc(2 * 1024 * 1024 + 77)), cipher.final()]);
  writeFileSync(join(work, "file.bin"), bytes);
  const data = join(work, "data");
  file = { cid: nodeCli(["--data", data, "add", join(work, "file.bin")]), sha256: createHash("sha256").update(bytes).digest("hex"), size: bytes.length };
  node = await startNode(data, 18700);
  const page_ = `<!doctype html><meta charset="utf-8"><script type="module">import { heliaCat } from "/helia.js"; window.heliaCat = heliaCat; window.ready = true;</script>`;
  site = createServer((req, res) => {
    if (req.url === "/helia.js") return res.setHeader("content-type", "text/javascript"), res.end(readFileSync(bundle));
    res.setHeader("content-type", "text/html");
    res.end(page_);
  });
  await new Promise((r) => site.listen(HELIA_PAGE_PORT, HOST, r));
  profile = tempDir("chromium");
  browser = await launchBrowser(profile);
  page = await browser.newPage();
  await page.goto(`http://${HOST}:${HELIA_PAGE_PORT}/`);
  await page.waitForFunction(() => window.ready, null, { timeout: 30_000 });
});

after(async () => {
  await browser?.close();
  removeDir(profile);
  site?.close();
  await stopNode(node);
  removeDir(work);
});

for (const [transport, pattern] of [["webrtc-direct", "/webrtc-direct/"], ["websocket", "/ws/"]]) {
  test(`Helia in Chromium fetches a file from antiphon-node over ${transport}, bytes checked`, async () => {
    const addr = node.peer.multiaddrs.find((a) => a.includes(pattern));
    const got = await page.evaluate(([addr, cid]) => window.heliaCat(addr, cid, { digest: true }), [addr, file.cid]);
    assert.equal(got.bytes, file.size);
    assert.equal(got.sha256, file.sha256);
  });
}
