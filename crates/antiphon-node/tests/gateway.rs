//! The trustless gateway against the gateway-conformance fixtures (ipfs/gateway-conformance,
//! copied in antiphon-core's testdata): each CAR is imported with `import-car`, then fetched
//! back as raw blocks and as CARs with each `dag-scope`, checking bytes, block order, headers
//! and status codes as the conformance suite's trustless tests describe them.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use antiphon_core::Cid;
use antiphon_core::car::CarReader;
use antiphon_core::dag_pb::PbNode;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../antiphon-core/testdata/corpora/gateway-conformance/fixtures")
        .join(name)
}

/// A fixture CAR read independently of the server: its root and its blocks.
struct Fixture {
    root: Cid,
    blocks: HashMap<Cid, Vec<u8>>,
}

impl Fixture {
    fn open(name: &str) -> Self {
        let mut reader = CarReader::new(std::fs::File::open(fixture(name)).unwrap()).unwrap();
        let root = reader.roots()[0];
        let mut blocks = HashMap::new();
        while let Some(b) = reader.next_block().unwrap() {
            blocks.insert(*b.cid(), b.data().to_vec());
        }
        Self { root, blocks }
    }

    fn node(&self, cid: &Cid) -> PbNode {
        PbNode::decode(&self.blocks[cid]).unwrap()
    }

    /// The CID at `path` below the root, through plain directories (and single-layer HAMTs,
    /// whose entry names carry a two-digit prefix).
    fn at(&self, path: &[&str]) -> Cid {
        let mut cid = self.root;
        for name in path {
            cid = self
                .node(&cid)
                .links
                .iter()
                .find(|l| {
                    l.name.as_deref() == Some(*name)
                        || l.name.as_deref().is_some_and(|n| n.len() > 2 && &n[2..] == *name)
                })
                .unwrap_or_else(|| panic!("{name} under {cid}"))
                .hash;
        }
        cid
    }

    /// The sub-shards of a HAMT (links named by their two-digit prefix alone), depth first.
    fn shards(&self, cid: &Cid) -> Vec<Cid> {
        let mut out = Vec::new();
        for link in self.node(cid).links {
            if link.name.as_deref().is_some_and(|n| n.len() == 2) {
                out.push(link.hash);
                out.extend(self.shards(&link.hash));
            }
        }
        out
    }

    /// Every block under `cid` in depth-first link order, `cid` excluded.
    fn descendants(&self, cid: &Cid) -> Vec<Cid> {
        let mut out = Vec::new();
        if cid.codec() == 0x70 {
            for link in self.node(cid).links {
                out.push(link.hash);
                out.extend(self.descendants(&link.hash));
            }
        }
        out
    }
}

/// The blocks of a CARv1 response body, in order, each checked against its CID.
fn car_blocks(body: &[u8]) -> Vec<Cid> {
    let mut reader = CarReader::new(body).expect("a CARv1 body");
    assert_eq!(reader.version(), 1);
    let mut out = Vec::new();
    while let Some(block) = reader.next_block().expect("every block verifies") {
        out.push(*block.cid());
    }
    out
}

