// Time to first audio in headless Chromium: from the start of playback (a `load()` or its
// equivalent; for cold modes, the top of the page's script) to the element's `playing` event.
// One release `antiphon-node serve` holds a 60 s 320 kb/s MP3 twice: ingested as a track, and
// added whole. Every way of playing it runs RUNS times on a fresh page with the HTTP cache
// disabled, the modes interleaved; medians are reported with ratios to plain `<audio>`.
// The returning-visitor modes keep the HTTP cache: each run visits the cold page once, then
// measures a second visit (the module revalidated with a 304, its compiled code from Chromium's
// code cache where Chromium kept it). Also reports the wasm module's size against Helia's browser bundle. Writes the BENCHMARKS.md
// section between the ttfa markers (ttfa-<rate> markers under TTFA_RATE). WebRTC is involved: runs only inside scripts/netns.sh.
//
//   scripts/netns.sh node bench/ttfa.mjs NODE_BIN WEB_PKG_DIR HELIA_TTFA_BUNDLE HELIA_CAT_BUNDLE
// Environment: TTFA_RUNS (default 15), TTFA_MODES (comma-separated subset), TTFA_VERBOSE=1
// (per-run marks of the Antiphon pages), TTFA_NODE_LOG=FILE (the node's log, for RUST_LOG),
// TTFA_SETTLE=MS (warm modes wait this long after connecting before the clock starts),
// TTFA_SERVE=0 (Antiphon pages start their peer with `serve: false`), TTFA_INGEST_ARGS (more
// `antiphon-node ingest` options for the track, space-separated: `--first-segment-seconds 0`
// measures 6 s segments from the start), TTFA_RATE (a rate for tc's token bucket filter on
// the namespace's loopback, which carries every connection of the run, e.g. `20mbit`: a
// bandwidth-limited link instead of loopback's; this kernel has no netem, so no added delay).
import { execFileSync } from "node:child_process";
import { copyFileSync, cpSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { brotliCompressSync, constants as zlib, gzipSync } from "node:zlib";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { assertInNamespace, launchBrowser, removeDir, startNode, stopNode, tempDir, trackManifest } from "../tests/e2e/harness.mjs";

assertInNamespace();
const RATE = process.env.TTFA_RATE || "";
// Both ends of every connection live in this namespace, so all of them go through `lo`; an
// Ethernet-sized MTU keeps the bucket's bursts like a real link's.
if (RATE) {
  execFileSync("ip", ["link", "set", "lo", "mtu", "1500"]);
  execFileSync("tc", ["qdisc", "add", "dev", "lo", "root", "tbf", "rate", RATE, "burst", "16kb", "latency", "1s"]);
}
const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
// FLOOR (optional): bench/size-floor's module, built as `make bench` builds it, for the size table.
const [NODE_BIN, WEB_PKG, HELIA_TTFA, HELIA_CAT, FLOOR] = process.argv.slice(2);
const RUNS = Number(process.env.TTFA_RUNS || 15);
const ALL_MODES = ["plain", "mse-fetch", "hls", "helia-warm", "helia-cold", "antiphon-warm", "antiphon-warm-ws", "antiphon-cold", "antiphon-cold-ws", "antiphon-preload", "antiphon-preload-ws", "antiphon-return", "antiphon-return-ws", "antiphon-boot", "antiphon-boot-ws", "antiphon-boot-return", "antiphon-boot-return-ws"];
// A returning visitor: the cold page visited once with the HTTP cache on, then again, measured.
const returning = (mode) => mode.includes("-return");
const MODES = process.env.TTFA_MODES ? process.env.TTFA_MODES.split(",") : ALL_MODES;

const work = tempDir("bench-ttfa");
const cli = (args) => execFileSync(NODE_BIN, args, { env: { ...process.env, RUST_LOG: "warn" } }).toString().trim();
const mp3 = join(work, "track.mp3");
cli(["demo-track", "-o", mp3, "--seconds", "60", "--kbps", "320"]);
const data = join(work, "data");
const ingestArgs = (process.env.TTFA_INGEST_ARGS || "").split(" ").filter(Boolean);
const track = cli(["--data", data, "ingest", mp3, ...ingestArgs]);
const whole = cli(["--data", data, "add", mp3]);

// The pages, served by the node itself (port 18080: a secure context, see the harness).
const site = join(work, "site");
mkdirSync(site);
copyFileSync(join(ROOT, "bench", "ttfa-page.html"), join(site, "ttfa.html"));
copyFileSync(join(ROOT, "node_modules", "hls.js", "dist", "hls.min.js"), join(site, "hls.min.js"));
copyFileSync(HELIA_TTFA, join(site, "helia-ttfa.js"));
cpSync(WEB_PKG, join(site, "pkg"), { recursive: true });
// The bootstrap's own file (which the package's `bootstrap.js` re-exports), imported by the
// page's script itself, as a bundler puts it in the page's first chunk.
const bootstrapFile = readFileSync(join(WEB_PKG, "bootstrap.js"), "utf8").match(/from "\.\/(.*)"/)[1];
copyFileSync(join(WEB_PKG, bootstrapFile), join(site, "bootstrap.js"));
// Served the way `make www` serves the demo: brotli (or gzip) to browsers that accept it.
execFileSync(process.execPath, [join(ROOT, "scripts", "precompress.mjs"), site]);

const node = await startNode(data, 18080, ["--www", site], NODE_BIN);
const manifest = await trackManifest(node.url, track);
const ws = node.peer.multiaddrs.find((a) => a.includes("/ws/"));

const query = (mode) => {
  const q = new URLSearchParams({ mode: mode.replace(/-ws$/, "").replace(/antiphon-(boot-return|boot|return|preload)/, "antiphon-cold"), track, mp3: whole, seg0: manifest.segments[0].cid, ws });
  if (process.env.TTFA_SETTLE) q.set("settle", process.env.TTFA_SETTLE);
  if (process.env.TTFA_SERVE === "0") q.set("serve", "0");
  if (mode.endsWith("-ws")) q.set("transport", "websocket");
  if (mode.startsWith("antiphon-preload")) q.set("preload", "1");
  if (mode.startsWith("antiphon-boot")) q.set("boot", "1");
  return q;
};

const profile = tempDir("bench-ttfa-chromium");
const browser = await launchBrowser(profile);
const times = Object.fromEntries(MODES.map((m) => [m, []]));
// Each cold and returning Antiphon run's marks: module instantiated, peer connected.
const marks = Object.fromEntries(MODES.map((m) => [m, []]));
/** Loads the page of `mode` in a new tab, with the HTTP cache off unless `cache`, and waits for
 * its result. */
async function visit(mode, { cache }) {
  const page = await browser.newPage();
  const lines = [];
  page.on("console", (msg) => lines.push(msg.text()));
  page.on("pageerror", (e) => lines.push(`page error: ${e.message}`));
  const cdp = await page.context().newCDPSession(page);
  // The flag counts only where this session has the Network domain enabled.
  await cdp.send("Network.enable");
  await cdp.send("Network.setCacheDisabled", { cacheDisabled: !cache });
  await page.goto(`${node.url}/ttfa.html?${query(mode)}`);
  await page.waitForFunction(() => window.result && window.result.done, null, { timeout: 60_000, polling: 20 }).catch((e) => {
    throw new Error(`${mode}: ${e.message}\n${lines.join("\n")}`);
  });
  return page;
}
const transports = {};
try {
  for (let run = 0; run < RUNS; run++) {
    for (const mode of MODES) {
      if (returning(mode)) await (await visit(mode, { cache: true })).close();
      const page = await visit(mode, { cache: returning(mode) });
      const r = await page.evaluate(() => window.result);
      await page.close();
      if (r.error) throw new Error(`${mode}: ${r.error}`);
      if (process.env.TTFA_VERBOSE) console.error(`${mode}: ${Math.round(r.ms)} ms ${JSON.stringify(r.marks || {})}${r.requests ? `\n  requests [path, start, first byte, end]: ${JSON.stringify(r.requests)}\n  bootstrap: ${JSON.stringify(r.bootMarks)}` : ""}`);
      times[mode].push(r.ms);
      if (r.marks) marks[mode].push(r.marks);
      if (r.transport) transports[mode] = r.transport;
      // A bootstrap mode that did not start through the bootstrap measures something else.
      if (mode.startsWith("antiphon-boot") && r.startPath !== "bootstrap") throw new Error(`${mode}: started through the ${r.startPath}: ${JSON.stringify(r.boot)}`);
    }
    console.error(`run ${run + 1}/${RUNS}: ${MODES.map((m) => `${m} ${Math.round(times[m][run])}`).join(", ")}`);
  }
} finally {
  await browser.close();
  removeDir(profile);
  await stopNode(node);
  if (process.env.TTFA_NODE_LOG) writeFileSync(process.env.TTFA_NODE_LOG, node.logs());
  removeDir(work);
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const m = Object.fromEntries(MODES.map((k) => [k, median(times[k])]));
const label = {
  plain: "plain `<audio src>`, whole MP3 from the node's HTTP",
  "mse-fetch": "`fetch()` of segment 0 into MSE (unverified)",
  hls: "hls.js on the node's `.m3u8`",
  "helia-warm": "Helia verified-fetch into MSE, warm (connected)",
  "helia-cold": "Helia verified-fetch into MSE, cold (from script start)",
  "antiphon-warm": `Antiphon, warm (connected over ${transports["antiphon-warm"] || "?"})`,
  "antiphon-warm-ws": `Antiphon, warm (connected over ${transports["antiphon-warm-ws"] || "?"})`,
  "antiphon-cold": `Antiphon, cold (from script start; ${transports["antiphon-cold"] || "?"})`,
  "antiphon-cold-ws": `Antiphon, cold (from script start; ${transports["antiphon-cold-ws"] || "?"})`,
  "antiphon-preload": `Antiphon, cold with the README's preload hints (${transports["antiphon-preload"] || "?"})`,
  "antiphon-preload-ws": `Antiphon, cold with the README's preload hints (${transports["antiphon-preload-ws"] || "?"})`,
  "antiphon-return": `Antiphon, returning visitor (cold page, HTTP and code caches kept; ${transports["antiphon-return"] || "?"})`,
  "antiphon-return-ws": `Antiphon, returning visitor (cold page, HTTP and code caches kept; ${transports["antiphon-return-ws"] || "?"})`,
  "antiphon-boot": `**Antiphon, cold, progressive start** (bootstrap, then the module over ${transports["antiphon-boot"] || "?"})`,
  "antiphon-boot-ws": `**Antiphon, cold, progressive start** (bootstrap, then the module over ${transports["antiphon-boot-ws"] || "?"})`,
  "antiphon-boot-return": `**Antiphon, returning visitor, progressive start** (${transports["antiphon-boot-return"] || "?"})`,
  "antiphon-boot-return-ws": `**Antiphon, returning visitor, progressive start** (${transports["antiphon-boot-return-ws"] || "?"})`,
};
// Where a cold start's time goes: the median time from the top of the script to each step.
const steps = MODES.filter((k) => /^antiphon-(cold|preload|return|boot)/.test(k)).map((k) => {
  const at = (name) => {
    const xs = marks[k].map((x) => x[name]).filter((x) => x !== undefined);
    return xs.length ? `${Math.round(median(xs))} ms` : "–";
  };
  return `| ${label[k]} | ${at("bootManifest")} | ${at("bootSegment0")} | ${at("glue")} | ${at("wasm")} | ${at("connected")} | ${Math.round(m[k])} ms | ${at("loaded")} |`;
});
const ratio = (a, b) => (m[a] !== undefined && m[b] !== undefined ? `${(m[a] / m[b]).toFixed(2)}x` : "not run");
const range = (xs) => `${Math.round(Math.min(...xs))}–${Math.round(Math.max(...xs))}`;
const rows = MODES.map((k) => `| ${label[k]} | ${Math.round(m[k])} ms | ${range(times[k])} | ${(m[k] / m.plain).toFixed(2)}x |`);
const wasm = readFileSync(join(WEB_PKG, "antiphon_bg.wasm"));
const glue = readFileSync(join(WEB_PKG, "antiphon.js"));
const gz = (b) => gzipSync(b, { level: 9 }).length;
// As scripts/precompress.mjs writes the copies `serve --www` sends.
const br = (b) => brotliCompressSync(b, { params: { [zlib.BROTLI_PARAM_QUALITY]: 11 } }).length;
const sizes = [
  ["Antiphon: wasm module (wasm-opt -Oz)", wasm],
  ["Antiphon: JS glue (wasm-bindgen, unminified)", glue],
  ["Antiphon: the bootstrap (`bootstrap.js`, unminified), all a progressive start needs before it plays", readFileSync(join(WEB_PKG, bootstrapFile))],
  ...(FLOOR
    ? [["rust-libp2p floor: `bench/size-floor` (WebSocket, WebRTC-direct, noise, yamux, ping, Bitswap; one fetch, wasm-opt -Oz)", readFileSync(join(FLOOR, "antiphon_size_floor_bg.wasm"))]]
    : []),
  ["Helia: verified-fetch player bundle (esbuild --minify)", readFileSync(HELIA_TTFA)],
  ["Helia: Bitswap + UnixFS bundle (esbuild --minify)", readFileSync(HELIA_CAT)],
].map(([what, b]) => `| ${what} | ${b.length.toLocaleString("en")} B | ${gz(b).toLocaleString("en")} B | ${br(b).toLocaleString("en")} B |`);
// Each link gets its own BENCHMARKS.md section: `ttfa` for loopback, `ttfa-<rate>` for a shaped one.
const section = RATE ? `ttfa-${RATE}` : "ttfa";
const text = [
  `<!-- ${section}:begin -->`,
  `Measured ${new Date().toISOString().slice(0, 10)}: one release \`antiphon-node serve\` in a private network namespace${RATE ? ` whose loopback is limited to ${RATE} (tc tbf, MTU 1500)` : ""}, a 60 s 320 kb/s MP3 (${manifest.segments.length} segments), headless Chromium with its HTTP cache disabled (but for the returning visitor's second visit), a fresh page per run, modes interleaved; median of ${RUNS} runs each.`,
  "",
  "| how playback starts | median | range | vs plain `<audio>` |",
  "|---|---:|---:|---:|",
  ...rows,
  "",
  `Goals: warm Antiphon ≤ 1.0x plain \`<audio>\` (measured ${ratio("antiphon-warm", "plain")}); cold Antiphon ≤ 0.5x Helia cold (measured ${ratio("antiphon-boot", "helia-cold")} over WebRTC-direct, ${ratio("antiphon-boot-ws", "helia-cold")} over WebSocket, progressive start); cold ≤ 1.5x plain \`<audio>\` (progressive start: ${ratio("antiphon-boot", "plain")} and ${ratio("antiphon-boot-ws", "plain")}; module first: ${ratio("antiphon-cold", "plain")} and ${ratio("antiphon-cold-ws", "plain")}); returning ≤ 1.2x plain \`<audio>\` (progressive start: ${ratio("antiphon-boot-return", "plain")} and ${ratio("antiphon-boot-return-ws", "plain")}; module first: ${ratio("antiphon-return", "plain")} and ${ratio("antiphon-return-ws", "plain")}).`,
  ...(steps.length
    ? ["", "Where a cold start's time goes (medians from the top of the page's script):", "", "| start | bootstrap: manifest verified | bootstrap: segment 0 appended | glue imported | module instantiated | peer connected | playing | player took over |", "|---|---:|---:|---:|---:|---:|---:|---:|", ...steps]
    : []),
  // Sizes do not depend on the link: only the loopback section lists them.
  ...(RATE ? [] : ["", "| code shipped to the browser | raw | gzip -9 | brotli -11 |", "|---|---:|---:|---:|", ...sizes]),
  `<!-- ${section}:end -->`,
].join("\n");
console.log(text);
writeFileSync(join(ROOT, "bench", "out", `${section}.json`), JSON.stringify({ runs: RUNS, times, medians: m, transports }, null, 2));
const path = join(ROOT, "BENCHMARKS.md");
const md = readFileSync(path, "utf8");
const begin = md.indexOf(`<!-- ${section}:begin -->`);
const end = md.indexOf(`<!-- ${section}:end -->`);
if (begin < 0 || end < 0) throw new Error(`BENCHMARKS.md has no ${section} markers`);
writeFileSync(path, md.slice(0, begin) + text + md.slice(end + `<!-- ${section}:end -->`.length));
process.exit(0);
