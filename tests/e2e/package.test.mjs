// The npm package as an integrator meets it: packed with `npm pack`, installed from the
// tarball into a fresh app (tests/package), type-checked by `tsc` under `strict` with
// `lib: ["es2022", "dom"]` (the README's calls, and stats()/provenance()/creatorNodes not
// `any`), bundled by webpack 5 and by Vite, and played in Chromium over WebRTC-direct and
// WebSocket with zero uncaught errors from the first script to a while after `close()`.
// Runs only inside scripts/netns.sh.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { build as viteBuild } from "vite";
import wasm from "vite-plugin-wasm";
import webpack from "webpack";
import HtmlWebpackPlugin from "html-webpack-plugin";
import { ROOT, assertInNamespace, launchBrowser, nodeCli, removeDir, startNode, stopNode, tempDir, waitInPage } from "./harness.mjs";

assertInNamespace();

const work = tempDir("e2e-package");
const app = join(work, "app");
const nodes = {};
let browser;

/** What `npm pack` must put in the tarball, and nothing else. */
const PACKED = ["LICENSE", "README.md", "antiphon.d.ts", "antiphon.js", "antiphon_bg.js", "antiphon_bg.wasm", "bootstrap.d.ts", "bootstrap.js", "package.json"];

function run(cmd, args, cwd) {
  try {
    return execFileSync(cmd, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  } catch (e) {
    throw new Error(`${cmd} ${args.join(" ")} failed:\n${e.stdout}\n${e.stderr}`);
  }
}

function webpackBuild(outDir) {
  const compiler = webpack({
    mode: "production",
    context: app,
    entry: join(app, "build", "main.js"),
    output: { path: outDir, filename: "[name].[contenthash].js", clean: true },
    experiments: { asyncWebAssembly: true },
    plugins: [new HtmlWebpackPlugin({ templateContent: '<audio id="audio" controls></audio><p id="status">starting</p>' })],
    performance: { hints: false },
  });
  return new Promise((resolve, reject) =>
    compiler.run((err, stats) => {
      if (err || stats.hasErrors()) reject(err || new Error(stats.toString("errors-only")));
      else compiler.close(() => resolve());
    }));
}

before(async () => {
  const packed = JSON.parse(run("npm", ["pack", join(ROOT, "pkg"), "--pack-destination", work, "--json"], work))[0];
  const files = packed.files.map((f) => f.path).sort();
  // The bootstrap's own file is a wasm-bindgen snippet, in a directory named by a hash.
  assert.deepEqual(files.filter((f) => !f.startsWith("snippets/")), PACKED, "the tarball holds the package and nothing else");
  assert.deepEqual(files.filter((f) => f.startsWith("snippets/")).map((f) => f.replace(/^snippets\/antiphon-[0-9a-f]+\//, "")), ["src/bootstrap.js"]);
  mkdirSync(app);
  for (const f of ["package.json", "tsconfig.json", "index.html", "main.ts"]) cpSync(join(ROOT, "tests", "package", f), join(app, f));
  run("npm", ["install", "--offline", "--no-audit", "--no-fund", join(work, packed.filename)], app);
  // Strict TypeScript over the README's calls; it also emits the JS that webpack bundles.
  run(process.execPath, [join(ROOT, "node_modules", "typescript", "bin", "tsc"), "-p", app], app);
  await webpackBuild(join(work, "webpack"));
  await viteBuild({
    configFile: false, root: app, logLevel: "warn", plugins: [wasm()],
    build: { target: "esnext", outDir: join(work, "vite"), emptyOutDir: true },
  });
  const mp3 = join(work, "default.mp3");
  nodeCli(["demo-track", "-o", mp3]);
  for (const [i, bundler] of ["webpack", "vite"].entries()) {
    mkdirSync(join(work, `data-${bundler}`));
    nodeCli(["--data", join(work, `data-${bundler}`), "ingest", mp3]);
    nodes[bundler] = await startNode(join(work, `data-${bundler}`), 18610 + 10 * i, ["--www", join(work, bundler)]);
  }
  browser = await launchBrowser(tempDir("chromium-package"));
});

after(async () => {
  await browser?.close();
  for (const node of Object.values(nodes)) await stopNode(node);
  removeDir(work);
});

for (const bundler of ["webpack", "vite"]) {
  for (const transport of ["webrtc-direct", "websocket"]) {
    test(`the ${bundler} build plays over ${transport} with no uncaught error up to after close()`, async () => {
      const page = await browser.newPage();
      const uncaught = [];
      const consoleLines = [];
      page.on("pageerror", (e) => uncaught.push(e.message));
      page.on("console", (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
      try {
        await page.goto(`${nodes[bundler].url}/index.html?transport=${transport}`);
        await waitInPage(page, () => document.getElementById("audio").currentTime > 3 || window.result?.errors.length, null, 60_000)
          .catch((e) => { throw new Error(`${e.message}\nconsole:\n${consoleLines.join("\n")}`); });
        const state = await page.evaluate(async () => {
          const { errors, transport, stats, checks, startPath } = window.result;
          const s = stats();
          await window.result.close();
          await new Promise((r) => setTimeout(r, 1500));
          return { errors, transport, checks, startPath, appended: s.appended.length, kinds: Object.keys(s.bytesBySourceKind).sort() };
        });
        assert.deepEqual(state.errors, []);
        assert.equal(state.transport, transport);
        assert.deepEqual(state.checks, [false, false, false, false]);
        assert.equal(state.startPath, "bootstrap", "the package's bootstrap started the track and the player took over");
        assert.ok(state.appended >= 1);
        assert.deepEqual(state.kinds, ["gateway", "node", "peer"]);
        assert.deepEqual(uncaught, [], `uncaught errors: ${uncaught.join(" | ")}`);
        // Quiet by default: nothing above warnings from the module, and no build paths.
        const noisy = consoleLines.filter((l) => /^(info|log|debug): antiphon|\.cargo\/registry|\.rs:\d+/.test(l));
        assert.deepEqual(noisy, [], "the module's console stays quiet");
      } finally {
        await page.close();
      }
    });
  }
}
