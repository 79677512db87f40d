//! CAR files: any bytes give blocks or a typed error, never a panic or a huge allocation.
#![no_main]

use antiphon_core::car::CarReader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(reader) = CarReader::new(data) {
        for block in reader {
            if block.is_err() {
                break;
            }
        }
    }
});
