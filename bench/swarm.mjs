// A real-browser swarm: SWARM_LISTENERS (default 8) listeners, each in its own Chromium
// browser context with its own wasm peer, join one track SWARM_JOIN_MS (default 3000) apart
// through the documented API (`Peer.start` -> `attach` -> `load`), the creator node up the
// whole time. Run twice, interleaved by listener count: with serving on (the default) and with
// `serve: false` (every byte from the node). Reports per listener the bytes by source kind,
// rebuffers and time to first audio, the node's served bytes from `/metrics`, the receipts and
// what signing them cost in the page; then runs the swarm simulator (antiphon-sim, beside
// NODE_BIN) with the same parameters, for the calibration table. Writes bench/out/swarm.json
// and the BENCHMARKS.md section between the swarm markers. WebRTC is involved: runs only
// inside scripts/netns.sh.
//
//   scripts/netns.sh node bench/swarm.mjs NODE_BIN
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { assertInNamespace, ingestDemoTrack, launchIsolatingBrowser, removeDir, ROOT, startNode, stopNode, tempDir, trackManifest, waitInPage } from "../tests/e2e/harness.mjs";

assertInNamespace();
const [NODE_BIN] = process.argv.slice(2);
if (!NODE_BIN) throw new Error("usage: bench/swarm.mjs NODE_BIN");
const LISTENERS = Number(process.env.SWARM_LISTENERS || 8);
const JOIN_MS = Number(process.env.SWARM_JOIN_MS || 3000);
const SECONDS = Number(process.env.SWARM_SECONDS || 60);
// A secure origin of the harness's list, so that pages hash with WebCrypto as a dapp's would.
const PORT = 18080;

const work = tempDir("bench-swarm");
const { data, track } = ingestDemoTrack(work, ["--seconds", String(SECONDS)]);
// Every listener here comes from the namespace's one address; on the internet they come from
// their own. The relay's per-address caps (4 circuits, 8 reservations: node.example.toml) would
// otherwise stop the fifth listener from reaching any browser, so they are raised to what one
// address per listener would give.
const config = join(work, "node.toml");
writeFileSync(config, `[relay]\nmax_circuits = 64\nmax_circuits_per_ip = ${4 * LISTENERS}\nmax_reservations_per_ip = ${LISTENERS + 8}\n`);

/** Served bytes the node's `/metrics` reports, all transports and protocols together. */
async function nodeServed(url) {
  const text = await (await fetch(`${url}/metrics`)).text();
  return [...text.matchAll(/^antiphon_served_bytes_total\{[^}]*\} (\d+)$/gm)].reduce((a, m) => a + Number(m[1]), 0);
}

async function swarm(serve) {
  const node = await startNode(data, PORT, ["--config", config], NODE_BIN);
  const browser = await launchIsolatingBrowser();
  const pages = [];
  try {
    for (let i = 0; i < LISTENERS; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, JOIN_MS));
      const context = await browser.newContext();
      const page = await context.newPage();
      pages.push(page);
      await page.goto(`${node.url}/?track=${track}`);
      await waitInPage(page, () => window.antiphon && window.antiphon.Peer, null, 30_000);
      await page.evaluate(async ({ url, track, serve }) => {
        const peer = await window.antiphon.Peer.start({ creatorNodes: [url], serve });
        const audio = document.getElementById("audio");
        const player = peer.attach(audio);
        window.listener = { peer, player };
        await player.load(track);
        await audio.play();
      }, { url: node.url, track, serve });
    }
    for (const page of pages) {
      await waitInPage(page, () => window.listener.player.stats().segments.every((s) => s === "appended"), null, 120_000);
    }
    const listeners = [];
    for (const page of pages) {
      listeners.push(await page.evaluate(async () => {
        await window.listener.peer.flushReceipts();
        for (let i = 0; i < 50 && window.listener.peer.receipts.pending > 0; i++) await new Promise((r) => setTimeout(r, 100));
        const s = window.listener.player.stats();
        return { bytes: s.bytesBySourceKind, rebuffers: s.rebuffers, ttfaMs: s.timeToFirstAudioMs, receipts: window.listener.peer.receipts };
      }));
    }
    const { segments } = await trackManifest(node.url, track);
    return { serve, listeners, segments, nodeServedBytes: await nodeServed(node.url) };
  } finally {
    await browser.close();
    await stopNode(node);
  }
}

const runs = [];
for (const serve of [true, false]) runs.push(await swarm(serve));
const segments = runs[0].segments;
removeDir(work);

const total = (b) => b.node + b.peer + b.gateway;
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN; };
const summary = runs.map((r) => {
  const later = r.listeners.slice(1);
  const all = r.listeners.reduce((a, l) => a + total(l.bytes), 0);
  const peer = later.reduce((a, l) => a + l.bytes.peer, 0);
  const laterAll = later.reduce((a, l) => a + total(l.bytes), 0);
  const receipts = r.listeners.reduce((a, l) => ({ signed: a.signed + l.receipts.signed, accepted: a.accepted + l.receipts.accepted, signMs: a.signMs + l.receipts.signMs }), { signed: 0, accepted: 0, signMs: 0 });
  return {
    serve: r.serve,
    offloadLater: laterAll ? peer / laterAll : 0,
    offloadAll: all ? r.listeners.reduce((a, l) => a + l.bytes.peer, 0) / all : 0,
    nodeServedBytes: r.nodeServedBytes,
    bytesAll: all,
    rebuffers: r.listeners.reduce((a, l) => a + l.rebuffers, 0),
    ttfaMedianMs: median(r.listeners.map((l) => l.ttfaMs)),
    ttfaMaxMs: Math.max(...r.listeners.map((l) => l.ttfaMs)),
    receipts,
  };
});

