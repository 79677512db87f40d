//! The trustless gateway against requests that ask a lot for a little: a CAR with duplicates
//! (`dups=y`) of a track whose manifest links one 2 MiB segment 8192 times (16 GiB if every
//! copy were sent), and a one-byte range of a multi-block segment.

mod common;

use antiphon_core::block::{Block, RAW};
use antiphon_core::car::CarWriter;
use antiphon_core::unixfs::importer::import_bytes;
use antiphon_core::{SegmentRef, TrackManifest};

#[test]
fn a_repeated_segment_is_not_a_multiplier() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    // One 2 MiB raw segment, linked 8192 times.
    let segment = Block::from_data(RAW, vec![0x55; 2 * 1024 * 1024]).unwrap();
    let manifest = TrackManifest {
        version: antiphon_core::manifest::MANIFEST_VERSION,
        codec: "audio/mpeg".into(),
        sample_rate: 44_100,
        channels: 2,
        total_samples: 8192 * 264_600,
        segments: (0..8192)
            .map(|_| SegmentRef { cid: *segment.cid(), bytes: 2 * 1024 * 1024, samples: 264_600 })
            .collect(),
        title: Some("the same six seconds, thirteen hours long".into()),
        artist: None,
        album: None,
        cover: None,
    };
    let manifest = manifest.to_block().unwrap();
    let car = dir.path().join("repeated.car");
    let mut writer = CarWriter::new(std::fs::File::create(&car).unwrap(), &[*manifest.cid()]).unwrap();
    writer.write_block(&manifest).unwrap();
    writer.write_block(&segment).unwrap();
    writer.finish().unwrap();
    let out = common::node().arg("--data").arg(&data).arg("import-car").arg(&car).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // A multi-block segment too, for ranges.
    let long: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let (file, blocks) = import_bytes(&long);
    let car = dir.path().join("long.car");
    let mut writer = CarWriter::new(std::fs::File::create(&car).unwrap(), &[file.root]).unwrap();
    for b in &blocks {
        writer.write_block(b).unwrap();
    }
    writer.finish().unwrap();
    let out = common::node().arg("--data").arg(&data).arg("import-car").arg(&car).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let node = common::serve(&data, &[]);
    let track = manifest.cid().to_string();
    let dups = node.get(
        &format!("/ipfs/{track}?dag-scope=all"),
        &[("Accept", "application/vnd.ipld.car; version=1; order=dfs; dups=y")],
    );
    assert_eq!(dups.status, 413, "{}", String::from_utf8_lossy(&dups.body[..dups.body.len().min(300)]));
    assert!(dups.text().contains("dups=n"), "the refusal says what to ask instead: {}", dups.text());
    // Without duplicates the same track is its two blocks.
    let plain = node.get(&format!("/ipfs/{track}?format=car&dag-scope=all"), &[]);
    assert_eq!(plain.status, 200);
    assert!(plain.body.len() < 3 * 1024 * 1024, "{} bytes", plain.body.len());

    // One byte of a 3 MiB segment, from its middle.
    let at = 2_500_000u64;
    let r = node.get(&format!("/ipfs/{}", file.root), &[("Range", &format!("bytes={at}-{at}"))]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, vec![long[at as usize]]);
    assert_eq!(r.header("content-range"), Some(format!("bytes {at}-{at}/{}", long.len()).as_str()));
}
