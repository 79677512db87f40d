//! The UnixFS `Data` message carried in a dag-pb node's `Data` field, written from the UnixFS
//! specification's protobuf schema (proto2).

use prost::Message as _;

use crate::limits::MAX_BLOCK_BYTES;

/// The protobuf schema, proto2 field numbers and labels.
mod pb {
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Data {
        // `required` in the schema; optional here so that its absence can be refused.
        #[prost(int32, optional, tag = "1")]
        pub(super) r#type: Option<i32>,
        #[prost(bytes = "vec", optional, tag = "2")]
        pub(super) data: Option<Vec<u8>>,
        #[prost(uint64, optional, tag = "3")]
        pub(super) filesize: Option<u64>,
        // proto2 repeated scalars are not packed: Kubo and the JS importer write one field each.
        #[prost(uint64, repeated, packed = "false", tag = "4")]
        pub(super) blocksizes: Vec<u64>,
        #[prost(uint64, optional, tag = "5")]
        pub(super) hash_type: Option<u64>,
        #[prost(uint64, optional, tag = "6")]
        pub(super) fanout: Option<u64>,
        #[prost(uint32, optional, tag = "7")]
        pub(super) mode: Option<u32>,
        #[prost(message, optional, tag = "8")]
        pub(super) mtime: Option<UnixTime>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct UnixTime {
        #[prost(int64, required, tag = "1")]
        pub(super) seconds: i64,
        #[prost(fixed32, optional, tag = "2")]
        pub(super) fractional_nanoseconds: Option<u32>,
    }
}

/// What a UnixFS node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    /// Raw data (legacy leaves made with dag-pb).
    Raw,
    /// A directory.
    Directory,
    /// A file, or a piece of one.
    File,
    /// Extended metadata (unused).
    Metadata,
    /// A symbolic link; the data is its target.
    Symlink,
    /// A sharded (HAMT) directory.
    HamtShard,
}

impl DataType {
    fn from_i32(v: i32) -> Option<Self> {
        Some(match v {
            0 => DataType::Raw,
            1 => DataType::Directory,
            2 => DataType::File,
            3 => DataType::Metadata,
            4 => DataType::Symlink,
            5 => DataType::HamtShard,
            _ => return None,
        })
    }

    fn to_i32(self) -> i32 {
        match self {
            DataType::Raw => 0,
            DataType::Directory => 1,
            DataType::File => 2,
            DataType::Metadata => 3,
            DataType::Symlink => 4,
            DataType::HamtShard => 5,
        }
    }
}

/// A decoded UnixFS `Data` message (mode and mtime are kept but not interpreted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixFsData {
    /// The node's type.
    pub kind: DataType,
    /// Bytes held in this node itself (a file's leading bytes, a symlink's target).
    pub data: Option<Vec<u8>>,
    /// Total size of the file under this node, if stated.
    pub filesize: Option<u64>,
    /// File bytes under each link, in link order.
    pub blocksizes: Vec<u64>,
    /// HAMT hash function (directories only).
    pub hash_type: Option<u64>,
    /// HAMT fanout (directories only).
    pub fanout: Option<u64>,
    /// POSIX permission bits.
    pub mode: Option<u32>,
    /// Modification time: seconds and nanoseconds.
    pub mtime: Option<(i64, Option<u32>)>,
}

/// Why bytes were refused as a UnixFS `Data` message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UnixFsDataError {
    /// Not a protobuf of the schema.
    #[error("UnixFS Data message does not decode")]
    Decode(#[source] prost::DecodeError),
    /// The required `Type` field is absent.
    #[error("UnixFS Data message has no Type")]
    MissingType,
    /// A `Type` the spec does not define.
    #[error("UnixFS Data has unknown Type {0}")]
    UnknownType(i32),
    /// Larger than a block may be.
    #[error("UnixFS Data of {0} bytes exceeds the block limit")]
    TooLarge(usize),
}

