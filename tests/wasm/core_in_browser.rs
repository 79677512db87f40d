//! The target-neutral core behaves the same compiled to wasm32 and run in the browser.

use antiphon_core::bitswap::message::{Message, WantEntry, WantType};
use antiphon_core::block::{DAG_CBOR, RAW, cid_v1};
use antiphon_core::manifest::MANIFEST_VERSION;
use antiphon_core::{Block, SegmentRef, TrackManifest, VerifyError};
use wasm_bindgen_test::wasm_bindgen_test;

#[wasm_bindgen_test]
fn a_flipped_byte_is_refused_with_both_cids() {
    let block = Block::from_data(RAW, vec![42u8; 4096]).unwrap();
    let mut bytes = block.data().to_vec();
    bytes[1000] ^= 0x01;
    match Block::new(*block.cid(), bytes) {
        Err(VerifyError::Mismatch { cid, computed }) => {
            assert_eq!(cid, *block.cid());
            assert_ne!(computed, cid);
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
}

#[wasm_bindgen_test]
fn sha256_matches_a_known_cid() {
    let block = Block::from_data(RAW, b"hello world\n".to_vec()).unwrap();
    assert_eq!(block.cid().to_string(), "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4");
}

#[wasm_bindgen_test]
fn manifest_round_trips_and_refuses_inconsistency() {
    let manifest = TrackManifest {
        version: MANIFEST_VERSION,
        codec: "audio/mpeg".into(),
        sample_rate: 44_100,
        channels: 2,
        total_samples: 44_100 * 12,
        segments: (0..2u8).map(|i| SegmentRef { cid: cid_v1(RAW, &[i]), bytes: 10, samples: 44_100 * 6 }).collect(),
        title: None,
        artist: None,
    };
    let block = manifest.to_block().unwrap();
    assert_eq!(block.cid().codec(), DAG_CBOR);
    assert_eq!(TrackManifest::from_block(&block).unwrap(), manifest);

    let mut broken = manifest.clone();
    broken.total_samples = 1;
    assert!(broken.encode().is_err());
}

#[wasm_bindgen_test]
fn bitswap_messages_round_trip() {
    let block = Block::from_data(RAW, b"segment bytes".to_vec()).unwrap();
    let mut msg = Message {
        wantlist: vec![WantEntry {
            cid: *block.cid(),
            priority: 1,
            cancel: false,
            want_type: WantType::Block,
            send_dont_have: true,
        }],
        ..Message::default()
    };
    msg.push_block(&block);
    let back = Message::decode(msg.encode().unwrap().into()).unwrap();
    assert_eq!(back, msg);
    assert_eq!(back.blocks[0].clone().into_block().unwrap(), block);
}
