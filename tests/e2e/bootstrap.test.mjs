// End to end: the progressive start (src/bootstrap.js). A cold demo page starts the track over
// HTTP, verified with WebCrypto, before the wasm module is there, and the player takes over;
// a gateway that corrupts segment 0 is refused and banned and the peer fetches it instead; a
// track hashed with blake3 (which WebCrypto lacks) starts through the module. Every test
// records each append the page makes to a SourceBuffer and asserts every segment is appended
// exactly once. Runs only inside scripts/netns.sh.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { createServer } from "node:http";
import { join } from "node:path";
import { blake3 } from "@noble/hashes/blake3.js";
import { CarWriter } from "@ipld/car";
import * as dagCbor from "@ipld/dag-cbor";
import { CID } from "multiformats/cid";
import * as Digest from "multiformats/hashes/digest";
import { assertInNamespace, HOST, launchBrowser, nodeCli, removeDir, startNode, stopNode, tempDir, trackManifest, waitInPage } from "./harness.mjs";

assertInNamespace();

const work = tempDir("e2e-bootstrap");
const data = join(work, "data");
let track;
let blake3Track;
let mixedTrack;

/**
 * Re-hashes every segment of `track` (read from the node at `url`) with blake3, and its
 * manifest with blake3 too or, with `manifestSha256`, with sha2-256: a CAR of the same track
 * under new CIDs.
 */
async function blake3Copy(url, track, { manifestSha256 = false } = {}) {
  const get = async (cid) => new Uint8Array(await (await fetch(`${url}/ipfs/${cid}?format=raw`)).arrayBuffer());
  const manifest = dagCbor.decode(await get(track));
  const blocks = [];
  const link = (codec, bytes, sha256) => {
    const digest = sha256 ? Digest.create(0x12, createHash("sha256").update(bytes).digest()) : Digest.create(0x1e, blake3(bytes));
    const cid = CID.createV1(codec, digest);
    blocks.push({ cid, bytes });
    return cid;
  };
  for (const segment of manifest.segments) {
    assert.equal(segment.cid.code, 0x55, "the test track's segments are single raw blocks");
    segment.cid = link(0x55, await get(segment.cid));
  }
  delete manifest.cover;
  const root = link(0x71, dagCbor.encode(manifest), manifestSha256);
  const { writer, out } = CarWriter.create([root]);
  const chunks = [];
  const drained = (async () => {
    for await (const c of out) chunks.push(c);
  })();
  for (const b of blocks) await writer.put(b);
  await writer.close();
  await drained;
  return { root: root.toString(), car: Buffer.concat(chunks) };
}

before(async () => {
  mkdirSync(data);
  const mp3 = join(work, "default.mp3");
  nodeCli(["demo-track", "-o", mp3, "--seconds", "20"]);
  track = nodeCli(["--data", data, "ingest", mp3, "--title", "bootstrap"]);
  const lister = await startNode(data, 18800);
  let copy;
  let mixed;
  try {
    copy = await blake3Copy(lister.url, track);
    mixed = await blake3Copy(lister.url, track, { manifestSha256: true });
  } finally {
    await stopNode(lister);
  }
  writeFileSync(join(work, "blake3.car"), copy.car);
  writeFileSync(join(work, "mixed.car"), mixed.car);
  nodeCli(["--data", data, "import-car", join(work, "blake3.car")]);
  nodeCli(["--data", data, "import-car", join(work, "mixed.car")]);
  blake3Track = copy.root;
  mixedTrack = mixed.root;
});

after(() => removeDir(work));

/**
 * Opens the demo page at `url` with every SourceBuffer append recorded (its timestampOffset),
 * waits until it plays and every segment is appended, and returns what the page saw.
 */
