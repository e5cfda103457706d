//! Parsing the dates mail carries: RFC 5322 `Date:` fields and asctime `From ` line stamps.

pub(crate) fn trim(s: &[u8]) -> &[u8] {
    let ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let start = s.iter().position(|b| !ws(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !ws(b)).map_or(start, |e| e + 1);
    &s[start..end]
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Tok<'a> {
    Num(u32, u8),
    Word(&'a [u8]),
    Punct(u8),
}

/// Splits a date into numbers, words and punctuation, skipping whitespace and comments.
pub(crate) struct DateLexer<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Iterator for DateLexer<'a> {
    type Item = Tok<'a>;
    fn next(&mut self) -> Option<Tok<'a>> {
        let s = self.s;
        loop {
            let b = *s.get(self.i)?;
            match b {
                b' ' | b'\t' | b'\r' | b'\n' => self.i += 1,
                b'(' => {
                    let mut depth = 0u32;
                    while let Some(&c) = s.get(self.i) {
                        self.i += 1;
                        match c {
                            b'(' => depth += 1,
                            b')' => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            b'\\' => self.i += 1,
                            _ => {}
                        }
                    }
                }
                b'0'..=b'9' => {
                    let start = self.i;
                    let mut v: u32 = 0;
                    while let Some(&c @ b'0'..=b'9') = s.get(self.i) {
                        v = v.saturating_mul(10).saturating_add((c - b'0') as u32);
                        self.i += 1;
                    }
                    let digits = (self.i - start).min(255) as u8;
                    return Some(Tok::Num(v, digits));
                }
                _ if b.is_ascii_alphabetic() => {
                    let start = self.i;
                    while s.get(self.i).is_some_and(u8::is_ascii_alphabetic) {
                        self.i += 1;
                    }
                    return Some(Tok::Word(&s[start..self.i]));
                }
                _ => {
                    self.i += 1;
                    return Some(Tok::Punct(b));
                }
            }
        }
    }
}

pub(crate) fn month(w: &[u8]) -> Option<u32> {
    const M: [&[u8; 3]; 12] = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
        b"dec",
    ];
    if w.len() < 3 {
        return None;
    }
    M.iter()
        .position(|m| m.eq_ignore_ascii_case(&w[..3]))
        .map(|i| i as u32 + 1)
}

pub(crate) fn is_weekday(w: &[u8]) -> bool {
    const D: [&[u8; 3]; 7] = [b"mon", b"tue", b"wed", b"thu", b"fri", b"sat", b"sun"];
    w.len() >= 3 && D.iter().any(|d| d.eq_ignore_ascii_case(&w[..3]))
}

/// Offset in seconds east of UTC for an alphabetic zone; RFC 5322 §4.3: unknown ones (and
/// military letters) count as `-0000`, i.e. UTC.
pub(crate) fn named_zone(w: &[u8]) -> i64 {
    const Z: [(&[u8], i64); 10] = [
        (b"ut", 0),
        (b"gmt", 0),
        (b"est", -5),
        (b"edt", -4),
        (b"cst", -6),
        (b"cdt", -5),
        (b"mst", -7),
        (b"mdt", -6),
        (b"pst", -8),
        (b"pdt", -7),
    ];
    Z.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(w))
        .map_or(0, |(_, h)| h * 3600)
}

