// A dapp page built with Vite (vite-plugin-wasm) from the npm package in pkg/ plays the track
// from the creator node that serves it. Runs only inside scripts/netns.sh.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { build } from "vite";
import {
  ROOT, assertInNamespace, launchBrowser, nodeCli, removeDir, startNode, stopNode, tempDir, waitInPage,
} from "./harness.mjs";

assertInNamespace();

test("a page built by Vite from the npm package plays the track", async () => {
  const work = tempDir("e2e-vite");
  const dist = join(work, "dist");
  await build({ configFile: join(ROOT, "tests", "vite", "vite.config.mjs"), build: { outDir: dist } });
  const mp3 = join(work, "default.mp3");
  nodeCli(["demo-track", "-o", mp3]);
  mkdirSync(join(work, "data"));
  nodeCli(["--data", join(work, "data"), "ingest", mp3]);
  const node = await startNode(join(work, "data"), 18290, ["--www", dist]);
  const profile = tempDir("chromium");
  const browser = await launchBrowser(profile);
  try {
    const page = await browser.newPage();
    await page.goto(`${node.url}/index.html`);
    await waitInPage(page, () => document.getElementById("audio").currentTime > 8 || window.result.errors.length, null, 40_000);
    const state = await page.evaluate(() => ({
      errors: window.result.errors,
      t: document.getElementById("audio").currentTime,
      transport: window.result.transport,
      appended: window.result.player.stats().appended.length,
    }));
    assert.deepEqual(state.errors, []);
    assert.ok(state.t > 8);
    assert.ok(state.appended >= 2);
  } finally {
    await browser.close();
    removeDir(profile);
    await stopNode(node);
    removeDir(work);
  }
});
