//! Tests against externally written IPFS/IPLD test data (`testdata/corpora`, copied from the
//! repositories its `SOURCE.txt` files name). Included at compile time, so the same tests run
//! natively and in headless Chromium.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::collections::BTreeMap;

use ipld_core::ipld::Ipld;

use crate::block::{Cid, HashFn, Multihash, RAW, VerifyError, verify};
use crate::car::{CarError, CarReader};
use crate::dag_pb::PbNode;
use crate::store::{Blockstore, MemoryBlockstore};
use crate::unixfs::exporter::{ExportError, read_file, resolve_path};

macro_rules! corpus {
    ($path:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/corpora/", $path))
    };
}

macro_rules! corpus_str {
    ($path:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/corpora/", $path))
    };
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// dag-json (as the fixtures write it) to the IPLD data model.
fn from_dag_json(v: &serde_json::Value) -> Ipld {
    use serde_json::Value;
    match v {
        Value::Null => Ipld::Null,
        Value::Bool(b) => Ipld::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Ipld::Integer(i128::from(i)),
            None => Ipld::Float(n.as_f64().unwrap()),
        },
        Value::String(s) => Ipld::String(s.clone()),
        Value::Array(a) => Ipld::List(a.iter().map(from_dag_json).collect()),
        Value::Object(m) => match m.get("/") {
            Some(Value::String(cid)) if m.len() == 1 => Ipld::Link(cid.parse().unwrap()),
            Some(Value::Object(inner)) if m.len() == 1 && inner.len() == 1 => {
                let b64 = inner["bytes"].as_str().unwrap();
                Ipld::Bytes(multibase::Base::Base64.decode(b64).unwrap())
            }
            _ => Ipld::Map(m.iter().map(|(k, v)| (k.clone(), from_dag_json(v))).collect::<BTreeMap<_, _>>()),
        },
    }
}

macro_rules! dag_pb_fixture {
    ($dir:literal, $cid:literal, $json:literal) => {
        (
            $cid,
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/testdata/corpora/codec-fixtures/fixtures/",
                $dir,
                "/",
                $cid,
                ".dag-pb"
            )) as &[u8],
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/testdata/corpora/codec-fixtures/fixtures/",
                $dir,
                "/",
                $json,
                ".dag-json"
            )),
        )
    };
}

