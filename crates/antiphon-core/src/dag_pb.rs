//! The dag-pb codec (multicodec 0x70): the protobuf nodes UnixFS is built from.
//!
//! Written from the IPLD dag-pb specification. Decoding is strict, so that every accepted
//! block re-encodes to the same bytes: fields in canonical order (all `Links`, then at most one
//! `Data`; in a link `Hash`, `Name`, `Tsize`), no unknown fields, no wrong wire types, minimal
//! varints, and every link hash a valid CID. Absent and empty are distinct for `Data`, `Name`
//! and `Tsize`, as in the spec's data model.

use ipld_core::ipld::Ipld;

use crate::block::Cid;
use crate::limits::MAX_BLOCK_BYTES;

/// A dag-pb node: links to other blocks, then optional opaque data (a UnixFS `Data` message).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PbNode {
    /// Links to children, in order.
    pub links: Vec<PbLink>,
    /// The node's data, if present (present and empty is distinct from absent).
    pub data: Option<Vec<u8>>,
}

/// A link of a dag-pb node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PbLink {
    /// CID of the child.
    pub hash: Cid,
    /// Name of the child (directory entries; files use empty names).
    pub name: Option<String>,
    /// Cumulative size of the child's DAG: every block's bytes under it, itself included.
    pub tsize: Option<u64>,
}

impl PbLink {
    /// A link with an empty name, as UnixFS file nodes write them.
    pub fn unnamed(hash: Cid, tsize: u64) -> Self {
        Self { hash, name: Some(String::new()), tsize: Some(tsize) }
    }
}

