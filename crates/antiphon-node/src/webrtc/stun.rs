//! Nomination of the first check.
//!
//! A WebRTC-direct listener is ICE-lite with one host candidate, so the address an
//! authenticated binding request comes from is the only pair there can be. str0m, like any
//! ICE-lite agent, sends nothing but STUN until the controlling side nominates a pair with
//! `USE-CANDIDATE`, and Chromium nominates in a second check about 50 ms after the first: the
//! answer to a ClientHello that arrived in between waited for it. The driver therefore hands
//! str0m each new connection's first request with `USE-CANDIDATE` added (integrity and
//! fingerprint recomputed with the password, which in WebRTC-direct is the ufrag the request
//! itself names), so DTLS answers at once.
//!
//! This grants nothing an attacker could not get by sending `USE-CANDIDATE` itself: the
//! password is public by the spec's design.

const HEADER: usize = 20;
const MESSAGE_INTEGRITY: u16 = 0x0008;
const USE_CANDIDATE: u16 = 0x0025;
const FINGERPRINT: u16 = 0x8028;
const FINGERPRINT_XOR: u32 = 0x5354_554e;

/// `request` (a binding request, already parsed by the caller) with `USE-CANDIDATE` added and
/// its integrity recomputed with `password`; `None` if it carries one already or its layout is
/// not the usual one (attributes, then `MESSAGE-INTEGRITY`, then at most `FINGERPRINT`).
pub(crate) fn with_use_candidate(request: &[u8], password: &[u8]) -> Option<Vec<u8>> {
    let integrity_at = find_integrity(request)?;
    let mut out = Vec::with_capacity(request.len() + 4);
    out.extend_from_slice(&request[..integrity_at]);
    out.extend_from_slice(&USE_CANDIDATE.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    // MESSAGE-INTEGRITY covers the message up to itself, with the header's length counting it.
    set_length(&mut out, 24);
    let hmac = str0m::crypto::from_feature_flags().sha1_hmac_provider.sha1_hmac(password, &[&out]);
    out.extend_from_slice(&MESSAGE_INTEGRITY.to_be_bytes());
    out.extend_from_slice(&20u16.to_be_bytes());
    out.extend_from_slice(&hmac);
    set_length(&mut out, 8);
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(&out) ^ FINGERPRINT_XOR;
    out.extend_from_slice(&FINGERPRINT.to_be_bytes());
    out.extend_from_slice(&4u16.to_be_bytes());
    out.extend_from_slice(&crc.to_be_bytes());
    set_length(&mut out, 0);
    Some(out)
}

/// The offset of `MESSAGE-INTEGRITY`, if the request has no `USE-CANDIDATE` before it.
fn find_integrity(request: &[u8]) -> Option<usize> {
    let declared = u16::from_be_bytes([*request.get(2)?, *request.get(3)?]) as usize;
    if request.len() != HEADER + declared {
        return None;
    }
    let mut at = HEADER;
    while at + 4 <= request.len() {
        let kind = u16::from_be_bytes([request[at], request[at + 1]]);
        let len = u16::from_be_bytes([request[at + 2], request[at + 3]]) as usize;
        match kind {
            USE_CANDIDATE => return None,
            MESSAGE_INTEGRITY => return Some(at),
            _ => at += 4 + len.div_ceil(4) * 4,
        }
    }
    None
}

/// Sets the header's length to the attributes in `message` plus `more` bytes to come.
fn set_length(message: &mut [u8], more: usize) {
    let len = (message.len() - HEADER + more) as u16;
    message[2..4].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use str0m::ice::{StunMessage, TransId};

    use super::*;

    fn hmac(key: &[u8], payloads: &[&[u8]]) -> [u8; 20] {
        str0m::crypto::from_feature_flags().sha1_hmac_provider.sha1_hmac(key, payloads)
    }

    fn request(use_candidate: bool) -> Vec<u8> {
        let message = StunMessage::binding_request("u:u", TransId::new(), true, 7, 1000, use_candidate);
        let mut buf = vec![0u8; 1500];
        let n = message.to_bytes(Some(b"u"), &mut buf, hmac).unwrap();
        buf.truncate(n);
        buf
    }

    #[test]
    fn the_rewritten_request_nominates_and_still_verifies() {
        let original = request(false);
        assert!(!StunMessage::parse(&original).unwrap().use_candidate());
        let rewritten = with_use_candidate(&original, b"u").unwrap();
        let parsed = StunMessage::parse(&rewritten).unwrap();
        assert!(parsed.is_binding_request() && parsed.use_candidate());
        assert_eq!(parsed.trans_id(), StunMessage::parse(&original).unwrap().trans_id());
        assert_eq!(parsed.username(), Some("u:u"));
        assert!(parsed.verify(b"u", hmac), "integrity recomputed with the password");
        assert!(!parsed.verify(b"wrong", hmac));
    }

    #[test]
    fn a_request_that_nominates_already_or_is_malformed_is_left_alone() {
        assert!(with_use_candidate(&request(true), b"u").is_none());
        let mut truncated = request(false);
        truncated.truncate(30);
        assert!(with_use_candidate(&truncated, b"u").is_none());
        assert!(with_use_candidate(&[], b"u").is_none());
    }
}