async function play(url, { click = false } = {}) {
  const profile = tempDir("chromium");
  const browser = await launchBrowser(profile);
  const lines = [];
  try {
    const page = await browser.newPage();
    page.on("console", (m) => lines.push(m.text()));
    await page.addInitScript(() => {
      window.appends = [];
      const append = SourceBuffer.prototype.appendBuffer;
      SourceBuffer.prototype.appendBuffer = function (bytes) {
        window.appends.push({ at: this.timestampOffset, bytes: bytes.byteLength });
        return append.call(this, bytes);
      };
    });
    await page.goto(url);
    if (click) {
      await page.waitForSelector("#play:not([disabled])", { timeout: 30_000 });
      await page.click("#play");
    }
    try {
      await waitInPage(page, () => window.antiphon && window.antiphon.player && window.antiphon.loadToPlayingMs !== undefined, null, 30_000);
      await waitInPage(page, () => window.antiphon.player.stats().segments.every((s) => s === "appended"), null, 60_000);
      // Past the first three segments (1 + 2 + 4 s): playing across the hand-over.
      await waitInPage(page, () => document.getElementById("audio").currentTime > 7.5, null, 60_000);
    } catch (e) {
      const state = await page.evaluate(() => JSON.stringify({ status: window.antiphon?.status, errors: window.antiphon?.errors, stats: window.antiphon?.player?.stats(), appends: window.appends })).catch(String);
      throw new Error(`${e.message}\npage: ${state}\nconsole:\n${lines.join("\n")}`);
    }
    return await page.evaluate(async () => {
      const audio = document.getElementById("audio");
      const buffered = [];
      for (let i = 0; i < audio.buffered.length; i++) buffered.push([audio.buffered.start(i), audio.buffered.end(i)]);
      const boot = window.antiphonBootstrap ? await window.antiphonBootstrap.done : null;
      const resources = performance.getEntriesByType("resource").map((e) => new URL(e.name).pathname + new URL(e.name).search);
      return { stats: window.antiphon.player.stats(), events: window.antiphon.events, appends: window.appends, buffered, boot, resources, provenance: window.antiphon.player.provenance() };
    });
  } finally {
    await browser.close();
    removeDir(profile);
  }
}

/** Each segment appended once, at its own start time, and the element's buffer one range over the whole track. */
function assertAppendedOnce(seen, manifest) {
  const starts = [];
  let t = 0;
  for (const s of manifest.segments) {
    starts.push(t / manifest.sample_rate);
    t += s.samples;
  }
  const offsets = seen.appends.map((a) => a.at);
  assert.equal(offsets.length, manifest.segments.length, `one append per segment: ${JSON.stringify(seen.appends)}`);
  assert.deepEqual([...offsets].sort((a, b) => a - b), starts, "each segment appended once, at its start");
  assert.deepEqual([...seen.stats.appended].sort((a, b) => a - b), starts.map((_, i) => i));
  const segmentEvents = seen.events.filter((e) => e.type === "segment").map((e) => e.index).sort((a, b) => a - b);
  assert.deepEqual(segmentEvents, starts.map((_, i) => i), "one segment event per segment");
  assert.equal(seen.buffered.length, 1, `one buffered range: ${JSON.stringify(seen.buffered)}`);
  assert.ok(seen.buffered[0][0] < 0.05 && seen.buffered[0][1] > t / manifest.sample_rate - 0.1, `buffered ${JSON.stringify(seen.buffered)}`);
}

test("a cold page starts through the bootstrap and the player takes over", async () => {
  const node = await startNode(data, 18810);
  try {
    const manifest = await trackManifest(node.url, track);
    const seen = await play(`${node.url}/?transport=websocket&autoplay=1&track=${track}`);
    assert.equal(seen.stats.startPath, "bootstrap");
    assert.ok(seen.stats.timeToFirstAudioMs > 0);
    assert.deepEqual(seen.boot.failures, []);
    assert.ok(seen.boot.appended.includes(0), "the bootstrap appended segment 0");
    // The manifest and segment 0 came in one request (a CAR through the manifest's path), the
    // next segments one raw request each.
    const asked = seen.resources.filter((r) => r.startsWith("/ipfs/"));
    assert.deepEqual(asked.filter((r) => r.startsWith(`/ipfs/${track}`)), [`/ipfs/${track}/segments/0/cid?format=car&dag-scope=entity`]);
    assert.ok(!asked.includes(`/ipfs/${manifest.segments[0].cid}?format=raw`), "segment 0 was not asked for again");
    assert.deepEqual(asked.filter((r) => r.endsWith("?format=raw")), seen.boot.appended.slice(1).map((i) => `/ipfs/${manifest.segments[i].cid}?format=raw`));
    assert.ok(seen.boot.appended.length < manifest.segments.length, "the player fetched the rest");
    assertAppendedOnce(seen, manifest);
    // What the bootstrap fetched counts as the creator node's gateway's; the rest came over Bitswap.
    const fromGateway = seen.events.filter((e) => e.type === "segment" && e.sourceKind === "gateway").map((e) => e.index);
    assert.deepEqual(fromGateway, seen.boot.appended);
    assert.ok(seen.events.filter((e) => e.type === "segment" && e.index === 0).every((e) => e.peer === node.url));
    assert.ok(seen.stats.bytesBySourceKind.gateway > 0 && seen.stats.bytesBySourceKind.node > 0);
    assert.equal(seen.provenance.filter((p) => p.from === node.url).length, seen.boot.appended.length);
  } finally {
    await stopNode(node);
  }
});

