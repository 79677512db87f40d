// The demo dapp: lists the creator node's tracks and plays one through the Antiphon peer.
//
// Query parameters: ?node=<http base URL> (repeatable: creator nodes to dial, all used as
// sources; the first lists the tracks; default: this page's origin), ?track=<cid>
// (default: the node's first track), ?transport=webrtc-direct|websocket (default: try
// WebRTC-direct, then WebSocket), ?dialTimeoutMs=N (per dial, default 10000), ?autoplay=1,
// ?gateway=<http base URL> (repeatable: trustless gateways the player may also fetch from),
// ?rate=N (playback rate), ?window=N (seconds fetched ahead of the playhead, default 30),
// ?peer=<browser address> (repeatable: other browsers to connect to directly and fetch from;
// each page shows its own address under "this browser").
import { Peer, verify, verifyAsync, cidOf } from "antiphon";
import { bootstrap } from "antiphon/bootstrap.js";

const params = new URLSearchParams(location.search);
const nodeUrls = params.getAll("node").length ? params.getAll("node") : [location.origin];
const nodeUrl = nodeUrls[0];
const $ = (id) => document.getElementById(id);

// What the end-to-end tests read; the module's exports are there for them (and the console) too.
const state = (window.antiphon = { status: "starting", events: [], errors: [], transport: null, Peer, verify, verifyAsync, cidOf, bootstrap });

function setStatus(s) {
  state.status = s;
  $("status").textContent = s;
}

function log(line) {
  const el = document.createElement("div");
  el.textContent = `${(performance.now() / 1000).toFixed(2)}s ${line}`;
  $("log").prepend(el);
}

/** Who served each segment, from the player's segment events. */
const servedBy = [];

function renderStrip(player) {
  const stats = player.stats();
  const strip = $("strip");
  if (strip.children.length !== stats.segments.length) {
    strip.replaceChildren(...stats.segments.map(() => document.createElement("div")));
  }
  stats.segments.forEach((s, i) => {
    strip.children[i].className = `${s}${servedBy[i] ? ` src-${servedBy[i]}` : ""}`;
  });
  $("bytes").textContent = `${stats.bytes.toLocaleString()} bytes in ${stats.appended.length} segments`;
  const kinds = Object.entries(stats.bytesBySourceKind);
  $("sources").textContent = kinds.length ? kinds.map(([k, v]) => `${k} ${v.toLocaleString()} B`).join(" · ") : "–";
  $("ahead").textContent = `${stats.bufferedAheadSecs.toFixed(1)} s`;
  $("rebuffers").textContent = `${stats.rebuffers} (${stats.rebufferMs.toFixed(0)} ms)`;
  $("banned").textContent = stats.banned.length ? stats.banned.join(", ") : "none";
  renderNodes();
  renderBrowsers();
}

/** Other browsers connected directly, and this browser's own address. */
function renderBrowsers() {
  if (!state.peer) return;
  const browsers = state.peer.browsers;
  $("browsers").replaceChildren(
    ...(browsers.length
      ? browsers.map((b) => {
          const line = document.createElement("div");
          line.textContent = b.peerId.slice(-12);
          return line;
        })
      : ["none"]),
  );
  const own = state.peer.addresses;
  $("self").textContent = own.length ? own[0] : state.peer.servingError || "waiting for a relay reservation";
}

/** Each creator node the peer was given, and where it stands. */
function renderNodes() {
  const nodes = state.peer ? state.peer.creatorNodes : [];
  $("remote").replaceChildren(
    ...nodes.map((n) => {
      const line = document.createElement("div");
      line.className = `node-${n.state}`;
      line.textContent = n.state === "connected" ? `${n.target} · ${n.transport} · ${n.peerId.slice(-12)}` : `${n.target} · ${n.state}${n.error ? `: ${n.error}` : ""}`;
      return line;
    }),
  );
}

async function main() {
  const tracks = await (await fetch(`${nodeUrl}/tracks`)).json();
  const trackCid = params.get("track") || (tracks[0] && tracks[0].cid);
  if (!trackCid) {
    setStatus("the creator node has no tracks: run `antiphon-node ingest FILE.mp3`");
    return;
  }
  const info = tracks.find((t) => t.cid === trackCid);
  $("track").innerHTML = "";
  const title = document.createElement("strong");
  title.textContent = info && info.title ? info.title : "Untitled track";
  const cid = document.createElement("code");
  cid.textContent = trackCid;
  $("track").append(title, info ? ` · ${info.duration_secs.toFixed(1)} s · ${info.segments} segments` : "", document.createElement("br"), cid);
  state.track = trackCid;

  const button = $("play");
  button.disabled = false;
  setStatus("ready");
  const start = async () => {
    button.disabled = true;
    // A click starts the track at once through the bootstrap while the peer dials (unless the
    // page's entry already did, for ?autoplay=1).
    if (!window.antiphonBootstrap && params.get("bootstrap") !== "0") {
      const audio = $("audio");
      window.antiphonBootstrap = bootstrap(audio, { track: trackCid, creatorNodes: nodeUrls, gateways: params.getAll("gateway") });
      audio.play().catch(() => {});
    }
    try {
      await play(trackCid);
    } catch (e) {
      state.errors.push({ code: e.code, message: e.message, cid: e.cid });
      setStatus(`error ${e.code || ""}: ${e.message}`);
      log(`error: ${e.message}`);
      button.disabled = false;
    }
  };
  button.addEventListener("click", start);
  if (params.get("autoplay") === "1") start();
}

