//! Values the caches keep for the life of the process, held as their JSON compressed with
//! LZ4 (block format, `lz4_flex`) against a dictionary of what such values have in common.
//!
//! The caches hold one Tenant and four or five ConsentGrants per customer. As Rust values these
//! are mostly structure: `ObjectMeta` alone is some 360 bytes of empty `Option`s, and every
//! field name, state, condition type and reason is repeated in each object. As compressed
//! JSON a granted grant takes about 0.2 KiB, and is read back when a reconcile asks for it.

use std::cell::RefCell;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// One value's JSON, compressed against a dictionary the caller keeps with it (the same one
/// for writing and reading).
#[derive(Clone, PartialEq, Eq)]
pub struct Compact {
    /// The JSON's length.
    len: u32,
    /// The JSON, LZ4 block-compressed.
    lz4: Box<[u8]>,
}

impl std::fmt::Debug for Compact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Compact({} bytes of JSON in {})",
            self.len,
            self.lz4.len()
        )
    }
}

/// Buffers a value's JSON and its compressed form are written into before they are kept.
#[derive(Default)]
struct Scratch {
    json: Vec<u8>,
    lz4: Vec<u8>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::default();
}

impl Compact {
    /// Writes `value` as JSON and compresses it, both into reused buffers, and keeps the
    /// result in an allocation of its exact length. Growing a fresh buffer for each value
    /// would leave its smaller, freed buffers between the long-lived entries (a rewrite of
    /// every grant once took the process 23 MiB more resident memory for the same live heap).
    pub fn of<T: Serialize + ?Sized>(value: &T, dictionary: &[u8]) -> Self {
        SCRATCH.with_borrow_mut(|scratch| {
            scratch.json.clear();
            serde_json::to_writer(&mut scratch.json, value).expect("cached values serialise");
            compress(&scratch.json, &mut scratch.lz4, dictionary)
        })
    }

    /// Compresses text that is already JSON (or several JSON values one after another).
    pub fn from_json(json: &[u8], dictionary: &[u8]) -> Self {
        SCRATCH.with_borrow_mut(|scratch| compress(json, &mut scratch.lz4, dictionary))
    }

    /// The JSON, decompressed. An error means the entry was not written with this dictionary.
    pub fn json(&self, dictionary: &[u8]) -> Result<Vec<u8>, String> {
        lz4_flex::block::decompress_with_dict(&self.lz4, self.len as usize, dictionary)
            .map_err(|e| e.to_string())
    }

    /// Reads the value back. An error means the entry was not written by [`Compact::of`]
    /// with this dictionary and type.
    pub fn read<T: DeserializeOwned>(&self, dictionary: &[u8]) -> Result<T, String> {
        serde_json::from_slice(&self.json(dictionary)?).map_err(|e| e.to_string())
    }

    /// Bytes of compressed JSON kept.
    pub fn compressed_len(&self) -> usize {
        self.lz4.len()
    }

    /// Bytes of JSON it stands for.
    pub fn json_len(&self) -> usize {
        self.len as usize
    }
}

/// `json` compressed through `buffer`, kept in an allocation of its exact length.
fn compress(json: &[u8], buffer: &mut Vec<u8>, dictionary: &[u8]) -> Compact {
    buffer.resize(lz4_flex::block::get_maximum_output_size(json.len()), 0);
    let n = lz4_flex::block::compress_into_with_dict(json, buffer, dictionary)
        .expect("the output holds the maximum compressed size");
    Compact {
        len: u32::try_from(json.len()).expect("a cached value's JSON is under 4 GiB"),
        lz4: buffer[..n].into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_reads_back_exactly_and_only_with_its_dictionary() {
        let dictionary = br#"{"metadata":{"name":"","uid":""},"status":{"state":"Granted"}}"#;
        let value = serde_json::json!({
            "metadata": {"name": "recording", "uid": "0b7c4e1a-2f3d-4c5b-8a9e-1d2c3b4a5f60"},
            "status": {"state": "Granted"}
        });
        let compact = Compact::of(&value, dictionary);
        assert_eq!(
            compact.read::<serde_json::Value>(dictionary).unwrap(),
            value
        );
        assert!(compact.compressed_len() < compact.json_len());
        assert!(compact
            .read::<serde_json::Value>(b"another dictionary")
            .is_err());
    }
}
