//! Glob matching of keys and channels against ACL patterns, as redis' `stringmatchlen`.
//!
//! `*` any run of bytes, `?` one byte, `[abc]`, `[^abc]`, `[a-z]` a byte class, `\x` a literal
//! `x`. Case-sensitive, byte-wise (keys are binary). Iterative: a `*` remembers where to
//! resume, so a hostile pattern costs O(pattern x subject), never exponential time.

/// Whether `subject` matches the glob `pattern`.
pub fn glob_match(pattern: &[u8], subject: &[u8]) -> bool {
    let (mut p, mut s) = (0, 0);
    // Where the last `*` was, and the subject position it currently covers up to.
    let mut resume: Option<(usize, usize)> = None;
    while s < subject.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    resume = Some((p, s));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    s += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class_match(pattern, p, subject[s])
                        && matched
                    {
                        p = next;
                        s += 1;
                        continue;
                    }
                }
                b'\\' if p + 1 < pattern.len() => {
                    if pattern[p + 1] == subject[s] {
                        p += 2;
                        s += 1;
                        continue;
                    }
                }
                c => {
                    if c == subject[s] {
                        p += 1;
                        s += 1;
                        continue;
                    }
                }
            }
        }
        // Mismatch: let the last `*` swallow one more byte, or fail.
        match resume {
            Some((star, covered)) => {
                p = star + 1;
                s = covered + 1;
                resume = Some((star, covered + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches `byte` against the class starting at `pattern[open] == b'['`.
///
/// Returns whether it matched and the index after the class. As redis, a class missing its
/// `]` runs to the end of the pattern.
fn class_match(pattern: &[u8], open: usize, byte: u8) -> Option<(bool, usize)> {
    let mut i = open + 1;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    while i < pattern.len() && pattern[i] != b']' {
        if pattern[i] == b'\\' && i + 1 < pattern.len() {
            i += 1;
            matched |= pattern[i] == byte;
        } else if i + 2 < pattern.len() && pattern[i + 1] == b'-' && pattern[i + 2] != b']' {
            let (mut lo, mut hi) = (pattern[i], pattern[i + 2]);
            if lo > hi {
                std::mem::swap(&mut lo, &mut hi);
            }
            matched |= (lo..=hi).contains(&byte);
            i += 2;
        } else {
            matched |= pattern[i] == byte;
        }
        i += 1;
    }
    // Past the `]` (or at the end when it is missing).
    let next = (i + 1).min(pattern.len());
    Some((matched != negate, next))
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
