// Helia pins an Antiphon track: given only the track CID, it fetches the dag-cbor manifest by
// Bitswap from `antiphon-node serve`, follows its IPLD links to every segment (raw and
// multi-block dag-pb) and the cover, and pins them all. Loopback only.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { createInterface } from "node:readline";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { multiaddr } from "@multiformats/multiaddr";
import { CID } from "multiformats/cid";
import { CarBlockIterator } from "@ipld/car";
import { startHelia } from "./helia.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const NODE_BIN = process.env.ANTIPHON_NODE_BIN || join(ROOT, "target", "debug", "antiphon-node");
const OUT = join(ROOT, "tests", "interop", "out");
const work = mkdtempSync(join(tmpdir(), "antiphon-pin-interop-"));
const antiphon = (args) => execFileSync(NODE_BIN, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();

let server;
const tracks = {};

before(async () => {
  const data = join(work, "node");
  // A tagged MP3 with cover art (raw segments), and 320 kbit/s in 10 s segments (dag-pb).
  tracks.cover = antiphon(["--data", data, "ingest", join(ROOT, "crates/antiphon-node/tests/fixtures/chord.mp3")]);
  const loud = join(work, "loud.mp3");
  antiphon(["demo-track", "-o", loud, "--seconds", "24", "--kbps", "320"]);
  tracks.multiblock = antiphon(["--data", data, "ingest", loud, "--segment-seconds", "10", "--first-segment-seconds", "0"]);
  server = spawn(NODE_BIN, ["--data", data, "serve", "--http", "127.0.0.1:0", "--listen", "/ip4/127.0.0.1/tcp/0"],
    { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, RUST_LOG: "warn" } });
  const line = await new Promise((resolve, reject) => {
    createInterface({ input: server.stdout }).once("line", resolve);
    server.once("exit", (code) => reject(new Error(`serve exited with ${code}`)));
  });
  server.http = line.match(/open (http:\/\/\S+)\//)[1];
  for (let i = 0; i < 50 && !server.tcp; i++) {
    const peer = await (await fetch(`${server.http}/peer`)).json();
    server.tcp = peer.multiaddrs.find((a) => a.includes("/tcp/"));
    if (!server.tcp) await new Promise((r) => setTimeout(r, 100));
  }
});

after(() => {
  server?.kill("SIGKILL");
  rmSync(work, { recursive: true, force: true });
});

/** Every block of the track as the node's trustless gateway lists it (dag-scope=all). */
async function blocksOf(track) {
  const res = await fetch(`${server.http}/ipfs/${track}?format=car&dag-scope=all`);
  assert.equal(res.status, 200);
  const cids = [];
  for await (const { cid } of await CarBlockIterator.fromBytes(new Uint8Array(await res.arrayBuffer()))) cids.push(cid);
  return cids;
}

for (const kind of ["cover", "multiblock"]) {
  test(`Helia pins a track (${kind === "cover" ? "raw segments and a cover" : "multi-block dag-pb segments"}) from the node by Bitswap`, async () => {
    const helia = await startHelia();
    try {
      await helia.libp2p.dial(multiaddr(server.tcp));
      const root = CID.parse(tracks[kind]);
      const started = performance.now();
      const pinned = [];
      for await (const cid of helia.pins.add(root, { signal: AbortSignal.timeout(60_000) })) pinned.push(cid.toString());
      const ms = performance.now() - started;
      const expected = await blocksOf(tracks[kind]);
      assert.ok(expected.length >= 3);
      assert.equal(root.code, 0x71, "the track is a dag-cbor manifest");
      assert.ok(await helia.pins.isPinned(root));
      for (const cid of expected) {
        assert.ok(await helia.blockstore.has(cid), `Helia holds ${cid}`);
      }
      assert.deepEqual(new Set(pinned), new Set(expected.map(String)), "Helia walked exactly the track's blocks");
      if (kind === "multiblock") assert.ok(expected.some((c) => c.code === 0x70), "some segments are dag-pb files");
      if (kind === "cover") {
        const { segments } = await (await fetch(`${server.http}/tracks/${tracks.cover}`)).json();
        assert.equal(expected.length, 1 + segments.length + 1, "the manifest, its raw segments, the cover");
      }
      mkdirSync(OUT, { recursive: true });
      writeFileSync(join(OUT, `pin-${kind}.json`), JSON.stringify({ track: tracks[kind], blocks: expected.length, ms: Math.round(ms) }, null, 2));
    } finally {
      await helia.stop();
    }
  });
}
