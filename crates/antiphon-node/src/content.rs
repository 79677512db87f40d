//! Content commands: a file's CID, CAR import and export, and reading files back.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::ops::Range;
use std::path::Path;

use antiphon_core::block::DAG_CBOR;
use antiphon_core::car::{CarError, CarReader, CarWriter};
use antiphon_core::dag::{self, DagError};
use antiphon_core::unixfs::exporter::{ExportError, read_file};
use antiphon_core::unixfs::importer::{ImportedFile, import_reader};
use antiphon_core::{Cid, TrackManifest};

use crate::store::{Store, StoreError};

/// Why a content command failed.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// A file could not be read or written.
    #[error("{what} {path}")]
    File {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The CAR is malformed or holds a corrupt block.
    #[error("{path} is not a valid CAR")]
    Car {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: CarError,
    },
    /// Writing a CAR failed.
    #[error("writing the CAR failed")]
    CarWrite(#[source] CarError),
    /// The DAG under a CID is incomplete or malformed.
    #[error(transparent)]
    Dag(#[from] DagError),
    /// The file under a CID could not be read.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The UnixFS root CID of the file at `path` (Kubo's `ipfs add --cid-version=1 --only-hash`).
pub fn cid_of_file(path: &Path) -> Result<ImportedFile, ContentError> {
    let file =
        File::open(path).map_err(|source| ContentError::File { what: "cannot open", path: show(path), source })?;
    import_reader(BufReader::new(file), &mut |_| {}).map_err(|source| ContentError::File {
        what: "cannot read",
        path: show(path),
        source,
    })
}

/// Stores the file at `path` as a UnixFS file, all its blocks in one transaction.
pub fn add_file(store: &Store, path: &Path) -> Result<ImportedFile, ContentError> {
    let file =
        File::open(path).map_err(|source| ContentError::File { what: "cannot open", path: show(path), source })?;
    let mut batch = store.batch()?;
    let mut failed = None;
    let imported = import_reader(BufReader::new(file), &mut |block| {
        if failed.is_none()
            && let Err(e) = batch.put(&block)
        {
            failed = Some(e);
        }
    })
    .map_err(|source| ContentError::File { what: "cannot read", path: show(path), source })?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    batch.commit()?;
    Ok(imported)
}

/// What [`import_car`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarImport {
    /// Roots the CAR declares.
    pub roots: Vec<Cid>,
    /// Roots that are track manifests, now listed as tracks.
    pub tracks: Vec<Cid>,
    /// Blocks stored.
    pub blocks: u64,
    /// Bytes of block data stored.
    pub bytes: u64,
}

/// Verifies and stores every block of the CAR at `path` in one transaction: a corrupt CAR
/// stores nothing. Roots that are track manifests are listed as tracks.
pub fn import_car(store: &Store, path: &Path, added_unix: u64) -> Result<CarImport, ContentError> {
    let file =
        File::open(path).map_err(|source| ContentError::File { what: "cannot open", path: show(path), source })?;
    let car_error = |source| ContentError::Car { path: show(path), source };
    let mut reader = CarReader::new(BufReader::new(file)).map_err(car_error)?;
    let roots = reader.roots().to_vec();
    let mut batch = store.batch()?;
    let mut tracks = Vec::new();
    while let Some(block) = reader.next_block().map_err(car_error)? {
        if roots.contains(block.cid()) && block.cid().codec() == DAG_CBOR && TrackManifest::from_block(&block).is_ok() {
            batch.add_track(block.cid(), added_unix)?;
            tracks.push(*block.cid());
        }
        batch.put(&block)?;
    }
    let (blocks, bytes) = batch.added();
    batch.commit()?;
    Ok(CarImport { roots, tracks, blocks, bytes })
}

/// Writes a CARv1 of every block reachable from `root` to `out`, root first, depth first.
/// Fails, naming the block, if any is missing or corrupt.
pub fn export_car(store: &Store, root: Cid, out: impl Write) -> Result<u64, ContentError> {
    let mut writer = CarWriter::new(BufWriter::new(out), &[root]).map_err(ContentError::CarWrite)?;
    let mut write_error = None;
    let count = dag::walk(store, root, &mut |block| {
        if write_error.is_none()
            && let Err(e) = writer.write_block(block)
        {
            write_error = Some(e);
        }
    })?;
    if let Some(e) = write_error {
        return Err(ContentError::CarWrite(e));
    }
    writer.finish().map_err(ContentError::CarWrite)?;
    Ok(count)
}

/// Writes the bytes of the UnixFS file `root` within `range` to `out`.
pub fn cat(store: &Store, root: Cid, range: Range<u64>, out: &mut dyn Write) -> Result<u64, ContentError> {
    let mut out = BufWriter::new(out);
    let n = read_file(store, root, range, &mut out)?;
    out.flush().map_err(|source| ContentError::File { what: "cannot write", path: "output".into(), source })?;
    Ok(n)
}

fn show(path: &Path) -> String {
    path.display().to_string()
}
