//! Comparators (RFC 4790: i;octet, i;ascii-casemap, i;ascii-numeric) and match types
//! (RFC 5228 2.7: :is, :contains, :matches; RFC 5231: :value, :count).

use core::cmp::Ordering;

use super::script::{Comparator, MatchType};

fn fold(c: Comparator, b: u8) -> u8 {
    match c {
        Comparator::AsciiCasemap => b.to_ascii_lowercase(),
        _ => b,
    }
}

/// `:is`. An empty value equals only the empty key, whatever the comparator: for
/// i;ascii-numeric, RFC 4790 would make "" (no leading digit: positive infinity) equal to
/// every key without a leading digit; Pigeonhole does not, and we follow it so a script moved
/// from Dovecot decides the same (the relational :value keeps RFC 4790's order).
fn eq_bytes(c: Comparator, a: &[u8], b: &[u8]) -> bool {
    if a.is_empty() {
        return b.is_empty();
    }
    match c {
        Comparator::Octet => a == b,
        Comparator::AsciiCasemap => a.eq_ignore_ascii_case(b),
        Comparator::AsciiNumeric => numeric_cmp(a, b) == Ordering::Equal,
    }
}

/// The order of two values under a comparator.
pub fn order(c: Comparator, a: &[u8], b: &[u8]) -> Ordering {
    match c {
        Comparator::AsciiNumeric => numeric_cmp(a, b),
        _ => a
            .iter()
            .map(|x| fold(c, *x))
            .cmp(b.iter().map(|x| fold(c, *x))),
    }
}

/// i;ascii-numeric: the value of the leading digits; a string that does not start with a
/// digit is positive infinity (equal to every other such string).
fn numeric_cmp(a: &[u8], b: &[u8]) -> Ordering {
    match (digits(a), digits(b)) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => x.len().cmp(&y.len()).then_with(|| x.cmp(y)),
    }
}

fn digits(s: &[u8]) -> Option<&[u8]> {
    let n = s.iter().take_while(|c| c.is_ascii_digit()).count();
    if n == 0 {
        return None;
    }
    let d = &s[..n];
    let z = d.iter().take_while(|c| **c == b'0').count();
    Some(&d[z..])
}

/// Whether `value` matches `key` under the comparator and match type (not :count, which the
/// caller decides on the number of values). `work` is the budget of byte comparisons left:
/// each comparison spends from it, and a match that would need more than is left answers
/// false with `work` at 0, which the caller turns into a runtime error. So a hostile pattern
/// against a long header costs a bounded time.
pub fn matches(c: Comparator, mt: MatchType, value: &[u8], key: &[u8], work: &mut u64) -> bool {
    let linear = (value.len() + key.len()) as u64 + 1;
    match mt {
        MatchType::Is => spend(work, linear) && eq_bytes(c, value, key),
        MatchType::Contains => contains(c, value, key, work),
        MatchType::Matches => glob(c, value, key, work),
        MatchType::Value(r) => spend(work, linear) && r.holds(order(c, value, key)),
        MatchType::Count(_) => false,
    }
}

/// Takes `n` from the budget; false (and the budget at 0) if there is not that much left.
fn spend(work: &mut u64, n: u64) -> bool {
    if *work < n {
        *work = 0;
        return false;
    }
    *work -= n;
    true
}

fn contains(c: Comparator, hay: &[u8], needle: &[u8], work: &mut u64) -> bool {
    if needle.is_empty() {
        return spend(work, 1);
    }
    hay.windows(needle.len()).any(|w| {
        spend(work, needle.len() as u64)
            && w.iter()
                .zip(needle)
                .all(|(a, b)| fold(c, *a) == fold(c, *b))
    }) && *work > 0
}

/// The length of the "character" `?` matches at the start of `s`: one octet, for both
/// i;octet and i;ascii-casemap (RFC 4790 defines both on octet strings; Pigeonhole matches
/// one octet too, also inside a UTF-8 character).
fn char_len(_c: Comparator, _s: &[u8]) -> usize {
    1
}

/// What the wildcards of a successful `:matches` matched (RFC 5229's `${1}`...`${9}`): spans
/// of the value, one per wildcard in key order (the first nine).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Captures {
    /// The spans (start, end) in the value.
    pub spans: [(usize, usize); 9],
    /// How many wildcards the key has (at most 9 recorded).
    pub count: usize,
}

impl Captures {
    fn set(&mut self, i: usize, span: (usize, usize)) {
        if i < self.spans.len() {
            self.spans[i] = span;
        }
        self.count = self.count.max(i + 1);
    }
}

/// `:matches`: `*` matches any sequence, `?` one character, `\` makes the next character
/// literal. Iterative with one backtrack point (the last `*`), so the cost is bounded by
/// value length × key length, and every `*` matches as little as it can with the last one
/// taking the rest, which is how Pigeonhole fills the match variables.
fn glob(c: Comparator, value: &[u8], key: &[u8], work: &mut u64) -> bool {
    glob_captures(c, value, key, work, &mut Captures::default())
}