/// Why bytes were refused as a dag-pb node, or a data-model value as a dag-pb form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DagPbError {
    /// The input ended inside a field.
    #[error("dag-pb: truncated at byte {0}")]
    Truncated(usize),
    /// A varint was malformed, overlong or not minimally encoded.
    #[error("dag-pb: bad varint at byte {0}")]
    Varint(usize),
    /// A field number or wire type that dag-pb does not have.
    #[error("dag-pb: unexpected field {field} with wire type {wire_type} at byte {offset}")]
    UnexpectedField {
        /// The field number.
        field: u64,
        /// The wire type.
        wire_type: u64,
        /// Where the field starts.
        offset: usize,
    },
    /// Fields out of canonical order or repeated (e.g. links after data).
    #[error("dag-pb: {0}")]
    Order(&'static str),
    /// A link has no hash, or its hash is not a CID.
    #[error("dag-pb: invalid Hash field in link {0}, expected a CID")]
    BadHash(usize),
    /// A link name is not UTF-8.
    #[error("dag-pb: link {0} has a Name that is not UTF-8")]
    BadName(usize),
    /// The node is larger than a block may be.
    #[error("dag-pb: node of {0} bytes exceeds the block limit")]
    TooLarge(usize),
    /// A data-model value is not a valid dag-pb form.
    #[error("invalid dag-pb form: {0}")]
    Form(&'static str),
}

const WIRE_VARINT: u64 = 0;
const WIRE_LEN: u64 = 2;

impl PbNode {
    /// Decodes a dag-pb block.
    pub fn decode(bytes: &[u8]) -> Result<Self, DagPbError> {
        if bytes.len() > MAX_BLOCK_BYTES {
            return Err(DagPbError::TooLarge(bytes.len()));
        }
        let mut r = Reader { buf: bytes, pos: 0 };
        let mut node = PbNode::default();
        while !r.done() {
            let start = r.pos;
            let (field, wire_type) = r.key()?;
            match (field, wire_type) {
                (2, WIRE_LEN) => {
                    if node.data.is_some() {
                        return Err(DagPbError::Order("duplicate Links section (links after Data)"));
                    }
                    let index = node.links.len();
                    let link = decode_link(r.bytes()?, index)?;
                    node.links.push(link);
                }
                (1, WIRE_LEN) => {
                    if node.data.is_some() {
                        return Err(DagPbError::Order("duplicate Data section"));
                    }
                    node.data = Some(r.bytes()?.to_vec());
                }
                _ => return Err(DagPbError::UnexpectedField { field, wire_type, offset: start }),
            }
        }
        Ok(node)
    }

    /// Encodes the node in canonical form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        for link in &self.links {
            put_key(&mut out, 2, WIRE_LEN);
            put_varint(&mut out, link_len(link) as u64);
            let hash = link.hash.to_bytes();
            put_key(&mut out, 1, WIRE_LEN);
            put_varint(&mut out, hash.len() as u64);
            out.extend_from_slice(&hash);
            if let Some(name) = &link.name {
                put_key(&mut out, 2, WIRE_LEN);
                put_varint(&mut out, name.len() as u64);
                out.extend_from_slice(name.as_bytes());
            }
            if let Some(tsize) = link.tsize {
                put_key(&mut out, 3, WIRE_VARINT);
                put_varint(&mut out, tsize);
            }
        }
        if let Some(data) = &self.data {
            put_key(&mut out, 1, WIRE_LEN);
            put_varint(&mut out, data.len() as u64);
            out.extend_from_slice(data);
        }
        out
    }

    /// Length of [`encode`](Self::encode)'s output, without encoding.
    pub fn encoded_len(&self) -> usize {
        let links: usize = self.links.iter().map(|l| 1 + len_of(link_len(l))).sum();
        links + self.data.as_ref().map_or(0, |d| 1 + len_of(d.len()))
    }

    /// The node in the IPLD data model: `{Data?: bytes, Links: [{Hash, Name?, Tsize?}]}`.
    pub fn to_ipld(&self) -> Ipld {
        let links = self
            .links
            .iter()
            .map(|l| {
                let mut m = std::collections::BTreeMap::new();
                m.insert("Hash".to_owned(), Ipld::Link(to_cid64(&l.hash)));
                if let Some(name) = &l.name {
                    m.insert("Name".to_owned(), Ipld::String(name.clone()));
                }
                if let Some(tsize) = l.tsize {
                    m.insert("Tsize".to_owned(), Ipld::Integer(i128::from(tsize)));
                }
                Ipld::Map(m)
            })
            .collect();
        let mut m = std::collections::BTreeMap::new();
        m.insert("Links".to_owned(), Ipld::List(links));
        if let Some(data) = &self.data {
            m.insert("Data".to_owned(), Ipld::Bytes(data.clone()));
        }
        Ipld::Map(m)
    }

    /// Builds a node from its IPLD data-model form, refusing anything the spec does not allow
    /// (missing or mistyped fields, extra fields, negative sizes, links not sorted by name).
    pub fn from_ipld(value: &Ipld) -> Result<Self, DagPbError> {
        let Ipld::Map(map) = value else { return Err(DagPbError::Form("a node must be a map")) };
        if map.keys().any(|k| k != "Data" && k != "Links") {
            return Err(DagPbError::Form("extraneous properties"));
        }
        let data = match map.get("Data") {
            None => None,
            Some(Ipld::Bytes(b)) => Some(b.clone()),
            Some(_) => return Err(DagPbError::Form("Data must be bytes")),
        };
        let Some(Ipld::List(list)) = map.get("Links") else { return Err(DagPbError::Form("Links must be a list")) };
        let mut links = Vec::with_capacity(list.len());
        for item in list {
            let Ipld::Map(l) = item else { return Err(DagPbError::Form("bad link")) };
            if l.keys().any(|k| !matches!(k.as_str(), "Hash" | "Name" | "Tsize")) {
                return Err(DagPbError::Form("extraneous properties on link"));
            }
            let hash = match l.get("Hash") {
                None => return Err(DagPbError::Form("link must have a Hash")),
                Some(Ipld::Link(cid)) => from_cid64(cid).ok_or(DagPbError::Form("link Hash must be a CID"))?,
                Some(_) => return Err(DagPbError::Form("link Hash must be a CID")),
            };
            let name = match l.get("Name") {
                None => None,
                Some(Ipld::String(s)) => Some(s.clone()),
                Some(_) => return Err(DagPbError::Form("link Name must be a string")),
            };
            let tsize = match l.get("Tsize") {
                None => None,
                Some(Ipld::Integer(i)) => {
                    Some(u64::try_from(*i).map_err(|_| DagPbError::Form("link Tsize cannot be negative"))?)
                }
                Some(_) => return Err(DagPbError::Form("link Tsize must be an integer")),
            };
            links.push(PbLink { hash, name, tsize });
        }
        let sorted = links.windows(2).all(|w| {
            let a = w[0].name.as_deref().unwrap_or("").as_bytes();
            let b = w[1].name.as_deref().unwrap_or("").as_bytes();
            a <= b
        });
        if !sorted {
            return Err(DagPbError::Form("links must be sorted by Name bytes"));
        }
        Ok(PbNode { links, data })
    }
}

/// `ipld-core` carries 64-byte-digest CIDs; converts ours to theirs.
fn to_cid64(cid: &Cid) -> cid::Cid {
    cid::Cid::read_bytes(cid.to_bytes().as_slice()).expect("dag-pb link digests fit 64 bytes")
}

fn from_cid64(cid: &cid::Cid) -> Option<Cid> {
    Cid::read_bytes(cid.to_bytes().as_slice()).ok()
}