const DAG_PB_FIXTURES: &[(&str, &[u8], &str)] = &[
    dag_pb_fixture!(
        "dagpb_11unnamedlinks+data",
        "bafybeie7xh3zqqmeedkotykfsnj2pi4sacvvsjq6zddvcff4pq7dvyenhu",
        "baguqeerap7w3wnisyfaoyn6vdjbvhgvzfhqxlmnkpfo2cza3kol3sgiou7zq"
    ),
    dag_pb_fixture!(
        "dagpb_1link",
        "bafybeihyivpglm6o6wrafbe36fp5l67abmewk7i2eob5wacdbhz7as5obe",
        "baguqeerao7xjffeobbqa2zv43ltxadt6pa4f3c2eh4ufsfudbazsmgb55dza"
    ),
    dag_pb_fixture!(
        "dagpb_2link+data",
        "bafybeibh647pmxyksmdm24uad6b5f7tx4dhvilzbg2fiqgzll4yek7g7y4",
        "baguqeerasu2dlp3l3b6xswyh45iegkn3qamarjdygorldhucn3x4kfeafmpa"
    ),
    dag_pb_fixture!(
        "dagpb_4namedlinks+data",
        "bafybeigcsevw74ssldzfwhiijzmg7a35lssfmjkuoj2t5qs5u5aztj47tq",
        "baguqeerapvtwnk5agczlqn7dgiyci5ku54llg32dmn3zvynn3dglte6y3s6q"
    ),
    dag_pb_fixture!(
        "dagpb_7unnamedlinks+data",
        "bafybeibfhhww5bpsu34qs7nz25wp7ve36mcc5mxd5du26sr45bbnjhpkei",
        "baguqeerab53i2tx2ktr3nbztcguof3pwadl6264yh5pt6h5ygxavlxghkkba"
    ),
    dag_pb_fixture!(
        "dagpb_Data_some",
        "bafybeibazl2z4vqp2tmwcfag6wirmtpnomxknqcgrauj7m2yisrz3qjbom",
        "baguqeerajwksxu3lxpomdwxvosl542zl3xknhjgxtq3277gafrhl6vdw5tcq"
    ),
    dag_pb_fixture!(
        "dagpb_Data_zero",
        "bafybeiaqfni3s5s2k2r6rgpxz4hohdsskh44ka5tk6ztbjerqpvxwfkwaq",
        "baguqeera7gxsmhbdmzwv3fgp4naa5idang7hm6hupkxshvm34taqiakw4zvq"
    ),
    dag_pb_fixture!(
        "dagpb_Links_Hash_some",
        "bafybeia53f5n75ituvc3yupuf7tdnxf6fqetrmo2alc6g6iljkmk7ys5mm",
        "baguqeeraumofom6evitwofvbunn2ocdqw5vxl7wnfxdjyqr5m6h2zgtnselq"
    ),
    dag_pb_fixture!(
        "dagpb_Links_Hash_some_Name_some",
        "bafybeifq4hcxma3kjljrpxtunnljtc6tvbkgsy3vldyfpfbx2lij76niyu",
        "baguqeeras44ncqauojywh67izb3d5j7rjbgdscdfsglzaex3envlwzq3lvxa"
    ),
    dag_pb_fixture!(
        "dagpb_Links_Hash_some_Name_zero",
        "bafybeie7fstnkm4yshfwnmpp7d3mlh4f4okmk7a54d6c3ffr755q7qzk44",
        "baguqeeraodk4mmutpv6bqhjd3kx5oicgnxq365lxu7h3orewh54avtttmzca"
    ),
    dag_pb_fixture!(
        "dagpb_Links_Hash_some_Tsize_some",
        "bafybeiezymjvhwfuharanxmzxwuomzjjuzqjewjolr4phaiyp6l7qfwo64",
        "baguqeera5drb4r7jf33wkkhs4dvxqsyacnxvv7djbzylt4ib2t42qk4qqkxa"
    ),
    dag_pb_fixture!(
        "dagpb_Links_Hash_some_Tsize_zero",
        "bafybeichjs5otecmbvwh5azdr4jc45mp2qcofh2fr54wjdxhz4znahod2i",
        "baguqeerac5ccyh6acqr3kdi5djstwzlu36uprk2dbi4f36ntlafquwthxm7a"
    ),
    dag_pb_fixture!(
        "dagpb_empty",
        "bafybeihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
        "baguqeera6mfu3g6n722vx7dbitpnbiyqnwah4ddy4b5c3rwzxc5pntqcupta"
    ),
    dag_pb_fixture!(
        "dagpb_simple_forms_1",
        "bafybeia2qk4u55f2qj7zimmtpulejgz7urp7rzs44cvledcaj42gltkk3u",
        "baguqeerabji5n2rfqif4kflih4r2tyl2jz3n3met5nys2wawsfihvc3guqta"
    ),
    dag_pb_fixture!(
        "dagpb_simple_forms_2",
        "bafybeiahfgovhod2uvww72vwdgatl5r6qkoeegg7at2bghiokupfphqcku",
        "baguqeeraibdu3hqnftoo7zlwqzcsk3pw4sf6epneqziyf7oehsde7ykbxula"
    ),
    dag_pb_fixture!(
        "dagpb_simple_forms_3",
        "bafybeidrg2f6slbv4yzydqtgmsi2vzojajnt7iufcreynfpxndca4z5twm",
        "baguqeeraas77sl6e3odguo3gfdarftcqqnarlh7kae7vnleh7zzmswnztzpq"
    ),
    dag_pb_fixture!(
        "dagpb_simple_forms_4",
        "bafybeieube7zxmzoc5bgttub2aqofi6xdzimv5munkjseeqccn36a6v6j4",
        "baguqeera3rnjnzebgxuygpqphmofp75upufi7linvrthm2r4cyiibafftqrq"
    ),
];

#[test]
fn dag_pb_fixtures_decode_re_encode_and_hash_to_their_cid() {
    assert_eq!(DAG_PB_FIXTURES.len(), 17);
    for &(cid, bytes, json) in DAG_PB_FIXTURES {
        let cid: Cid = cid.parse().unwrap();
        assert_eq!(verify(&cid, bytes), Ok(()), "{cid}");
        let node = PbNode::decode(bytes).unwrap_or_else(|e| panic!("{cid}: {e}"));
        assert_eq!(node.encode(), bytes, "{cid} re-encodes to other bytes");
        let expected = from_dag_json(&serde_json::from_str(json).unwrap());
        assert_eq!(node.to_ipld(), expected, "{cid} decodes to other fields than its dag-json");
        assert_eq!(PbNode::from_ipld(&expected).unwrap(), node, "{cid} from its data model");
    }
}