impl UnixFsData {
    /// A file node with no data of its own, covering children of the given sizes.
    pub fn file(blocksizes: Vec<u64>) -> Self {
        Self {
            kind: DataType::File,
            data: None,
            filesize: Some(blocksizes.iter().sum()),
            blocksizes,
            hash_type: None,
            fanout: None,
            mode: None,
            mtime: None,
        }
    }

    /// Decodes the message.
    pub fn decode(bytes: &[u8]) -> Result<Self, UnixFsDataError> {
        if bytes.len() > MAX_BLOCK_BYTES {
            return Err(UnixFsDataError::TooLarge(bytes.len()));
        }
        let m = pb::Data::decode(bytes).map_err(UnixFsDataError::Decode)?;
        let code = m.r#type.ok_or(UnixFsDataError::MissingType)?;
        let kind = DataType::from_i32(code).ok_or(UnixFsDataError::UnknownType(code))?;
        Ok(Self {
            kind,
            data: m.data,
            filesize: m.filesize,
            blocksizes: m.blocksizes,
            hash_type: m.hash_type,
            fanout: m.fanout,
            mode: m.mode,
            mtime: m.mtime.map(|t| (t.seconds, t.fractional_nanoseconds)),
        })
    }

    /// Encodes the message as Kubo does (fields in number order, blocksizes unpacked).
    pub fn encode(&self) -> Vec<u8> {
        pb::Data {
            r#type: Some(self.kind.to_i32()),
            data: self.data.clone(),
            filesize: self.filesize,
            blocksizes: self.blocksizes.clone(),
            hash_type: self.hash_type,
            fanout: self.fanout,
            mode: self.mode,
            mtime: self.mtime.map(|(seconds, fractional_nanoseconds)| pb::UnixTime { seconds, fractional_nanoseconds }),
        }
        .encode_to_vec()
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    // go-unixfsnode's fixtures (../shared/corpora/go-unixfsnode/data/fixtures).
    const FILE: &[u8] = include_bytes!("../../testdata/corpora/go-unixfsnode/data/fixtures/file.txt.unixfs");
    const SYMLINK: &[u8] = include_bytes!("../../testdata/corpora/go-unixfsnode/data/fixtures/symlink.txt.unixfs");
    const DIRECTORY: &[u8] = include_bytes!("../../testdata/corpora/go-unixfsnode/data/fixtures/directory.unixfs");

    #[test]
    fn go_unixfsnode_fixtures_decode_and_re_encode() {
        let file = UnixFsData::decode(FILE).unwrap();
        assert_eq!(file.kind, DataType::File);
        assert_eq!(file.data.as_deref(), Some(&b"Hello UnixFS\n"[..]));
        assert_eq!(file.filesize, Some(13));
        let symlink = UnixFsData::decode(SYMLINK).unwrap();
        assert_eq!((symlink.kind, symlink.data.as_deref()), (DataType::Symlink, Some(&b"file.txt"[..])));
        assert_eq!(UnixFsData::decode(DIRECTORY).unwrap().kind, DataType::Directory);
        for fixture in [FILE, SYMLINK, DIRECTORY] {
            assert_eq!(UnixFsData::decode(fixture).unwrap().encode(), fixture);
        }
    }

    #[test]
    fn blocksizes_are_written_unpacked() {
        let bytes = UnixFsData::file(vec![262144, 5]).encode();
        assert_eq!(bytes, [0x08, 0x02, 0x18, 0x85, 0x80, 0x10, 0x20, 0x80, 0x80, 0x10, 0x20, 0x05]);
    }

    #[test]
    fn unknown_type_and_garbage_are_refused() {
        assert_eq!(UnixFsData::decode(&[0x08, 0x09]), Err(UnixFsDataError::UnknownType(9)));
        assert!(UnixFsData::decode(&[0x12, 0x05, 0x01]).is_err());
        assert!(UnixFsData::decode(&[]).is_err(), "Type is required");
    }
}
