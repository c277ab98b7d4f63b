//! One batch of records as it is stored: ONE sled value, keyed by its first sequence number.
//!
//! ```text
//! 0..4    magic  b"ALB1"
//! 4..12   first_seq      u64 LE
//! 12..16  record count   u32 LE
//! 16..20  payload length u32 LE
//! 20..24  CRC-32 of bytes 4..20 and of the payload
//! 24..    payload: the records, rkyv-encoded as a Vec<Record>
//! ```
//! Reading never trusts the bytes: the checksum, the lengths, the key and the rkyv structure
//! (bytecheck) are all validated before a record is handed out.

use rkyv::rancor;
use rkyv::util::AlignedVec;

use crate::record::{Record, Seq};

const MAGIC: &[u8; 4] = b"ALB1";
const HEADER_BYTES: usize = 24;

/// Why a stored batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchDefect {
    /// Fewer bytes than a header: a write cut short.
    #[error("shorter than its header ({0} bytes)")]
    Truncated(usize),
    /// Not a batch of this format at all.
    #[error("bad magic")]
    BadMagic,
    /// The payload is not as long as the header says.
    #[error("payload length {declared} but {actual} bytes stored")]
    LengthMismatch {
        /// Bytes the header declares.
        declared: usize,
        /// Bytes stored after the header.
        actual: usize,
    },
    /// The bytes changed after they were written.
    #[error("checksum mismatch")]
    Checksum,
    /// The batch is stored under another sequence number than it carries.
    #[error("keyed {key} but says it starts at {first_seq}")]
    KeyMismatch {
        /// The sequence number of the key.
        key: Seq,
        /// The sequence number in the header.
        first_seq: Seq,
    },
    /// The checksum holds but the records do not decode: written by another build.
    #[error("undecodable payload: {0}")]
    Undecodable(String),
    /// The header counts other records than the payload holds.
    #[error("declares {declared} records but holds {actual}")]
    CountMismatch {
        /// Records the header declares.
        declared: usize,
        /// Records the payload holds.
        actual: usize,
    },
}

/// The log key of a batch: its first sequence number, big-endian so keys sort in log order.
pub fn key(first_seq: Seq) -> [u8; 8] {
    first_seq.to_be_bytes()
}

/// The first sequence number a log key names; `None` for a key of another length.
pub fn seq_of_key(key: &[u8]) -> Option<Seq> {
    Some(Seq::from_be_bytes(key.try_into().ok()?))
}

/// Takes the writer's own `Vec` because rkyv archives a `Vec<Record>`, not a slice; a slice
/// parameter would force a copy of every batch.
pub fn encode(first_seq: Seq, records: &Vec<Record>) -> Vec<u8> {
    let payload =
        rkyv::to_bytes::<rancor::Error>(records).expect("encoding records into memory cannot fail");
    let mut value = Vec::with_capacity(HEADER_BYTES + payload.len());
    value.extend_from_slice(MAGIC);
    value.extend_from_slice(&first_seq.to_le_bytes());
    value.extend_from_slice(&(records.len() as u32).to_le_bytes());
    value.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    let crc = checksum(&value[4..20], &payload);
    value.extend_from_slice(&crc.to_le_bytes());
    value.extend_from_slice(&payload);
    value
}

/// Decodes the batch stored under `key_seq`, returning its records.
pub fn decode(key_seq: Seq, value: &[u8]) -> Result<Vec<Record>, BatchDefect> {
    if value.len() < HEADER_BYTES {
        return Err(BatchDefect::Truncated(value.len()));
    }
    if &value[0..4] != MAGIC {
        return Err(BatchDefect::BadMagic);
    }
    let u32_at = |at: usize| u32::from_le_bytes(value[at..at + 4].try_into().expect("4 bytes"));
    let first_seq = u64::from_le_bytes(value[4..12].try_into().expect("8 bytes"));
    let count = u32_at(12) as usize;
    let declared = u32_at(16) as usize;
    let payload = &value[HEADER_BYTES..];
    if payload.len() != declared {
        return Err(BatchDefect::LengthMismatch {
            declared,
            actual: payload.len(),
        });
    }
    if checksum(&value[4..20], payload) != u32_at(20) {
        return Err(BatchDefect::Checksum);
    }
    if first_seq != key_seq {
        return Err(BatchDefect::KeyMismatch {
            key: key_seq,
            first_seq,
        });
    }
    // rkyv reads in place and needs aligned bytes; a sled value carries no alignment promise.
    let mut aligned = AlignedVec::<16>::with_capacity(payload.len());
    aligned.extend_from_slice(payload);
    let records = rkyv::from_bytes::<Vec<Record>, rancor::Error>(&aligned)
        .map_err(|e| BatchDefect::Undecodable(e.to_string()))?;
    if records.len() != count {
        return Err(BatchDefect::CountMismatch {
            declared: count,
            actual: records.len(),
        });
    }
    Ok(records)
}

fn checksum(header: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(header);
    hasher.update(payload);
    hasher.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ReservationId, Sku, UserId};

    fn sample() -> Vec<Record> {
        (0..10)
            .map(|i| Record::StockReserved {
                reservation: ReservationId(i),
                sku: Sku(1),
                user: UserId(i * 3),
                quantity: 1,
                deadline_ms: 1_000 + i,
            })
            .collect()
    }

    #[test]
    fn a_batch_round_trips() {
        let value = encode(42, &sample());
        assert_eq!(decode(42, &value), Ok(sample()));
    }

    #[test]
    fn any_flipped_byte_or_cut_is_refused() {
        let value = encode(42, &sample());
        for at in 0..value.len() {
            let mut damaged = value.clone();
            damaged[at] ^= 0x40;
            assert!(decode(42, &damaged).is_err(), "flip at {at} accepted");
        }
        for len in 0..value.len() {
            assert!(decode(42, &value[..len]).is_err(), "cut at {len} accepted");
        }
        assert!(matches!(
            decode(43, &value),
            Err(BatchDefect::KeyMismatch { .. })
        ));
    }
}
