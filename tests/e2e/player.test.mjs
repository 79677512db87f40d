// The player as a listener meets it, end to end in headless Chromium: the default track plays
// from start to end at normal speed without a rebuffer while one of three configured creator
// nodes is unreachable; a creator node stopped mid-playback is replaced by another without a
// rebuffer; and tearing the player and peer down leaves no connection, data channel or object
// URL open. Runs only inside scripts/netns.sh.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { assertInNamespace, HOST, launchBrowser, nodeCli, openPlayer, removeDir, ROOT, startNode, stopNode, tempDir, trackManifest, waitInPage } from "./harness.mjs";

assertInNamespace();

const work = tempDir("e2e-player");
const outDir = join(ROOT, "tests", "e2e", "out");
const results = {};
let track;

before(() => {
  mkdirSync(outDir, { recursive: true });
  const mp3 = join(work, "default.mp3");
  nodeCli(["demo-track", "-o", mp3]);
  for (const name of ["a", "b"]) {
    mkdirSync(join(work, name));
    track = nodeCli(["--data", join(work, name), "ingest", mp3]);
  }
});

after(() => {
  writeFileSync(join(outDir, "player-results.json"), JSON.stringify(results, null, 2));
  removeDir(work);
});

/** What the page, the player and the element say once playback is over. */
function finalState(page) {
  return page.evaluate(() => {
    const audio = document.getElementById("audio");
    const b = audio.buffered;
    return {
      rebuffers: window.antiphon.rebuffers,
      rebufferTimes: window.antiphon.rebufferTimes,
      log: document.getElementById("log").innerText.split("\n").slice(0, 60),
      loadToPlayingMs: window.antiphon.loadToPlayingMs,
      errors: window.antiphon.errors,
      segments: window.antiphon.events.filter((e) => e.type === "segment").map((e) => ({ index: e.index, peer: e.peer, kind: e.sourceKind, bytes: e.bytes })),
      nodes: window.antiphon.peer.creatorNodes,
      stats: window.antiphon.player.stats(),
      provenance: window.antiphon.player.provenance(),
      element: { currentTime: audio.currentTime, duration: audio.duration, ended: audio.ended, paused: audio.paused,
        buffered: Array.from({ length: b.length }, (_, i) => [b.start(i), b.end(i)]) },
    };
  });
}

test("the default track plays start to end at 1x with 0 rebuffers; one of three creator nodes is down", async () => {
  const a = await startNode(join(work, "a"), 18310);
  const b = await startNode(join(work, "b"), 18320);
  // Nothing listens here: its /peer cannot be fetched.
  const dead = `http://${HOST}:18339`;
  const profile = tempDir("chromium");
  const browser = await launchBrowser(profile);
  try {
    const nodes = [a.url, dead, b.url].map((u) => `node=${encodeURIComponent(u)}`).join("&");
    const page = await openPlayer(browser, `${a.url}/?track=${track}&autoplay=1&${nodes}`);
    // The budget bounds a hung test, not the machine's speed (a starved VM plays slowly).
    await waitInPage(page, () => document.getElementById("audio").ended, null, 200_000).catch(async (e) => {
      const { provenance, ...state } = await finalState(page);
      throw new Error(`${e.message}\nstate: ${JSON.stringify(state)}`);
    });
    const manifest = await trackManifest(a.url, track);
    const state = await finalState(page);
    results.fullPlay = { rebuffers: state.rebuffers, stats: state.stats, element: state.element, nodes: state.nodes };
    assert.deepEqual(state.errors, []);
    assert.equal(state.rebuffers, 0, "the page saw no rebuffer");
    // The peer's view of its creator nodes.
    assert.deepEqual(state.nodes.map((n) => n.state), ["connected", "failed", "connected"]);
    assert.equal(state.nodes[1].code, "HTTP_FAILED");
    assert.deepEqual(new Set([state.nodes[0].peerId, state.nodes[2].peerId]), new Set([a.peer.peer_id, b.peer.peer_id]));
    // stats() agrees with the element.
    const { stats, element } = state;
    assert.equal(stats.rebuffers, 0);
    assert.equal(stats.rebufferMs, 0);
    assert.ok(stats.ended && element.ended);
    assert.ok(Math.abs(stats.durationSecs - element.duration) < 0.1, `${stats.durationSecs} vs ${element.duration}`);
    assert.ok(element.currentTime > element.duration - 0.2, `ended at ${element.currentTime} of ${element.duration}`);
    assert.deepEqual(element.buffered.length, 1, "one contiguous buffered range");
    assert.ok(element.buffered[0][0] < 0.05 && element.buffered[0][1] > element.duration - 0.1);
    assert.equal(stats.bufferedAheadSecs < 0.2, true, `at the end ${stats.bufferedAheadSecs} s are ahead`);
    assert.ok(Math.abs(stats.timeToFirstAudioMs - state.loadToPlayingMs) < 100, `${stats.timeToFirstAudioMs} vs ${state.loadToPlayingMs}`);
    assert.equal(stats.mediaSource, "MediaSource");
    assert.equal(stats.segments.length, manifest.segments.length);
    assert.ok(stats.segments.every((s) => s === "appended"));
    const total = manifest.segments.reduce((n, s) => n + s.bytes, 0);
    assert.equal(stats.bytes, total, "every segment's bytes, once");
    assert.equal(stats.bytesBySourceKind.node, total, "all from creator nodes");
    for (const peer of Object.keys(stats.bytesBySource)) assert.ok([a.peer.peer_id, b.peer.peer_id].includes(peer), peer);
    assert.equal(state.segments.length, stats.segments.length);
    assert.ok(state.provenance.every((p) => [a.peer.peer_id, b.peer.peer_id].includes(p.from)));
  } finally {
    await browser.close();
    removeDir(profile);
    await stopNode(a);
    await stopNode(b);
  }
});

