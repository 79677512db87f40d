// Listeners carry the load: four listeners join a track a few seconds apart, the creator node
// up the whole time, each page with its own wasm peer, through the documented API
// (`Peer.start` -> `attach` -> `load`). Later listeners find earlier ones through the node's
// routing, and the scheduler asks a browser first whenever it can still meet the segment's
// deadline (`antiphon_core::schedule`). Before it did, every byte of every listener came from
// the node. Each listener signs a receipt for every block a browser sent it, and the node's
// per-server totals must match what the listeners' `provenance()` says browsers sent. Runs
// only inside scripts/netns.sh.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { assertInNamespace, ingestDemoTrack, launchBrowser, removeDir, ROOT, startNode, stopNode, tempDir, waitInPage } from "./harness.mjs";

assertInNamespace();

const LISTENERS = 4;
const JOIN_EVERY_MS = 3000;
/** Share of bytes listeners 2..4 must each get from browsers. */
const MIN_PEER_SHARE = 0.5;

async function listen({ leave, port }) {
  const work = tempDir("e2e-offload");
  const outDir = join(ROOT, "tests", "e2e", "out");
  mkdirSync(outDir, { recursive: true });
  const { data, track } = ingestDemoTrack(work, ["--seconds", "48"]);
  const node = await startNode(data, port);
  const profile = tempDir("chromium");
  const browser = await launchBrowser(profile);
  const pages = [];
  const explain = (e) => {
    throw new Error(`${e.message}\n${pages.map((p, i) => `listener ${i + 1} console:\n${p.lines.slice(-25).join("\n")}`).join("\n")}`);
  };
  try {
    for (let i = 0; i < LISTENERS; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, JOIN_EVERY_MS));
      const page = await browser.newPage();
      page.lines = [];
      page.on("console", (m) => page.lines.push(m.text()));
      pages.push(page);
      await page.goto(`${node.url}/?track=${track}`);
      await waitInPage(page, () => window.antiphon && window.antiphon.Peer, null, 30_000).catch(explain);
      await page.evaluate(async ({ url, track }) => {
        const peer = await window.antiphon.Peer.start({ creatorNodes: [url] });
        const audio = document.getElementById("audio");
        const player = peer.attach(audio);
        window.listener = { peer, player, events: [] };
        player.onEvent((e) => window.listener.events.push(e));
        await player.load(track);
        await audio.play();
      }, { url: node.url, track }).catch(explain);
    }
    // With `leave`, once every later listener has found a browser, the first listener leaves
    // mid-track, while the others may be fetching from it.
    const [first, ...rest] = pages;
    if (leave) {
      for (const page of rest) {
        await waitInPage(page, () => window.listener.peer.browsers.length > 0, null, 30_000).catch(explain);
      }
    }
    const firstStats = await first.evaluate(() => {
      const stats = window.listener.player.stats();
      return { peerId: window.listener.peer.localPeerId, bytesBySourceKind: stats.bytesBySourceKind, rebuffers: stats.rebuffers, played: document.getElementById("audio").currentTime };
    });
    if (leave) {
      assert.ok(firstStats.played < 40, `the first listener is mid-track (${firstStats.played} s)`);
      await first.close();
    }
    // Each other listener plays on until its whole track is appended.
    for (const page of rest) {
      await waitInPage(page, () => window.listener.player.stats().segments.every((s) => s === "appended"), null, 90_000).catch(explain);
    }
    const listeners = [{ ...firstStats, browsers: [], segments: [], left: true }];
    for (const page of rest) {
      listeners.push(await page.evaluate(() => {
        const stats = window.listener.player.stats();
        return {
          peerId: window.listener.peer.localPeerId,
          browsers: window.listener.peer.browsers.map((b) => b.peerId),
          bytesBySourceKind: stats.bytesBySourceKind,
          rebuffers: stats.rebuffers,
          timeToFirstAudioMs: stats.timeToFirstAudioMs,
          segments: window.listener.events.filter((e) => e.type === "segment").map((e) => `${e.index}:${e.sourceKind}`),
        };
      }));
    }
    const share = (l) => l.bytesBySourceKind.peer / (l.bytesBySourceKind.node + l.bytesBySourceKind.peer + l.bytesBySourceKind.gateway);
    writeFileSync(join(outDir, `offload-${leave ? "leave" : "stay"}.json`), JSON.stringify(listeners.map((l) => ({ ...l, peerShare: share(l) })), null, 2));
    const report = JSON.stringify(listeners.map((l) => ({ share: share(l).toFixed(2), segments: l.segments.join(" "), browsers: l.browsers.length })));
    for (const [i, l] of listeners.entries()) {
      assert.equal(l.rebuffers, 0, `listener ${i + 1} rebuffered: ${report}`);
      if (i > 0 && !leave) assert.ok(share(l) >= MIN_PEER_SHARE, `listener ${i + 1} got ${(100 * share(l)).toFixed(0)}% from browsers: ${report}`);
    }
    if (!leave) await checkReceipts(pages, node.url);
  } finally {
    await browser.close();
    removeDir(profile);
    await stopNode(node);
    removeDir(work);
  }
}

/**
 * Every listener posts its receipts; the node's per-server totals then equal, server by server,
 * the bytes the listeners' `provenance()` says each browser sent them.
 */
async function checkReceipts(pages, nodeUrl) {
  const ids = await Promise.all(pages.map((p) => p.evaluate(() => window.listener.peer.localPeerId)));
  const expected = {};
  for (const page of pages) {
    const counts = await page.evaluate(async () => {
      await window.listener.peer.flushReceipts();
      const settled = () => {
        const r = window.listener.peer.receipts;
        return r.pending === 0 && r.accepted + r.refused + r.dropped === r.signed;
      };
      for (let i = 0; i < 100 && !settled(); i++) await new Promise((r) => setTimeout(r, 100));
      return window.listener.peer.receipts;
    });
    const provenance = await page.evaluate(() => window.listener.player.provenance());
    const fromBrowsers = provenance.filter((e) => ids.includes(e.from));
    assert.equal(counts.signed, fromBrowsers.length, `one receipt per block a browser sent: ${JSON.stringify(counts)}`);
    assert.equal(counts.accepted, counts.signed, `the node took every receipt: ${JSON.stringify(counts)}`);
    for (const e of fromBrowsers) expected[e.from] = (expected[e.from] ?? 0) + e.bytes;
  }
  assert.ok(Object.keys(expected).length > 0, "browsers served something");
  const { servers } = await (await fetch(`${nodeUrl}/receipts`)).json();
  const credited = Object.fromEntries(servers.map((s) => [s.peerId, s.bytes]));
  assert.deepEqual(credited, expected, "the node's totals are what the listeners verified from each browser");
  writeFileSync(join(ROOT, "tests", "e2e", "out", "offload-receipts.json"), JSON.stringify({ servers }, null, 2));
}

test("later listeners get most of their bytes from earlier listeners' browsers, with no rebuffer", () => listen({ leave: false, port: 18740 }));

test("a serving browser that leaves mid-track costs its listeners no rebuffer", () => listen({ leave: true, port: 18750 }));