pub(crate) fn full_year(y: u32, digits: u8) -> i64 {
    // RFC 5322 §4.3: two digits: 00-49 → 20xx, 50-99 → 19xx; three digits: + 1900.
    match digits {
        0..=2 if y < 50 => 2000 + y as i64,
        0..=2 => 1900 + y as i64,
        3 => 1900 + y as i64,
        _ => y as i64,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

pub(crate) fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn to_unix(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32, off: i64) -> Option<i64> {
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) {
        return None;
    }
    if h > 23 || mi > 59 || s > 60 || !(0..=9999).contains(&y) {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    Some(days * 86400 + (h * 3600 + mi * 60 + s) as i64 - off)
}

/// Parses `hh:mm[:ss]` from the token stream; the first number is given.
pub(crate) fn time_of_day(
    h: u32,
    toks: &mut core::iter::Peekable<DateLexer<'_>>,
) -> Option<(u32, u32, u32)> {
    if toks.next()? != Tok::Punct(b':') {
        return None;
    }
    let Tok::Num(mi, _) = toks.next()? else {
        return None;
    };
    let mut s = 0;
    if toks.peek() == Some(&Tok::Punct(b':')) {
        toks.next();
        let Tok::Num(v, _) = toks.next()? else {
            return None;
        };
        s = v;
    }
    Some((h, mi, s))
}

/// A numeric zone after its sign: `hhmm`.
pub(crate) fn numeric_zone(sign: u8, v: u32, digits: u8) -> Option<i64> {
    if digits != 4 || v % 100 > 59 {
        return None;
    }
    let secs = ((v / 100) * 3600 + (v % 100) * 60) as i64;
    Some(if sign == b'-' { -secs } else { secs })
}

/// Parses an RFC 5322 `Date:` value (`[Sat,] 28 Nov 2026 18:03:09 +0100`) to a Unix timestamp.
/// Accepts the obsolete forms: comments and folding anywhere, a missing weekday, missing
/// seconds, 2- and 3-digit years, and alphabetic zones (`UT`, `GMT`, `EST`, ...; unknown ones
/// and a missing zone count as UTC). Trailing text is ignored.
pub fn parse_rfc5322_date(v: &[u8]) -> Option<i64> {
    let mut t = DateLexer { s: v, i: 0 }.peekable();
    let mut tok = t.next()?;
    if let Tok::Word(w) = tok {
        if !is_weekday(w) {
            return None;
        }
        tok = t.next()?;
        if tok == Tok::Punct(b',') {
            tok = t.next()?;
        }
    }
    let Tok::Num(day, 1..=2) = tok else {
        return None;
    };
    let Tok::Word(mw) = t.next()? else {
        return None;
    };
    let mo = month(mw)?;
    let Tok::Num(y, yd) = t.next()? else {
        return None;
    };
    let Tok::Num(h, _) = t.next()? else {
        return None;
    };
    let (h, mi, s) = time_of_day(h, &mut t)?;
    let off = match t.next() {
        Some(Tok::Punct(sign @ (b'+' | b'-'))) => match t.next() {
            Some(Tok::Num(z, zd)) => numeric_zone(sign, z, zd)?,
            _ => return None,
        },
        Some(Tok::Word(w)) => named_zone(w),
        _ => 0,
    };
    to_unix(full_year(y, yd), mo, day, h, mi, s, off)
}

/// Parses the asctime date of an mbox `From ` line (`Sat Nov 28 18:03:09 2026`) to a Unix
/// timestamp. After the time, the first number is the year and a `+hhmm`/`-hhmm` or known
/// alphabetic zone is applied (placed before or after the year); other fields (`remote from
/// host`) are ignored. Without a zone the date is taken as UTC.
pub fn parse_asctime(v: &[u8]) -> Option<i64> {
    let mut t = DateLexer { s: v, i: 0 }.peekable();
    let mut tok = t.next()?;
    if let Tok::Word(w) = tok {
        if is_weekday(w) && month(w).is_none() {
            tok = t.next()?;
        }
    }
    let Tok::Word(mw) = tok else {
        return None;
    };
    let mo = month(mw)?;
    let Tok::Num(day, 1..=2) = t.next()? else {
        return None;
    };
    let Tok::Num(h, _) = t.next()? else {
        return None;
    };
    let (h, mi, s) = time_of_day(h, &mut t)?;
    let mut year = None;
    let mut off = None;
    while let Some(tok) = t.next() {
        match tok {
            Tok::Num(y, d) if year.is_none() && d >= 2 => year = Some(full_year(y, d)),
            Tok::Punct(sign @ (b'+' | b'-')) if off.is_none() => {
                if let Some(Tok::Num(z, zd)) = t.peek().copied() {
                    t.next();
                    off = numeric_zone(sign, z, zd);
                }
            }
            Tok::Word(w) if off.is_none() && year.is_none() && w.len() <= 5 => {
                off = Some(named_zone(w));
            }
            _ => {}
        }
        if year.is_some() && off.is_some() {
            break;
        }
    }
    to_unix(year?, mo, day, h, mi, s, off.unwrap_or(0))
}
