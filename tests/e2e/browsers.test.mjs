// Browser to browser: a listener's page that has played a track serves it to a later listener
// over a direct WebRTC connection, signalled through the creator node's circuit relay
// (libp2p/specs webrtc/webrtc.md). The creator node is then stopped, so every byte the later
// listener plays can only have come from the first browser. The first test connects by
// address; the second finds the first browser through the node's delegated routing, as a dapp
// gets it without doing anything. Runs only inside scripts/netns.sh.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { assertInNamespace, ingestDemoTrack, launchBrowser, removeDir, ROOT, startNode, startServingListener, stopNode, tempDir, trackManifest, waitInPage } from "./harness.mjs";

assertInNamespace();

// Records every RTCPeerConnection and RTCDataChannel the page makes or receives.
const RECORD_WEBRTC = () => {
  window.recorded = { pcs: [], channels: [] };
  const Real = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Real {
    constructor(...args) {
      super(...args);
      window.recorded.pcs.push(this);
      this.addEventListener("datachannel", (e) => window.recorded.channels.push(e.channel));
    }
    createDataChannel(...args) {
      const channel = super.createDataChannel(...args);
      window.recorded.channels.push(channel);
      return channel;
    }
  };
};

async function openPage(browser, url) {
  const page = await browser.newPage();
  const lines = [];
  page.on("console", (m) => lines.push(m.text()));
  await page.addInitScript(RECORD_WEBRTC);
  await page.goto(url);
  await waitInPage(page, () => window.antiphon && window.antiphon.Peer, null, 30_000);
  page.consoleTail = () => lines.slice(-40).join("\n");
  return page;
}