fn decode_link(bytes: &[u8], index: usize) -> Result<PbLink, DagPbError> {
    let mut r = Reader { buf: bytes, pos: 0 };
    let mut hash = None;
    let mut name = None;
    let mut tsize = None;
    // Each field may appear once, in the order Hash (1), Name (2), Tsize (3).
    let mut last = 0;
    while !r.done() {
        let start = r.pos;
        let (field, wire_type) = r.key()?;
        if field <= last && (1..=3).contains(&field) {
            return Err(DagPbError::Order("link fields repeated or out of order"));
        }
        match (field, wire_type) {
            (1, WIRE_LEN) => {
                let raw = r.bytes()?;
                let cid = Cid::read_bytes(raw).map_err(|_| DagPbError::BadHash(index))?;
                if cid.encoded_len() != raw.len() {
                    return Err(DagPbError::BadHash(index));
                }
                hash = Some(cid);
            }
            (2, WIRE_LEN) => {
                if hash.is_none() {
                    return Err(DagPbError::BadHash(index));
                }
                let raw = r.bytes()?;
                name = Some(String::from_utf8(raw.to_vec()).map_err(|_| DagPbError::BadName(index))?);
            }
            (3, WIRE_VARINT) => {
                if hash.is_none() {
                    return Err(DagPbError::BadHash(index));
                }
                tsize = Some(r.varint()?);
            }
            _ => return Err(DagPbError::UnexpectedField { field, wire_type, offset: start }),
        }
        last = field;
    }
    let hash = hash.ok_or(DagPbError::BadHash(index))?;
    Ok(PbLink { hash, name, tsize })
}

fn link_len(link: &PbLink) -> usize {
    let hash = link.hash.encoded_len();
    1 + len_of(hash)
        + link.name.as_ref().map_or(0, |n| 1 + len_of(n.len()))
        + link.tsize.map_or(0, |t| 1 + varint_len(t))
}

/// Bytes taken by a length-prefixed field body of `len` bytes (without its key).
fn len_of(len: usize) -> usize {
    varint_len(len as u64) + len
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_key(out: &mut Vec<u8>, field: u64, wire_type: u64) {
    put_varint(out, (field << 3) | wire_type);
}

fn put_varint(out: &mut Vec<u8>, v: u64) {
    let mut buf = unsigned_varint::encode::u64_buffer();
    out.extend_from_slice(unsigned_varint::encode::u64(v, &mut buf));
}

/// A cursor over protobuf bytes.
pub(crate) struct Reader<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(crate) fn varint(&mut self) -> Result<u64, DagPbError> {
        let rest = &self.buf[self.pos..];
        let (v, tail) = unsigned_varint::decode::u64(rest).map_err(|e| match e {
            unsigned_varint::decode::Error::Insufficient => DagPbError::Truncated(self.pos),
            _ => DagPbError::Varint(self.pos),
        })?;
        self.pos += rest.len() - tail.len();
        Ok(v)
    }

    fn key(&mut self) -> Result<(u64, u64), DagPbError> {
        let key = self.varint()?;
        Ok((key >> 3, key & 7))
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], DagPbError> {
        let at = self.pos;
        let len = self.varint()?;
        let end = usize::try_from(len).ok().and_then(|l| self.pos.checked_add(l));
        match end {
            Some(end) if end <= self.buf.len() => {
                let out = &self.buf[self.pos..end];
                self.pos = end;
                Ok(out)
            }
            _ => Err(DagPbError::Truncated(at)),
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::block::{DAG_PB, RAW, cid_v1};

    #[test]
    fn round_trip_keeps_absent_and_empty_distinct() {
        let child = cid_v1(RAW, b"x");
        let nodes = [
            PbNode::default(),
            PbNode { links: vec![], data: Some(vec![]) },
            PbNode { links: vec![PbLink { hash: child, name: None, tsize: None }], data: None },
            PbNode { links: vec![PbLink::unnamed(child, 1)], data: Some(vec![8, 2]) },
            PbNode { links: vec![PbLink { hash: child, name: Some("a".into()), tsize: Some(u64::MAX) }], data: None },
        ];
        for node in nodes {
            let bytes = node.encode();
            assert_eq!(bytes.len(), node.encoded_len());
            assert_eq!(PbNode::decode(&bytes).unwrap(), node);
            assert_eq!(PbNode::from_ipld(&node.to_ipld()).unwrap(), node);
        }
    }

    #[test]
    fn non_canonical_bytes_are_refused() {
        let link = PbNode { links: vec![PbLink::unnamed(cid_v1(DAG_PB, b"y"), 3)], data: None }.encode();
        let data = PbNode { links: vec![], data: Some(vec![1]) }.encode();
        // Data before links.
        assert!(PbNode::decode(&[data.clone(), link.clone()].concat()).is_err());
        // Two Data fields.
        assert!(PbNode::decode(&[data.clone(), data.clone()].concat()).is_err());
        // Unknown field 3.
        assert!(PbNode::decode(&[0x18, 0x01]).is_err());
        // Non-minimal varint length.
        assert!(PbNode::decode(&[0x0a, 0x81, 0x00, 0x00]).is_err());
        // Length beyond the end.
        assert!(matches!(PbNode::decode(&[0x0a, 0x7f]), Err(DagPbError::Truncated(_))));
    }
}
