//! The variables extension (RFC 5229): the variable store, the match variables `${0}`...`${9}`
//! of the last successful `:matches`, `set`'s modifiers, and the expansion of `${name}` in
//! strings. Fixed capacities: a run that needs more is stopped with
//! [`RuntimeError::OutOfSpace`] (and the implicit keep).

use super::compare::Captures;
use super::error::RuntimeError;
use super::parse::Script;
use super::script::{Kind, Spec, NONE};

/// The most variables a run may set.
const VARS_MAX: usize = 64;
/// The longest variable name.
const NAME_MAX: usize = 32;
/// The longest value kept; longer ones are cut at a character boundary (RFC 5229 5 lets an
/// implementation limit a variable's size; 4000 is its suggested minimum).
pub const VALUE_MAX: usize = 4000;
/// Room for every value (old values are compacted away when it fills).
const VALUES_ROOM: usize = 16 * 1024;
/// Room for the expanded strings of one command or test.
const EXPANDED_ROOM: usize = 16 * 1024;
/// The most strings with variables one command or test may use.
const EXPANDED_MAX: usize = 64;

/// The variables of one run. Their room (some 28 KiB) is made only when the first variable
/// or match is set: a run of a script that sets none never clears or touches it.
#[derive(Debug, Default)]
pub struct Vars(Option<VarStore>);

impl Vars {
    /// The value of a variable (the empty string if it was never set).
    pub fn get(&self, name: &[u8]) -> &[u8] {
        self.0.as_ref().map_or(b"", |v| v.get(name))
    }

    /// Sets a variable.
    pub fn set(&mut self, name: &[u8], value: &[u8]) -> Result<(), RuntimeError> {
        self.0
            .get_or_insert_with(VarStore::default)
            .set(name, value)
    }

    /// Records the match variables of a successful `:matches` of `value`.
    pub fn set_matches(&mut self, value: &[u8], caps: &Captures) {
        self.0
            .get_or_insert_with(VarStore::default)
            .set_matches(value, caps)
    }
}

/// The variables' room.
#[derive(Debug, Default)]
struct VarStore {
    names: heapless::Vec<(heapless::Vec<u8, NAME_MAX>, u32, u32), VARS_MAX>,
    values: heapless::Vec<u8, VALUES_ROOM>,
    matched: heapless::Vec<u8, { 2 * VALUE_MAX }>,
    spans: [(u32, u32); 10],
    match_count: usize,
}

impl VarStore {
    /// The value of a variable (the empty string if it was never set).
    fn get(&self, name: &[u8]) -> &[u8] {
        if !name.is_empty() && name.iter().all(u8::is_ascii_digit) {
            let i: usize = name.iter().fold(0usize, |n, d| {
                n.saturating_mul(10).saturating_add(usize::from(d - b'0'))
            });
            if i < self.match_count.min(10) {
                let (a, b) = self.spans[i];
                return &self.matched[a as usize..b as usize];
            }
            return b"";
        }
        self.names
            .iter()
            .find(|(n, _, _)| n.eq_ignore_ascii_case(name))
            .map_or(b"", |(_, off, len)| {
                &self.values[*off as usize..(*off + *len) as usize]
            })
    }

    /// Sets a variable.
    fn set(&mut self, name: &[u8], value: &[u8]) -> Result<(), RuntimeError> {
        let value = &value[..cut(value, VALUE_MAX)];
        if self.values.len() + value.len() > VALUES_ROOM {
            self.compact(name);
        }
        let off = self.values.len() as u32;
        self.values
            .extend_from_slice(value)
            .map_err(|_| RuntimeError::OutOfSpace)?;
        let len = value.len() as u32;
        if let Some(v) = self
            .names
            .iter_mut()
            .find(|(n, _, _)| n.eq_ignore_ascii_case(name))
        {
            v.1 = off;
            v.2 = len;
            return Ok(());
        }
        let n = heapless::Vec::from_slice(name).map_err(|_| RuntimeError::OutOfSpace)?;
        self.names
            .push((n, off, len))
            .map_err(|_| RuntimeError::OutOfSpace)
    }

    /// Drops the space of overwritten values (and of `except`'s, which is being replaced).
    fn compact(&mut self, except: &[u8]) {
        let mut fresh: heapless::Vec<u8, VALUES_ROOM> = heapless::Vec::new();
        for (n, off, len) in self.names.iter_mut() {
            if n.eq_ignore_ascii_case(except) {
                *len = 0;
                *off = 0;
                continue;
            }
            let v = &self.values[*off as usize..(*off + *len) as usize];
            *off = fresh.len() as u32;
            let _ = fresh.extend_from_slice(v);
        }
        self.values = fresh;
    }

    /// Records the match variables of a successful `:matches` of `value`.
    fn set_matches(&mut self, value: &[u8], caps: &Captures) {
        let value = &value[..cut(value, VALUE_MAX)];
        self.matched.clear();
        let _ = self.matched.extend_from_slice(value);
        self.spans = [(0, 0); 10];
        self.spans[0] = (0, value.len() as u32);
        let n = caps.count.min(9);
        for i in 0..n {
            let (a, b) = caps.spans[i];
            let (a, b) = (a.min(value.len()), b.min(value.len()));
            self.spans[i + 1] = (a as u32, b as u32);
        }
        self.match_count = n + 1;
    }
}