async function play(trackCid) {
  setStatus("connecting");
  const options = {};
  if (params.get("transport")) options.transport = params.get("transport");
  if (params.get("dialTimeoutMs")) options.dialTimeoutMs = Number(params.get("dialTimeoutMs"));
  if (params.getAll("gateway").length) options.gateways = params.getAll("gateway");
  const peer = await Peer.start({ creatorNodes: nodeUrls, ...options });
  state.peer = peer;
  state.transport = peer.transport;
  state.dialMs = peer.dialMs;
  state.dialAttempts = peer.dialAttempts;
  for (const a of peer.dialAttempts.filter((a) => a.error)) log(`${a.transport} dial failed after ${a.ms.toFixed(0)} ms: ${a.error}`);
  if (peer.transport) {
    $("transport").textContent = `${peer.transport} (dial ${peer.dialMs.toFixed(0)} ms)`;
    log(`connected over ${peer.transport} to ${peer.remotePeerId}`);
  }

  for (const addr of params.getAll("peer")) {
    try {
      const id = await peer.connectBrowser(addr);
      log(`connected directly to browser ${id}`);
    } catch (e) {
      log(`browser ${addr}: ${e.code}: ${e.message}`);
    }
  }
  renderBrowsers();

  const audio = $("audio");
  const player = peer.attach(audio, params.get("window") ? { windowSecs: Number(params.get("window")) } : undefined);
  state.player = player;
  player.onEvent((e) => {
    state.events.push(e);
    if (e.type === "segment") servedBy[e.index] = e.sourceKind;
    if (e.type === "segment") log(`segment ${e.index} verified: ${e.bytes} bytes in ${e.blocks} block(s) from ${e.sourceKind} ${e.peer.slice(-24)} in ${e.latencyMs.toFixed(0)} ms${e.hedged ? " (hedged)" : ""}`);
    else if (e.type === "sourceBanned") log(`banned ${e.kind} ${e.source}: it sent bytes that do not verify`);
    else if (e.type === "sourceFailed") log(`${e.source} failed segment ${e.index} (${e.code}); trying elsewhere`);
    else if (e.type === "error") {
      state.errors.push(e);
      log(`refused: ${e.message}`);
      setStatus(`error ${e.code}`);
    } else log(e.type);
    renderStrip(player);
  });
  state.rebuffers = 0;
  state.rebufferTimes = [];
  // A rebuffer is running out of data; `waiting` with seconds still buffered (the page starved
  // of CPU) is logged but not counted, as the player's stats() does.
  const bufferedAhead = () => {
    const b = audio.buffered;
    for (let i = 0; i < b.length; i++) if (b.start(i) <= audio.currentTime + 0.1 && audio.currentTime <= b.end(i)) return b.end(i) - audio.currentTime;
    return 0;
  };
  audio.addEventListener("waiting", () => {
    if (state.loadToPlayingMs !== undefined && !audio.ended && !audio.seeking && bufferedAhead() >= 0.5) {
      log(`waiting at ${audio.currentTime.toFixed(2)} s with ${bufferedAhead().toFixed(1)} s buffered (not a rebuffer)`);
      return;
    }
    if (state.loadToPlayingMs !== undefined && !audio.ended && !audio.seeking) {
      state.rebuffers += 1;
      state.rebufferTimes.push(audio.currentTime);
      log(`rebuffering at ${audio.currentTime.toFixed(2)} s`);
    }
  });
  audio.addEventListener("playing", () => {
    if (state.loadToPlayingMs === undefined) {
      state.loadToPlayingMs = performance.now() - state.loadStarted;
      $("ttfa").textContent = `${state.loadToPlayingMs.toFixed(0)} ms`;
    }
    if (!state.errors.length) setStatus("playing");
  });
  audio.addEventListener("ended", () => setStatus("ended"));

  setStatus("loading");
  state.loadStarted = performance.now();
  await player.load(trackCid);
  state.startPath = player.stats().startPath;
  // Started by the bootstrap, the element may have played before this page listened.
  const firstAudio = player.stats().timeToFirstAudioMs;
  if (state.loadToPlayingMs === undefined && firstAudio !== undefined) {
    state.loadToPlayingMs = firstAudio;
    $("ttfa").textContent = `${firstAudio.toFixed(0)} ms (${state.startPath})`;
    if (!state.errors.length) setStatus("playing");
  }
  log(`playback began through the ${state.startPath}`);
  renderStrip(player);
  setInterval(() => renderStrip(player), 500);
  if (params.get("rate")) audio.playbackRate = Number(params.get("rate"));
  await audio.play();
}

main().catch((e) => {
  setStatus(`failed: ${e.message || e}`);
  console.error(e);
});
