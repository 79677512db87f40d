// Vite build of the test dapp: the npm package from pkg/ (wasm-pack --target bundler), whose
// .wasm import needs vite-plugin-wasm, as in any Vite app importing it.
import { fileURLToPath } from "node:url";
import wasm from "vite-plugin-wasm";

export default {
  root: fileURLToPath(new URL(".", import.meta.url)),
  plugins: [wasm()],
  resolve: { alias: { antiphon: fileURLToPath(new URL("../../pkg/antiphon.js", import.meta.url)) } },
  build: { target: "esnext", emptyOutDir: true },
  logLevel: "warn",
};
