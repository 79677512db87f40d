//! UnixFS files on dag-pb: the `Data` message, a Kubo-compatible importer and a streaming,
//! verifying exporter.
//!
//! - [`importer`]: bytes in, blocks out: 256 KiB chunks, raw leaves, CIDv1, balanced DAG of
//!   at most 174 links per node. The same bytes get the same root CID as
//!   `ipfs add --cid-version=1` in Kubo.
//! - [`exporter`]: a root CID and a byte range in, verified bytes out, one block at a time:
//!   files with raw or dag-pb leaves, CIDv0 or CIDv1, any depth.
//! - [`fetch`]: the exporter driven over any async block source, a few blocks ahead.

pub mod data;
pub mod exporter;
pub mod fetch;
pub mod importer;

pub use data::{DataType, UnixFsData};
pub use exporter::{ExportError, FileReader};
pub use fetch::{FetchError, fetch_file, fetch_file_of_size};
pub use importer::{FileImporter, ImportedFile};

/// Size of each leaf chunk the importer cuts, in bytes (Kubo's default `size-262144`).
pub const CHUNK_BYTES: usize = 256 * 1024;

/// Most links per node the importer writes (Kubo's balanced layout).
pub const MAX_LINKS_PER_NODE: usize = 174;