#[test]
fn negative_dag_pb_fixtures_are_refused() {
    let decode: serde_json::Value =
        serde_json::from_str(corpus_str!("codec-fixtures/negative-fixtures/dag-pb/decode/edges.json")).unwrap();
    let cases = decode.as_array().unwrap();
    assert_eq!(cases.len(), 9);
    for case in cases {
        let bytes = hex(case["hex"].as_str().unwrap());
        assert!(PbNode::decode(&bytes).is_err(), "decoded: {}", case["name"]);
    }
    let mut refused = 0;
    for file in [
        corpus_str!("codec-fixtures/negative-fixtures/dag-pb/encode/invalid-forms.json"),
        corpus_str!("codec-fixtures/negative-fixtures/dag-pb/encode/basic-datamodel-kinds.json"),
    ] {
        let cases: serde_json::Value = serde_json::from_str(file).unwrap();
        for case in cases.as_array().unwrap() {
            let form = from_dag_json(&case["dag-json"]);
            assert!(PbNode::from_ipld(&form).is_err(), "accepted: {}", case["name"]);
            refused += 1;
        }
    }
    assert_eq!(refused, 67 + 11);
}

#[test]
fn multihash_test_cases() {
    let csv = corpus_str!("multihash/test_cases.csv");
    let (mut verified, mut too_short, mut unsupported) = (0, 0, 0);
    for line in csv.lines().skip(1) {
        let cols: Vec<&str> = line.split(',').collect();
        // The input column is hashed as text, as the multihash test suite does.
        let (algorithm, bits, input, mh) = (cols[0], cols[1], cols[2].as_bytes().to_vec(), hex(cols[3]));
        let mh = Multihash::from_bytes(&mh).unwrap();
        assert_eq!(mh.size() as usize * 8, bits.parse::<usize>().unwrap());
        let cid = Cid::new_v1(RAW, mh);
        match HashFn::from_code(mh.code()) {
            None => {
                assert!(algorithm == "sha1", "{algorithm} should be supported");
                assert!(matches!(verify(&cid, &input), Err(VerifyError::UnsupportedHash { .. })));
                unsupported += 1;
            }
            Some(_) if mh.size() < 20 => {
                assert!(matches!(verify(&cid, &input), Err(VerifyError::DigestTooShort { .. })), "{line}");
                too_short += 1;
            }
            Some(f) => {
                assert!(algorithm.starts_with(&f.name()[..4]), "{line}");
                assert_eq!(verify(&cid, &input), Ok(()), "{line}");
                let mut flipped = input.clone();
                flipped.push(0);
                assert!(matches!(verify(&cid, &flipped), Err(VerifyError::Mismatch { .. })), "{line}");
                verified += 1;
            }
        }
    }
    assert_eq!(verified + too_short + unsupported, 260);
    assert!(verified >= 150 && too_short > 0 && unsupported == 40, "{verified} {too_short} {unsupported}");
}

