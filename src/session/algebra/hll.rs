//! `PFCOUNT` of several keys: the HyperLogLogs read with `GET` are merged register by register
//! (the maximum of each) and the union's cardinality is estimated, as redis 7.0's
//! `hyperloglog.c` does for a multi-key `PFCOUNT`.
//!
//! The format, as redis stores it: a 16-byte header (`HYLL`, the encoding byte, three unused
//! bytes, an 8-byte cached cardinality), then 16384 six-bit registers, either dense (packed
//! little-endian, 12288 bytes) or sparse (run-length opcodes: `00xxxxxx` a run of up to 64
//! zeros, `01xxxxxx yyyyyyyy` a run of up to 16384 zeros, `1vvvvvxx` a run of up to 4 registers
//! of value up to 32). The estimate is Otmar Ertl's improved raw estimator ("New cardinality
//! estimation algorithms for HyperLogLog sketches", 2017), which redis uses since 5.0; it reads
//! only the histogram of register values, so the cached cardinality is never needed.

use bytes::{Bytes, BytesMut};

use crate::error::ReplyError;
use crate::protocol::reply::write_integer;
use crate::protocol::{Reply, View};

/// Index bits: 2^14 registers.
const P: u32 = 14;
const REGISTERS: usize = 1 << P;
/// Bits of the hash left for the run of zeros a register records.
const Q: usize = 64 - P as usize;
const HEADER_LEN: usize = 16;
const DENSE_LEN: usize = HEADER_LEN + (REGISTERS * 6).div_ceil(8);
const DENSE: u8 = 0;
const SPARSE: u8 = 1;
/// 1 / (2 ln 2), the estimator's bias constant for m -> infinity.
const ALPHA_INF: f64 = 0.721_347_520_444_481_7;

const NOT_AN_HLL: ReplyError = ReplyError::NotHyperLogLog;
const CORRUPTED: ReplyError = ReplyError::CorruptedHyperLogLog;

/// The `PFCOUNT` reply for the keys (read indices in the client's order) and the reads'
/// replies to `GET`. A missing key counts as an empty HyperLogLog; the first key (in order)
/// that is not a string, not a HyperLogLog or corrupted gives redis' error for it.
pub(super) fn pfcount(keys: &[usize], replies: &[Reply]) -> Bytes {
    let mut max = vec![0u8; REGISTERS];
    for &read in keys {
        let Some(reply) = replies.get(read) else {
            return ReplyError::KeyReadMissing.to_bytes();
        };
        if reply.error_text().is_some() {
            return reply.raw().clone();
        }
        let value = match View::of(reply.raw()) {
            Some(View::Bulk(value)) => value,
            Some(View::Null) => continue,
            _ => return ReplyError::GetReply.to_bytes(),
        };
        if let Err(error) = merge(&mut max, value) {
            return error.to_bytes();
        }
    }
    let mut out = BytesMut::new();
    write_integer(&mut out, i64::try_from(count(&max)).unwrap_or(i64::MAX));
    out.freeze()
}

/// Raises each register of `max` to the value's, as redis' `isHLLObjectOrReply` + `hllMerge`.
///
/// # Errors
/// redis' error text: not a HyperLogLog (bad header or dense length), or a corrupted sparse
/// encoding (its runs don't cover exactly the registers).
fn merge(max: &mut [u8], value: &[u8]) -> Result<(), ReplyError> {
    if value.len() < HEADER_LEN || &value[..4] != b"HYLL" {
        return Err(NOT_AN_HLL);
    }
    let registers = &value[HEADER_LEN..];
    match value[4] {
        DENSE if value.len() == DENSE_LEN => {
            for (i, slot) in max.iter_mut().enumerate() {
                *slot = (*slot).max(dense_register(registers, i));
            }
            Ok(())
        }
        SPARSE => merge_sparse(max, registers),
        _ => Err(NOT_AN_HLL),
    }
}

/// Register `i` of a dense encoding: six bits starting at bit `6 i`, low bits first.
fn dense_register(registers: &[u8], i: usize) -> u8 {
    let bit = i * 6;
    let shift = bit % 8;
    let low = u32::from(registers[bit / 8]);
    // The last register's bits end inside its byte; redis reads the string's NUL terminator.
    let high = u32::from(registers.get(bit / 8 + 1).copied().unwrap_or(0));
    (((low >> shift) | (high << (8 - shift))) & 0x3f) as u8
}

/// Walks a sparse encoding as `hllMerge` does; its runs must cover exactly the registers.
fn merge_sparse(max: &mut [u8], ops: &[u8]) -> Result<(), ReplyError> {
    let mut i = 0usize;
    let mut p = 0;
    while p < ops.len() {
        let op = ops[p];
        match op & 0xc0 {
            // ZERO: 00xxxxxx, a run of xxxxxx + 1 empty registers.
            0x00 => {
                i += usize::from(op & 0x3f) + 1;
                p += 1;
            }
            // XZERO: 01xxxxxx yyyyyyyy, a run of xxxxxxyyyyyyyy + 1. A truncated opcode reads
            // the string's NUL terminator, as in redis.
            0x40 => {
                let low = ops.get(p + 1).copied().unwrap_or(0);
                i += (usize::from(op & 0x3f) << 8 | usize::from(low)) + 1;
                p += 2;
            }
            // VAL: 1vvvvvxx, xx + 1 registers of value vvvvv + 1.
            _ => {
                let run = usize::from(op & 0x03) + 1;
                let value = ((op >> 2) & 0x1f) + 1;
                // redis 7.0.15 (with the CVE-2025-32023 fix) refuses a run past the end here;
                // older releases stopped reading and accepted what came before.
                if i + run > REGISTERS {
                    return Err(CORRUPTED);
                }
                for slot in &mut max[i..i + run] {
                    *slot = (*slot).max(value);
                }
                i += run;
                p += 1;
            }
        }
    }
    if i == REGISTERS {
        Ok(())
    } else {
        Err(CORRUPTED)
    }
}