// The simulator with the same parameters: joins JOIN_MS apart, no churn, everyone reachable,
// loopback's links (1 Gbit/s, 1 ms), the track's length and bitrate, cut as the node cuts it.
const meanBytes = Math.round(segments.reduce((a, s) => a + s.bytes, 0) / segments.length);
const simBin = join(dirname(NODE_BIN), "antiphon-sim");
const kbps = (8 * segments.reduce((a, s) => a + s.bytes, 0) / SECONDS / 1000).toFixed(1);
const simArgs = ["--listeners", String(LISTENERS), "--join-every", String(JOIN_MS / 1000), "--track-secs", String(SECONDS), "--kbps", kbps, "--first-segment-secs", "1", "--churn", "0", "--unreachable", "0", "--link-mbit", "1000", "--rtt-ms", "1", "--node-mbit", "1000", "--json"];
const sim = execFileSync(simBin, simArgs, { encoding: "utf8" }).trim().split("\n").map((l) => JSON.parse(l));

mkdirSync(join(ROOT, "bench", "out"), { recursive: true });
writeFileSync(join(ROOT, "bench", "out", "swarm.json"), JSON.stringify({ runs, summary, sim, simArgs }, null, 2));

const pct = (x) => `${(100 * x).toFixed(1)}%`;
const mb = (b) => (b / 1e6).toFixed(2);
const date = new Date().toISOString().slice(0, 10);
const lines = [
  "<!-- swarm:begin -->",
  `Measured ${date}: ${LISTENERS} listeners ${JOIN_MS / 1000} s apart, each its own browser context and wasm peer in one headless Chromium, a ${SECONDS} s track of ${segments.length} segments (${mb(meanBytes)} MB each on average), the node on the namespace's loopback, WebRTC-direct and WebSocket as \`Peer.start\` picks.`,
  "",
  "| listener | serving | first audio | rebuffers | from node | from browsers | browsers' share |",
  "|---:|---|---:|---:|---:|---:|---:|",
];
for (const r of runs) {
  r.listeners.forEach((l, i) => {
    lines.push(`| ${i + 1} | ${r.serve ? "on" : "off"} | ${l.ttfaMs?.toFixed(0)} ms | ${l.rebuffers} | ${mb(l.bytes.node)} MB | ${mb(l.bytes.peer)} MB | ${pct(l.bytes.peer / total(l.bytes))} |`);
  });
}
lines.push("", "| serving | browsers' share, listeners 2..N | node served (`/metrics`) | of all bytes listeners got | rebuffers | first audio median / max | receipts signed / accepted | signing in the page |", "|---|---:|---:|---:|---:|---:|---:|---:|");
for (const s of summary) {
  const signUs = s.receipts.signed ? (1000 * s.receipts.signMs / s.receipts.signed).toFixed(0) + " µs per receipt" : "-";
  lines.push(`| ${s.serve ? "on" : "off"} | ${pct(s.offloadLater)} | ${mb(s.nodeServedBytes)} MB | ${pct(s.nodeServedBytes / s.bytesAll)} | ${s.rebuffers} | ${s.ttfaMedianMs.toFixed(0)} / ${s.ttfaMaxMs.toFixed(0)} ms | ${s.receipts.signed} / ${s.receipts.accepted} | ${signUs} |`);
}
lines.push("", `Calibration: the simulator with the same parameters (\`antiphon-sim ${simArgs.join(" ")}\`) against the browsers:`, "", "| | offload, all listeners | node's share | rebuffers | first audio p50 |", "|---|---:|---:|---:|---:|");
const real = summary.find((s) => s.serve);
const simOn = sim.find((r) => r.peers > 0);
lines.push(`| real browsers | ${pct(real.offloadAll)} | ${pct(1 - real.offloadAll)} | ${real.rebuffers} | ${real.ttfaMedianMs.toFixed(0)} ms |`);
lines.push(`| simulator | ${pct(simOn.offload)} | ${pct(1 - simOn.offload)} | ${simOn.rebuffers} | ${simOn.start_p50_ms} ms |`);
lines.push("<!-- swarm:end -->");

const path = join(ROOT, "BENCHMARKS.md");
const md = readFileSync(path, "utf8");
const begin = md.indexOf("<!-- swarm:begin -->");
const end = md.indexOf("<!-- swarm:end -->");
if (begin < 0 || end < 0) throw new Error("BENCHMARKS.md has no swarm markers");
writeFileSync(path, md.slice(0, begin) + lines.join("\n") + md.slice(end + "<!-- swarm:end -->".length));
console.log(lines.join("\n"));
process.exit(0);