/// The CARs whose blocks the corpora's MANIFEST.txt files list, by their path there.
const LISTED_CARS: &[(&str, &[u8])] = &[
    ("go-car/cmd/car/testdata/inputs/simple-unixfs.car", corpus!("go-car/cmd/car/testdata/inputs/simple-unixfs.car")),
    (
        "go-car/cmd/car/testdata/inputs/simple-unixfs-missing-blocks.car",
        corpus!("go-car/cmd/car/testdata/inputs/simple-unixfs-missing-blocks.car"),
    ),
    ("go-car/v2/testdata/sample-v1.car", corpus!("go-car/v2/testdata/sample-v1.car")),
    (
        "gateway-conformance/./fixtures/gateway-raw-block.car",
        corpus!("gateway-conformance/fixtures/gateway-raw-block.car"),
    ),
    (
        "gateway-conformance/./fixtures/path_gateway_dag/dag-pb.car",
        corpus!("gateway-conformance/fixtures/path_gateway_dag/dag-pb.car"),
    ),
    (
        "gateway-conformance/./fixtures/path_gateway_tar/fixtures.car",
        corpus!("gateway-conformance/fixtures/path_gateway_tar/fixtures.car"),
    ),
    (
        "gateway-conformance/./fixtures/path_gateway_unixfs/dir-with-files.car",
        corpus!("gateway-conformance/fixtures/path_gateway_unixfs/dir-with-files.car"),
    ),
    (
        "gateway-conformance/./fixtures/path_gateway_unixfs/dir-with-percent-encoded-filename.car",
        corpus!("gateway-conformance/fixtures/path_gateway_unixfs/dir-with-percent-encoded-filename.car"),
    ),
    (
        "gateway-conformance/./fixtures/path_gateway_unixfs/symlink.car",
        corpus!("gateway-conformance/fixtures/path_gateway_unixfs/symlink.car"),
    ),
    (
        "gateway-conformance/./fixtures/trustless_gateway_car/dir-with-dag-cbor-with-links.car",
        corpus!("gateway-conformance/fixtures/trustless_gateway_car/dir-with-dag-cbor-with-links.car"),
    ),
    (
        "gateway-conformance/./fixtures/trustless_gateway_car/dir-with-duplicate-files.car",
        corpus!("gateway-conformance/fixtures/trustless_gateway_car/dir-with-duplicate-files.car"),
    ),
    (
        "gateway-conformance/./fixtures/trustless_gateway_car/file-3k-and-3-blocks-missing-block.car",
        corpus!("gateway-conformance/fixtures/trustless_gateway_car/file-3k-and-3-blocks-missing-block.car"),
    ),
    (
        "gateway-conformance/./fixtures/trustless_gateway_car/single-layer-hamt-with-multi-block-files.car",
        corpus!("gateway-conformance/fixtures/trustless_gateway_car/single-layer-hamt-with-multi-block-files.car"),
    ),
    (
        "gateway-conformance/./fixtures/trustless_gateway_car/subdir-with-mixed-block-files.car",
        corpus!("gateway-conformance/fixtures/trustless_gateway_car/subdir-with-mixed-block-files.car"),
    ),
    (
        "gateway-conformance/./fixtures/trustless_gateway_car/subdir-with-two-single-block-files.car",
        corpus!("gateway-conformance/fixtures/trustless_gateway_car/subdir-with-two-single-block-files.car"),
    ),
    (
        "gateway-conformance/./tooling/car/_fixtures/dag.car",
        corpus!("gateway-conformance/tooling/car/_fixtures/dag.car"),
    ),
    (
        "gateway-conformance/./tooling/car/_fixtures/issue-54.car",
        corpus!("gateway-conformance/tooling/car/_fixtures/issue-54.car"),
    ),
    (
        "gateway-conformance/./tooling/check/_fixtures/hello_ipfs.car",
        corpus!("gateway-conformance/tooling/check/_fixtures/hello_ipfs.car"),
    ),
];

/// What a MANIFEST.txt says about one CAR: its roots and its blocks (or just their count).
struct Listed {
    roots: Vec<Cid>,
    cids: Vec<Cid>,
    count: usize,
}

fn manifest() -> BTreeMap<String, Listed> {
    let mut out = BTreeMap::new();
    for (prefix, text) in [
        ("go-car/", corpus_str!("go-car/MANIFEST.txt")),
        ("gateway-conformance/", corpus_str!("gateway-conformance/MANIFEST.txt")),
    ] {
        let mut current: Option<String> = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("== ") {
                let path = rest.split_whitespace().next().unwrap();
                let roots = rest.split("roots=[").nth(1).unwrap().trim_end_matches(']');
                let roots = roots.split(", ").map(|r| r.trim_matches('\'').parse().unwrap()).collect();
                let key = format!("{prefix}{path}");
                out.insert(key.clone(), Listed { roots, cids: Vec::new(), count: 0 });
                current = Some(key);
            } else if let Some(listed) = current.as_ref().and_then(|k| out.get_mut(k)) {
                let line = line.trim();
                if let Some(n) = line.strip_prefix('(') {
                    listed.count = n.split_whitespace().next().unwrap().parse().unwrap();
                } else if !line.is_empty() {
                    assert!(line.ends_with("ok=True"), "{line}");
                    listed.cids.push(line.split_whitespace().next().unwrap().parse().unwrap());
                    listed.count += 1;
                }
            }
        }
    }
    out
}

