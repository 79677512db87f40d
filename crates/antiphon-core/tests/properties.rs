//! Property tests: every file imported reads back whole and in any range, and no decoder
//! panics on arbitrary bytes.
// Native only: proptest does not run under wasm-bindgen-test.
#![cfg(not(target_arch = "wasm32"))]

use antiphon_core::TrackManifest;
use antiphon_core::bitswap::message::Message;
use antiphon_core::block::{Block, DAG_CBOR, DAG_PB, RAW};
use antiphon_core::car::CarReader;
use antiphon_core::dag::links;
use antiphon_core::dag_pb::PbNode;
use antiphon_core::store::{Blockstore, MemoryBlockstore};
use antiphon_core::unixfs::exporter::read_file;
use antiphon_core::unixfs::importer::{FileImporter, import_bytes};
use antiphon_core::unixfs::{CHUNK_BYTES, FileReader, UnixFsData};
use bytes::Bytes;
use proptest::prelude::*;

fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u64).wrapping_mul(2654435761).wrapping_add(u64::from(seed)) as u8).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn import_then_export_round_trips(len in 0usize..4 * CHUNK_BYTES + 10, seed: u8, a in 0usize..=1 << 22, b in 0usize..=1 << 22) {
        let data = content(len, seed);
        let (file, blocks) = import_bytes(&data);
        prop_assert_eq!(file.file_size, len as u64);
        let store = MemoryBlockstore::new(usize::MAX);
        blocks.iter().for_each(|block| store.put(block).unwrap());
        let mut out = Vec::new();
        read_file(&store, file.root, .., &mut out).unwrap();
        prop_assert_eq!(&out, &data);
        let (start, end) = (a.min(b).min(len), a.max(b).min(len));
        let mut part = Vec::new();
        read_file(&store, file.root, start as u64..end as u64, &mut part).unwrap();
        prop_assert_eq!(&part[..], &data[start..end]);
    }

    #[test]
    fn writes_in_any_pieces_give_the_same_root(len in 0usize..3 * CHUNK_BYTES, cuts in proptest::collection::vec(0usize..3 * CHUNK_BYTES, 0..8)) {
        let data = content(len, 1);
        let (whole, _) = import_bytes(&data);
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(len)).collect();
        cuts.push(0);
        cuts.push(len);
        cuts.sort_unstable();
        let mut importer = FileImporter::new();
        for w in cuts.windows(2) {
            importer.write(&data[w[0]..w[1]], &mut |_| {});
        }
        prop_assert_eq!(importer.finish(&mut |_| {}).root, whole.root);
    }

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = PbNode::decode(&bytes);
        let _ = UnixFsData::decode(&bytes);
        let _ = TrackManifest::decode(&bytes);
        let _ = Message::decode(Bytes::from(bytes.clone()));
        if let Ok(reader) = CarReader::new(&bytes[..]) {
            for block in reader.take(64) {
                if block.is_err() {
                    break;
                }
            }
        }
        for codec in [RAW, DAG_PB, DAG_CBOR] {
            let block = Block::from_data(codec, bytes.clone()).unwrap();
            let _ = links(&block);
            // As the root of a file: the reader decodes whatever verifies.
            let mut reader = FileReader::new(*block.cid(), ..);
            let _ = reader.push(block.cid(), Bytes::from(bytes.clone()));
        }
    }

    #[test]
    fn dag_pb_nodes_that_decode_re_encode_identically(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(node) = PbNode::decode(&bytes) {
            prop_assert_eq!(node.encode(), bytes);
        }
    }

    #[test]
    fn well_formed_dag_pb_survives_mutation(len in 1usize..2 * CHUNK_BYTES, flip in any::<usize>()) {
        // A real file root with one byte changed: refused or accepted, never a panic; and what
        // is accepted is canonical.
        let (file, blocks) = import_bytes(&content(len + CHUNK_BYTES, 3));
        let root = blocks.iter().find(|b| b.cid() == &file.root).unwrap();
        let mut bytes = root.data().to_vec();
        let i = flip % bytes.len();
        bytes[i] ^= 0x5a;
        if let Ok(node) = PbNode::decode(&bytes) {
            prop_assert_eq!(node.encode(), bytes);
        }
    }
}
