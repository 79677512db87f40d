// The player's sources, end to end in headless Chromium: with an HTTP gateway configured (a
// second creator node's trustless gateway), playback survives the creator node being stopped
// mid-track without a rebuffer; and a gateway that corrupts what it serves is banned, its
// blocks fetched elsewhere, and playback goes on. Runs only inside scripts/netns.sh.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, statSync, writeFileSync } from "node:fs";
import { createServer, request } from "node:http";
import { join } from "node:path";
import { assertInNamespace, HOST, launchBrowser, nodeCli, openPlayer, removeDir, ROOT, startNode, stopNode, tempDir, trackManifest, waitInPage } from "./harness.mjs";

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

test("with a gateway configured, stopping the creator node mid-playback causes no rebuffer", async () => {
  const a = await startNode(join(work, "a"), 18230);
  const b = await startNode(join(work, "b"), 18240);
  const profile = tempDir("chromium");
  const browser = await launchBrowser(profile);
  try {
    // Twice the speed, so the 64 s track plays in 32 s (deadlines come twice as fast, too).
    const page = await openPlayer(browser, `${a.url}/?track=${track}&autoplay=1&rate=2&gateway=${encodeURIComponent(b.url)}`);
    const segments = (await trackManifest(a.url, track)).segments.length;
    await waitInPage(page, () => document.getElementById("audio").currentTime > 2, null, 20_000);
    await stopNode(a);
    const stoppedAt = await page.evaluate(() => document.getElementById("audio").currentTime);
    await waitInPage(page, () => window.antiphon.player.stats().ended && document.getElementById("audio").ended, null, 60_000);
    const state = await page.evaluate(() => ({
      rebuffers: window.antiphon.rebuffers,
      rebufferTimes: window.antiphon.rebufferTimes,
      appendedAt: window.antiphon.events.filter((e) => e.type === "segment").map((e) => e.index),
      log: document.getElementById("log").innerText.split("\n").slice(0, 40),
      buffered: (() => { const b = document.getElementById("audio").buffered; return Array.from({ length: b.length }, (_, i) => [b.start(i), b.end(i)]); })(),
      errors: window.antiphon.errors,
      segments: window.antiphon.events.filter((e) => e.type === "segment").map((e) => ({ index: e.index, kind: e.sourceKind })),
      failed: window.antiphon.events.filter((e) => e.type === "sourceFailed").length,
      provenance: window.antiphon.player.provenance(),
      currentTime: document.getElementById("audio").currentTime,
      stats: window.antiphon.player.stats(),
      duration: document.getElementById("audio").duration,
    }));
    results.nodeStopped = { stoppedAt, rebuffers: state.rebuffers, rebufferTimes: state.rebufferTimes, stats: state.stats, buffered: state.buffered,
      segments: state.segments, sourceFailures: state.failed, log: state.log };
    assert.deepEqual(state.errors, []);
    assert.equal(state.rebuffers, 0, "no rebuffer");
    // stats() agrees with the element.
    assert.equal(state.stats.rebuffers, 0);
    assert.ok(state.stats.timeToFirstAudioMs > 0);
    assert.ok(Math.abs(state.stats.durationSecs - state.duration) < 0.1, `${state.stats.durationSecs} vs ${state.duration}`);
    assert.equal((state.stats.bytesBySourceKind.node || 0) + (state.stats.bytesBySourceKind.gateway || 0), state.stats.bytes);
    assert.ok(state.stats.bytesBySourceKind.gateway > 0);
    assert.equal(state.segments.length, segments, "every segment was appended");
    assert.ok(state.segments.some((s) => s.kind === "gateway"), "some segments came from the gateway");
    assert.ok(state.currentTime > 63);
    assert.ok(state.provenance.length >= state.segments.length && state.provenance.every((p) => p.bytes > 0 && p.from));
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
    // The demo page mid-playback: the strip coloured by state and source, bytes by source,
    // the banned gateway. (Taken here, not in the rebuffer test: a screenshot can stall media.)
    await waitInPage(page, () => document.getElementById("audio").currentTime > 12, null, 30_000);
    const shot = join(outDir, "demo-mid-playback.png");
    await page.screenshot({ path: shot, fullPage: true });
    assert.ok(statSync(shot).size > 10_000, "the screenshot is not empty");
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
    assert.equal(state.stats.appended.length, (await trackManifest(a.url, track)).segments.length, "every segment played, from the node");
    assert.ok(state.kinds.every((k) => k === "node"));
  } finally {
    await browser.close();
    removeDir(profile);
    bad.close();
    await stopNode(a);
    await stopNode(b);
  }
});

test("a seek into unbuffered audio fetches the target first and resumes there; seeking back works", async () => {
  const a = await startNode(join(work, "a"), 18280);
  const profile = tempDir("chromium");
  const browser = await launchBrowser(profile);
  try {
    const page = await openPlayer(browser, `${a.url}/?track=${track}&autoplay=1`);
    await waitInPage(page, () => document.getElementById("audio").currentTime > 1, null, 20_000);
    const manifest = await trackManifest(a.url, track);
    const holding = (secs) => manifest.segments.findLastIndex((s) => s.start_secs <= secs);
    const target = holding(50);
    const before = await page.evaluate(() => window.antiphon.player.stats().segments);
    assert.equal(before[target], "pending", "50 s is beyond the 30 s window: not fetched yet");
    const seekStarted = Date.now();
    await page.evaluate(() => { document.getElementById("audio").currentTime = 50; });
    await waitInPage(page, () => {
      const a = document.getElementById("audio");
      return !a.seeking && a.currentTime > 50.2;
    }, null, 20_000);
    const forward = await page.evaluate(() => ({
      t: document.getElementById("audio").currentTime,
      appendedAfter: window.antiphon.events.filter((e) => e.type === "segment").map((e) => e.index),
    }));
    const resumeMs = Date.now() - seekStarted;
    // Resumed at the target, not at its segment's start or anywhere else.
    assert.ok(forward.t >= 50 && forward.t < 50 + 6, `resumed at ${forward.t}`);
    // The segment holding 50 s was the first one appended past the window the player had
    // before the seek (which reaches 31 s, short of 40 s).
    const firstAfterSeek = forward.appendedAfter.find((i) => i >= holding(40));
    assert.equal(firstAfterSeek, target);
    await page.evaluate(() => { document.getElementById("audio").currentTime = 10; });
    await waitInPage(page, () => {
      const a = document.getElementById("audio");
      return !a.seeking && a.currentTime > 10.2;
    }, null, 20_000);
    const back = await page.evaluate(() => ({ t: document.getElementById("audio").currentTime, errors: window.antiphon.errors }));
    assert.ok(back.t >= 10 && back.t < 16, `resumed at ${back.t}`);
    assert.deepEqual(back.errors, []);
    results.seek = { forwardResumedAt: forward.t, resumeMs, backResumedAt: back.t, appended: forward.appendedAfter };
  } finally {
    await browser.close();
    removeDir(profile);
    await stopNode(a);
  }
});