fn read_car(bytes: &[u8]) -> Result<(Vec<Cid>, Vec<crate::Block>), CarError> {
    let reader = CarReader::new(bytes)?;
    let roots = reader.roots().to_vec();
    let blocks = reader.collect::<Result<Vec<_>, _>>()?;
    Ok((roots, blocks))
}

#[test]
fn every_block_of_the_listed_cars_re_hashes_to_its_cid() {
    let manifest = manifest();
    assert_eq!(manifest.len(), LISTED_CARS.len());
    for &(path, bytes) in LISTED_CARS {
        let listed = manifest.get(path).unwrap_or_else(|| panic!("{path} is not in a MANIFEST"));
        // Reading verifies each block; the list must match what the MANIFEST recorded.
        let (roots, blocks) = read_car(bytes).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(roots, listed.roots, "{path}");
        assert_eq!(blocks.len(), listed.count, "{path}");
        if !listed.cids.is_empty() {
            let cids: Vec<Cid> = blocks.iter().map(|b| *b.cid()).collect();
            assert_eq!(cids, listed.cids, "{path}");
        }
    }
}

#[test]
fn carv2_and_js_car_files_read() {
    let v1 = read_car(corpus!("go-car/v2/testdata/sample-v1.car")).unwrap();
    let wrapped = read_car(corpus!("go-car/v2/testdata/sample-wrapped-v2.car")).unwrap();
    assert_eq!(wrapped, v1, "the CARv2 wraps sample-v1.car");
    for bytes in [
        &corpus!("go-car/v2/testdata/sample-rw-bs-v2.car")[..],
        corpus!("go-car/v2/testdata/sample-unixfs-v2.car"),
        corpus!("js-car/go.car"),
        corpus!("js-car/go.carv2"),
    ] {
        let (roots, blocks) = read_car(bytes).unwrap();
        assert!(!roots.is_empty() && !blocks.is_empty());
    }
    assert_eq!(CarReader::new(&corpus!("js-car/go.carv2")[..]).unwrap().version(), 2);
}

#[test]
fn corrupt_cars_give_errors() {
    let cases: [(&str, &[u8]); 7] = [
        ("bad header length", corpus!("go-car/cmd/car/testdata/inputs/badheaderlength.car")),
        ("bad section length", corpus!("go-car/cmd/car/testdata/inputs/badsectionlength.car")),
        ("corrupt pragma", corpus!("go-car/v2/testdata/sample-corrupt-pragma.car")),
        ("version 42", corpus!("go-car/v2/testdata/sample-rootless-v42.car")),
        ("trailing corrupt section", corpus!("go-car/v2/testdata/sample-v1-tailing-corrupt-section.car")),
        ("zero-length section", corpus!("go-car/v2/testdata/sample-v1-with-zero-len-section2.car")),
        ("corrupt CARv2 data", corpus!("go-car/v2/testdata/sample-v2-corrupt-data-and-index.car")),
    ];
    for (name, bytes) in cases {
        assert!(read_car(bytes).is_err(), "{name} was accepted");
    }
    assert!(matches!(
        read_car(corpus!("go-car/v2/testdata/sample-rootless-v42.car")),
        Err(CarError::UnsupportedVersion(42))
    ));
    assert!(matches!(
        read_car(corpus!("go-car/v2/testdata/sample-v1-with-zero-len-section2.car")),
        Err(CarError::ZeroLengthSection(_))
    ));
}

