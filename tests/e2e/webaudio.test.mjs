// A browser without Media Source Extensions: the package built with the `webaudio` feature
// decodes segments with symphonia in wasm and plays them through Web Audio. The page removes
// MediaSource and ManagedMediaSource before the module loads, and puts an AnalyserNode between
// the player's audio graph and the speakers to see that sound comes out. Runs only inside
// scripts/netns.sh; the package comes from `make pkg-webaudio` (ANTIPHON_WEBAUDIO_PKG). The last
// test uses the default build instead (ANTIPHON_WEB_PKG) and expects a clear refusal.
import { test } from "node:test";
import assert from "node:assert/strict";
import { cpSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { assertInNamespace, launchBrowser, nodeCli, removeDir, ROOT, startNode, stopNode, tempDir, trackManifest, waitInPage } from "./harness.mjs";

assertInNamespace();

const PKG = process.env.ANTIPHON_WEBAUDIO_PKG || join(ROOT, "target", "pkg-webaudio");
// The default build (no `webaudio` feature) for pages without a bundler: `make test-e2e` makes it.
const WEB_PKG = process.env.ANTIPHON_WEB_PKG || join(ROOT, "target", "pkg-web");

const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>Antiphon without MSE</title>
<audio id="audio"></audio>
<script type="module">
  // This browser has no Media Source Extensions.
  delete window.MediaSource;
  delete window.ManagedMediaSource;
  // A tap between whatever the player connects to "destination" and the speakers.
  const Real = window.AudioContext;
  window.AudioContext = class extends Real {
    constructor(options) {
      super(options);
      this.tap = this.createAnalyser();
      this.tap.fftSize = 2048;
      this.tap.connect(super.destination);
      window.ctx = this;
    }
    get destination() { return this.tap; }
  };
  window.level = () => {
    if (!window.ctx) return 0;
    const a = new Float32Array(2048);
    window.ctx.tap.getFloatTimeDomainData(a);
    return Math.sqrt(a.reduce((s, x) => s + x * x, 0) / a.length);
  };
  const params = new URLSearchParams(location.search);
  const result = (window.result = { events: [], errors: [], levels: [] });
  try {
    const { default: init, Peer } = await import("./pkg/antiphon.js");
    await init();
    const peer = await Peer.start({ creatorNodes: [params.get("node")] });
    const player = peer.attach(document.getElementById("audio"));
    player.onEvent((e) => result.events.push({ ...e, wallMs: performance.now() }));
    Object.assign(result, { peer, player });
    await player.load(params.get("track"));
    result.loaded = true;
    // What is heard and where the clock stands, four times a second.
    setInterval(() => result.levels.push({ wallMs: performance.now(), ctxTime: window.ctx ? window.ctx.currentTime : 0, t: player.currentTime, paused: player.paused, rms: window.level() }), 250);
  } catch (e) {
    result.errors.push(e.code + ": " + e.message);
  }
</script>
`;

/**
 * A node on `port` holding the default track and serving PAGE with the package in `pkg`
 * (`make` target `how` builds it); `work` is the directory to remove afterwards.
 */
async function nodeWithPage(pkg, how, port) {
  if (!existsSync(join(pkg, "antiphon_bg.wasm"))) throw new Error(`no package at ${pkg}: run ${how}`);
  const work = tempDir("e2e-no-mse");
  const www = join(work, "www");
  mkdirSync(www);
  cpSync(pkg, join(www, "pkg"), { recursive: true });
  writeFileSync(join(www, "index.html"), PAGE);
  const mp3 = join(work, "default.mp3");
  nodeCli(["demo-track", "-o", mp3]);
  mkdirSync(join(work, "data"));
  const track = nodeCli(["--data", join(work, "data"), "ingest", mp3]);
  const node = await startNode(join(work, "data"), port, ["--www", www]);
  return { work, track, node };
}

test("without MediaSource the track plays through Web Audio: sound, a steady clock, pause, seek, the end, teardown", async (t) => {
  const { work, track, node } = await nodeWithPage(PKG, "make pkg-webaudio", 18350);
  const profile = tempDir("chromium");
  const browser = await launchBrowser(profile);
  const page = await browser.newPage();
  const lines = [];
  page.on("console", (m) => lines.push(m.text()));
  const withConsole = (e) => {
    throw new Error(`${e.message}\nconsole:\n${lines.slice(-40).join("\n")}`);
  };
  try {
    await page.goto(`${node.url}/index.html?node=${encodeURIComponent(node.url)}&track=${track}`);
    await waitInPage(page, () => window.result.loaded || window.result.errors.length, null, 30_000).catch(withConsole);
    const loaded = await page.evaluate(() => ({
      errors: window.result.errors,
      hasMse: "MediaSource" in window || "ManagedMediaSource" in window,
      stats: window.result.player.stats(),
    }));
    assert.deepEqual(loaded.errors, []);
    assert.equal(loaded.hasMse, false);
    assert.equal(loaded.stats.output, "WebAudio");
    assert.equal(loaded.stats.mediaSource ?? null, null);

    // Play across the first segment boundary (~6.0 s).
    await page.evaluate(() => window.result.player.play());
    await waitInPage(page, () => window.result.player.currentTime > 9, null, 30_000).catch(withConsole);
    const played = await page.evaluate(() => ({ stats: window.result.player.stats(), levels: window.result.levels, ctx: window.ctx.state }));
    assert.equal(played.ctx, "running");
    assert.ok(played.stats.timeToFirstAudioMs > 0, `time to first audio: ${played.stats.timeToFirstAudioMs}`);
    assert.equal(played.stats.rebuffers, 0);
    // Sound while playing: the synthesised track never falls silent.
    const playing = played.levels.filter((l) => !l.paused && l.t > 0.3);
    assert.ok(playing.length >= 20, `${playing.length} samples while playing`);
    const quiet = playing.filter((l) => l.rms < 0.01);
    assert.ok(quiet.length <= 1, `silent samples while playing: ${JSON.stringify(quiet)}`);
    // The player's clock follows the audio clock, second for second, across the segment
    // boundary (a gap or a skip there would show). Against the wall clock it is only reported:
    // headless Chromium's fake audio device runs late when the machine is busy.
    const first = playing[0];
    const last = playing[playing.length - 1];
    const slip = (last.t - first.t) - (last.ctxTime - first.ctxTime);
    assert.ok(Math.abs(slip) < 0.05, `the player's clock moved ${slip.toFixed(3)} s apart from the AudioContext's: ${JSON.stringify(playing.map((l) => [l.ctxTime.toFixed(3), l.t.toFixed(3)]))}`);
    const drift = (last.t - first.t) - (last.wallMs - first.wallMs) / 1000;

    // Pause: the clock stands and the sound stops.
    const pausedAt = await page.evaluate(() => {
      window.result.player.pause();
      return window.result.player.currentTime;
    });
    await new Promise((r) => setTimeout(r, 1000));
    const afterPause = await page.evaluate(() => ({ t: window.result.player.currentTime, rms: window.level(), paused: window.result.player.paused }));
    assert.equal(afterPause.paused, true);
    assert.ok(Math.abs(afterPause.t - pausedAt) < 1e-6, `moved while paused: ${pausedAt} -> ${afterPause.t}`);
    assert.equal(afterPause.rms, 0);

    // Seek into audio not fetched yet, play on to the end.
    const duration = played.stats.durationSecs;
    const target = duration - 8;
    const seekWall = await page.evaluate((target) => {
      window.result.player.seek(target);
      window.result.player.play();
      return performance.now();
    }, target);
    await waitInPage(page, () => window.result.events.some((e) => e.type === "playbackEnded"), null, 30_000).catch(withConsole);
    const ended = await page.evaluate(() => ({ stats: window.result.player.stats(), events: window.result.events, levels: window.result.levels }));
    const resumed = ended.levels.find((l) => l.wallMs > seekWall && !l.paused && l.t > target);
    assert.ok(resumed, "playback resumed after the seek");
    assert.ok(resumed.t - target < 1.0, `resumed at ${resumed.t} for a seek to ${target}`);
    // The first segment appended after the seek is the one that holds the target.
    const manifest = await trackManifest(node.url, track);
    const holding = manifest.segments.findLastIndex((s) => s.start_secs <= target);
    const afterSeek = ended.events.filter((e) => e.type === "segment" && e.wallMs > seekWall);
    assert.ok(afterSeek.length > 0, "segments fetched after the seek");
    assert.equal(afterSeek[0].index, holding, `first segment after the seek: ${afterSeek[0].index}`);
    assert.ok(Math.abs(ended.stats.currentTime - duration) < 0.05, `ended at ${ended.stats.currentTime} of ${duration}`);
    assert.equal(ended.stats.rebuffers, 0);
    assert.equal(ended.stats.errorCode ?? null, null);
    const decode = ended.stats.decode;
    assert.ok(decode.segments >= 4, `segments decoded: ${decode.segments}`);
    t.diagnostic(`time to first audio ${played.stats.timeToFirstAudioMs.toFixed(0)} ms; against the AudioContext ${slip.toFixed(3)} s, against the wall ${drift.toFixed(3)} s over ${((last.wallMs - first.wallMs) / 1000).toFixed(1)} s; resumed ${(resumed.t - target).toFixed(2)} s after the seek target; ` +
      `${decode.segments} segments decoded, ${decode.meanMs.toFixed(1)} ms mean, ${decode.longestMs.toFixed(1)} ms longest`);

    // Teardown closes the AudioContext.
    await page.evaluate(() => {
      window.result.player.destroy();
      return window.result.peer.close();
    });
    await waitInPage(page, () => window.ctx.state === "closed", null, 5_000);
  } finally {
    await browser.close();
    removeDir(profile);
    await stopNode(node);
    removeDir(work);
  }
});

test("without MediaSource and without the webaudio feature, load() rejects with MEDIA_UNSUPPORTED and streaming stops", async () => {
  // The default build: no Web Audio fallback. Its first segments are already asked for
  // while the output opens, so the refusal must also stop them.
  const { work, track, node } = await nodeWithPage(WEB_PKG, "make test-e2e, which builds it", 18420);
  const profile = tempDir("chromium");
  const browser = await launchBrowser(profile);
  try {
    const page = await browser.newPage();
    await page.goto(`${node.url}/index.html?node=${encodeURIComponent(node.url)}&track=${track}`);
    await waitInPage(page, () => window.result.loaded || window.result.errors.length, null, 30_000);
    // Two pump ticks and then some: whatever was in flight has landed or been dropped.
    await page.waitForTimeout(1_500);
    const state = await page.evaluate(() => ({
      errors: window.result.errors,
      loaded: !!window.result.loaded,
      types: window.result.events.map((e) => e.type),
      stats: window.result.player && window.result.player.stats(),
      provenance: window.result.player ? window.result.player.provenance() : [],
    }));
    assert.ok(state.stats, `the player was made: ${state.errors}`);
    assert.equal(state.loaded, false);
    assert.equal(state.errors.length, 1);
    assert.match(state.errors[0], /^MEDIA_UNSUPPORTED: .*neither MediaSource nor ManagedMediaSource/);
    assert.ok(!state.types.includes("segment"), `no segment appended: ${state.types}`);
    assert.deepEqual(state.stats.segments, [], "no segment left pending or fetching");
    assert.equal(state.stats.bytes, 0);
    // Segments that were on their way when load() gave up are not taken in.
    assert.deepEqual(state.provenance, []);
  } finally {
    await browser.close();
    removeDir(profile);
    await stopNode(node);
    removeDir(work);
  }
});
