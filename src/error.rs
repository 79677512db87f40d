//! The browser peer's errors. Each has a stable [`ErrorCode`] that JavaScript can match on, and
//! reaches JavaScript as an `Error` whose `code` property holds it and whose `cause` chain keeps
//! the underlying errors.

use antiphon_core::bitswap::RequestError;
use antiphon_core::{ManifestError, VerifyError};

/// Stable, machine-readable error codes (the `code` property of the JS `Error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// A CID string did not parse.
    InvalidCid,
    /// An address (multiaddr or URL) did not parse or names no usable transport.
    InvalidAddress,
    /// No connection could be made to the creator node.
    DialFailed,
    /// An HTTP request failed.
    HttpFailed,
    /// A block could not be fetched (not found, timed out, peer gone).
    FetchFailed,
    /// A block's bytes did not hash to its CID; it was refused.
    VerificationFailed,
    /// The track manifest is invalid.
    InvalidManifest,
    /// A segment's blocks do not form the file the manifest declares.
    InvalidSegment,
    /// The browser cannot play the track's codec through Media Source Extensions.
    MediaUnsupported,
    /// Media Source Extensions failed.
    MediaFailed,
    /// The peer or player was stopped.
    Stopped,
    /// An argument from JavaScript is out of range or unknown.
    InvalidArgument,
    /// `play()` before any `load()`.
    NotLoaded,
}

impl ErrorCode {
    /// The code as JavaScript sees it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidCid => "INVALID_CID",
            Self::InvalidAddress => "INVALID_ADDRESS",
            Self::DialFailed => "DIAL_FAILED",
            Self::HttpFailed => "HTTP_FAILED",
            Self::FetchFailed => "FETCH_FAILED",
            Self::VerificationFailed => "VERIFICATION_FAILED",
            Self::InvalidManifest => "INVALID_MANIFEST",
            Self::InvalidSegment => "INVALID_SEGMENT",
            Self::MediaUnsupported => "MEDIA_UNSUPPORTED",
            Self::MediaFailed => "MEDIA_FAILED",
            Self::Stopped => "STOPPED",
            Self::InvalidArgument => "INVALID_ARGUMENT",
            Self::NotLoaded => "NOT_LOADED",
        }
    }
}

