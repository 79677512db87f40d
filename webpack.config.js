// Builds the demo dapp in www/ into www/dist/. The wasm package comes from pkg/ (wasm-pack
// output), imported as "antiphon" exactly as a dapp would import the npm package.
const path = require("path");
const HtmlWebpackPlugin = require("html-webpack-plugin");

module.exports = (env, argv) => ({
  mode: argv.mode || "production",
  entry: "./www/index.js",
  output: {
    path: path.resolve(__dirname, "www/dist"),
    filename: "[name].[contenthash].js",
    clean: true,
  },
  resolve: {
    alias: { antiphon: path.resolve(__dirname, "pkg") },
  },
  experiments: { asyncWebAssembly: true },
  plugins: [new HtmlWebpackPlugin({ template: "./www/index.html" })],
  performance: { hints: false },
});