test("a creator node stopped mid-playback is replaced by another creator node without a rebuffer", async () => {
  const a = await startNode(join(work, "a"), 18340);
  const b = await startNode(join(work, "b"), 18350);
  const profile = tempDir("chromium");
  const browser = await launchBrowser(profile);
  try {
    const nodes = [a.url, b.url].map((u) => `node=${encodeURIComponent(u)}`).join("&");
    // A 20 s window at twice the speed (10 s of wall time): 7 of the 11 segments are fetched
    // after A has gone. A smaller window leaves too little slack for the 1-4 s SCTP
    // retransmission stalls that WebRTC-direct still suffers now and then (BENCHMARKS.md).
    const page = await openPlayer(browser, `${a.url}/?track=${track}&autoplay=1&rate=2&window=20&${nodes}`);
    await waitInPage(page, () => document.getElementById("audio").currentTime > 2, null, 20_000);
    await stopNode(a);
    const stoppedAt = Date.now();
    await waitInPage(page, () => document.getElementById("audio").ended, null, 120_000);
    const state = await finalState(page);
    results.nodeReplaced = { rebuffers: state.rebuffers, rebufferTimes: state.rebufferTimes, log: state.log, stats: state.stats, segments: state.segments, stoppedAfterMs: Date.now() - stoppedAt };
    assert.deepEqual(state.errors, []);
    assert.equal(state.rebuffers, 0, "no rebuffer");
    assert.equal(state.stats.rebuffers, 0);
    assert.ok(state.stats.ended);
    assert.ok(state.segments.length === state.stats.segments.length);
    assert.ok((state.stats.bytesBySource[b.peer.peer_id] || 0) > 0, "B served segments");
    const last = state.segments[state.segments.length - 1];
    assert.equal(last.peer, b.peer.peer_id, "the last segment came from B");
    // The relay reservation that made this browser reachable moves from A to B once the
    // browser knows its connection to A is gone (WebRTC's ICE gives up within about 30 s).
    const onB = `/p2p/${b.peer.peer_id}/p2p-circuit/webrtc/`;
    const serving = await waitInPage(page, (onB) => {
      const addresses = window.antiphon.peer.addresses;
      return addresses.length === 1 && addresses[0].includes(onB) && addresses;
    }, onB, 45_000).catch(async (e) => {
      const now = await page.evaluate(() => ({ addresses: window.antiphon.peer.addresses, error: window.antiphon.peer.servingError }));
      throw new Error(`the reservation did not move to B: ${JSON.stringify(now)} (${e.message})`);
    });
    assert.equal(serving.length, 1);
  } finally {
    await browser.close();
    removeDir(profile);
    await stopNode(a);
    await stopNode(b);
  }
});

/** Records every RTCPeerConnection, RTCDataChannel, WebSocket and revoked object URL of the page. */
function trackResources() {
  const seen = (window.__resources = { pcs: [], channels: [], sockets: [], revoked: [] });
  const PC = window.RTCPeerConnection;
  window.RTCPeerConnection = function (...args) {
    const pc = new PC(...args);
    seen.pcs.push(pc);
    const create = pc.createDataChannel.bind(pc);
    pc.createDataChannel = (...a) => { const ch = create(...a); seen.channels.push(ch); return ch; };
    pc.addEventListener("datachannel", (e) => seen.channels.push(e.channel));
    return pc;
  };
  window.RTCPeerConnection.prototype = PC.prototype;
  Object.setPrototypeOf(window.RTCPeerConnection, PC);
  const WS = window.WebSocket;
  window.WebSocket = function (...args) { const ws = new WS(...args); seen.sockets.push(ws); return ws; };
  window.WebSocket.prototype = WS.prototype;
  Object.setPrototypeOf(window.WebSocket, WS);
  const revoke = URL.revokeObjectURL.bind(URL);
  URL.revokeObjectURL = (u) => { seen.revoked.push(u); revoke(u); };
}

