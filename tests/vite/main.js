// A dapp page built by Vite from the npm package: connect to the creator node that serves this
// page, load its first track, play it.
import { Peer } from "antiphon";

const status = (s) => (document.getElementById("status").textContent = s);
window.result = { errors: [] };

async function main() {
  const tracks = await (await fetch("/tracks")).json();
  const peer = await Peer.start({ creatorNodes: [location.origin] });
  const audio = document.getElementById("audio");
  const player = peer.attach(audio);
  player.onEvent((e) => e.type === "error" && window.result.errors.push(e.code));
  await player.load(tracks[0].cid);
  await audio.play();
  window.result.player = player;
  window.result.transport = peer.transport;
  status("playing");
}

main().catch((e) => {
  window.result.errors.push(e.code || String(e));
  status(`failed: ${e.message}`);
});