test("the Play button starts the track through the bootstrap while the peer dials", async () => {
  const node = await startNode(data, 18810);
  try {
    const manifest = await trackManifest(node.url, track);
    const seen = await play(`${node.url}/?transport=websocket&track=${track}`, { click: true });
    assert.equal(seen.stats.startPath, "bootstrap");
    assert.deepEqual(seen.boot.failures, []);
    assertAppendedOnce(seen, manifest);
  } finally {
    await stopNode(node);
  }
});

test("a player that takes over while the bootstrap's first request is on its way starts from the segment it brings", async () => {
  const node = await startNode(data, 18810);
  const profile = tempDir("chromium");
  const browser = await launchBrowser(profile);
  try {
    const page = await browser.newPage();
    await page.goto(`${node.url}/?transport=websocket&track=${track}`);
    await page.waitForSelector("#play:not([disabled])", { timeout: 30_000 });
    const r = await page.evaluate(async (track) => {
      const { Peer, bootstrap } = window.antiphon;
      const peer = await Peer.start({ creatorNodes: [location.origin], transport: "websocket" });
      const audio = document.getElementById("audio");
      const player = peer.attach(audio);
      const boot = bootstrap(audio, { creatorNodes: [location.origin], track });
      // Taken over at once: the bootstrap's one request (manifest and segment 0) is not answered yet.
      await player.load(track);
      const stats = player.stats();
      return { startPath: stats.startPath, appended: stats.appended, boot: await boot.done };
    }, track);
    assert.deepEqual(r.boot.appended, [0], "segment 0, which came with the manifest, is appended; nothing more is fetched");
    assert.equal(r.startPath, "bootstrap");
    assert.ok(r.appended.includes(0));
  } finally {
    await browser.close();
    removeDir(profile);
    await stopNode(node);
  }
});

test("a gateway that corrupts segment 0 is refused by the bootstrap and banned, and segment 0 comes from the peer", async () => {
  const node = await startNode(data, 18820);
  const manifest = await trackManifest(node.url, track);
  const victim = manifest.segments[0].cid;
  // A trustless gateway in front of the node that flips one byte of segment 0, asked alone or
  // in a CAR with the manifest.
  const corrupting = createServer(async (req, res) => {
    res.setHeader("access-control-allow-origin", "*");
    const upstream = await fetch(`${node.url}${req.url}`, { headers: { accept: req.headers.accept || "*/*" } });
    const body = Buffer.from(await upstream.arrayBuffer());
    if (req.url.startsWith(`/ipfs/${victim}`)) body[body.length >> 1] ^= 0x01;
    // The manifest and segment 0 in one CAR: segment 0's block is the last one in it.
    if (req.url.startsWith(`/ipfs/${track}/segments/0/`)) body[body.length - 1] ^= 0x01;
    res.statusCode = upstream.status;
    res.setHeader("content-type", upstream.headers.get("content-type") || "application/octet-stream");
    res.end(body);
  });
  await new Promise((r) => corrupting.listen(18829, HOST, r));
  const gateway = `http://${HOST}:18829`;
  try {
    const seen = await play(`${node.url}/?transport=websocket&autoplay=1&track=${track}&bootstrapFrom=${gateway}&gateway=${gateway}`);
    assert.deepEqual(seen.boot.failures.map((f) => [f.source, f.index, f.code]), [[gateway, 0, "VERIFICATION_FAILED"]]);
    assert.deepEqual(seen.boot.appended, [], "nothing unverified reached the SourceBuffer");
    assert.equal(seen.stats.startPath, "peer");
    assert.deepEqual(seen.stats.banned, [gateway]);
    assert.ok(seen.events.some((e) => e.type === "sourceBanned" && e.source === gateway && e.kind === "gateway"));
    assert.ok(seen.events.some((e) => e.type === "sourceFailed" && e.source === gateway && e.index === 0 && e.code === "VERIFICATION_FAILED"));
    const first = seen.events.find((e) => e.type === "segment" && e.index === 0);
    assert.equal(first.sourceKind, "node", "segment 0 came from the creator node over Bitswap");
    assert.equal(seen.stats.bytesBySource[gateway], undefined, "the banned gateway was never asked again");
    assertAppendedOnce(seen, manifest);
  } finally {
    corrupting.close();
    await stopNode(node);
  }
});

