// Verification throughput in headless Chromium over 256 KiB blocks: Rust sha2-256 and blake3
// compiled to wasm32 (`verify`), sha2-256 through WebCrypto from Rust (`verifyAsync`), and bare
// `crypto.subtle.digest` from JavaScript. Reads the native figures (benches/verify.rs output)
// and writes bench/out/verify.json plus the BENCHMARKS.md section.
//
//   node bench/verify.mjs NATIVE_JSONL WEB_PKG_DIR
import { createServer } from "node:http";
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { join, extname } from "node:path";
import { launchBrowser, tempDir, removeDir, ROOT } from "../tests/e2e/harness.mjs";

const [nativeFile, webPkg] = process.argv.slice(2);
const native = readFileSync(nativeFile, "utf8").trim().split("\n").map((l) => JSON.parse(l));

const PAGE = `<!doctype html><meta charset="utf-8"><script type="module">
import init, { verify, verifyAsync, cidOf } from "/pkg/antiphon.js";
await init();
const BLOCK = 256 * 1024, BLOCKS = 64, MIN_MS = 2000;
const blocks = [];
for (let b = 0; b < BLOCKS; b++) {
  const a = new Uint8Array(BLOCK);
  for (let i = 0; i < BLOCK; i += 65536) crypto.getRandomValues(a.subarray(i, i + 65536));
  blocks.push(a);
}
async function measure(path, fn) {
  for (let i = 0; i < 4; i++) await fn(blocks[i], i);
  let bytes = 0;
  const start = performance.now();
  while (performance.now() - start < MIN_MS) {
    for (let i = 0; i < BLOCKS; i++) { await fn(blocks[i], i); bytes += BLOCK; }
  }
  const ms = performance.now() - start;
  return { target: "chromium", path, block_bytes: BLOCK, mb_per_s: Math.round(bytes / ms / 1e3 * 10) / 10 };
}
const sha = blocks.map((b) => cidOf(b, "sha2-256"));
const b3 = blocks.map((b) => cidOf(b, "blake3"));
const results = [];
results.push(await measure("rust sha2-256 (wasm32, verify)", (b, i) => verify(sha[i], b)));
results.push(await measure("rust blake3 (wasm32, verify)", (b, i) => verify(b3[i], b)));
results.push(await measure("WebCrypto sha2-256 from Rust (verifyAsync)", (b, i) => verifyAsync(sha[i], b)));
results.push(await measure("crypto.subtle.digest sha2-256 from JS", (b) => crypto.subtle.digest("SHA-256", b)));
window.benchResults = { results, userAgent: navigator.userAgent };
</script>`;

const TYPES = { ".js": "text/javascript", ".wasm": "application/wasm", ".html": "text/html" };
const server = createServer((req, res) => {
  if (req.url === "/") {
    res.setHeader("content-type", "text/html");
    return res.end(PAGE);
  }
  try {
    const body = readFileSync(join(webPkg, req.url.replace(/^\/pkg\//, "")));
    res.setHeader("content-type", TYPES[extname(req.url)] || "application/octet-stream");
    res.end(body);
  } catch {
    res.statusCode = 404;
    res.end();
  }
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const profile = tempDir("bench-chromium");
const browser = await launchBrowser(profile);
let chromium;
let chromiumVersion;
try {
  const page = await browser.newPage();
  page.on("console", (m) => console.error(`page: ${m.text()}`));
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  page.on("requestfailed", (r) => console.error(`request failed: ${r.url()}`));
  page.on("response", (r) => r.status() >= 400 && console.error(`${r.status()} ${r.url()}`));
  await page.goto(`http://127.0.0.1:${server.address().port}/`);
  const out = await (await page.waitForFunction(() => window.benchResults, null, { timeout: 120_000 })).jsonValue();
  chromium = out.results;
  chromiumVersion = (out.userAgent.match(/Chrome\/([\d.]+)/) || [])[1] || "unknown";
} finally {
  await browser.close();
  removeDir(profile);
  server.close();
}

const nativeSha = native.find((r) => r.path === "rust sha2-256").mb_per_s;
const nativeB3 = native.find((r) => r.path === "rust blake3").mb_per_s;
const rows = [...native, ...chromium].map((r) => {
  const ref = r.path.includes("blake3") ? nativeB3 : nativeSha;
  return { ...r, vs_native: Math.round((r.mb_per_s / ref) * 100) / 100 };
});
mkdirSync(join(ROOT, "bench", "out"), { recursive: true });
writeFileSync(join(ROOT, "bench", "out", "verify.json"), JSON.stringify(rows, null, 2));
const table = [
  "| where | what | MB/s | vs native (same hash) |",
  "|---|---|---:|---:|",
  ...rows.map((r) => `| ${r.target} | ${r.path} | ${r.mb_per_s.toFixed(1)} | ${r.vs_native.toFixed(2)}x |`),
].join("\n");
console.log(table);

// Replace the section between the markers in BENCHMARKS.md.
const cpu = (readFileSync("/proc/cpuinfo", "utf8").match(/model name\s*:\s*(.*)/) || [])[1] || "unknown CPU";
const section = [
  "<!-- verify:begin -->",
  `Measured ${new Date().toISOString().slice(0, 10)} on ${cpu} (${navigatorCores()} cores), headless Chromium ${chromiumVersion}.`,
  "Each figure hashes 64 distinct 256 KiB blocks in rounds for at least 2 s and verifies each against its CID.",
  "",
  table,
  "<!-- verify:end -->",
].join("\n");
const path = join(ROOT, "BENCHMARKS.md");
const md = readFileSync(path, "utf8");
const begin = md.indexOf("<!-- verify:begin -->");
const end = md.indexOf("<!-- verify:end -->");
if (begin < 0 || end < 0) throw new Error("BENCHMARKS.md lacks the verify markers");
writeFileSync(path, md.slice(0, begin) + section + md.slice(end + "<!-- verify:end -->".length));

function navigatorCores() {
  return (readFileSync("/proc/cpuinfo", "utf8").match(/^processor/gm) || []).length;
}