/// The cardinality estimate of a set of registers (redis' `hllCount` on its raw encoding).
fn count(registers: &[u8]) -> u64 {
    let mut histogram = [0u32; 64];
    for &value in registers {
        histogram[usize::from(value & 0x3f)] += 1;
    }
    let m = REGISTERS as f64;
    let mut z = m * tau((m - f64::from(histogram[Q + 1])) / m);
    for j in (1..=Q).rev() {
        z += f64::from(histogram[j]);
        z *= 0.5;
    }
    z += m * sigma(f64::from(histogram[0]) / m);
    // llroundl: to the nearest integer, halves away from zero.
    (ALPHA_INF * m * m / z).round() as u64
}

/// Ertl's sigma function, summed until the terms no longer change the total.
fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let previous = z;
        z += x * y;
        y += y;
        if previous == z {
            return z;
        }
    }
}

/// Ertl's tau function, summed until the terms no longer change the total.
fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let previous = z;
        y *= 0.5;
        let d = 1.0 - x;
        z -= d * d * y;
        if previous == z {
            return z / 3.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(encoding: u8) -> Vec<u8> {
        let mut value = b"HYLL".to_vec();
        value.extend_from_slice(&[encoding, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        value
    }

    /// A dense encoding of `registers`, packed as redis' `HLL_DENSE_SET_REGISTER` does.
    fn dense(registers: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0u8; DENSE_LEN - HEADER_LEN + 1];
        for (i, &value) in registers.iter().enumerate() {
            let bit = i * 6;
            let shift = bit % 8;
            let v = u32::from(value) << shift;
            bytes[bit / 8] |= (v & 0xff) as u8;
            bytes[bit / 8 + 1] |= (v >> 8) as u8;
        }
        bytes.pop();
        let mut value = header(DENSE);
        value.extend_from_slice(&bytes);
        value
    }

    #[test]
    fn sparse_and_dense_encodings_of_the_same_registers_merge_alike() {
        // Registers 0..3 = 5, 100 = 1, 16383 = 32, the rest empty.
        let mut registers = vec![0u8; REGISTERS];
        registers[..4].fill(5);
        registers[100] = 1;
        registers[REGISTERS - 1] = 32;
        let mut sparse = header(SPARSE);
        sparse.push(0x80 | (4 << 2) | 3); // VAL 5 x4
        sparse.extend_from_slice(&[0x40, 95]); // XZERO 96 (4..=99)
        sparse.push(0x80); // VAL 1 x1 (100)
        let zeros = REGISTERS - 1 - 101;
        sparse.extend_from_slice(&[0x40 | ((zeros - 1) >> 8) as u8, (zeros - 1) as u8]);
        sparse.push(0x80 | (31 << 2)); // VAL 32 x1 (16383)
        let mut from_sparse = vec![0u8; REGISTERS];
        merge(&mut from_sparse, &sparse).unwrap();
        assert_eq!(from_sparse, registers);
        let mut from_dense = vec![0u8; REGISTERS];
        merge(&mut from_dense, &dense(&registers)).unwrap();
        assert_eq!(from_dense, registers);
        // Merging takes the maximum of each register.
        let mut other = vec![0u8; REGISTERS];
        other[0] = 9;
        other[1] = 2;
        merge(&mut from_dense, &dense(&other)).unwrap();
        assert_eq!(&from_dense[..3], &[9, 5, 5]);
    }

    #[test]
    fn invalid_values_get_redis_errors() {
        let mut max = vec![0u8; REGISTERS];
        assert_eq!(merge(&mut max, b"hello"), Err(NOT_AN_HLL));
        assert_eq!(merge(&mut max, &header(2)), Err(NOT_AN_HLL));
        assert_eq!(merge(&mut max, &header(DENSE)), Err(NOT_AN_HLL));
        assert_eq!(merge(&mut max, &header(SPARSE)), Err(CORRUPTED));
        // Found with redis-server 7.0.15: runs past the last register are corrupt, a truncated
        // XZERO reads a NUL.
        for ops in [
            &[0x7f, 0xff, 0x00][..],
            &[0x7f, 0xff, 0x80],
            &[0x7f, 0xfe, 0x81],
        ] {
            let mut too_long = header(SPARSE);
            too_long.extend_from_slice(ops);
            assert_eq!(merge(&mut max, &too_long), Err(CORRUPTED), "{ops:?}");
        }
        let mut truncated = header(SPARSE);
        truncated.extend_from_slice(&[0x7f, 0xfe, 0x40]);
        assert_eq!(merge(&mut max, &truncated), Ok(()));
        // Exactly 16384 empty registers is an empty HyperLogLog.
        let mut empty = header(SPARSE);
        empty.extend_from_slice(&[0x7f, 0xff]);
        assert_eq!(merge(&mut max, &empty), Ok(()));
        assert_eq!(count(&max), 0);
    }

    #[test]
    fn estimates_grow_with_the_registers_set() {
        let mut registers = vec![0u8; REGISTERS];
        let mut last = count(&registers);
        assert_eq!(last, 0);
        for i in (0..REGISTERS).step_by(97) {
            registers[i] = 1 + (i % 7) as u8;
            let estimate = count(&registers);
            assert!(estimate >= last, "{estimate} < {last}");
            last = estimate;
        }
    }
}
