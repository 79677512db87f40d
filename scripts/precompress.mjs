// Writes a brotli (`.br`) and a gzip (`.gz`) copy beside every compressible file of a directory
// tree, for `antiphon-node serve --www`, which sends them to clients that accept the encoding.
// Rewrites them on every run, so they never fall behind their file; skips files under 1 KiB.
//
//   node scripts/precompress.mjs DIR
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { brotliCompressSync, constants, gzipSync } from "node:zlib";

const COMPRESSIBLE = /\.(wasm|js|mjs|html|css|json|svg|txt|map)$/;
const dir = process.argv[2];
if (!dir) {
  console.error("usage: node scripts/precompress.mjs DIR");
  process.exit(2);
}

let files = 0;
let raw = 0;
let br = 0;
const walk = (d) => {
  for (const name of readdirSync(d)) {
    const path = join(d, name);
    const st = statSync(path);
    if (st.isDirectory()) walk(path);
    else if (COMPRESSIBLE.test(name) && st.size >= 1024) {
      const bytes = readFileSync(path);
      const brotli = brotliCompressSync(bytes, { params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: bytes.length } });
      writeFileSync(`${path}.br`, brotli);
      writeFileSync(`${path}.gz`, gzipSync(bytes, { level: 9 }));
      files += 1;
      raw += bytes.length;
      br += brotli.length;
    }
  }
};
walk(dir);
console.log(`precompressed ${files} file(s) in ${dir}: ${raw.toLocaleString("en")} B, ${br.toLocaleString("en")} B in brotli`);
