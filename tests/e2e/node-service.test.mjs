// The creator node as a service, end to end in headless Chromium: hls.js plays a track from
// the node's HLS playlist and trustless gateway; and a track uploaded to node A is replicated
// to B and C, A is stopped, and the browser plays the track from B. Runs only inside
// scripts/netns.sh.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";
import {
  HOST, ROOT, assertInNamespace, launchBrowser, nodeCli, removeDir, startNode, stopNode, tempDir, trackManifest, waitInPage,
} from "./harness.mjs";

assertInNamespace();

const work = tempDir("e2e-service");
const outDir = join(ROOT, "tests", "e2e", "out");
const results = {};
let mp3;

before(() => {
  mkdirSync(outDir, { recursive: true });
  mp3 = join(work, "default.mp3");
  nodeCli(["demo-track", "-o", mp3]);
});

after(() => {
  writeFileSync(join(outDir, "service-results.json"), JSON.stringify(results, null, 2));
  removeDir(work);
});

/** Serves a page that plays `playlist` with hls.js (from npm) into an <audio> element. */
function hlsPage(port, playlist) {
  const hls = readFileSync(join(ROOT, "node_modules", "hls.js", "dist", "hls.min.js"));
  const html = `<!doctype html><audio id="audio" controls></audio><script src="/hls.min.js"></script><script>
    const audio = document.getElementById("audio");
    window.hlsErrors = [];
    const hls = new Hls();
    hls.on(Hls.Events.ERROR, (_, d) => window.hlsErrors.push(d.details + (d.fatal ? " (fatal)" : "")));
    hls.loadSource(${JSON.stringify(playlist)});
    hls.attachMedia(audio);
    hls.on(Hls.Events.MANIFEST_PARSED, () => audio.play());
  </script>`;
  const server = createServer((req, res) => {
    if (req.url === "/hls.min.js") {
      res.writeHead(200, { "content-type": "text/javascript" }).end(hls);
    } else {
      res.writeHead(200, { "content-type": "text/html" }).end(html);
    }
  });
  return new Promise((resolve) => server.listen(port, HOST, () => resolve(server)));
}

test("hls.js plays a track from the node's playlist.m3u8 past 8 s", async () => {
  const data = join(work, "hls");
  mkdirSync(data);
  const track = nodeCli(["--data", data, "ingest", mp3]);
  const node = await startNode(data, 18160);
  const page = await hlsPage(18170, `${node.url}/tracks/${track}/playlist.m3u8`);
  const profile = tempDir("chromium");
  const browser = await launchBrowser(profile);
  try {
    const tab = await browser.newPage();
    await tab.goto(`http://${HOST}:18170/`);
    const started = Date.now();
    await waitInPage(tab, () => document.getElementById("audio").currentTime > 8, null, 40_000).catch(async (e) => {
      throw new Error(`${e.message}\nhls.js errors: ${await tab.evaluate(() => window.hlsErrors.join(", "))}`);
    });
    const state = await tab.evaluate(() => ({ t: document.getElementById("audio").currentTime, errors: window.hlsErrors }));
    results.hls = { currentTime: state.t, msToPast8s: Date.now() - started, errors: state.errors };
    assert.ok(state.t > 8);
    assert.ok(!state.errors.some((e) => e.includes("fatal")), `no fatal hls.js error: ${state.errors}`);
    const metrics = await (await fetch(`${node.url}/metrics`)).text();
    assert.match(metrics, /antiphon_served_bytes_total\{transport="http",protocol="gateway"\} [1-9]/);
  } finally {
    await browser.close();
    removeDir(profile);
    page.close();
    await stopNode(node);
  }
});

test("a track uploaded to A reaches B and C; with A stopped the browser plays it from B", async () => {
  // B and C keep A's tracks only because A is their origin; A takes uploads off loopback only
  // with a token.
  const aId = nodeCli(["--data", join(work, "a"), "peer-id"]);
  const b = await startNode(join(work, "b"), 18180, ["--origin", aId]);
  const c = await startNode(join(work, "c"), 18190, ["--origin", aId]);
  const replicaOf = (n) => n.peer.multiaddrs.find((a) => a.includes("/ws/"));
  const token = "e2e-upload-token";
  const a = await startNode(join(work, "a"), 18200, ["--replica", replicaOf(b), "--replica", replicaOf(c), "--upload-token", token]);
  const profile = tempDir("chromium");
  let browser;
  try {
    const uploadStarted = Date.now();
    const refused = await fetch(`${a.url}/tracks?filename=default.mp3`, { method: "POST", body: readFileSync(mp3) });
    assert.equal(refused.status, 401, "no upload without the token");
    const res = await fetch(`${a.url}/tracks?filename=default.mp3&title=Replicated`, {
      method: "POST", body: readFileSync(mp3), headers: { Authorization: `Bearer ${token}` } });
    assert.equal(res.status, 201, await res.clone().text());
    const { cid } = await res.json();
    const uploadedMs = Date.now() - uploadStarted;
    const reached = {};
    for (const [name, node] of [["b", b], ["c", c]]) {
      const deadline = Date.now() + 30_000;
      while ((await fetch(`${node.url}/tracks/${cid}`)).status !== 200) {
        assert.ok(Date.now() < deadline, `the track reached ${name} within 30 s`);
        await new Promise((r) => setTimeout(r, 50));
      }
      reached[name] = Date.now() - uploadStarted;
    }
    let confirmed = 0;
    for (let i = 0; i < 100 && confirmed < 2; i++) {
      confirmed = (await trackManifest(a.url, cid)).replicas.filter((r) => r.confirmed).length;
      if (confirmed < 2) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(confirmed, 2, "A records both replicas' confirmations");
    results.replication = { uploadMs: uploadedMs, reachedMs: reached, sample: await trackManifest(a.url, cid) };
    writeFileSync(join(outDir, "playlist-sample.m3u8"), await (await fetch(`${a.url}/tracks/${cid}/playlist.m3u8`)).text());

    await stopNode(a);
    browser = await launchBrowser(profile);
    const page = await browser.newPage();
    await page.goto(`${b.url}/?track=${cid}&autoplay=1`);
    await waitInPage(page, () => document.getElementById("audio").currentTime > 8, null, 40_000);
    const state = await page.evaluate(() => ({ transport: window.antiphon.transport, errors: window.antiphon.errors,
      stats: window.antiphon.player.stats() }));
    assert.deepEqual(state.errors, []);
    assert.ok(state.stats.appended.length >= 2);
    const metrics = await (await fetch(`${b.url}/metrics`)).text();
    writeFileSync(join(outDir, "metrics-after-playback.txt"), metrics);
    assert.match(metrics, new RegExp(`antiphon_served_bytes_total\\{transport="${state.transport}",protocol="bitswap"\\} [1-9]`));
    assert.match(metrics, /antiphon_replications_total\{result="ok"\} 1/);
    results.playedFromReplica = { transport: state.transport, appended: state.stats.appended.length };
  } finally {
    await browser?.close();
    removeDir(profile);
    await stopNode(a);
    await stopNode(b);
    await stopNode(c);
  }
});
