// A dapp page as an integrator writes it from the README: start the track through the
// bootstrap, import the module once it plays, start a peer, attach a player, load the track
// (which takes over from the bootstrap), play it. Type-checked under `strict` against the
// package's .d.ts, then bundled by webpack and by Vite (tests/e2e/package.test.mjs).
import { bootstrap, type Bootstrap } from "antiphon/bootstrap.js";
import type { AntiphonError, Peer, Player, PlayerEvent, Stats, ProvenanceEntry } from "antiphon";

// Type-level checks: these lines fail to compile if the package types them as `any`.
type IsAny<T> = 0 extends 1 & T ? true : false;
const statsTyped: IsAny<ReturnType<Player["stats"]>> = false;
const provenanceTyped: IsAny<ReturnType<Player["provenance"]>> = false;
const nodesTyped: IsAny<Peer["creatorNodes"]> = false;
const bootstrapTyped: IsAny<Bootstrap["done"]> = false;

interface Result {
  errors: string[];
  events: PlayerEvent[];
  transport?: string;
  stats?: () => Stats;
  provenance?: () => ProvenanceEntry[];
  close?: () => Promise<void>;
  startPath?: string;
  checks: boolean[];
}
const result: Result = { errors: [], events: [], checks: [statsTyped, provenanceTyped, nodesTyped, bootstrapTyped] };
(window as unknown as { result: Result }).result = result;
const status = (s: string) => {
  document.getElementById("status")!.textContent = s;
};

async function main(): Promise<void> {
  const params = new URLSearchParams(location.search);
  const transport = params.get("transport") === "websocket" ? "websocket" : "webrtc-direct";
  const tracks: Array<{ cid: string }> = await (await fetch("/tracks")).json();
  const audio = document.querySelector("audio")!;
  const boot = bootstrap(audio, { creatorNodes: [location.origin], track: tracks[0].cid });
  audio.play().catch(() => {});
  const playing = new Promise((resolve) => audio.addEventListener("playing", resolve, { once: true }));
  await Promise.race([playing, boot.done, new Promise((resolve) => setTimeout(resolve, 1000))]);
  const { Peer, setLogLevel } = await import("antiphon");
  setLogLevel("warn");
  const peer = await Peer.start({ creatorNodes: [location.origin], transport });
  const player = peer.attach(audio);
  player.onEvent((e) => {
    result.events.push(e);
    if (e.type === "error") result.errors.push(e.code);
    if (e.type === "segment") console.debug(`segment ${e.index} from ${e.sourceKind}`);
  });
  try {
    await player.load(tracks[0].cid);
    await player.play();
  } catch (e) {
    const error = e as AntiphonError;
    result.errors.push(error.code);
    throw error;
  }
  const s: Stats = player.stats();
  const kinds: number = s.bytesBySourceKind.node + s.bytesBySourceKind.peer + s.bytesBySourceKind.gateway;
  console.debug(`${kinds} bytes, ${peer.creatorNodes.map((n) => n.state).join(", ")}`);
  result.transport = peer.transport;
  result.startPath = s.startPath;
  result.stats = () => player.stats();
  result.provenance = () => player.provenance();
  result.close = async () => {
    player.destroy();
    await peer.close();
  };
  status("playing");
}

main().catch((e: unknown) => {
  const error = e as AntiphonError;
  result.errors.push(error.code ?? String(e));
  status(`failed: ${error.message}`);
});
