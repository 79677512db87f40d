// The entry does one async import, so webpack can load the wasm module asynchronously.
import("./app.js").catch((e) => {
  console.error("failed to start the demo", e);
  document.getElementById("status").textContent = `failed to start: ${e}`;
});
