// The library's life as an integrator sees it, in headless Chromium: a page that starts a peer,
// plays, destroys its player and closes its peer, over each transport, raises no uncaught error
// (`pageerror`) from its first script to a while after `close()`, and every method of a
// destroyed player or closed peer rejects with STOPPED. Every exported function called with
// values of the wrong kind answers INVALID_ARGUMENT and the player plays on.
// Runs only inside scripts/netns.sh.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { assertInNamespace, launchBrowser, nodeCli, removeDir, startNode, stopNode, tempDir, waitInPage } from "./harness.mjs";

assertInNamespace();

const work = tempDir("e2e-lifecycle");
let track;
let node;
let browser;

before(async () => {
  const mp3 = join(work, "default.mp3");
  nodeCli(["demo-track", "-o", mp3]);
  mkdirSync(join(work, "a"));
  track = nodeCli(["--data", join(work, "a"), "ingest", mp3]);
  node = await startNode(join(work, "a"), 18510);
  browser = await launchBrowser(tempDir("chromium-lifecycle"));
});

after(async () => {
  await browser?.close();
  if (node) await stopNode(node);
  removeDir(work);
});

for (const transport of ["webrtc-direct", "websocket"]) {
  test(`start, play, destroy and close over ${transport} raise no uncaught error`, async () => {
    const page = await browser.newPage();
    const uncaught = [];
    const consoleLines = [];
    page.on("pageerror", (e) => uncaught.push(e.message));
    page.on("console", (m) => consoleLines.push(m.text()));
    try {
      await page.goto(`${node.url}/?track=${track}&autoplay=1&transport=${transport}`);
      await waitInPage(page, () => document.getElementById("audio").currentTime > 2, null, 60_000).catch((e) => {
        throw new Error(`${e.message}\nconsole:\n${consoleLines.join("\n")}`);
      });
      const closed = await page.evaluate(async (track) => {
        const { peer, player } = window.antiphon;
        const codeOf = async (f) => {
          try {
            await f();
            return "resolved";
          } catch (e) {
            return e.code ?? `uncoded: ${e}`;
          }
        };
        player.destroy();
        player.destroy();
        const afterDestroy = {
          load: await codeOf(() => player.load(track)),
          play: await codeOf(() => player.play()),
          seek: await codeOf(() => player.seek(1)),
          onEvent: await codeOf(() => player.onEvent(() => {})),
        };
        await peer.close();
        const afterClose = {
          attach: await codeOf(() => peer.attach(document.getElementById("audio"))),
          cat: await codeOf(() => peer.cat(track)),
          connectBrowser: await codeOf(() => peer.connectBrowser("/ip4/10.0.0.1/tcp/1/ws/p2p-circuit/webrtc")),
        };
        // Whatever the browser still delivers for closed channels and sockets arrives now.
        await new Promise((r) => setTimeout(r, 2000));
        return {
          afterDestroy, afterClose,
          transport: peer.transport ?? null, remotePeerId: peer.remotePeerId ?? null,
          addresses: peer.addresses, browsers: peer.browsers,
          nodes: peer.creatorNodes.map((n) => n.state),
        };
      }, track);
      assert.deepEqual(uncaught, [], `uncaught errors: ${uncaught.join(" | ")}`);
      assert.deepEqual(closed.afterDestroy, { load: "STOPPED", play: "STOPPED", seek: "STOPPED", onEvent: "STOPPED" });
      assert.deepEqual(closed.afterClose, { attach: "STOPPED", cat: "STOPPED", connectBrowser: "STOPPED" });
      assert.equal(closed.transport, null);
      assert.equal(closed.remotePeerId, null);
      assert.deepEqual(closed.addresses, []);
      assert.deepEqual(closed.browsers, []);
      assert.deepEqual(closed.nodes, ["closed"]);
    } finally {
      await page.close();
    }
  });
}