/// An error of the browser peer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// See [`ErrorCode::InvalidCid`].
    #[error("invalid CID {input:?}")]
    InvalidCid {
        /// What was given.
        input: String,
        /// Why it did not parse.
        #[source]
        source: cid::Error,
    },
    /// See [`ErrorCode::InvalidAddress`].
    #[error("invalid address {input:?}: {reason}")]
    InvalidAddress {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// See [`ErrorCode::DialFailed`].
    #[error("could not connect to {target}: {reason}")]
    DialFailed {
        /// Whom we tried.
        target: String,
        /// What happened on each attempt.
        reason: String,
    },
    /// See [`ErrorCode::DialFailed`]: `Peer.start` reached no creator node and has no gateway.
    /// JavaScript sees each node's failure in the error's `failures` (`{ target, code,
    /// message }`) and `cause` (the first one).
    #[error("could not connect to {}", describe_failures(failures))]
    AllNodesFailed {
        /// Each configured node's failure, in configured order.
        failures: Vec<NodeFailure>,
    },
    /// See [`ErrorCode::HttpFailed`].
    #[error("HTTP request to {url} failed: {reason}")]
    Http {
        /// The URL.
        url: String,
        /// What happened.
        reason: String,
    },
    /// See [`ErrorCode::FetchFailed`].
    #[error("could not fetch {cid}")]
    Fetch {
        /// The block.
        cid: antiphon_core::Cid,
        /// Why.
        #[source]
        source: RequestError,
    },
    /// See [`ErrorCode::FetchFailed`]: nothing to ask.
    #[error("no source to fetch {cid} from: no creator node is connected and no gateway is configured")]
    NoSource {
        /// The block.
        cid: antiphon_core::Cid,
    },
    /// See [`ErrorCode::VerificationFailed`].
    #[error("block {cid} from {peer} failed verification and was refused")]
    Verification {
        /// The CID the bytes were supposed to have.
        cid: antiphon_core::Cid,
        /// The peer that sent them.
        peer: String,
        /// What the hash check found.
        #[source]
        source: VerifyError,
    },
    /// See [`ErrorCode::InvalidManifest`].
    #[error("track manifest {cid} is invalid")]
    Manifest {
        /// The manifest CID.
        cid: antiphon_core::Cid,
        /// Why.
        #[source]
        source: ManifestError,
    },
    /// See [`ErrorCode::InvalidSegment`]: a block of the segment's DAG is malformed.
    #[error("{cid} is not a valid UnixFS file")]
    Segment {
        /// The segment's root CID.
        cid: antiphon_core::Cid,
        /// What is wrong.
        #[source]
        source: antiphon_core::unixfs::ExportError,
    },
    /// See [`ErrorCode::InvalidSegment`]: the segment's size differs from the manifest's.
    #[error("segment {cid} should hold {declared} bytes but holds {}", actual.map_or("more".to_string(), |a| a.to_string()))]
    SegmentSize {
        /// The segment's root CID.
        cid: antiphon_core::Cid,
        /// Bytes the manifest declares.
        declared: u64,
        /// Bytes the blocks hold, if known (more than declared otherwise).
        actual: Option<u64>,
    },
    /// See [`ErrorCode::MediaUnsupported`].
    #[error("this browser cannot play {mime} through Media Source Extensions")]
    MediaUnsupported {
        /// The MIME type.
        mime: String,
    },
    /// See [`ErrorCode::MediaFailed`].
    #[error("media source failed: {0}")]
    Media(String),
    /// See [`ErrorCode::MediaFailed`]: the SourceBuffer is full and nothing behind the playhead
    /// can be removed; the player retries once playback moves on.
    #[error("the media buffer is full with nothing behind the playhead ({playhead:.1} s) to remove")]
    BufferFull {
        /// Where the playhead was.
        playhead: f64,
    },
    /// See [`ErrorCode::VerificationFailed`]: bytes given to `verify` do not match their CID.
    #[error("bytes do not verify against {cid}")]
    Verify {
        /// The CID.
        cid: antiphon_core::Cid,
        /// What the hash check found.
        #[source]
        source: VerifyError,
    },
    /// A verified segment that does not decode (Web Audio output only).
    #[cfg(feature = "webaudio")]
    #[error("segment {index} does not decode")]
    Decode {
        /// Its index in the track.
        index: usize,
        /// What the decoder said.
        #[source]
        source: crate::output::decode::DecodeError,
    },
    /// See [`ErrorCode::InvalidArgument`].
    #[error("invalid {what}: {reason}")]
    InvalidArgument {
        /// Which argument.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// See [`ErrorCode::Stopped`].
    #[error("the peer or player has been stopped")]
    Stopped,
    /// See [`ErrorCode::NotLoaded`].
    #[error("nothing to play: call load() first")]
    NotLoaded,
}

/// Why one creator node could not be reached.
#[derive(Debug, Clone)]
pub struct NodeFailure {
    /// The node as configured (URL or multiaddr).
    pub target: String,
    /// The stable code of its failure.
    pub code: &'static str,
    /// Why, without the node's name.
    pub reason: String,
}

/// "X: why" for one node, "any creator node (X: why; Y: why)" for several.
fn describe_failures(failures: &[NodeFailure]) -> String {
    let each: Vec<String> = failures.iter().map(|f| format!("{}: {}", f.target, f.reason)).collect();
    match each.as_slice() {
        [one] => one.clone(),
        _ => format!("any creator node ({})", each.join("; ")),
    }
}

impl Error {
    /// The stable code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidCid { .. } => ErrorCode::InvalidCid,
            Self::InvalidAddress { .. } => ErrorCode::InvalidAddress,
            Self::DialFailed { .. } | Self::AllNodesFailed { .. } => ErrorCode::DialFailed,
            Self::Http { .. } => ErrorCode::HttpFailed,
            Self::Fetch { .. } | Self::NoSource { .. } => ErrorCode::FetchFailed,
            Self::Verification { .. } => ErrorCode::VerificationFailed,
            Self::Manifest { .. } => ErrorCode::InvalidManifest,
            Self::Segment { .. } | Self::SegmentSize { .. } => ErrorCode::InvalidSegment,
            Self::MediaUnsupported { .. } => ErrorCode::MediaUnsupported,
            Self::Media(_) | Self::BufferFull { .. } => ErrorCode::MediaFailed,
            Self::Stopped => ErrorCode::Stopped,
            Self::Verify { .. } => ErrorCode::VerificationFailed,
            Self::InvalidArgument { .. } => ErrorCode::InvalidArgument,
            Self::NotLoaded => ErrorCode::NotLoaded,
            #[cfg(feature = "webaudio")]
            Self::Decode { .. } => ErrorCode::InvalidSegment,
        }
    }

    /// Turns a failed Bitswap request into the error the player reports: a corrupt block is a
    /// verification failure, anything else a fetch failure.
    pub fn from_request(cid: antiphon_core::Cid, error: RequestError) -> Self {
        match error {
            RequestError::Corrupt { peer, error } => Self::Verification { cid, peer: peer.to_string(), source: error },
            other => Self::Fetch { cid, source: other },
        }
    }

    /// The CID this error concerns, if any.
    pub fn cid(&self) -> Option<antiphon_core::Cid> {
        match self {
            Self::Fetch { cid, .. }
            | Self::NoSource { cid }
            | Self::Verification { cid, .. }
            | Self::Verify { cid, .. }
            | Self::Manifest { cid, .. }
            | Self::Segment { cid, .. }
            | Self::SegmentSize { cid, .. } => Some(*cid),
            _ => None,
        }
    }
}