/// [`glob`], recording what each wildcard matched.
pub fn glob_captures(
    c: Comparator,
    value: &[u8],
    key: &[u8],
    work: &mut u64,
    caps: &mut Captures,
) -> bool {
    let (mut v, mut k) = (0usize, 0usize);
    // The wildcard ordinal of the next wildcard in the key.
    let mut wild = 0usize;
    // The last star: key index after it, its current end in the value, its ordinal, its start.
    let mut star: Option<(usize, usize, usize, usize)> = None;
    *caps = Captures::default();
    loop {
        if !spend(work, 1) {
            return false;
        }
        if k < key.len() {
            match key[k] {
                b'*' => {
                    star = Some((k + 1, v, wild, v));
                    caps.set(wild, (v, v));
                    wild += 1;
                    k += 1;
                    continue;
                }
                b'?' if v < value.len() => {
                    let n = char_len(c, &value[v..]);
                    caps.set(wild, (v, v + n));
                    wild += 1;
                    v += n;
                    k += 1;
                    continue;
                }
                b'?' => {}
                lit => {
                    let (lit, step) = if lit == b'\\' && k + 1 < key.len() {
                        (key[k + 1], 2)
                    } else {
                        (lit, 1)
                    };
                    if v < value.len() && fold(c, value[v]) == fold(c, lit) {
                        v += 1;
                        k += step;
                        continue;
                    }
                }
            }
        } else if v == value.len() {
            return true;
        }
        match star {
            Some((sk, sv, ord, start)) if sv < value.len() => {
                let nv = sv + char_len(c, &value[sv..]);
                star = Some((sk, nv, ord, start));
                caps.set(ord, (start, nv));
                wild = ord + 1;
                k = sk;
                v = nv;
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sieve::script::Relation;

    #[test]
    fn glob_wildcards_and_escapes() {
        let m = |v: &str, k: &str| {
            glob(
                Comparator::AsciiCasemap,
                v.as_bytes(),
                k.as_bytes(),
                &mut u64::MAX.clone(),
            )
        };
        assert!(m("", "*"));
        assert!(m("abc", "a*"));
        assert!(m("abc", "*c"));
        assert!(m("abc", "a?c"));
        assert!(!m("abc", "a?"));
        assert!(m("ABC", "a*b*c"));
        assert!(m("a*c", "a\\*c"));
        assert!(!m("abc", "a\\*c"));
        assert!(m("x?y", "x\\?y"));
        assert!(!m("xzy", "x\\?y"));
        assert!(m("aXbXc", "*x*x*"));
        let mut caps = Captures::default();
        let value = b"banana split";
        assert!(glob_captures(
            Comparator::Octet,
            value,
            b"*a*a*",
            &mut 1000,
            &mut caps
        ));
        let got: std::vec::Vec<&[u8]> = caps.spans[..caps.count]
            .iter()
            .map(|(a, b)| &value[*a..*b])
            .collect();
        assert_eq!(got, [&b"b"[..], b"n", b"na split"]);
        assert!(glob_captures(
            Comparator::Octet,
            value,
            b"?a*",
            &mut 1000,
            &mut caps
        ));
        assert_eq!(
            (caps.count, caps.spans[0], caps.spans[1]),
            (2, (0, 1), (2, 12))
        );
        assert!(!m("aXb", "*x*x*"));
        assert!(!m("é", "?"));
        assert!(m("é", "??"));
        assert!(!glob(Comparator::Octet, "é".as_bytes(), b"?", &mut 100));
        assert!(!glob(Comparator::Octet, b"ABC", b"abc", &mut 100));
        // Out of budget: false, and the budget is spent.
        let mut w = 10;
        assert!(!glob(Comparator::Octet, &[b'a'; 100], b"*b", &mut w));
        assert_eq!(w, 0);
    }

    #[test]
    fn numeric_order() {
        let o = |a: &str, b: &str| numeric_cmp(a.as_bytes(), b.as_bytes());
        assert_eq!(o("10", "9"), Ordering::Greater);
        assert_eq!(o("007", "7"), Ordering::Equal);
        assert_eq!(o("abc", "99999"), Ordering::Greater);
        assert_eq!(o("abc", "x"), Ordering::Equal);
        assert_eq!(o("12abc", "12"), Ordering::Equal);
        assert!(matches(
            Comparator::AsciiNumeric,
            MatchType::Value(Relation::Ge),
            b"5",
            b"5",
            &mut 100
        ));
    }

    #[test]
    fn contains_and_is() {
        let w = &mut 1000;
        assert!(contains(
            Comparator::AsciiCasemap,
            b"Hello World",
            b"o w",
            w
        ));
        assert!(!contains(Comparator::Octet, b"Hello World", b"o w", w));
        assert!(contains(Comparator::Octet, b"", b"", w));
        assert!(eq_bytes(Comparator::AsciiCasemap, b"ABC", b"abc"));
    }
}
