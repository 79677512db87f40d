// Builds the demo dapp in www/ into www/dist/. The wasm package comes from pkg/ (wasm-pack
// output), imported as "antiphon" exactly as a dapp would import the npm package.
const path = require("path");
const HtmlWebpackPlugin = require("html-webpack-plugin");

// The page's <head> asks for the wasm module at once (`<link rel="preload" as="fetch">`), so
// that it downloads while the scripts before it load and run, rather than after them. The
// `crossorigin` attribute makes the preload's request the same as webpack's `fetch()` of the
// module, so the browser uses the preloaded response instead of fetching twice.
class PreloadWasm {
  apply(compiler) {
    compiler.hooks.compilation.tap("PreloadWasm", (compilation) => {
      HtmlWebpackPlugin.getHooks(compilation).alterAssetTagGroups.tap("PreloadWasm", (data) => {
        const base = compilation.outputOptions.publicPath === "auto" ? "" : compilation.outputOptions.publicPath || "";
        const modules = Object.keys(compilation.assets).filter((f) => f.endsWith(".wasm"));
        const links = modules.map((f) => ({
          tagName: "link",
          voidTag: true,
          meta: { plugin: "PreloadWasm" },
          attributes: { rel: "preload", href: base + f, as: "fetch", crossorigin: "anonymous" },
        }));
        data.headTags.unshift(...links);
        return data;
      });
    });
  }
}

module.exports = (env, argv) => ({
  mode: argv.mode || "production",
  entry: "./www/index.js",
  output: {
    path: path.resolve(__dirname, "www/dist"),
    // Content hashes in every name but index.html's: `serve --www` lets browsers keep such
    // files for a year without asking again (crates/antiphon-node/src/http/www.rs).
    filename: "[name].[contenthash].js",
    clean: true,
  },
  resolve: {
    alias: { antiphon: path.resolve(__dirname, "pkg") },
  },
  experiments: { asyncWebAssembly: true },
  plugins: [new HtmlWebpackPlugin({ template: "./www/index.html" }), new PreloadWasm()],
  performance: { hints: false },
});
