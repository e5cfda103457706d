//! Dates for the `date` and `currentdate` tests (RFC 5260): an RFC 5322 date-time parsed
//! from a header value, converted to a zone, and printed as one of the date parts.

/// A moment: seconds since 1970-01-01T00:00:00Z, and the zone (minutes east of UTC) it was
/// written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moment {
    /// Seconds since the Unix epoch.
    pub unix: i64,
    /// The zone offset it was written with, in minutes.
    pub zone: i32,
}

/// The date parts RFC 5260 4.2 names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Part {
    Year,
    Month,
    Day,
    Date,
    Julian,
    Hour,
    Minute,
    Second,
    Time,
    Iso8601,
    Std11,
    Zone,
    Weekday,
}

impl Part {
    /// The part a name names (case-insensitively).
    pub fn parse(s: &[u8]) -> Option<Part> {
        const T: &[(&[u8], Part)] = &[
            (b"year", Part::Year),
            (b"month", Part::Month),
            (b"day", Part::Day),
            (b"date", Part::Date),
            (b"julian", Part::Julian),
            (b"hour", Part::Hour),
            (b"minute", Part::Minute),
            (b"second", Part::Second),
            (b"time", Part::Time),
            (b"iso8601", Part::Iso8601),
            (b"std11", Part::Std11),
            (b"zone", Part::Zone),
            (b"weekday", Part::Weekday),
        ];
        T.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(s))
            .map(|(_, p)| *p)
    }
}

/// Parses a zone written `+hhmm` or `-hhmm` into minutes east of UTC.
pub fn parse_zone(s: &[u8]) -> Option<i32> {
    if s.len() != 5 || !matches!(s[0], b'+' | b'-') || !s[1..].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = |i: usize| i32::from(s[i] - b'0');
    let (h, m) = (n(1) * 10 + n(2), n(3) * 10 + n(4));
    if m > 59 {
        return None;
    }
    Some(if s[0] == b'-' {
        -(h * 60 + m)
    } else {
        h * 60 + m
    })
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];
const DAYS: [&[u8; 3]; 7] = [b"Sun", b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat"];

/// Days from 1970-01-01 to the civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count from 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// Splits a value into words at whitespace and commas, comments skipped.
struct Words<'v> {
    s: &'v [u8],
}

impl<'v> Iterator for Words<'v> {
    type Item = &'v [u8];
    fn next(&mut self) -> Option<&'v [u8]> {
        loop {
            let s = self.s;
            let start = s
                .iter()
                .position(|c| !matches!(c, b' ' | b'\t' | b'\r' | b'\n'))?;
            if s[start] == b'(' {
                // A comment (nested ones too) is no word.
                let mut depth = 0;
                let mut end = s.len();
                for (i, c) in s[start..].iter().enumerate() {
                    match c {
                        b'(' => depth += 1,
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                end = start + i + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                self.s = &s[end..];
                continue;
            }
            if s[start] == b',' {
                self.s = &s[start + 1..];
                return Some(&s[start..start + 1]);
            }
            let end = s[start..]
                .iter()
                .position(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n' | b'(' | b','))
                .map_or(s.len(), |p| start + p);
            self.s = &s[end..];
            return Some(&s[start..end]);
        }
    }
}

fn number(w: &[u8], min_digits: usize, max_digits: usize) -> Option<i64> {
    if w.len() < min_digits || w.len() > max_digits || !w.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(w.iter().fold(0i64, |n, c| n * 10 + i64::from(c - b'0')))
}

/// A zone word: `+hhmm`/`-hhmm` or an obsolete name (RFC 5322 4.3); unknown names are
/// `-0000` (UTC), as the RFC says.
fn zone_word(w: &[u8]) -> Option<i32> {
    if let Some(z) = parse_zone(w) {
        return Some(z);
    }
    const NAMES: &[(&[u8], i32)] = &[
        (b"UT", 0),
        (b"GMT", 0),
        (b"Z", 0),
        (b"EST", -300),
        (b"EDT", -240),
        (b"CST", -360),
        (b"CDT", -300),
        (b"MST", -420),
        (b"MDT", -360),
        (b"PST", -480),
        (b"PDT", -420),
    ];
    if !w.iter().all(u8::is_ascii_alphabetic) || w.is_empty() {
        return None;
    }
    Some(
        NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(w))
            .map_or(0, |(_, z)| *z),
    )
}

/// Parses an RFC 5322 date-time (`[Wdy,] d Mon yyyy hh:mm[:ss] zone`, with the obsolete
/// forms: two- and three-digit years, zone names, comments).
pub fn parse(value: &[u8]) -> Option<Moment> {
    let mut words = Words { s: value }.peekable();
    let mut w = words.next()?;
    if w.iter().all(u8::is_ascii_alphabetic) {
        // A day name, checked and followed by a comma.
        if !DAYS.iter().any(|d| d.eq_ignore_ascii_case(w)) {
            return None;
        }
        if words.peek() == Some(&&b","[..]) {
            words.next();
        }
        w = words.next()?;
    }
    let day = number(w, 1, 2)?;
    let mon = words.next()?;
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(mon))? as i64 + 1;
    let yw = words.next()?;
    let mut year = number(yw, 2, 4)?;
    if yw.len() == 2 {
        year += if year < 50 { 2000 } else { 1900 };
    } else if yw.len() == 3 {
        year += 1900;
    }
    let time = words.next()?;
    let mut hms = time.split(|c| *c == b':');
    let hour = number(hms.next()?, 2, 2)?;
    let minute = number(hms.next()?, 2, 2)?;
    let second = match hms.next() {
        Some(s) => number(s, 2, 2)?,
        None => 0,
    };
    if hms.next().is_some() {
        return None;
    }
    let zone = zone_word(words.next()?)?;
    if day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
        || year < 1900
    {
        return None;
    }
    let local = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    Some(Moment {
        unix: local - i64::from(zone) * 60,
        zone,
    })
}

/// A bounded output buffer for one printed part.
pub struct Printed {
    buf: [u8; 40],
    n: usize,
}

impl Printed {
    /// The printed bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.n]
    }
    fn put(&mut self, s: &[u8]) {
        for &c in s {
            if self.n < self.buf.len() {
                self.buf[self.n] = c;
                self.n += 1;
            }
        }
    }
    fn num(&mut self, v: i64, width: usize) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut v = v.unsigned_abs();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        while digits.len() - i < width {
            i -= 1;
            digits[i] = b'0';
        }
        self.put(&digits[i..]);
    }
    fn zone(&mut self, z: i32, colon: bool) {
        self.put(if z < 0 { b"-" } else { b"+" });
        let a = i64::from(z.unsigned_abs());
        self.num(a / 60, 2);
        if colon {
            self.put(b":");
        }
        self.num(a % 60, 2);
    }
}

