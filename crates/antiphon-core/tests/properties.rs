//! Property tests: every file imported reads back whole and in any range, and no decoder
//! panics on arbitrary bytes.
// Native only: proptest does not run under wasm-bindgen-test.
#![cfg(not(target_arch = "wasm32"))]

use antiphon_core::TrackManifest;
use antiphon_core::bitswap::message::{Message, Presence, WantEntry, WantType};
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

fn arb_cid() -> impl Strategy<Value = antiphon_core::Cid> {
    (any::<u64>(), prop_oneof![Just(RAW), Just(DAG_PB), Just(DAG_CBOR)], any::<bool>()).prop_map(|(n, codec, v0)| {
        let mh = antiphon_core::block::sha2_256(&n.to_le_bytes());
        if v0 { antiphon_core::Cid::new_v0(mh).unwrap() } else { antiphon_core::Cid::new_v1(codec, mh) }
    })
}

fn arb_message() -> impl Strategy<Value = Message> {
    let entry = (arb_cid(), any::<i32>(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
        |(cid, priority, cancel, have, send_dont_have)| WantEntry {
            cid,
            priority,
            cancel,
            want_type: if have { WantType::Have } else { WantType::Block },
            send_dont_have,
        },
    );
    let block = (prop_oneof![Just(RAW), Just(DAG_PB)], proptest::collection::vec(any::<u8>(), 0..2048))
        .prop_map(|(codec, data)| Block::from_data(codec, data).unwrap());
    let presence = (arb_cid(), any::<bool>()).prop_map(|(cid, have)| Presence { cid, have });
    (
        proptest::collection::vec(entry, 0..20),
        any::<bool>(),
        proptest::collection::vec(block, 0..5),
        proptest::collection::vec(presence, 0..20),
    )
        .prop_map(|(wantlist, full_wantlist, blocks, presences)| {
            let mut m = Message { wantlist, full_wantlist, presences, ..Message::default() };
            for b in &blocks {
                m.push_block(b);
            }
            m
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn bitswap_messages_round_trip(msg in arb_message()) {
        let bytes = msg.encode().unwrap();
        prop_assert!(bytes.len() <= msg.size_bound());
        let back = Message::decode(Bytes::from(bytes)).unwrap();
        prop_assert_eq!(&back, &msg);
        for (sent, got) in msg.blocks.iter().zip(&back.blocks) {
            prop_assert_eq!(got.clone().into_block().unwrap(), sent.clone().into_block().unwrap());
        }
    }

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
