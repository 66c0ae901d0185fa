//! A seeded mutator of RESP requests, for the differential and fuzz tests: the same seed gives
//! the same cases on every run and machine.

/// A small xorshift generator (no dependency, stable across versions).
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced: xorshift would stay at 0).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Bytes that matter to a RESP parser, preferred over random ones.
const INTERESTING: &[u8] = b"\r\n\0+-0123456789$*: \"'\\x";

/// Lengths that sit on limits.
const LENGTHS: &[&[u8]] = &[
    b"-1",
    b"-0",
    b"+1",
    b"01",
    b"0",
    b"2147483647",
    b"2147483648",
    b"536870912",
    b"536870913",
    b"99999999999999999999",
    b"-9223372036854775808",
];

/// Concatenates 1..=`max_requests` requests from `seeds` and applies 1..=`max_mutations`
/// mutations: a byte replaced, inserted or removed, the tail cut, a chunk repeated, or a
/// length replaced by one on a limit.
pub fn mutate(
    rng: &mut Rng,
    seeds: &[&[u8]],
    max_requests: usize,
    max_mutations: usize,
) -> Vec<u8> {
    let mut case = Vec::new();
    for _ in 0..1 + rng.below(max_requests) {
        case.extend_from_slice(seeds[rng.below(seeds.len())]);
    }
    for _ in 0..1 + rng.below(max_mutations) {
        if case.is_empty() {
            break;
        }
        let at = rng.below(case.len());
        let byte = if rng.below(4) == 0 {
            rng.next() as u8
        } else {
            INTERESTING[rng.below(INTERESTING.len())]
        };
        match rng.below(7) {
            0 | 1 => case[at] = byte,
            2 => case.insert(at, byte),
            3 => {
                case.remove(at);
            }
            4 => case.truncate(at.max(1)),
            5 => {
                let end = (at + 1 + rng.below(16)).min(case.len());
                let chunk = case[at..end].to_vec();
                case.splice(at..at, chunk);
            }
            _ => {
                // Replace the digits after a '$' or '*' with a length on a limit.
                if let Some(start) = case[at..]
                    .iter()
                    .position(|&b| b == b'$' || b == b'*')
                    .map(|p| at + p + 1)
                {
                    let end = case[start..]
                        .iter()
                        .position(|b| !b.is_ascii_digit() && *b != b'-')
                        .map_or(case.len(), |p| start + p);
                    let length = LENGTHS[rng.below(LENGTHS.len())];
                    case.splice(start..end, length.iter().copied());
                }
            }
        }
    }
    case
}