#[test]
fn fuzz_seeds_do_not_panic() {
    for bytes in [
        &corpus!(
            "go-car/testdata/fuzz/FuzzCarReader/21a90a70853c333c6b9ddc133bae39a14164874ed8abdee1f6a6795311a0e546.bin"
        )[..],
        corpus!(
            "go-car/testdata/fuzz/FuzzCarReader/5857e57e4072c6b0d8684030cc13b5570849c89b3dbf5bc0152abc66c9642f3e.bin"
        ),
        corpus!(
            "go-car/v2/testdata/fuzz/FuzzBlockReader/c3c7eedeb4968a5b3131371ba9f5138a38c882a7fa06456595998e740a9f5a14.bin"
        ),
        corpus!(
            "go-car/v2/testdata/fuzz/FuzzReader/c640dd07c02728da32cdaa17e13646f587ea278d888a655f683d6e42f19c0316.bin"
        ),
        corpus!(
            "go-car/v2/testdata/fuzz/FuzzReader/e1d7f87ee37f48386642fa9ac8fb6717ecba6e7e591a1ab111514f30e4b3594e.bin"
        ),
        corpus!(
            "go-car/v2/testdata/fuzz/FuzzReader/fe93cec1356ad2fe2217292374cd93b65a482fec3a43e6021fe87f5607bd8857.bin"
        ),
    ] {
        // The seeds are go's fuzz-corpus files: a text header, then the input as a Go literal.
        // Feed both the file and every suffix of it; none may panic.
        for start in 0..bytes.len() {
            let _ = read_car(&bytes[start..]);
        }
    }
}

fn store_of(car: &[u8]) -> (Cid, MemoryBlockstore) {
    let (roots, blocks) = read_car(car).unwrap();
    let store = MemoryBlockstore::new(usize::MAX);
    for b in &blocks {
        store.put(b).unwrap();
    }
    (roots[0], store)
}

#[test]
fn multiblock_txt_reassembles() {
    let (root, store) = store_of(corpus!("gateway-conformance/fixtures/path_gateway_unixfs/dir-with-files.car"));
    let file = resolve_path(&store, root, "multiblock.txt").unwrap();
    assert_eq!(file.codec(), crate::block::DAG_PB, "a multi-block file");
    let mut out = Vec::new();
    assert_eq!(read_file(&store, file, .., &mut out).unwrap(), 1026);
    assert_eq!(out.len(), 1026);
    // Ranges across the block boundaries agree with the whole.
    for (a, b) in [(0usize, 1usize), (250, 800), (1000, 1026)] {
        let mut part = Vec::new();
        read_file(&store, file, a as u64..b as u64, &mut part).unwrap();
        assert_eq!(part, &out[a..b]);
    }
}

#[test]
fn a_range_needing_the_missing_block_fails_and_others_succeed() {
    let car = corpus!("gateway-conformance/fixtures/trustless_gateway_car/file-3k-and-3-blocks-missing-block.car");
    let (root, store) = store_of(car);
    let whole = read_file(&store, root, .., &mut Vec::new());
    let Err(ExportError::Missing(missing)) = whole else { panic!("reading the whole file: {whole:?}") };
    assert!(!store.has(&missing).unwrap());
    let (mut ok, mut failed) = (0, 0);
    for i in 0..3u64 {
        let mut out = Vec::new();
        match read_file(&store, root, i * 1024..(i + 1) * 1024, &mut out) {
            Ok(n) => {
                assert_eq!((n, out.len()), (1024, 1024));
                ok += 1;
            }
            Err(ExportError::Missing(cid)) => {
                assert_eq!(cid, missing);
                failed += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((ok, failed), (2, 1));
}

#[test]
fn go_unixfsnode_cidv0_files_read() {
    let (root, store) =
        store_of(corpus!("go-unixfsnode/file/fixtures/QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o.car"));
    assert_eq!(root.to_string(), "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o");
    let mut out = Vec::new();
    read_file(&store, root, .., &mut out).unwrap();
    assert_eq!(out, b"hello world\n");
    let (dir, store) =
        store_of(corpus!("go-unixfsnode/file/fixtures/QmT8EC9sJq63SkDZ1mWLbWWyVV66PuqyHWpKkH4pcVyY4H.car"));
    let file = resolve_path(&store, dir, "b.txt").unwrap();
    let mut out = Vec::new();
    read_file(&store, file, .., &mut out).unwrap();
    assert!(!out.is_empty());
    assert!(matches!(read_file(&store, dir, .., &mut Vec::new()), Err(ExportError::NotAFile { .. })));
}

#[test]
fn blocks_read_from_a_car_serve_back_unchanged() {
    let car = corpus!("gateway-conformance/fixtures/path_gateway_unixfs/dir-with-files.car");
    let (roots, blocks) = read_car(car).unwrap();
    let mut w = crate::car::CarWriter::new(Vec::new(), &roots).unwrap();
    for b in &blocks {
        w.write_block(b).unwrap();
    }
    let written = w.finish().unwrap();
    assert_eq!(read_car(&written).unwrap(), (roots, blocks));
}
