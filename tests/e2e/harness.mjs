// Shared pieces of the browser end-to-end tests: the creator node as a child process and
// Debian's Chromium driven by Playwright, both inside the private network namespace that
// scripts/netns.sh creates.
import { spawn, execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const NODE_BIN = process.env.ANTIPHON_NODE_BIN || join(ROOT, "target", "debug", "antiphon-node");
export const WWW = join(ROOT, "www", "dist");
/// The namespace's own address (scripts/netns.sh): never the machine's network.
export const HOST = "10.200.0.1";
export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

export function assertInNamespace() {
  if (process.env.ANTIPHON_NETNS !== "inside") {
    throw new Error("browser end-to-end tests run only inside scripts/netns.sh (private network namespace)");
  }
}

export function tempDir(name) {
  return mkdtempSync(join(tmpdir(), `antiphon-${name}-`));
}

export function removeDir(dir) {
  rmSync(dir, { recursive: true, force: true });
}

/** Runs antiphon-node to completion and returns its stdout. */
export function nodeCli(args) {
  return execFileSync(NODE_BIN, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
}

/**
 * Writes the demo track into `work` (`demoArgs` are more `demo-track` options, such as
 * `--seconds`) and ingests it into `work/data`; returns that directory and the track's CID.
 */
export function ingestDemoTrack(work, demoArgs = []) {
  const mp3 = join(work, "demo.mp3");
  nodeCli(["demo-track", "-o", mp3, ...demoArgs]);
  const data = join(work, "data");
  mkdirSync(data, { recursive: true });
  return { data, track: nodeCli(["--data", data, "ingest", mp3]) };
}

/**
 * Starts `antiphon-node serve` (the binary `bin`, by default NODE_BIN) on the namespace address;
 * resolves once it serves HTTP.
 */
export async function startNode(dataDir, basePort, extraArgs = [], bin = NODE_BIN) {
  const args = [
    "--data", dataDir, "serve",
    "--listen", `/ip4/${HOST}/tcp/${basePort + 1}/ws`,
    "--listen", `/ip4/${HOST}/udp/${basePort + 2}/webrtc-direct`,
    "--http", `${HOST}:${basePort}`,
    ...(extraArgs.includes("--www") ? [] : ["--www", WWW]),
    ...extraArgs,
  ];
  const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const url = `http://${HOST}:${basePort}`;
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`antiphon-node exited early:\n${stderr}`);
    try {
      const peer = await (await fetch(`${url}/peer`)).json();
      if (peer.multiaddrs.some((a) => a.includes("/webrtc-direct/")) && peer.multiaddrs.some((a) => a.includes("/ws/"))) {
        return { child, url, peer, logs: () => stderr };
      }
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill("SIGKILL");
  throw new Error(`antiphon-node did not start serving:\n${stderr}`);
}

export async function stopNode(node) {
  if (!node || node.child.exitCode !== null) return;
  const exited = new Promise((r) => node.child.once("exit", r));
  node.child.kill("SIGTERM");
  const timer = setTimeout(() => node.child.kill("SIGKILL"), 5000);
  await exited;
  clearTimeout(timer);
}

/**
 * Playwright's own `--disable-features` list: ours must be merged into it, since a second
 * `--disable-features` switch would replace it.
 */
function playwrightDisabledFeatures() {
  try {
    const bundle = readFileSync(join(dirname(createRequire(import.meta.url).resolve("playwright-core")), "lib", "coreBundle.js"), "utf8");
    const m = bundle.match(/disabledFeatures = \[([^\]]*)\]/);
    if (m) return [...m[1].matchAll(/"([^"]+)"/g)].map((x) => x[1]);
  } catch {}
  // The list of playwright-core 1.65.1, the version package.json pins.
  return ["AvoidUnnecessaryBeforeUnloadCheckSync", "DestroyProfileOnBrowserClose", "HttpsUpgrades",
    "HttpsFirstBalancedModeAutoEnable", "LensOverlay", "MediaRouter", "PaintHolding", "ThirdPartyStoragePartitioning",
    "AvoidCorsURLLoaderRestartOnRedirect", "TcpPortRandomizationWin", "OptimizationHints", "NetworkTimeServiceQuerying",
    "AimEnabled", "PreconnectToSearch", "msForceBrowserSignIn", "msEdgeUpdateLaunchServicesPreferredVersion"];
}

/** The page that runs Helia's browser bundle (tests/e2e/helia-browser.test.mjs, and
 * bench/browser-bitswap.mjs, which never runs beside the tests). */
export const HELIA_PAGE_PORT = 18710;
/** The page that runs Helia with the relay and `/webrtc` transports (tests/e2e/helia-relay.test.mjs). */
export const HELIA_RELAY_PAGE_PORT = 18730;

/** The creator nodes' pages the play tests open (ports 18080-18150 in steps of 10). Chromium
 * treats them as secure contexts, as a dapp served over HTTPS would be, so that the browser
 * peer hashes with WebCrypto there; pages on other ports exercise its Rust fallback. */
const SECURE_ORIGINS = [...Array.from({ length: 8 }, (_, i) => `http://${HOST}:${18080 + 10 * i}`), ...[18610, 18620, 18810, 18820, 18830, 18840].map((p) => `http://${HOST}:${p}`), `http://${HOST}:${HELIA_PAGE_PORT}`, `http://${HOST}:${HELIA_RELAY_PAGE_PORT}`];

/**
 * A track as the node at `nodeUrl` lists it (`GET /tracks/<cid>`: its manifest's segments, each
 * with its CID, byte count and start time, and its replicas). Throws on an HTTP error instead of
 * returning it.
 */
export async function trackManifest(nodeUrl, track) {
  const response = await fetch(`${nodeUrl}/tracks/${track}`);
  if (!response.ok) throw new Error(`GET ${nodeUrl}/tracks/${track}: status ${response.status}`);
  return response.json();
}

/** Launches headless Chromium with the flags that keep it off any outside network. */
export async function launchBrowser(userDataDir) {
  return chromium.launchPersistentContext(userDataDir, chromiumOptions());
}

/**
 * Launches headless Chromium with the same flags, without a profile, for pages that each need
 * a browser context of their own (`browser.newContext()`): separate storage, as separate
 * listeners have.
 */
export async function launchIsolatingBrowser() {
  return chromium.launch(chromiumOptions());
}

function chromiumOptions() {
  const ours = playwrightDisabledFeatures();
  return {
    executablePath: CHROMIUM,
    headless: true,
    ignoreDefaultArgs: [`--disable-features=${ours.join(",")}`],
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--autoplay-policy=no-user-gesture-required",
      `--unsafely-treat-insecure-origin-as-secure=${SECURE_ORIGINS.join(",")}`,
      `--disable-features=${[...ours, "WebRtcHideLocalIpsWithMdns"].join(",")}`,
    ],
  };
}