test("every exported function answers values of the wrong kind with INVALID_ARGUMENT, and the player plays on", async () => {
  const page = await browser.newPage();
  const uncaught = [];
  page.on("pageerror", (e) => uncaught.push(e.message));
  try {
    await page.goto(`${node.url}/?track=${track}&autoplay=1&transport=websocket`);
    await waitInPage(page, () => document.getElementById("audio").currentTime > 1, null, 60_000);
    const outcomes = await page.evaluate(async (track) => {
      const { peer, player, Peer, verify, verifyAsync, cidOf } = window.antiphon;
      const audio = document.getElementById("audio");
      const big = "b".repeat(10 * 1024 * 1024);
      // Wrong for a required argument of any kind.
      const wrong = { number: 42, null: null, undefined: undefined, object: { a: 1 }, array: [1], bool: true, big };
      // Wrong for an optional options argument (absent is fine there).
      const wrongOptions = { number: 42, string: "x", bool: true, big, unknownKey: { bogus: 1 }, array: [1] };
      const bytes = new Uint8Array(4);
      const calls = [];
      for (const [k, v] of Object.entries(wrong)) {
        calls.push([`Peer.connect(${k})`, () => Peer.connect(v)]);
        calls.push([`peer.attach(${k})`, () => peer.attach(v)]);
        calls.push([`peer.cat(${k})`, () => peer.cat(v)]);
        calls.push([`peer.connectBrowser(${k})`, () => peer.connectBrowser(v)]);
        calls.push([`player.load(${k})`, () => player.load(v)]);
        if (typeof v !== "number") calls.push([`player.seek(${k})`, () => player.seek(v)]);
        calls.push([`verify(${k}, bytes)`, () => verify(v, bytes)]);
        calls.push([`verifyAsync(${k}, bytes)`, () => verifyAsync(v, bytes)]);
        calls.push([`verify(cid, ${k})`, () => verify(track, v)]);
        calls.push([`cidOf(${k})`, () => cidOf(v)]);
        if (v !== null && v !== undefined) {
          calls.push([`player.onEvent(${k})`, () => player.onEvent(v)]);
          calls.push([`cidOf(bytes, ${k})`, () => cidOf(bytes, v)]);
        }
      }
      for (const [k, v] of Object.entries(wrongOptions)) {
        calls.push([`Peer.start(${k})`, () => Peer.start(v)]);
        calls.push([`peer.attach(audio, ${k})`, () => peer.attach(audio, v)]);
        calls.push([`peer.cat(cid, ${k})`, () => peer.cat(track, v)]);
      }
      calls.push(["player.seek(-1)", () => player.seek(-1)]);
      calls.push(["player.seek(NaN)", () => player.seek(NaN)]);
      calls.push(["peer.cat(cid, { maxBytes: -1 })", () => peer.cat(track, { maxBytes: -1 })]);
      const outcomes = {};
      for (const [name, f] of calls) {
        try {
          await f();
          outcomes[name] = "resolved";
        } catch (e) {
          outcomes[name] = e instanceof Error && e.code ? e.code : `uncoded: ${e}`;
        }
      }
      return outcomes;
    }, track);
    const notCoded = Object.entries(outcomes).filter(([, code]) => code !== "INVALID_ARGUMENT");
    assert.deepEqual(notCoded, [], "every call answers INVALID_ARGUMENT");
    assert.ok(Object.keys(outcomes).length > 80, `${Object.keys(outcomes).length} calls`);
    // The instance is unharmed: the same player keeps playing.
    const at = await page.evaluate(() => document.getElementById("audio").currentTime);
    await waitInPage(page, (t) => document.getElementById("audio").currentTime > t + 1, at, 30_000);
    const state = await page.evaluate(() => ({ errors: window.antiphon.errors, segments: window.antiphon.player.stats().segments }));
    assert.deepEqual(state.errors, []);
    assert.ok(!state.segments.includes("failed"), `segments: ${state.segments}`);
    assert.deepEqual(uncaught, [], `uncaught errors: ${uncaught.join(" | ")}`);
  } finally {
    await page.close();
  }
});

test("a player's play() before load() rejects with NOT_LOADED instead of hanging", async () => {
  const page = await browser.newPage();
  try {
    await page.goto(`${node.url}/?track=${track}&transport=websocket`);
    await waitInPage(page, () => window.antiphon?.Peer, null, 30_000);
    const code = await page.evaluate(async () => {
      const peer = await window.antiphon.Peer.start({ creatorNodes: [location.origin], transport: "websocket" });
      const player = peer.attach(document.createElement("audio"));
      try {
        await Promise.race([player.play(), new Promise((_, reject) => setTimeout(() => reject(new Error("pending")), 5000))]);
        return "resolved";
      } catch (e) {
        return e.code ?? e.message;
      } finally {
        player.destroy();
        await peer.close();
      }
    });
    assert.equal(code, "NOT_LOADED");
  } finally {
    await page.close();
  }
});

test("a refused WebSocket fails the dial with the browser's reason, and the rejection lists each node once", async () => {
  const page = await browser.newPage();
  try {
    await page.goto(`${node.url}/?track=${track}`);
    await waitInPage(page, () => window.antiphon?.Peer, null, 30_000);
    const error = await page.evaluate(async (host) => {
      // Nothing listens on these ports: the browser knows at once.
      const targets = [`/ip4/${host}/tcp/18598/ws`, `/ip4/${host}/tcp/18599/ws`];
      try {
        await window.antiphon.Peer.start({ creatorNodes: targets, transport: "websocket", dialTimeoutMs: 60000 });
        return null;
      } catch (e) {
        return {
          code: e.code, message: e.message, cause: e.cause?.message,
          failures: (e.failures ?? []).map((f) => ({ target: f.target, code: f.code, message: f.message })),
        };
      }
    }, new URL(node.url).hostname);
    assert.equal(error.code, "DIAL_FAILED");
    assert.equal(error.failures.length, 2);
    for (const f of error.failures) {
      assert.equal(f.code, "DIAL_FAILED");
      // The browser's close, not the 60 s dial timeout.
      assert.match(f.message, /closed before opening \(code 1006\)/);
      assert.doesNotMatch(f.message, /timed out/);
      // Each node is named once in the whole message.
      assert.equal(error.message.split(f.target).length - 1, 1, error.message);
    }
    assert.equal(error.cause, error.failures[0].message);
  } finally {
    await page.close();
  }
});
