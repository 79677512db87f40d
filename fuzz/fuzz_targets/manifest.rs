//! Track manifests: any bytes decode to a valid manifest or a typed error; a valid one
//! re-encodes to a manifest that decodes equal.
#![no_main]

use antiphon_core::TrackManifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = TrackManifest::decode(data) {
        let bytes = m.encode().expect("a decoded manifest encodes");
        assert_eq!(TrackManifest::decode(&bytes).expect("and decodes again"), m);
    }
});
