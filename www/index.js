// The entry. With ?autoplay=1 it starts the track at once through the bootstrap
// (antiphon/bootstrap.js, a few KB that need nothing from the wasm module: the first
// segments over HTTP, verified with WebCrypto), while the dynamic import below loads the wasm
// module and the app; the app's `player.load()` then takes over. ?bootstrap=0 turns the
// bootstrap off; ?bootstrapFrom=<URL> (repeatable) has it ask those gateways instead of the
// creator nodes and ?gateway= ones.
import { bootstrap } from "antiphon/bootstrap.js";

const params = new URLSearchParams(location.search);
const nodeUrls = params.getAll("node").length ? params.getAll("node") : [location.origin];

/** Starts the track through the bootstrap; resolves once the element plays, the bootstrap gave up, or 1 s passed. */
async function startEarly() {
  const audio = document.getElementById("audio");
  const track = params.get("track") || ((await (await fetch(`${nodeUrls[0]}/tracks`)).json())[0] || {}).cid;
  if (!track) return;
  const from = params.getAll("bootstrapFrom");
  const origins = from.length ? { gateways: from } : { creatorNodes: nodeUrls, gateways: params.getAll("gateway") };
  const boot = (window.antiphonBootstrap = bootstrap(audio, { track, ...origins }));
  audio.play().catch(() => {});
  const playing = new Promise((resolve) => audio.addEventListener("playing", resolve, { once: true }));
  await Promise.race([playing, boot.done, new Promise((resolve) => setTimeout(resolve, 1000))]);
}

// The module is imported once the bootstrap's first audio plays (or it gave up, or 1 s
// passed): on a slow link the two would otherwise share it, and the first audio would wait.
const early = params.get("autoplay") === "1" && params.get("bootstrap") !== "0" ? startEarly() : Promise.resolve();

// One async import, so webpack can load the wasm module asynchronously.
early
  .catch((e) => console.warn("bootstrap not started:", e))
  .then(() => import("./app.js"))
  .catch((e) => {
    console.error("failed to start the demo", e);
    document.getElementById("status").textContent = `failed to start: ${e}`;
  });
