//! Glob matching as redis' `stringmatchlen`: ACL key and channel patterns, and `PSUBSCRIBE` patterns.
//!
//! `*` any run of bytes, `?` one byte, `[abc]`, `[^abc]`, `[a-z]` a byte class, `\x` a literal
//! `x`. Case-sensitive, byte-wise (keys are binary). Iterative: a `*` remembers where to
//! resume, so a hostile pattern costs O(pattern x subject), never exponential time.

/// Whether `text` matches the glob `pattern` as redis' `stringmatchlen` decides (`*`, `?`,
/// `[...]` with ranges and `^`, `\` escapes), case-sensitively.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where to resume after the last `*`: (pattern index after it, text index it matched up to).
    let mut star: Option<(usize, usize)> = None;
    loop {
        if p < pattern.len() {
            if pattern[p] == b'*' {
                while p < pattern.len() && pattern[p] == b'*' {
                    p += 1;
                }
                star = Some((p, t));
                continue;
            }
            if t < text.len() {
                let next = match pattern[p] {
                    b'?' => Some(p + 1),
                    b'[' => class_match(pattern, p, text[t]),
                    b'\\' if p + 1 < pattern.len() => (pattern[p + 1] == text[t]).then_some(p + 2),
                    c => (c == text[t]).then_some(p + 1),
                };
                if let Some(next) = next {
                    p = next;
                    t += 1;
                    continue;
                }
            }
        } else if t == text.len() {
            return true;
        }
        // Mismatch: let the last `*` swallow one more byte, if there is one.
        match star {
            Some((sp, st)) if st < text.len() => {
                star = Some((sp, st + 1));
                p = sp;
                t = st + 1;
            }
            _ => return false,
        }
    }
}

/// Matches `c` against the `[...]` class starting at `pattern[at]`; the index after the class
/// when it matches. An unterminated class runs to the end of the pattern, as in redis.
fn class_match(pattern: &[u8], at: usize, c: u8) -> Option<usize> {
    let mut i = at + 1;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    while i < pattern.len() && pattern[i] != b']' {
        if pattern[i] == b'\\' && i + 1 < pattern.len() {
            matched |= pattern[i + 1] == c;
            i += 2;
        } else if i + 2 < pattern.len() && pattern[i + 1] == b'-' {
            let (lo, hi) = (
                pattern[i].min(pattern[i + 2]),
                pattern[i].max(pattern[i + 2]),
            );
            matched |= (lo..=hi).contains(&c);
            i += 3;
        } else {
            matched |= pattern[i] == c;
            i += 1;
        }
    }
    let next = (i + 1).min(pattern.len());
    (matched != negate).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn glob_cases() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "", true),
            ("*", "anything", true),
            ("revenue:*", "revenue:1", true),
            ("revenue:*", "revenue:", true),
            ("revenue:*", "revenu:1", false),
            ("revenue:*", "Revenue:1", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("*a", "bbba", true),
            ("*a", "bbab", false),
            ("h[ae]llo", "hello", true),
            ("h[ae]llo", "hillo", false),
            ("h[^e]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-c]llo", "hbllo", true),
            ("h[c-a]llo", "hbllo", true),
            ("h[a-c]llo", "hdllo", false),
            ("h\\*llo", "h*llo", true),
            ("h\\*llo", "hello", false),
            ("[\\]]", "]", true),
            ("ab", "abc", false),
            ("abc", "ab", false),
            ("", "", true),
            ("", "a", false),
            ("**", "x", true),
            ("a*", "a", true),
        ];
        for &(pattern, subject, want) in cases {
            assert_eq!(
                glob_match(pattern.as_bytes(), subject.as_bytes()),
                want,
                "{pattern} vs {subject}"
            );
        }
    }

    #[test]
    fn hostile_pattern_is_fast() {
        let pattern = "*a".repeat(30) + "b";
        let subject = "a".repeat(5000);
        assert!(!glob_match(pattern.as_bytes(), subject.as_bytes()));
    }

    #[test]
    fn binary_keys() {
        assert!(glob_match(b"k\xff*", b"k\xff\x00\x01"));
        assert!(!glob_match(b"k\xff*", b"k\xfe"));
    }
}