/**
 * Opens the demo page at `url` and waits until it plays. If it does not within 30 s, the error
 * carries what the page knew: its status and log, the player's segment states, and the console
 * with the time of each line since the page was opened.
 */
export async function openPlayer(browser, url) {
  const page = await browser.newPage();
  const opened = Date.now();
  const lines = [];
  page.on("console", (m) => lines.push(`+${Date.now() - opened} ms ${m.text()}`));
  await page.goto(url);
  await waitInPage(page, () => window.antiphon && window.antiphon.loadToPlayingMs !== undefined, null, 30_000).catch(async (e) => {
    const state = await page.evaluate(() => ({
      status: document.getElementById("status")?.textContent,
      log: document.getElementById("log")?.innerText,
      segments: window.antiphon?.player?.stats().segments,
      readyState: document.getElementById("audio")?.readyState,
    })).catch((err) => ({ unreadable: String(err) }));
    throw new Error(`${e.message}\npage: ${JSON.stringify(state, null, 1)}\nconsole:\n${lines.join("\n")}`);
  });
  return page;
}

/**
 * In `page` (a creator node's demo page), starts a peer over WebSocket that fetches all of
 * `track` (a 600 s window) and so can serve every segment to other browsers; resolves once every
 * segment is in, with the peer's ID and its browser address (once the node's relay holds a
 * reservation for it). The page keeps them as `window.servingPeer` and `window.servingPlayer`.
 */
export async function startServingListener(page, nodeUrl, track) {
  const peerId = await page.evaluate(async ({ url, track }) => {
    const peer = await window.antiphon.Peer.start({ creatorNodes: [url], transport: "websocket" });
    const player = peer.attach(document.getElementById("audio"), { windowSecs: 600 });
    await player.load(track);
    Object.assign(window, { servingPeer: peer, servingPlayer: player });
    return peer.localPeerId;
  }, { url: nodeUrl, track });
  await waitInPage(page, () => window.servingPlayer.stats().segments.every((s) => s === "appended" || s === "verified"), null, 30_000);
  const address = await waitInPage(page, () => window.servingPeer.addresses[0], null, 15_000);
  return { peerId, address };
}

/** Polls `fn` in the page until it returns a truthy value or `ms` pass. */
export async function waitInPage(page, fn, arg, ms) {
  const handle = await page.waitForFunction(fn, arg, { timeout: ms, polling: 100 });
  return handle.jsonValue();
}