test("a hostile gateway (a CAR claiming petabytes, an endless body) costs the bootstrap a bounded read, and the module starts the track", async () => {
  const node = await startNode(data, 18840);
  let streamed = 0;
  const hostile = createServer((req, res) => {
    res.setHeader("access-control-allow-origin", "*");
    if (req.url.includes("format=car")) {
      // A CAR header whose length varint says 2^49 bytes, then a dag-cbor array claiming 2^32 items.
      res.end(Buffer.from([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0x9a, 0xff, 0xff, 0xff, 0xff]));
      return;
    }
    // An endless body with no content-length: the reader must stop at its bound.
    res.setHeader("content-type", "application/vnd.ipld.raw");
    const chunk = Buffer.alloc(64 * 1024, 7);
    const pump = () => {
      while (!res.destroyed && streamed < 64 * 1024 * 1024) {
        streamed += chunk.length;
        if (!res.write(chunk)) return res.once("drain", pump);
      }
      res.end();
    };
    res.on("close", () => res.destroy());
    pump();
  });
  await new Promise((r) => hostile.listen(18819, HOST, r));
  const gateway = `http://${HOST}:18819`;
  try {
    const manifest = await trackManifest(node.url, track);
    const seen = await play(`${node.url}/?transport=websocket&autoplay=1&track=${track}&bootstrapFrom=${gateway}`);
    assert.deepEqual(seen.boot.failures.map((f) => [f.source, f.index, f.code]), [[gateway, null, "HTTP_FAILED"]]);
    assert.match(seen.boot.failures[0].message, /a body over 1048576 bytes/);
    assert.ok(streamed < 16 * 1024 * 1024, `the endless body was cut off after ${streamed} bytes`);
    assert.equal(seen.stats.startPath, "peer");
    assertAppendedOnce(seen, manifest);
  } finally {
    hostile.close();
    await stopNode(node);
  }
});

for (const [what, which] of [["a track hashed with blake3", () => blake3Track], ["a sha2-256 manifest of blake3 segments", () => mixedTrack]]) {
  test(`${what}, which WebCrypto cannot check, starts through the wasm module and bans nobody`, async () => {
    const node = await startNode(data, 18830);
    try {
      const manifest = await trackManifest(node.url, which());
      assert.ok(manifest.segments.every((s) => CID.parse(s.cid).multihash.code === 0x1e));
      const seen = await play(`${node.url}/?transport=websocket&autoplay=1&track=${which()}`);
      assert.deepEqual(seen.boot.failures.map((f) => [f.source, f.code]), [[null, "UNSUPPORTED_HASH"]]);
      assert.deepEqual(seen.boot.appended, []);
      assert.equal(seen.stats.startPath, "peer");
      assert.deepEqual(seen.stats.banned, []);
      assertAppendedOnce(seen, manifest);
    } finally {
      await stopNode(node);
    }
  });
}