fn import(data: &Path, names: &[&str]) {
    for name in names {
        let out = common::node().arg("--data").arg(data).arg("import-car").arg(fixture(name)).output().unwrap();
        assert!(out.status.success(), "import {name}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

const TWO_FILES: &str = "trustless_gateway_car/subdir-with-two-single-block-files.car";
const HAMT: &str = "trustless_gateway_car/single-layer-hamt-with-multi-block-files.car";
const MIXED: &str = "trustless_gateway_car/subdir-with-mixed-block-files.car";
const CBOR: &str = "trustless_gateway_car/dir-with-dag-cbor-with-links.car";
const DUPLICATES: &str = "trustless_gateway_car/dir-with-duplicate-files.car";
const MISSING: &str = "trustless_gateway_car/file-3k-and-3-blocks-missing-block.car";
const RAW_BLOCK: &str = "gateway-raw-block.car";

#[test]
fn trustless_gateway_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    import(&data, &[TWO_FILES, HAMT, MIXED, CBOR, DUPLICATES, MISSING, RAW_BLOCK]);
    let node = common::serve(&data, &[]);
    let car = |path: &str, query: &str| {
        let r = node.get(&format!("/ipfs/{path}?format=car{query}"), &[]);
        assert_eq!(r.status, 200, "{path}?{query}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/vnd.ipld.car; version=1; order=dfs; dups=n"));
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(r.header("cache-control"), Some("public, max-age=29030400, immutable"));
        assert!(r.header("etag").is_some_and(|e| e.contains(".car.")), "a CAR has its own Etag");
        car_blocks(&r.body)
    };

    // Raw blocks: every block of every fixture, byte for byte, with the spec's headers.
    let raw = Fixture::open(RAW_BLOCK);
    for (cid, bytes) in &raw.blocks {
        let r = node.get(&format!("/ipfs/{cid}?format=raw"), &[]);
        assert_eq!(r.status, 200);
        assert_eq!(&r.body, bytes);
        assert_eq!(r.header("content-type"), Some("application/vnd.ipld.raw"));
        assert_eq!(r.header("content-length"), Some(bytes.len().to_string().as_str()));
        assert_eq!(r.header("etag"), Some(format!("\"{cid}.raw\"").as_str()));
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert!(r.header("cache-control").unwrap().contains("immutable"));
        // Accept works as well as ?format, and a matching If-None-Match gets 304.
        let by_accept = node.get(&format!("/ipfs/{cid}"), &[("Accept", "application/vnd.ipld.raw")]);
        assert_eq!(by_accept.body, *bytes);
        let etag = format!("\"{cid}.raw\"");
        let cached = node.get(&format!("/ipfs/{cid}?format=raw"), &[("If-None-Match", &etag)]);
        assert_eq!(cached.status, 304);
    }
    let head = common::http(&node.http, "HEAD", &format!("/ipfs/{}?format=raw", raw.root), &[], &[]);
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert_eq!(head.header("content-length"), Some(raw.blocks[&raw.root].len().to_string().as_str()));

    // Pathing: the blocks along the path, then the whole entity at its end, in order.
    let f = Fixture::open(TWO_FILES);
    let (root, subdir, ascii) = (f.root, f.at(&["subdir"]), f.at(&["subdir", "ascii.txt"]));
    assert_eq!(car(&format!("{root}/subdir/ascii.txt"), ""), vec![root, subdir, ascii]);
    // dag-scope=block: the path and the block at its end only.
    assert_eq!(car(&format!("{root}/subdir"), "&dag-scope=block"), vec![root, subdir]);
    assert_eq!(car(&format!("{root}/subdir/ascii.txt"), "&dag-scope=block"), vec![root, subdir, ascii]);
    // dag-scope=entity of a directory: its own block, nothing below.
    assert_eq!(car(&root.to_string(), "&dag-scope=entity"), vec![root]);
    // A path that names nothing: 404.
    assert_eq!(node.get(&format!("/ipfs/{root}/subdir/i-do-not-exist?format=car"), &[]).status, 404);

    // A HAMT: pathing through it, and its entity is every shard block.
    let h = Fixture::open(HAMT);
    let file = h.at(&["981.txt"]);
    let mut expected = vec![h.root, file];
    expected.extend(h.descendants(&file));
    assert_eq!(car(&format!("{}/981.txt", h.root), ""), expected);
    assert_eq!(car(&format!("{}/393.txt", h.root), "&dag-scope=block"), vec![h.root, h.at(&["393.txt"])]);
    let shards: Vec<Cid> = [h.root].into_iter().chain(h.shards(&h.root)).collect();
    assert!(shards.len() > 1, "the fixture's HAMT has sub-shards");
    assert_eq!(car(&h.root.to_string(), "&dag-scope=entity"), shards, "the HAMT's own blocks, no entries");
    assert_eq!(car(&h.root.to_string(), "&dag-scope=entity&entity-bytes=0:*"), shards, "entity-bytes on a directory");

    // Mixed files: entity and all of a chunked file, all of a directory.
    let m = Fixture::open(MIXED);
    let (subdir, multi, ascii) =
        (m.at(&["subdir"]), m.at(&["subdir", "multiblock.txt"]), m.at(&["subdir", "ascii.txt"]));
    let leaves = m.descendants(&multi);
    assert_eq!(leaves.len(), 5, "multiblock.txt is 4 x 256 B + 2 B");
    let whole: Vec<Cid> = [m.root, subdir, multi].into_iter().chain(leaves.iter().copied()).collect();
    assert_eq!(car(&format!("{}/subdir/multiblock.txt", m.root), "&dag-scope=entity"), whole);
    assert_eq!(car(&format!("{}/subdir/multiblock.txt", m.root), "&dag-scope=all"), whole);
    assert_eq!(car(&format!("{}/subdir/multiblock.txt", m.root), "&dag-scope=entity&entity-bytes=0:*"), whole);
    assert_eq!(car(&format!("{}/subdir/ascii.txt", m.root), "&dag-scope=entity"), vec![m.root, subdir, ascii]);
    let mut all: Vec<Cid> = vec![m.root, subdir];
    all.extend(m.descendants(&subdir));
    assert_eq!(car(&format!("{}/subdir", m.root), "&dag-scope=all"), all);

    // entity-bytes: only the leaves a byte range needs.
    let range = |spec: &str| car(&multi.to_string(), &format!("&dag-scope=entity&entity-bytes={spec}"));
    let with = |picked: &[Cid]| [multi].into_iter().chain(picked.iter().copied()).collect::<Vec<_>>();
    assert_eq!(range("512:*"), with(&leaves[2..]));
    assert_eq!(range("512:1023"), with(&leaves[2..4]));
    assert_eq!(range("512:-256"), with(&leaves[2..4]));
    assert_eq!(range("-5:*"), with(&leaves[3..]));
    assert_eq!(range("-9999:*"), with(&leaves));
    assert_eq!(range("-9999:-3"), with(&leaves[..4]));
    assert_eq!(range("0:0"), with(&leaves[..1]));
    assert_eq!(node.get(&format!("/ipfs/{multi}?format=car&dag-scope=entity&entity-bytes=9:1"), &[]).status, 400);
    assert_eq!(
        node.get(&format!("/ipfs/{multi}?format=car&entity-bytes=0:1"), &[]).status,
        400,
        "needs dag-scope=entity"
    );

    // A file missing its third block: ranges that avoid it succeed; the whole file is a 404.
    let missing = Fixture::open(MISSING);
    let zero_to_1000 = car(&missing.root.to_string(), "&dag-scope=entity&entity-bytes=0:1000");
    assert_eq!(zero_to_1000[0], missing.root);
    assert_eq!(zero_to_1000[1].to_string(), "QmPKt7ptM2ZYSGPUc8PmPT2VBkLDK3iqpG9TBJY7PCE9rF");
    assert_eq!(zero_to_1000.len(), 2);
    let tail = car(&missing.root.to_string(), "&dag-scope=entity&entity-bytes=2200:*");
    assert_eq!(
        tail.iter().map(ToString::to_string).collect::<Vec<_>>()[1..],
        ["QmWXY482zQdwecnfBsj78poUUuPXvyw2JAFAEMw4tzTavV"]
    );
    assert_eq!(node.get(&format!("/ipfs/{}?format=car", missing.root), &[]).status, 404);

    // dag-cbor: pathing through a document's links, and its entity without what it links.
    let c = Fixture::open(CBOR);
    let document = c.at(&["document"]);
    let doc: ipld_core::ipld::Ipld = serde_ipld_dagcbor::from_slice(&c.blocks[&document]).unwrap();
    use ipld_core::ipld::Ipld;
    let field = |v: &Ipld, k: &str| match v {
        Ipld::Map(m) => m[k].clone(),
        other => panic!("{other:?} is not a map"),
    };
    let Ipld::Link(single) = field(&field(&doc, "files"), "single") else { panic!("files/single is a link") };
    let single = Cid::try_from(single.to_bytes().as_slice()).unwrap();
    assert_eq!(car(&format!("{document}/files/single"), ""), vec![document, single]);
    assert_eq!(car(&format!("{}/document", c.root), "&dag-scope=entity"), vec![c.root, document]);

    // Duplicates: dups=n lists a repeated file once; dups=y (asked by Accept, which wins over
    // ?format) lists it each time it is linked.
    let d = Fixture::open(DUPLICATES);
    let accept = |v: &'static str| node.get(&format!("/ipfs/{}?format=car", d.root), &[("Accept", v)]);
    let once = accept("application/vnd.ipld.car; version=1; order=dfs; dups=n");
    let twice = accept("application/vnd.ipld.car; version=1; order=dfs; dups=y");
    assert!(twice.header("content-type").unwrap().contains("dups=y"));
    let (once, twice) = (car_blocks(&once.body), car_blocks(&twice.body));
    assert_eq!(d.at(&["ascii.txt"]), d.at(&["ascii-copy.txt"]));
    assert_eq!(twice.len(), once.len() + 1, "the duplicate file's block appears twice with dups=y");
    let mut dfs = vec![d.root];
    dfs.extend(d.descendants(&d.root));
    assert_eq!(twice, dfs, "dups=y is the plain depth-first walk");
    let unk = accept("application/vnd.ipld.car; version=1; order=unk");
    assert!(unk.header("content-type").unwrap().contains("order=dfs"), "an explicit order is returned");

    // An identity CID is never sent as a block.
    let identity = node
        .get("/ipfs/bafkqaf3imvwgy3zaneqgc3janfxgy2lomvscay3jmqfa", &[("Accept", "application/vnd.ipld.car; dups=y")]);
    assert_eq!(identity.status, 200);
    assert!(car_blocks(&identity.body).is_empty());

    // Status codes: a bad CID is 400, a missing block 404, an unsupported format 406.
    assert_eq!(node.get("/ipfs/not-a-cid?format=raw", &[]).status, 400);
    assert_eq!(
        node.get("/ipfs/bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku?format=raw", &[]).status,
        404
    );
    assert_eq!(node.get(&format!("/ipfs/{root}?format=tar"), &[]).status, 406);
    assert_eq!(node.get(&format!("/ipfs/{root}"), &[("Accept", "application/vnd.ipld.dag-json")]).status, 406);
    assert_eq!(node.get(&format!("/ipfs/{root}"), &[("Accept", "application/vnd.ipld.car; version=2")]).status, 406);
    assert_eq!(node.get(&format!("/ipfs/{root}?format=car&dag-scope=everything"), &[]).status, 400);
    // CORS for browser origins.
    let cors = node.get(&format!("/ipfs/{root}?format=raw"), &[("Origin", "http://example.org")]);
    assert_eq!(cors.header("access-control-allow-origin"), Some("*"));
}

#[test]
fn files_are_served_as_bytes_with_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    import(&data, &[MIXED]);
    let node = common::serve(&data, &[]);
    let m = Fixture::open(MIXED);
    let multi = m.at(&["subdir", "multiblock.txt"]);
    let whole = node.get(&format!("/ipfs/{multi}"), &[]);
    assert_eq!((whole.status, whole.body.len()), (200, 1026));
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    let part = node.get(&format!("/ipfs/{multi}"), &[("Range", "bytes=250-259")]);
    assert_eq!(part.status, 206);
    assert_eq!(part.body, whole.body[250..260]);
    assert_eq!(part.header("content-range"), Some("bytes 250-259/1026"));
    assert_eq!(node.get(&format!("/ipfs/{multi}"), &[("Range", "bytes=5000-")]).status, 416);
    // By path, through the directory.
    assert_eq!(node.get(&format!("/ipfs/{}/subdir/multiblock.txt", m.root), &[]).body, whole.body);
}
