//! `ZUNION`, `ZINTER`, `ZDIFF` and `ZINTERCARD` over each key's `ZUNION 1 key WITHSCORES` read
//! (a plain set reads as members scored 1, which is how redis uses sets here), following redis
//! 7.0's `zunionInterDiffGenericCommand`: its argument checks and their order, its input order
//! (by size, stably), its NaN rules, its `%.17g` scores.

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};

use super::values::{self, keyword, set_elements};
use crate::command::policy::Algebra;
use crate::error::ReplyError;
use crate::protocol::reply::{write_array_len, write_bulk, write_integer};
use crate::protocol::string2ll;
use crate::protocol::{Protocol, Reply, View};

/// How the scores of a member found in several inputs combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Aggregate {
    Sum,
    Min,
    Max,
}

/// The options after the keys.
#[derive(Debug, Clone)]
pub(super) struct Options {
    /// One per key, in the client's key order.
    pub(super) weights: Vec<f64>,
    aggregate: Aggregate,
    withscores: bool,
    /// `ZINTERCARD`'s `LIMIT` (0: none).
    limit: u64,
}

impl PartialEq for Options {
    fn eq(&self, other: &Self) -> bool {
        self.weights.len() == other.weights.len()
            && self
                .weights
                .iter()
                .zip(&other.weights)
                .all(|(a, b)| a.to_bits() == b.to_bits())
            && self.aggregate == other.aggregate
            && self.withscores == other.withscores
            && self.limit == other.limit
    }
}

impl Eq for Options {}

/// The keys of a sorted-set command, and its options or the error redis gives for them once the
/// keys have passed its type check.
pub(super) type Parsed<'a> = (&'a [Bytes], Result<Options, ReplyError>);

/// Parses `numkeys key... [options]`.
///
/// # Errors
/// redis' error for a bad numkeys, which it reports before looking at any key.
pub(super) fn parse(op: Algebra, args: &[Bytes]) -> Result<Parsed<'_>, ReplyError> {
    let numkeys = args
        .get(1)
        .and_then(|n| string2ll(n))
        .ok_or(ReplyError::NotInteger)?;
    if numkeys < 1 {
        let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
        return Err(ReplyError::NoInputKey(name));
    }
    let numkeys = usize::try_from(numkeys).unwrap_or(usize::MAX);
    if numkeys > args.len() - 2 {
        return Err(ReplyError::Syntax);
    }
    let keys = &args[2..2 + numkeys];
    Ok((keys, parse_options(op, numkeys, &args[2 + numkeys..])))
}

fn parse_options(op: Algebra, numkeys: usize, args: &[Bytes]) -> Result<Options, ReplyError> {
    let card = op == Algebra::ZInterCard;
    let diff = op == Algebra::ZDiff;
    let mut options = Options {
        weights: vec![1.0; numkeys],
        aggregate: Aggregate::Sum,
        withscores: false,
        limit: 0,
    };
    let mut i = 0;
    while i < args.len() {
        let remaining = args.len() - i;
        let arg = &args[i];
        if !diff && !card && remaining > numkeys && keyword(arg, "WEIGHTS") {
            for (weight, text) in options.weights.iter_mut().zip(&args[i + 1..]) {
                *weight = string2d(text).ok_or(ReplyError::WeightNotFloat)?;
            }
            i += 1 + numkeys;
        } else if !diff && !card && remaining >= 2 && keyword(arg, "AGGREGATE") {
            let name = &args[i + 1];
            options.aggregate = if keyword(name, "SUM") {
                Aggregate::Sum
            } else if keyword(name, "MIN") {
                Aggregate::Min
            } else if keyword(name, "MAX") {
                Aggregate::Max
            } else {
                return Err(ReplyError::Syntax);
            };
            i += 2;
        } else if !card && keyword(arg, "WITHSCORES") {
            options.withscores = true;
            i += 1;
        } else if card && remaining >= 2 && keyword(arg, "LIMIT") {
            options.limit = string2ll(&args[i + 1])
                .and_then(|n| u64::try_from(n).ok())
                .ok_or(ReplyError::NegativeLimit)?;
            i += 2;
        } else {
            return Err(ReplyError::Syntax);
        }
    }
    Ok(options)
}