test("a browser that played a track serves it to another browser directly over WebRTC; the creator node is gone", async () => {
  const work = tempDir("e2e-browsers");
  const outDir = join(ROOT, "tests", "e2e", "out");
  mkdirSync(outDir, { recursive: true });
  const { data, track } = ingestDemoTrack(work);
  const node = await startNode(data, 18400);
  const profile = tempDir("chromium");
  const browser = await launchBrowser(profile);
  const pages = [];
  const explain = (e) => {
    throw new Error(`${e.message}\n${pages.map((p, i) => `page ${i} console:\n${p.consoleTail()}`).join("\n")}`);
  };
  try {
    // The first listener plays the whole track (fetching it all at once) over WebSocket.
    const first = await openPage(browser, `${node.url}/?track=${track}`);
    pages.push(first);
    const { address, ...served } = await startServingListener(first, node.url, track).catch(explain);
    assert.match(address, new RegExp(`/p2p-circuit/webrtc/p2p/${served.peerId}$`));

    // The later listener connects to the first browser, through the node's relay.
    const later = await openPage(browser, `${node.url}/?track=${track}`);
    pages.push(later);
    const connected = await later.evaluate(async ({ url, address }) => {
      const peer = await window.antiphon.Peer.start({ creatorNodes: [url], transport: "websocket" });
      window.laterPeer = peer;
      const refused = [];
      for (const bad of ["/ip4/10.200.0.1/tcp/1/ws", address.replace(/p2p\/[^/]+$/, "p2p/12D3KooWGzxzKZYveHXtpG6AsrUJBcWxHBFS2HsEoGTxrMLvKXtf")]) {
        try {
          await peer.connectBrowser(bad);
          refused.push("accepted");
        } catch (e) {
          refused.push(e.code);
        }
      }
      const startedAt = performance.now();
      const id = await peer.connectBrowser(address);
      return { id, ms: performance.now() - startedAt, refused, browsers: peer.browsers };
    }, { url: node.url, address }).catch(explain);
    assert.equal(connected.id, served.peerId);
    assert.deepEqual(connected.refused, ["INVALID_ADDRESS", "DIAL_FAILED"]);
    assert.deepEqual(connected.browsers.map((b) => b.peerId), [served.peerId]);

    // No creator node from here on: what plays can only come from the first browser.
    await stopNode(node);
    await later.evaluate(async (track) => {
      const audio = document.getElementById("audio");
      const player = window.laterPeer.attach(audio, { windowSecs: 600 });
      window.laterPlayer = player;
      window.laterEvents = [];
      player.onEvent((e) => window.laterEvents.push(e));
      await player.load(track);
      await audio.play();
    }, track).catch(explain);
    await waitInPage(later, () => document.getElementById("audio").currentTime > 3, null, 30_000).catch(explain);
    const played = await later.evaluate(() => ({
      stats: window.laterPlayer.stats(),
      provenance: window.laterPlayer.provenance(),
      segments: window.laterEvents.filter((e) => e.type === "segment").map((e) => ({ index: e.index, kind: e.sourceKind, peer: e.peer })),
      pcs: window.recorded.pcs.map((pc) => pc.connectionState),
    }));
    assert.equal(played.stats.rebuffers, 0);
    assert.ok(played.segments.length >= 1, "no segment verified");
    assert.ok(played.segments.every((s) => s.kind === "peer" && s.peer === served.peerId), JSON.stringify(played.segments));
    assert.ok(played.provenance.length >= 2, "the manifest and at least one segment");
    assert.ok(played.provenance.every((p) => p.from === served.peerId), JSON.stringify(played.provenance.slice(0, 3)));
    const byKind = played.stats.bytesBySourceKind;
    assert.deepEqual(byKind, { node: 0, gateway: 0, peer: played.stats.bytes }, "every byte from the browser");
    // The node connection was WebSocket: the one peer connection is the browser-to-browser one.
    assert.deepEqual(played.pcs, ["connected"]);

    // Teardown closes the peer connection and every data channel, on this side at once and on
    // the serving side once it notices.
    await later.evaluate(async () => {
      window.laterPlayer.destroy();
      await window.laterPeer.close();
    });
    const closed = await waitInPage(later, () => window.recorded.pcs.every((pc) => pc.connectionState === "closed") && window.recorded.channels.every((c) => c.readyState === "closed") && window.recorded.channels.length, null, 5_000).catch(explain);
    const closedAt = Date.now();
    const servingSide = await waitInPage(first, () => {
      const open = window.recorded.channels.filter((c) => c.readyState !== "closed").length;
      const pcs = window.recorded.pcs.map((pc) => pc.connectionState);
      return open === 0 && pcs.every((s) => s === "closed") && { channels: window.recorded.channels.length, pcs };
    }, null, 10_000).catch(explain);
    servingSide.closedAfterMs = Date.now() - closedAt;
    writeFileSync(join(outDir, "browsers-results.json"), JSON.stringify({ connectMs: connected.ms, played, laterChannels: closed, servingSide }, null, 2));
  } finally {
    await browser.close();
    removeDir(profile);
    await stopNode(node);
    removeDir(work);
  }
});

