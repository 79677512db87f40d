// The player's sources, end to end in headless Chromium: with an HTTP gateway configured (a
// second creator node's trustless gateway), playback survives the creator node being stopped
// mid-track without a rebuffer; and a gateway that corrupts what it serves is banned, its
// blocks fetched elsewhere, and playback goes on. Runs only inside scripts/netns.sh.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { createServer, request } from "node:http";
import { join } from "node:path";
import {
  HOST, ROOT, assertInNamespace, launchBrowser, nodeCli, removeDir, startNode, stopNode, tempDir, waitInPage,
} from "./harness.mjs";

assertInNamespace();

const work = tempDir("e2e-sources");
const outDir = join(ROOT, "tests", "e2e", "out");
const results = {};
let track;

before(() => {
  mkdirSync(outDir, { recursive: true });
  const mp3 = join(work, "default.mp3");
  nodeCli(["demo-track", "-o", mp3]);
  // Two creator nodes holding the same track (same bytes, same CIDs).
  for (const name of ["a", "b"]) {
    mkdirSync(join(work, name));
    track = nodeCli(["--data", join(work, name), "ingest", mp3]);
  }
});

after(() => {
  writeFileSync(join(outDir, "sources-results.json"), JSON.stringify(results, null, 2));
  removeDir(work);
});

/** A gateway in front of `upstream` that flips one byte of every block it serves. */
function corruptingGateway(port, upstream) {
  const server = createServer((req, res) => {
    const up = request(`${upstream}${req.url}`, { headers: { accept: req.headers.accept || "*/*" } }, (r) => {
      const chunks = [];
      r.on("data", (c) => chunks.push(c));
      r.on("end", () => {
        const body = Buffer.concat(chunks);
        if (body.length > 0) body[body.length >> 1] ^= 0x01;
        res.writeHead(r.statusCode, { "content-type": r.headers["content-type"] || "application/octet-stream",
          "access-control-allow-origin": "*" });
        res.end(body);
      });
    });
    up.on("error", () => res.writeHead(502).end());
    up.end();
  });
  server.served = 0;
  server.on("request", () => server.served++);
  return new Promise((resolve) => server.listen(port, HOST, () => resolve(server)));
}

async function openPlayer(browser, url) {
  const page = await browser.newPage();
  const lines = [];
  page.on("console", (m) => lines.push(m.text()));
  await page.goto(url);
  await waitInPage(page, () => window.antiphon && window.antiphon.loadToPlayingMs !== undefined, null, 30_000).catch((e) => {
    throw new Error(`${e.message}\nconsole:\n${lines.join("\n")}`);
  });
  return page;
}

test("with a gateway configured, stopping the creator node mid-playback causes no rebuffer", async () => {
  const a = await startNode(join(work, "a"), 18230);
  const b = await startNode(join(work, "b"), 18240);
  const profile = tempDir("chromium");
  const browser = await launchBrowser(profile);
  try {
    // 4x speed: the 64 s track plays in 16 s; a 30 s window is ahead of the playhead.
    const page = await openPlayer(browser, `${a.url}/?track=${track}&autoplay=1&rate=4&gateway=${encodeURIComponent(b.url)}`);
    await waitInPage(page, () => document.getElementById("audio").currentTime > 2, null, 20_000);
    await stopNode(a);
    const stoppedAt = await page.evaluate(() => document.getElementById("audio").currentTime);
    await waitInPage(page, () => window.antiphon.player.stats().ended && document.getElementById("audio").ended, null, 60_000);
    const state = await page.evaluate(() => ({
      rebuffers: window.antiphon.rebuffers,
      rebufferTimes: window.antiphon.rebufferTimes,
      appendedAt: window.antiphon.events.filter((e) => e.type === "segment").map((e) => e.index),
      log: document.getElementById("log").innerText.split("\n").slice(0, 40),
      errors: window.antiphon.errors,
      segments: window.antiphon.events.filter((e) => e.type === "segment").map((e) => ({ index: e.index, kind: e.sourceKind })),
      failed: window.antiphon.events.filter((e) => e.type === "sourceFailed").length,
      provenance: window.antiphon.player.provenance(),
      currentTime: document.getElementById("audio").currentTime,
    }));
    results.nodeStopped = { stoppedAt, rebuffers: state.rebuffers, rebufferTimes: state.rebufferTimes,
      segments: state.segments, sourceFailures: state.failed, log: state.log };
    assert.deepEqual(state.errors, []);
    assert.equal(state.rebuffers, 0, "no rebuffer");
    assert.equal(state.segments.length, 11, "every segment was appended");
    assert.ok(state.segments.some((s) => s.kind === "gateway"), "some segments came from the gateway");
    assert.ok(state.currentTime > 63);
    assert.ok(state.provenance.length >= 11 && state.provenance.every((p) => p.bytes > 0 && p.from));
  } finally {
    await browser.close();
    removeDir(profile);
    await stopNode(a);
    await stopNode(b);
  }
});

test("a gateway that corrupts blocks is banned and the blocks are fetched from the node", async () => {
  const a = await startNode(join(work, "a"), 18250);
  const b = await startNode(join(work, "b"), 18260);
  const bad = await corruptingGateway(18270, b.url);
  const profile = tempDir("chromium");
  const browser = await launchBrowser(profile);
  try {
    const gateway = `http://${HOST}:18270`;
    const page = await openPlayer(browser, `${a.url}/?track=${track}&autoplay=1&rate=4&gateway=${encodeURIComponent(gateway)}`);
    await waitInPage(page, () => window.antiphon.player.stats().ended, null, 60_000);
    const state = await page.evaluate(() => ({
      errors: window.antiphon.errors,
      banned: window.antiphon.events.filter((e) => e.type === "sourceBanned"),
      stats: window.antiphon.player.stats(),
      kinds: window.antiphon.events.filter((e) => e.type === "segment").map((e) => e.sourceKind),
    }));
    results.corruptGateway = { banned: state.banned, requestsToBadGateway: bad.served, kinds: state.kinds };
    assert.ok(bad.served > 0, "the bad gateway was asked");
    assert.equal(state.banned.length, 1);
    assert.equal(state.banned[0].source, gateway);
    assert.equal(state.banned[0].kind, "gateway");
    assert.deepEqual(state.stats.banned, [gateway]);
    assert.deepEqual(state.errors, []);
    assert.equal(state.stats.appended.length, 11, "every segment played, from the node");
    assert.ok(state.kinds.every((k) => k === "node"));
  } finally {
    await browser.close();
    removeDir(profile);
    bad.close();
    await stopNode(a);
    await stopNode(b);
  }
});