/// redis' `string2d`: the whole argument must be what C's `strtod` reads (decimal, hexadecimal
/// or an infinity), without leading space, NaN, or an overflow or underflow to zero (`ERANGE`).
fn string2d(text: &[u8]) -> Option<f64> {
    // C's isspace: space, \t, \n, \v, \f, \r.
    if matches!(text.first(), None | Some(b' ' | b'\t'..=b'\r')) {
        return None;
    }
    let text = std::str::from_utf8(text).ok()?;
    let (negative, unsigned) = match text.as_bytes()[0] {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if unsigned.starts_with(['+', '-']) {
        return None;
    }
    let (magnitude, nonzero) = match unsigned
        .strip_prefix("0x")
        .or_else(|| unsigned.strip_prefix("0X"))
    {
        Some(hex) => {
            let nonzero = hex
                .split(['p', 'P'])
                .next()
                .is_some_and(|m| m.bytes().any(|b| b.is_ascii_hexdigit() && b != b'0'));
            (hex_float(hex)?, nonzero)
        }
        None => {
            let nonzero = unsigned
                .split(['e', 'E'])
                .next()
                .is_some_and(|m| m.bytes().any(|b| matches!(b, b'1'..=b'9')));
            (unsigned.parse::<f64>().ok()?, nonzero)
        }
    };
    let infinity =
        unsigned.eq_ignore_ascii_case("inf") || unsigned.eq_ignore_ascii_case("infinity");
    let overflow = magnitude.is_infinite() && !infinity;
    let underflow = magnitude == 0.0 && nonzero;
    if magnitude.is_nan() || overflow || underflow {
        return None;
    }
    Some(if negative { -magnitude } else { magnitude })
}

/// The text after `0x` of a C hexadecimal float (`1.8p3`), rounded to a double.
fn hex_float(text: &str) -> Option<f64> {
    let (mantissa, exponent) = match text.split_once(['p', 'P']) {
        Some((mantissa, exponent)) => (mantissa, Some(exponent)),
        None => (text, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    // Up to 61 significant bits; dropped digits only matter as a sticky bit for rounding.
    let mut bits: u64 = 0;
    let mut scale: i64 = 0;
    let mut sticky = false;
    let digits = int.chars().map(|c| (c, false));
    for (c, fractional) in digits.chain(frac.chars().map(|c| (c, true))) {
        let digit = u64::from(c.to_digit(16)?);
        if bits >> 57 == 0 {
            bits = bits << 4 | digit;
            scale -= i64::from(fractional) * 4;
        } else {
            sticky |= digit != 0;
            scale += i64::from(!fractional) * 4;
        }
    }
    let exponent: i64 = match exponent {
        None => 0,
        Some(e) => {
            let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let magnitude = digits.parse::<i64>().unwrap_or(i64::MAX).min(1 << 20);
            if e.starts_with('-') {
                -magnitude
            } else {
                magnitude
            }
        }
    };
    let mut value = (bits | u64::from(sticky)) as f64;
    let mut power = (scale + exponent).clamp(-1 << 21, 1 << 21);
    while power != 0 {
        let step = power.clamp(-1000, 1000);
        value *= 2f64.powi(i32::try_from(step).ok()?);
        power -= step;
    }
    Some(value)
}

/// Computes a sorted-set command into `out`; `None` when a read's reply is not a list of
/// members and scores.
pub(super) fn compute(
    op: Algebra,
    keys: &[usize],
    replies: &[Reply],
    options: &Options,
    protocol: Protocol,
    out: &mut BytesMut,
) -> Option<()> {
    let reads: Vec<Vec<(&[u8], f64)>> = replies
        .iter()
        .map(|reply| scored(reply.raw()))
        .collect::<Option<_>>()?;
    // The inputs in the client's key order, with their weights.
    let inputs: Vec<Input> = keys
        .iter()
        .zip(&options.weights)
        .map(|(&read, &weight)| {
            Some(Input {
                members: reads.get(read)?,
                weight,
            })
        })
        .collect::<Option<_>>()?;
    let mut result = match op {
        Algebra::ZUnion => union(by_size(inputs), options.aggregate),
        Algebra::ZInter => inter(by_size(inputs), options.aggregate, 0),
        Algebra::ZInterCard => {
            let count = inter(by_size(inputs), options.aggregate, options.limit).len();
            write_integer(out, i64::try_from(count).unwrap_or(i64::MAX));
            return Some(());
        }
        Algebra::ZDiff => diff(&inputs),
        _ => return None,
    };
    // A sorted set's order: by score, then by member bytes.
    result.sort_by(|a, b| {
        a.1.partial_cmp(&b.1)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.0.cmp(b.0))
    });
    let pairs = options.withscores && protocol == Protocol::Resp2;
    write_array_len(out, result.len() * if pairs { 2 } else { 1 });
    for (member, score) in result {
        if options.withscores && protocol == Protocol::Resp3 {
            write_array_len(out, 2);
        }
        write_bulk(out, member);
        if options.withscores {
            write_double(out, protocol, score);
        }
    }
    Some(())
}

/// One input: a key's members and scores, and its weight.
struct Input<'a> {
    members: &'a [(&'a [u8], f64)],
    weight: f64,
}

/// The members and scores of a `ZUNION 1 key WITHSCORES` reply: a flat array in RESP2, an
/// array of pairs in RESP3.
fn scored(raw: &[u8]) -> Option<Vec<(&[u8], f64)>> {
    let mut elements = set_elements(raw)?;
    let mut out = Vec::with_capacity(elements.len());
    while !elements.is_empty() {
        let first = elements.next()?;
        let (member, score) = match View::of(first)? {
            View::Array(mut pair) if pair.len() == 2 => (pair.next()?, pair.next()?),
            View::Array(_) => return None,
            _ => (first, elements.next()?),
        };
        out.push((View::of(member)?.bulk()?, values::score(score)?));
    }
    Some(out)
}

