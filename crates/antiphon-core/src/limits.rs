//! Bounds on everything that comes from outside. Each is enforced before the input is buffered.

/// Largest block accepted from anyone, in bytes (the Bitswap ceiling used across IPFS).
pub const MAX_BLOCK_BYTES: usize = 2 * 1024 * 1024;

/// Largest segment stored as a single raw block, in bytes: the UnixFS chunk size.
///
/// Larger segments need a multi-block UnixFS file, which the walking skeleton refuses.
pub const MAX_SINGLE_BLOCK_SEGMENT_BYTES: usize = 256 * 1024;

/// Largest Bitswap message accepted or sent, in bytes (the limit go and JS Bitswap use).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Largest CID accepted in a wantlist or a block presence, in bytes.
pub const MAX_CID_BYTES: usize = 256;

/// Most wantlist entries kept for one remote peer; entries beyond it are ignored.
pub const MAX_WANTLIST_ENTRIES: usize = 1024;

/// Largest encoded track manifest, in bytes (it must fit in one block).
pub const MAX_MANIFEST_BYTES: usize = 1024 * 1024;

/// Most segments in one track manifest (8192 segments of 6 s is over 13 hours).
pub const MAX_SEGMENTS: usize = 8192;

/// Longest text field (title, artist, codec) in a manifest, in bytes.
pub const MAX_TEXT_BYTES: usize = 1024;
