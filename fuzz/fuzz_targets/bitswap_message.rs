//! Bitswap messages as they come off a stream: decoding must never panic, and what decodes
//! must re-encode and decode to the same message.
#![no_main]

use antiphon_core::bitswap::message::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = Message::decode(bytes::Bytes::copy_from_slice(data))
        && let Ok(encoded) = msg.encode()
    {
        let again = Message::decode(bytes::Bytes::from(encoded)).expect("re-encoded message decodes");
        assert_eq!(again, msg);
        for block in msg.blocks {
            let _ = block.into_block();
        }
    }
});
