//! Bounds on everything that comes from outside. Each is enforced before the input is buffered.

/// Largest block accepted from anyone, in bytes (the Bitswap ceiling used across IPFS).
pub const MAX_BLOCK_BYTES: usize = 2 * 1024 * 1024;

/// Shortest digest accepted for a cryptographic hash, in bytes. Truncating a digest below 20
/// bytes (160 bits) makes collisions practical, so such CIDs are refused.
pub const MIN_DIGEST_BYTES: usize = 20;

/// Longest digest in a CID, in bytes: identity CIDs inline up to this much data.
pub const MAX_IDENTITY_DIGEST_BYTES: usize = 128;

/// Largest Bitswap message accepted or sent, in bytes (the limit go and JS Bitswap use).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Largest CID accepted in a wantlist or a block presence, in bytes.
pub const MAX_CID_BYTES: usize = 256;

/// Most wantlist entries kept for one remote peer; entries beyond it are ignored.
pub const MAX_WANTLIST_ENTRIES: usize = 1024;

/// Largest encoded track manifest, in bytes (it must fit in one block).
pub const MAX_MANIFEST_BYTES: usize = 1024 * 1024;

/// Largest segment a manifest may declare, in bytes. Segments over one block are UnixFS files;
/// 32 MiB is six seconds of 8-channel 192 kHz 24-bit PCM with room to spare, and bounds what a
/// player buffers for one segment.
pub const MAX_SEGMENT_BYTES: u64 = 32 * 1024 * 1024;

/// Most segments in one track manifest (8192 segments of 6 s is over 13 hours).
pub const MAX_SEGMENTS: usize = 8192;

/// Largest cover image a manifest may link (8 MiB).
pub const MAX_COVER_BYTES: u64 = 8 * 1024 * 1024;

/// Longest text field (title, artist, codec) in a manifest, in bytes.
pub const MAX_TEXT_BYTES: usize = 1024;

/// Deepest UnixFS tree read, in levels below the root. A balanced tree of 174-link nodes and
/// 256 KiB leaves holds more than any disk at depth 8; 32 leaves room for other layouts.
pub const MAX_DAG_DEPTH: usize = 32;

/// Largest CAR header accepted, in bytes (a header is a small dag-cbor map of root CIDs).
pub const MAX_CAR_HEADER_BYTES: usize = 1024 * 1024;

/// Most root CIDs accepted in a CAR header.
pub const MAX_CAR_ROOTS: usize = 1024;

/// Largest CAR section accepted, in bytes: one CID and one block.
pub const MAX_CAR_SECTION_BYTES: usize = MAX_CID_BYTES + MAX_BLOCK_BYTES;

/// Streams allowed on one yamux connection. Chosen for its side effect: rust-yamux grows a
/// stream's receive window beyond 256 KiB only out of the connection's 1 GiB budget left after
/// 256 KiB per allowed stream, so 4093 streams leave 768 KiB of growth and cap any stream's
/// window at 1 MiB. js-yamux (Helia) sends data frames as large as the window, and rust-yamux
/// refuses frames over 1 MiB, closing the connection ("frame body is too large"); with this
/// cap the two agree. Memory stays within yamux's own 1 GiB connection bound.
pub const YAMUX_MAX_STREAMS: usize = 4093;