impl Vars {
    /// Appends `s` with every `${name}` replaced by its value to `out`.
    fn expand(
        &self,
        s: &[u8],
        out: &mut heapless::Vec<u8, EXPANDED_ROOM>,
    ) -> Result<(), RuntimeError> {
        let full = |_| RuntimeError::OutOfSpace;
        let mut i = 0;
        while i < s.len() {
            if s[i] == b'$' && s.get(i + 1) == Some(&b'{') {
                if let Some(close) = s[i + 2..].iter().position(|c| *c == b'}') {
                    let name = &s[i + 2..i + 2 + close];
                    let number = !name.is_empty() && name.iter().all(u8::is_ascii_digit);
                    let ident = name
                        .first()
                        .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
                        && name.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_');
                    if number || ident {
                        out.extend_from_slice(self.get(name)).map_err(full)?;
                        i += close + 3;
                        continue;
                    }
                }
            }
            out.push(s[i]).map_err(|_| RuntimeError::OutOfSpace)?;
            i += 1;
        }
        Ok(())
    }
}

/// The length of the longest prefix of `s` of at most `max` bytes that ends on a UTF-8
/// character boundary.
fn cut(s: &[u8], max: usize) -> usize {
    if s.len() <= max {
        return s.len();
    }
    let mut n = max;
    while n > 0 && (s[n] & 0xC0) == 0x80 {
        n -= 1;
    }
    n
}

/// The expanded strings of one command or test, by node. Their room (some 17 KiB) is made
/// only when a string with a variable is first expanded.
#[derive(Debug, Default)]
pub struct Expanded(Option<ExpandedRoom>);

#[derive(Debug, Default)]
struct ExpandedRoom {
    buf: heapless::Vec<u8, EXPANDED_ROOM>,
    spans: heapless::Vec<(u32, u32, u32), EXPANDED_MAX>,
}

impl Expanded {
    /// Forgets the previous command's strings.
    pub fn clear(&mut self) {
        if let Some(room) = &mut self.0 {
            room.buf.clear();
            room.spans.clear();
        }
    }

    /// Expands the strings with variables of the list node `list`.
    pub fn prepare(
        &mut self,
        script: &Script<'_>,
        vars: &Vars,
        list: u32,
    ) -> Result<(), RuntimeError> {
        let count = match script.nodes.get(list as usize).map(|n| n.kind) {
            Some(Kind::Strings { count }) => count,
            _ => return Ok(()),
        };
        for i in list + 1..list + 1 + count {
            if let Kind::Str {
                off,
                len,
                vars: true,
            } = script.node(i).kind
            {
                let room = self.0.get_or_insert_with(ExpandedRoom::default);
                let start = room.buf.len() as u32;
                vars.expand(
                    &script.strings[off as usize..(off + len) as usize],
                    &mut room.buf,
                )?;
                let end = room.buf.len() as u32;
                room.spans
                    .push((i, start, end - start))
                    .map_err(|_| RuntimeError::OutOfSpace)?;
            }
        }
        Ok(())
    }

    /// The strings of the list node `list` ([`NONE`]: none), expanded where prepared.
    pub fn list<'a>(
        &'a self,
        script: &'a Script<'a>,
        list: u32,
    ) -> impl Iterator<Item = &'a [u8]> + 'a {
        let count = match script.nodes.get(list as usize).map(|n| n.kind) {
            Some(Kind::Strings { count }) if list != NONE => count,
            _ => 0,
        };
        let first = if count == 0 { 0 } else { list + 1 };
        (first..first + count).map(move |i| match script.node(i).kind {
            Kind::Str { vars: true, .. } => self.0.as_ref().map_or(&b""[..], |room| {
                room.spans
                    .iter()
                    .find(|(n, _, _)| *n == i)
                    .map_or(&b""[..], |(_, off, len)| {
                        &room.buf[*off as usize..(*off + *len) as usize]
                    })
            }),
            Kind::Str { off, len, .. } => &script.strings[off as usize..(off + len) as usize],
            _ => &b""[..],
        })
    }

    /// The first string of the list node `list`.
    pub fn one<'a>(&'a self, script: &'a Script<'a>, list: u32) -> &'a [u8] {
        self.list(script, list).next().unwrap_or(b"")
    }
}

/// `set`'s modifiers applied to `value` (RFC 5229 4.1, highest precedence first), into `out`.
pub fn modify(modifiers: u8, value: &[u8], out: &mut heapless::Vec<u8, VALUE_MAX>) {
    out.clear();
    let value = &value[..cut(value, VALUE_MAX)];
    let _ = out.extend_from_slice(value);
    if modifiers & Spec::LOWER != 0 {
        out.make_ascii_lowercase();
    }
    if modifiers & Spec::UPPER != 0 {
        out.make_ascii_uppercase();
    }
    if let Some(first) = out.first_mut() {
        if modifiers & Spec::LOWERFIRST != 0 {
            first.make_ascii_lowercase();
        }
        if modifiers & Spec::UPPERFIRST != 0 {
            first.make_ascii_uppercase();
        }
    }
    if modifiers & Spec::QUOTEWILDCARD != 0 {
        let mut quoted: heapless::Vec<u8, VALUE_MAX> = heapless::Vec::new();
        for &c in out.iter() {
            if matches!(c, b'*' | b'?' | b'\\') && quoted.push(b'\\').is_err() {
                break;
            }
            if quoted.push(c).is_err() {
                break;
            }
        }
        *out = quoted;
    }
    if modifiers & Spec::LENGTH != 0 {
        let chars = out.iter().filter(|c| (**c & 0xC0) != 0x80).count();
        out.clear();
        let mut buf = [0u8; 20];
        let mut i = buf.len();
        let mut n = chars;
        loop {
            i -= 1;
            buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let _ = out.extend_from_slice(&buf[i..]);
    }
}