test("a later listener finds an earlier one through the node's routing and plays on from it when the node stops", async () => {
  const work = tempDir("e2e-discovery");
  const outDir = join(ROOT, "tests", "e2e", "out");
  const { data, track } = ingestDemoTrack(work);
  const node = await startNode(data, 18410);
  const profile = tempDir("chromium");
  const browser = await launchBrowser(profile);
  const pages = [];
  const explain = (e) => {
    const nodeLog = node.logs().split("\n").filter((l) => /browser|provide|disconnect|connected/i.test(l)).slice(-30).join("\n");
    throw new Error(`${e.message}\n${pages.map((p, i) => `page ${i} console:\n${p.consoleTail()}`).join("\n")}\nnode:\n${nodeLog}`);
  };
  try {
    const first = await openPage(browser, `${node.url}/?track=${track}`);
    pages.push(first);
    const { peerId: firstId } = await startServingListener(first, node.url, track).catch(explain);
    await waitInPage(first, () => window.servingPlayer.stats().segments.every((s) => s === "appended"), null, 30_000).catch(explain);

    // The node lists the browser as a provider of the track and of its last segment.
    const manifest = await trackManifest(node.url, track);
    const lastSegment = manifest.segments.at(-1).cid;
    const listed = async (cid) => {
      const r = await fetch(`${node.url}/routing/v1/providers/${cid}`);
      return r.ok ? (await r.json()).Providers.find((p) => p.ID === firstId) : undefined;
    };
    let record;
    for (let i = 0; i < 100 && !(record = await listed(track)); i++) await new Promise((r) => setTimeout(r, 100));
    assert.ok(record, "the node never listed the browser as a provider of the track");
    assert.ok(record.Addrs[0].endsWith("/p2p-circuit/webrtc"), record.Addrs[0]);
    assert.deepEqual(record.Protocols, ["transport-bitswap"]);
    // Announcements go out every 2 s while what is held changes: the track may be listed from
    // one sent before the last segment was appended.
    let segmentRecord;
    for (let i = 0; i < 100 && !(segmentRecord = await listed(lastSegment)); i++) await new Promise((r) => setTimeout(r, 100));
    assert.ok(segmentRecord, "the browser is never listed for the last segment");

    // The later listener is given only the node; it finds the first browser by itself.
    const later = await openPage(browser, `${node.url}/?track=${track}`);
    pages.push(later);
    await later.evaluate(async ({ url, track }) => {
      const peer = await window.antiphon.Peer.start({ creatorNodes: [url], transport: "websocket" });
      const audio = document.getElementById("audio");
      const player = peer.attach(audio, { windowSecs: 12 });
      Object.assign(window, { laterPeer: peer, laterPlayer: player, laterEvents: [] });
      player.onEvent((e) => window.laterEvents.push({ ...e, atMs: performance.now() }));
      await player.load(track);
      audio.playbackRate = 4;
      await audio.play();
    }, { url: node.url, track }).catch(explain);
    const found = await waitInPage(later, () => window.laterPeer.browsers.length && window.laterPeer.browsers, null, 15_000).catch(explain);
    assert.deepEqual(found.map((b) => b.peerId), [firstId]);

    // The node stops; the rest of the track comes from the first browser. The mark is taken
    // once the node's process has exited: a want it was answering while it shut down may still
    // arrive from it, which is no fault of the routing.
    await stopNode(node);
    const stoppedAt = await later.evaluate(() => performance.now());
    await waitInPage(later, () => document.getElementById("audio").ended, null, 60_000).catch(explain);
    const played = await later.evaluate(() => ({
      stats: window.laterPlayer.stats(),
      segments: window.laterEvents.filter((e) => e.type === "segment").map((e) => ({ index: e.index, kind: e.sourceKind, atMs: e.atMs })),
    }));
    const afterStop = played.segments.filter((s) => s.atMs > stoppedAt);
    writeFileSync(join(outDir, "discovery-results.json"), JSON.stringify({ played, afterStop }, null, 2));
    assert.equal(played.stats.rebuffers, 0);
    assert.equal(played.segments.length, manifest.segments.length);
    assert.ok(afterStop.length >= 3, `only ${afterStop.length} segments after the node stopped`);
    assert.ok(afterStop.every((s) => s.kind === "peer"), JSON.stringify(afterStop));

    // The first listener leaves: the later one forgets it (and could connect to it again).
    const leftAt = Date.now();
    await first.close();
    await waitInPage(later, () => window.laterPeer.browsers.length === 0, null, 30_000).catch(explain);
    writeFileSync(join(outDir, "discovery-results.json"), JSON.stringify({ played, afterStop, forgottenAfterMs: Date.now() - leftAt }, null, 2));
  } finally {
    await browser.close();
    removeDir(profile);
    await stopNode(node);
    removeDir(work);
  }
});