/// The inputs smallest first, keeping the client's order among equal sizes (redis sorts them
/// with glibc's qsort, a merge sort). It matters: floating-point sums depend on their order.
fn by_size(mut inputs: Vec<Input<'_>>) -> Vec<Input<'_>> {
    inputs.sort_by_key(|input| input.members.len());
    inputs
}

/// redis' `zunionInterAggregate`: a sum that is NaN (`inf + -inf`) counts as 0; `MIN`/`MAX`
/// keep the current score when compared with NaN.
fn aggregate(target: &mut f64, value: f64, how: Aggregate) {
    match how {
        Aggregate::Sum => {
            *target += value;
            if target.is_nan() {
                *target = 0.0;
            }
        }
        Aggregate::Min => {
            if value < *target {
                *target = value;
            }
        }
        Aggregate::Max => {
            if value > *target {
                *target = value;
            }
        }
    }
}

/// A weighted score; NaN (`inf * 0`) counts as 0.
fn weighted(score: f64, weight: f64) -> f64 {
    let value = weight * score;
    if value.is_nan() { 0.0 } else { value }
}

fn union<'a>(inputs: Vec<Input<'a>>, how: Aggregate) -> Vec<(&'a [u8], f64)> {
    let mut index: HashMap<&[u8], usize> = HashMap::new();
    let mut out: Vec<(&[u8], f64)> = Vec::new();
    for input in &inputs {
        for &(member, score) in input.members {
            let value = weighted(score, input.weight);
            match index.get(member) {
                Some(&i) => aggregate(&mut out[i].1, value, how),
                None => {
                    index.insert(member, out.len());
                    out.push((member, value));
                }
            }
        }
    }
    out
}

/// Members of the smallest input found in every other, at most `limit` (0: all).
fn inter<'a>(inputs: Vec<Input<'a>>, how: Aggregate, limit: u64) -> Vec<(&'a [u8], f64)> {
    let Some((first, others)) = inputs.split_first() else {
        return Vec::new();
    };
    let others: Vec<(HashMap<&[u8], f64>, f64)> = others
        .iter()
        .map(|input| (input.members.iter().copied().collect(), input.weight))
        .collect();
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut out = Vec::new();
    'members: for &(member, score) in first.members {
        let mut total = weighted(score, first.weight);
        for (scores, weight) in &others {
            match scores.get(member) {
                // Unlike the first input's, these products are not cleared of NaN first.
                Some(&score) => aggregate(&mut total, score * weight, how),
                None => continue 'members,
            }
        }
        out.push((member, total));
        if out.len() == limit {
            break;
        }
    }
    out
}

/// The first input's members (with their own scores) that no other input has.
fn diff<'a>(inputs: &[Input<'a>]) -> Vec<(&'a [u8], f64)> {
    let Some((first, others)) = inputs.split_first() else {
        return Vec::new();
    };
    let others: Vec<std::collections::HashSet<&[u8]>> = others
        .iter()
        .map(|input| input.members.iter().map(|&(m, _)| m).collect())
        .collect();
    first
        .members
        .iter()
        .copied()
        .filter(|(member, _)| !others.iter().any(|set| set.contains(member)))
        .collect()
}

/// Appends a score as redis 7.0's `addReplyDouble`: `%.17g` in a bulk string (RESP2) or a
/// double (RESP3); infinities as `inf` and `-inf`.
pub(super) fn write_double(out: &mut BytesMut, protocol: Protocol, value: f64) {
    let text = format_g17(value);
    match protocol {
        Protocol::Resp2 => write_bulk(out, text.as_bytes()),
        Protocol::Resp3 => {
            out.put_u8(b',');
            out.put_slice(text.as_bytes());
            out.put_slice(b"\r\n");
        }
    }
}

/// C's `printf("%.17g", value)`, with `inf`/`-inf` for infinities.
pub(super) fn format_g17(value: f64) -> String {
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    // 17 significant digits, correctly rounded: d.dddddddddddddddde<exp>.
    let scientific = format!("{:.16e}", value.abs());
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if value.is_sign_negative() { "-" } else { "" };
    if !(-4..17).contains(&exponent) {
        let (first, rest) = digits.split_at(1);
        let rest = rest.trim_end_matches('0');
        let point = if rest.is_empty() { "" } else { "." };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        return format!(
            "{sign}{first}{point}{rest}e{exp_sign}{:02}",
            exponent.unsigned_abs()
        );
    }
    let fixed = if exponent >= 0 {
        let (int, frac) = digits.split_at(exponent as usize + 1);
        format!("{int}.{frac}")
    } else {
        format!(
            "0.{}{digits}",
            "0".repeat(exponent.unsigned_abs() as usize - 1)
        )
    };
    let fixed = fixed.trim_end_matches('0').trim_end_matches('.');
    format!("{sign}{fixed}")
}