#[cfg(target_arch = "wasm32")]
impl From<Error> for wasm_bindgen::JsValue {
    fn from(error: Error) -> Self {
        use std::error::Error as _;
        let js = js_sys::Error::new(&error.to_string());
        js.set_name("AntiphonError");
        let _ = js_sys::Reflect::set(&js, &"code".into(), &error.code().as_str().into());
        if let Some(cid) = error.cid() {
            let _ = js_sys::Reflect::set(&js, &"cid".into(), &cid.to_string().into());
        }
        // Keep the chain of sources as nested `cause`s.
        let mut causes = Vec::new();
        let mut source = error.source();
        while let Some(s) = source {
            causes.push(js_sys::Error::new(&s.to_string()));
            source = s.source();
        }
        let mut next: Option<js_sys::Error> = None;
        for cause in causes.into_iter().rev() {
            if let Some(inner) = next.take() {
                cause.set_cause(&inner);
            }
            next = Some(cause);
        }
        if let Some(first) = next {
            js.set_cause(&first);
        }
        if let Error::AllNodesFailed { failures } = &error {
            let list: js_sys::Array = failures
                .iter()
                .map(|f| {
                    let e = js_sys::Error::new(&f.reason);
                    let _ = js_sys::Reflect::set(&e, &"target".into(), &f.target.as_str().into());
                    let _ = js_sys::Reflect::set(&e, &"code".into(), &f.code.into());
                    wasm_bindgen::JsValue::from(e)
                })
                .collect();
            if let Ok(first) = wasm_bindgen::JsCast::dyn_into::<js_sys::Error>(list.get(0)) {
                js.set_cause(&first);
            }
            let _ = js_sys::Reflect::set(&js, &"failures".into(), &list);
        }
        js.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use antiphon_core::block::{RAW, cid_v1};

    #[test]
    fn corrupt_request_becomes_verification_error_naming_the_cid() {
        let cid = cid_v1(RAW, b"a");
        let computed = cid_v1(RAW, b"b");
        let peer = libp2p_identity_peer();
        let e =
            Error::from_request(cid, RequestError::Corrupt { peer, error: VerifyError::Mismatch { cid, computed } });
        assert_eq!(e.code(), ErrorCode::VerificationFailed);
        assert!(e.to_string().contains(&cid.to_string()));
        assert_eq!(e.cid(), Some(cid));
    }

    fn libp2p_identity_peer() -> antiphon_core::bitswap::PeerId {
        antiphon_core::bitswap::PeerId::random()
    }
}
