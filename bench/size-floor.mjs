// The size floor of a rust-libp2p browser peer (bench/size-floor: WebSocket and WebRTC-direct,
// noise, yamux, ping, Bitswap, one exported `fetchBlock`). Checks first that the module works:
// headless Chromium fetches a block from a release `antiphon-node serve` over each transport
// and the bytes match. Then prints the module's size. Runs inside scripts/netns.sh (WebRTC).
//
// Usage: size-floor.mjs NODE_BIN DIR (DIR: wasm-bindgen --target web output, after wasm-opt)
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { execFileSync } from "node:child_process";
import { ROOT, assertInNamespace, launchBrowser, removeDir, startNode, stopNode, tempDir } from "../tests/e2e/harness.mjs";

assertInNamespace();
const [NODE_BIN, DIR] = process.argv.slice(2);
const file = join(ROOT, "README.md");
const data = tempDir("size-floor-data");
const cid = execFileSync(NODE_BIN, ["--data", data, "add", file], { encoding: "utf8" }).trim();
const node = await startNode(data, 19080, ["--www", DIR], NODE_BIN);
const profile = tempDir("size-floor-chromium");
const browser = await launchBrowser(profile);
try {
  const page = await browser.newPage();
  // Any page of the origin will do: the module is imported into it.
  await page.goto(`${node.url}/antiphon_size_floor.js`);
  for (const kind of ["/ws/", "/webrtc-direct/"]) {
    const addr = node.peer.multiaddrs.find((a) => a.includes(kind));
    const base64 = await page.evaluate(
      async ({ addr, cid }) => {
        const floor = await import("/antiphon_size_floor.js");
        await floor.default();
        const bytes = await floor.fetchBlock(addr, cid);
        let binary = "";
        for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
        return btoa(binary);
      },
      { addr, cid },
    );
    const sha = (b) => createHash("sha256").update(b).digest("hex");
    assert.equal(sha(Buffer.from(base64, "base64")), sha(readFileSync(file)), `the block fetched over ${kind}`);
    console.log(`size floor: fetched ${cid} over ${kind.replaceAll("/", "")}, bytes match`);
  }
} finally {
  await browser.close();
  removeDir(profile);
  await stopNode(node);
  removeDir(data);
}
const wasm = readFileSync(join(DIR, "antiphon_size_floor_bg.wasm"));
console.log(`size floor: ${wasm.length} bytes raw, ${gzipSync(wasm, { level: 9 }).length} bytes gzip -9`);
process.exit(0);
