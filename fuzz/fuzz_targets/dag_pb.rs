//! dag-pb nodes and their UnixFS data: what decodes re-encodes to the same bytes.
#![no_main]

use antiphon_core::dag_pb::PbNode;
use antiphon_core::unixfs::UnixFsData;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(node) = PbNode::decode(data) {
        assert_eq!(node.encode(), data, "accepted dag-pb is canonical");
        if let Some(inner) = &node.data {
            let _ = UnixFsData::decode(inner);
        }
    }
    let _ = UnixFsData::decode(data);
});