for (const [transport, port] of [["webrtc-direct", 18360], ["websocket", 18370]]) {
  test(`destroy and close leave nothing open (${transport})`, async () => {
    const a = await startNode(join(work, "a"), port);
    const profile = tempDir("chromium");
    const browser = await launchBrowser(profile);
    try {
      await browser.addInitScript(trackResources);
      const page = await openPlayer(browser, `${a.url}/?track=${track}&autoplay=1&transport=${transport}`);
      await waitInPage(page, () => document.getElementById("audio").currentTime > 1, null, 20_000);
      const metric = async () => {
        const text = await (await fetch(`${a.url}/metrics`)).text();
        const m = text.match(new RegExp(`antiphon_connected_peers\\{transport="${transport}"\\} (\\d+)`));
        return m ? Number(m[1]) : 0;
      };
      const connectedBefore = await metric();
      const after = await page.evaluate(async (cid) => {
        const audio = document.getElementById("audio");
        const objectUrl = audio.src;
        window.antiphon.player.destroy();
        await window.antiphon.peer.close();
        // The pump lets go of the media source at its next turn (at most 250 ms).
        await new Promise((r) => setTimeout(r, 1000));
        let code = null;
        try { await window.antiphon.peer.cat(cid); } catch (e) { code = e.code; }
        const r = window.__resources;
        return {
          src: audio.getAttribute("src"), objectUrl, revoked: r.revoked, track: window.antiphon.player.stats().track, catAfterClose: code,
          pcs: r.pcs.map((pc) => pc.signalingState), channels: r.channels.map((c) => c.readyState), sockets: r.sockets.map((s) => s.readyState),
        };
      }, track);
      // The node sees the connection go: a WebSocket at once, a WebRTC connection when its next
      // ping is missed for 15 s (crates/antiphon-node/src/liveness.rs).
      const closedAt = Date.now();
      let connectedAfter = await metric();
      for (let i = 0; i < 150 && connectedAfter > 0; i++) {
        await new Promise((r) => setTimeout(r, 200));
        connectedAfter = await metric();
      }
      results[`teardown-${transport}`] = { ...after, connectedBefore, connectedAfter, nodeSawCloseAfterMs: Date.now() - closedAt,
        nodeLog: a.logs().split("\n").filter((l) => /ping|disconnected|connected|liveness/i.test(l)).slice(-40) };
      assert.match(after.objectUrl, /^blob:/);
      assert.ok(after.revoked.includes(after.objectUrl), "the media source's object URL was revoked");
      assert.equal(after.src, null, "the element no longer points at the media source");
      assert.ok(after.track == null, "the player holds no track");
      assert.equal(after.catAfterClose, "STOPPED", "the network task has stopped");
      if (transport === "webrtc-direct") {
        assert.ok(after.pcs.length >= 1 && after.channels.length >= 1, JSON.stringify(after));
        assert.ok(after.pcs.every((s) => s === "closed"), `peer connections: ${after.pcs}`);
        assert.ok(after.channels.every((s) => s === "closed"), `data channels: ${after.channels}`);
      } else {
        assert.ok(after.sockets.length >= 1);
        assert.ok(after.sockets.every((s) => s === 3), `WebSocket states: ${after.sockets}`);
      }
      assert.equal(connectedBefore, 1);
      assert.equal(connectedAfter, 0, "the node saw the connection close");
    } finally {
      await browser.close();
      removeDir(profile);
      await stopNode(a);
    }
  });
}

test("leaving the page: the node sees the WebRTC-direct connection go", async () => {
  const a = await startNode(join(work, "a"), 18380);
  const profile = tempDir("chromium");
  const browser = await launchBrowser(profile);
  try {
    const page = await openPlayer(browser, `${a.url}/?track=${track}&autoplay=1&transport=webrtc-direct`);
    await waitInPage(page, () => document.getElementById("audio").currentTime > 1, null, 20_000);
    const metric = async () => {
      const text = await (await fetch(`${a.url}/metrics`)).text();
      const m = text.match(/antiphon_connected_peers\{transport="webrtc-direct"\} (\d+)/);
      return m ? Number(m[1]) : 0;
    };
    const before = await metric();
    await page.goto("about:blank");
    const leftAt = Date.now();
    let after = await metric();
    for (let i = 0; i < 150 && after > 0; i++) {
      await new Promise((r) => setTimeout(r, 200));
      after = await metric();
    }
    results["unload-webrtc-direct"] = { before, after, nodeSawCloseAfterMs: Date.now() - leftAt };
    assert.equal(before, 1);
    assert.equal(after, 0, "the node still counts the connection of a page that is gone");
  } finally {
    await browser.close();
    removeDir(profile);
    await stopNode(a);
  }
});
