//! `/antiphon/provide/1.0.0`: a browser tells the creator node that relays for it which CIDs it
//! holds and where other browsers reach it. Request-response: the browser writes one CBOR
//! [`ProvideRequest`] and closes its side; the node answers with one CBOR [`ProvideResponse`].
//! The node lists the browser as a provider of those CIDs in its delegated-routing answers.

use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};

/// The protocol.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/antiphon/provide/1.0.0");
/// Largest announcement a node reads, in bytes.
pub const MAX_REQUEST_BYTES: u64 = 96 * 1024;
/// Largest answer a browser reads, in bytes.
pub const MAX_RESPONSE_BYTES: u64 = 1024;
/// CIDs one announcement may carry.
pub const MAX_CIDS: usize = 1024;

/// What a browser holds. CIDs are strings so that any CBOR encoder writes them the same way.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProvideRequest {
    /// Where other browsers reach it: `<node>/p2p/<node-id>/p2p-circuit/webrtc/p2p/<its id>`.
    pub addr: String,
    /// What it holds; replaces what it announced before.
    pub cids: Vec<String>,
}

/// The node's answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProvideResponse {
    /// CIDs recorded.
    pub accepted: u32,
    /// Why the announcement was refused, if it was.
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_announcement_fits_the_request_bound() {
        // The longest CIDs a browser holds: dag-cbor manifests and raw or dag-pb segments,
        // CIDv1 sha2-256 in base32 (59 characters).
        let cids: Vec<String> =
            (0..MAX_CIDS).map(|i| crate::block::cid_v1(0x71, &i.to_be_bytes()).to_string()).collect();
        let addr = format!(
            "/ip6/2001:db8::1/udp/4003/webrtc-direct/certhash/uEiD{}/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit/webrtc/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN",
            "A".repeat(43)
        );
        let request = ProvideRequest { addr, cids };
        let bytes = serde_ipld_dagcbor::to_vec(&request).unwrap();
        assert!((bytes.len() as u64) < MAX_REQUEST_BYTES, "{} bytes", bytes.len());
        let back: ProvideRequest = serde_ipld_dagcbor::from_slice(&bytes).unwrap();
        assert_eq!(back, request);
    }

    #[test]
    fn answers_fit_the_response_bound() {
        let refused = ProvideResponse { accepted: 0, error: Some("x".repeat(512)) };
        let bytes = serde_ipld_dagcbor::to_vec(&refused).unwrap();
        assert!((bytes.len() as u64) < MAX_RESPONSE_BYTES);
    }
}