/// Prints `part` of the moment `unix` as seen in `zone` (minutes east of UTC), the way
/// RFC 5260 4.2 spells it (iso8601 writes a zero offset as `Z`, as Pigeonhole does).
pub fn print(unix: i64, zone: i32, part: Part) -> Printed {
    let local = unix + i64::from(zone) * 60;
    let days = local.div_euclid(86_400);
    let secs = local.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut p = Printed { buf: [0; 40], n: 0 };
    let date = |p: &mut Printed| {
        p.num(y, 4);
        p.put(b"-");
        p.num(m, 2);
        p.put(b"-");
        p.num(d, 2);
    };
    let time = |p: &mut Printed| {
        p.num(hh, 2);
        p.put(b":");
        p.num(mm, 2);
        p.put(b":");
        p.num(ss, 2);
    };
    match part {
        Part::Year => p.num(y, 4),
        Part::Month => p.num(m, 2),
        Part::Day => p.num(d, 2),
        Part::Date => date(&mut p),
        // The modified Julian day: days since 1858-11-17.
        Part::Julian => p.num(days + 40_587, 1),
        Part::Hour => p.num(hh, 2),
        Part::Minute => p.num(mm, 2),
        Part::Second => p.num(ss, 2),
        Part::Time => time(&mut p),
        Part::Iso8601 => {
            date(&mut p);
            p.put(b"T");
            time(&mut p);
            if zone == 0 {
                p.put(b"Z");
            } else {
                p.zone(zone, true);
            }
        }
        Part::Std11 => {
            p.put(DAYS[(days + 4).rem_euclid(7) as usize]);
            p.put(b", ");
            p.num(d, 2);
            p.put(b" ");
            p.put(MONTHS[(m - 1) as usize]);
            p.put(b" ");
            p.num(y, 4);
            p.put(b" ");
            time(&mut p);
            p.put(b" ");
            p.zone(zone, false);
        }
        Part::Zone => p.zone(zone, false),
        Part::Weekday => p.num((days + 4).rem_euclid(7), 1),
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(v: &str, zone: i32, part: Part) -> std::string::String {
        let m = parse(v.as_bytes()).expect("parses");
        std::string::String::from_utf8_lossy(print(m.unix, zone, part).as_bytes()).into_owned()
    }

    #[test]
    fn parts_of_a_date_in_other_zones() {
        let v = "Tue, 1 Dec 2026 13:05:07 +0300";
        assert_eq!(show(v, 0, Part::Iso8601), "2026-12-01T10:05:07Z");
        assert_eq!(show(v, -90, Part::Iso8601), "2026-12-01T08:35:07-01:30");
        assert_eq!(show(v, 0, Part::Std11), "Tue, 01 Dec 2026 10:05:07 +0000");
        assert_eq!(show(v, 0, Part::Julian), "61375");
        assert_eq!(show(v, 0, Part::Weekday), "2");
        assert_eq!(show(v, 180, Part::Hour), "13");
        assert_eq!(show(v, 14 * 60, Part::Date), "2026-12-02");
        assert_eq!(
            show("1 Jan 70 00:00 GMT", 0, Part::Iso8601),
            "1970-01-01T00:00:00Z"
        );
        assert_eq!(
            show("Sat, 29 Feb 2020 23:59:60 (c) -0000 (x)", 0, Part::Time),
            "00:00:00"
        );
    }

    #[test]
    fn bad_dates_do_not_parse() {
        for v in [
            "",
            "Tue, 31 Feb 2026 10:00 +0000",
            "Xyz, 1 Dec 2026 10:00 +0000",
            "1 Dec 2026 24:00 +0000",
            "1 Dec 2026 10:00",
            "1 Foo 2026 10:00 +0000",
            "1 Dec 2026 10:00:00:00 +0000",
        ] {
            assert!(parse(v.as_bytes()).is_none(), "{v}");
        }
        assert_eq!(parse_zone(b"+0160"), None);
        assert_eq!(parse_zone(b"-0130"), Some(-90));
    }
}
