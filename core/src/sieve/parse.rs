//! The compiler: parses a script (RFC 5228 section 8.2's grammar), checks every command and
//! test against its signature and the extensions the script required, decodes its strings and
//! writes the [`Script`] into caller-provided arenas. Nothing is allocated: a script that does
//! not fit its arenas or the [`Limits`] is refused with an error naming the place.

use super::date;
use super::error::{CompileError, ErrorKind, Pos};
use super::lex::{Lexer, Tok, Token};
use super::script::*;
use super::Limits;

/// A compiled script: its nodes and decoded strings, borrowed from the caller's arenas.
#[derive(Debug, Clone, Copy)]
pub struct Script<'a> {
    /// The nodes.
    pub nodes: &'a [Node],
    /// The decoded strings.
    pub strings: &'a [u8],
    /// The first top-level command, or `NONE` (`u32::MAX`).
    pub first: u32,
    /// The extensions it required.
    pub extensions: Extensions,
}

impl<'a> Script<'a> {
    /// The node at `i`.
    pub fn node(&self, i: u32) -> &'a Node {
        &self.nodes[i as usize]
    }

    /// The strings of the string list node `list` (none for `NONE`).
    pub fn strings(&self, list: u32) -> impl Iterator<Item = &'a [u8]> + 'a {
        let (start, count) = match self.nodes.get(list as usize).map(|n| n.kind) {
            Some(Kind::Strings { count }) => (list as usize + 1, count as usize),
            _ => (0, 0),
        };
        let nodes = self.nodes;
        let strings = self.strings;
        nodes[start..start + count]
            .iter()
            .map(move |n| match n.kind {
                Kind::Str { off, len, .. } => &strings[off as usize..(off + len) as usize],
                _ => &[][..],
            })
    }

    /// The only (or first) string of the list node `list`.
    pub fn string(&self, list: u32) -> &'a [u8] {
        self.strings(list).next().unwrap_or(&[])
    }
}

/// Compiles `src` into `nodes` and `strings`. `strings` needs at most twice the script's
/// length (multi-line strings' bare LF line ends become CRLF); `nodes` one slot per command,
/// test, argument and string.
pub fn compile<'a>(
    src: &[u8],
    limits: &Limits,
    nodes: &'a mut [Node],
    strings: &'a mut [u8],
) -> Result<Script<'a>, CompileError> {
    if src.len() > limits.max_script_size {
        return Err(CompileError {
            pos: Pos { line: 1, column: 1 },
            kind: ErrorKind::TooLarge,
        });
    }
    let mut p = Parser {
        lex: Lexer::new(src),
        src,
        peeked: None,
        nodes,
        used: 0,
        strings,
        strings_used: 0,
        ext: Extensions::default(),
        depth: 0,
        limits,
        requires_done: false,
    };
    let first = p.commands(true)?;
    let end = p.next()?;
    if end.tok != Tok::End {
        return Err(CompileError {
            pos: end.pos,
            kind: ErrorKind::Expected("a command"),
        });
    }
    let (used, sused, ext) = (p.used, p.strings_used, p.ext);
    let Parser { nodes, strings, .. } = p;
    Ok(Script {
        nodes: &nodes[..used],
        strings: &strings[..sused],
        first,
        extensions: ext,
    })
}

struct Parser<'s, 'a, 'l> {
    lex: Lexer<'s>,
    src: &'s [u8],
    peeked: Option<Token>,
    nodes: &'a mut [Node],
    used: usize,
    strings: &'a mut [u8],
    strings_used: usize,
    ext: Extensions,
    depth: u32,
    limits: &'l Limits,
    requires_done: bool,
}

fn err(pos: Pos, kind: ErrorKind) -> CompileError {
    CompileError { pos, kind }
}

/// A positional argument as the signature checks see it.
#[derive(Clone, Copy)]
enum Positional {
    Strings(u32, u32),
    Number,
}

impl<'s> Parser<'s, '_, '_> {
    fn next(&mut self) -> Result<Token, CompileError> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.lex.next_token(),
        }
    }

    fn peek(&mut self) -> Result<Token, CompileError> {
        if self.peeked.is_none() {
            self.peeked = Some(self.lex.next_token()?);
        }
        Ok(self.peeked.unwrap_or(Token {
            tok: Tok::End,
            start: 0,
            end: 0,
            pos: Pos::default(),
        }))
    }

    fn push(&mut self, kind: Kind, pos: Pos) -> Result<u32, CompileError> {
        if self.used >= self.nodes.len() {
            return Err(err(pos, ErrorKind::TooManyNodes));
        }
        self.nodes[self.used] = Node {
            kind,
            pos,
            next: NONE,
        };
        self.used += 1;
        Ok((self.used - 1) as u32)
    }

    fn enter(&mut self, pos: Pos) -> Result<(), CompileError> {
        self.depth += 1;
        if self.depth > self.limits.max_nesting {
            return Err(err(pos, ErrorKind::TooDeep));
        }
        Ok(())
    }

    /// Commands up to `}` (or the end at the top level); returns the first one.
    fn commands(&mut self, top: bool) -> Result<u32, CompileError> {
        let mut first = NONE;
        let mut last = NONE;
        let mut prev = Word::Unknown;
        loop {
            let t = self.peek()?;
            match t.tok {
                Tok::End => break,
                Tok::Punct(b'}') if !top => break,
                Tok::Ident => {}
                _ => return Err(err(t.pos, ErrorKind::Expected("a command"))),
            }
            let i = self.command(top, prev)?;
            if let Kind::Command { word, .. } = self.nodes[i as usize].kind {
                prev = word;
            }
            if last == NONE {
                first = i;
            } else {
                self.nodes[last as usize].next = i;
            }
            last = i;
        }
        Ok(first)
    }

    fn command(&mut self, top: bool, prev: Word) -> Result<u32, CompileError> {
        let t = self.next()?;
        let word = Word::from_ident(&self.src[t.start..t.end]);
        match word {
            Word::Require => {
                if !top || self.requires_done {
                    return Err(err(t.pos, ErrorKind::RequireNotFirst));
                }
            }
            Word::Unknown
            | Word::Address
            | Word::Envelope
            | Word::Header
            | Word::Exists
            | Word::Size
            | Word::Allof
            | Word::Anyof
            | Word::Not
            | Word::True
            | Word::False
            | Word::Hasflag
            | Word::String
            | Word::Body
            | Word::Date
            | Word::Currentdate
            | Word::Duplicate => return Err(err(t.pos, ErrorKind::UnknownCommand)),
            Word::Elsif | Word::Else if !matches!(prev, Word::If | Word::Elsif) => {
                return Err(err(t.pos, ErrorKind::OrphanElse))
            }
            _ => self.requires_done = true,
        }
        let (args, pos_args) = self.arguments()?;
        let mut test = NONE;
        let after = self.peek()?;
        if matches!(after.tok, Tok::Ident | Tok::Punct(b'(')) {
            if !matches!(word, Word::If | Word::Elsif) {
                return Err(err(after.pos, ErrorKind::BadArguments(usage(word))));
            }
            test = self.test()?;
        } else if matches!(word, Word::If | Word::Elsif) {
            return Err(err(after.pos, ErrorKind::Expected("a test")));
        }
        let spec = self.command_spec(word, t.pos, args)?;
        let mut block = NONE;
        let end = self.next()?;
        match (end.tok, word) {
            (Tok::Punct(b'{'), Word::If | Word::Elsif | Word::Else) => {
                self.enter(end.pos)?;
                block = self.commands(false)?;
                self.depth -= 1;
                let close = self.next()?;
                if close.tok != Tok::Punct(b'}') {
                    return Err(err(close.pos, ErrorKind::Expected("'}'")));
                }
            }
            (_, Word::If | Word::Elsif | Word::Else) => {
                return Err(err(end.pos, ErrorKind::Expected("'{'")))
            }
            (Tok::Punct(b';'), _) => {}
            _ => return Err(err(end.pos, ErrorKind::Expected("';'"))),
        }
        if word == Word::Require {
            for s in 0..self.list_len(pos_args.first()) {
                let (off, len) = self.list_str(pos_args.first(), s);
                let name = &self.strings[off..off + len];
                let Some(e) = Extensions::SUPPORTED
                    .iter()
                    .find(|e| e.name.as_bytes() == name)
                else {
                    return Err(err(t.pos, ErrorKind::UnsupportedExtension));
                };
                self.ext.0 |= e.bit;
            }
        }
        self.push(
            Kind::Command {
                word,
                spec,
                test,
                block,
            },
            t.pos,
        )
    }

    fn list_len(&self, p: Option<&Positional>) -> u32 {
        match p {
            Some(Positional::Strings(_, n)) => *n,
            _ => 0,
        }
    }

    fn list_str(&self, p: Option<&Positional>, i: u32) -> (usize, usize) {
        match p {
            Some(Positional::Strings(node, _)) => match self.nodes[(*node + 1 + i) as usize].kind {
                Kind::Str { off, len, .. } => (off as usize, len as usize),
                _ => (0, 0),
            },
            _ => (0, 0),
        }
    }

    fn test(&mut self) -> Result<u32, CompileError> {
        let t = self.next()?;
        if t.tok != Tok::Ident {
            return Err(err(t.pos, ErrorKind::Expected("a test")));
        }
        self.enter(t.pos)?;
        let word = Word::from_ident(&self.src[t.start..t.end]);
        let (args, _) = self.arguments()?;
        let mut tests = NONE;
        let after = self.peek()?;
        match (word, after.tok) {
            (Word::Not, Tok::Ident) => tests = self.test()?,
            (Word::Allof | Word::Anyof, Tok::Punct(b'(')) => {
                self.next()?;
                let mut last = NONE;
                loop {
                    let i = self.test()?;
                    if last == NONE {
                        tests = i;
                    } else {
                        self.nodes[last as usize].next = i;
                    }
                    last = i;
                    let sep = self.next()?;
                    match sep.tok {
                        Tok::Punct(b',') => {}
                        Tok::Punct(b')') => break,
                        _ => return Err(err(sep.pos, ErrorKind::Expected("',' or ')'"))),
                    }
                }
            }
            (Word::Not, _) => return Err(err(after.pos, ErrorKind::Expected("a test"))),
            (Word::Allof | Word::Anyof, _) => {
                return Err(err(
                    after.pos,
                    ErrorKind::Expected("'(' and a list of tests"),
                ))
            }
            (_, Tok::Ident | Tok::Punct(b'(')) => {
                return Err(err(after.pos, ErrorKind::BadArguments(usage(word))))
            }
            _ => {}
        }
        let spec = self.test_spec(word, t.pos, args)?;
        self.depth -= 1;
        self.push(Kind::Test { word, spec, tests }, t.pos)
    }

    /// Reads the arguments (tags, numbers, string lists) and links them; returns the first
    /// and the positional ones (after the tags) in order.
    fn arguments(&mut self) -> Result<(u32, heapless::Vec<Positional, 16>), CompileError> {
        let mut first = NONE;
        let mut last = NONE;
        let mut positional = heapless::Vec::new();
        loop {
            let t = self.peek()?;
            let i = match t.tok {
                Tok::Tag => {
                    self.next()?;
                    let tag = TagWord::from_ident(&self.src[t.start..t.end]);
                    self.push(Kind::Tag(tag), t.pos)?
                }
                Tok::Number(v) => {
                    self.next()?;
                    let i = self.push(Kind::Number(v as u32), t.pos)?;
                    if positional.push(Positional::Number).is_err() {
                        return Err(err(t.pos, ErrorKind::BadArguments("too many arguments")));
                    }
                    i
                }
                Tok::Quoted | Tok::MultiLine | Tok::Punct(b'[') => {
                    let (i, n) = self.string_list()?;
                    if positional.push(Positional::Strings(i, n)).is_err() {
                        return Err(err(t.pos, ErrorKind::BadArguments("too many arguments")));
                    }
                    i
                }
                _ => break,
            };
            if last == NONE {
                first = i;
            } else {
                self.nodes[last as usize].next = i;
            }
            last = i;
        }
        Ok((first, positional))
    }

    fn string_list(&mut self) -> Result<(u32, u32), CompileError> {
        let t = self.next()?;
        let head = self.push(Kind::Strings { count: 0 }, t.pos)?;
        let mut count = 0;
        if t.tok == Tok::Punct(b'[') {
            loop {
                let s = self.next()?;
                if !matches!(s.tok, Tok::Quoted | Tok::MultiLine) {
                    return Err(err(s.pos, ErrorKind::Expected("a string")));
                }
                self.string(s)?;
                count += 1;
                let sep = self.next()?;
                match sep.tok {
                    Tok::Punct(b',') => {}
                    Tok::Punct(b']') => break,
                    _ => return Err(err(sep.pos, ErrorKind::Expected("',' or ']'"))),
                }
            }
        } else {
            self.string(t)?;
            count = 1;
        }
        self.nodes[head as usize].kind = Kind::Strings { count };
        Ok((head, count))
    }

    /// Decodes a string token into the string arena and pushes its node.
    fn string(&mut self, t: Token) -> Result<u32, CompileError> {
        let raw = &self.src[t.start..t.end];
        let off = self.strings_used;
        let mut w = off;
        let cap = self.strings.len();
        let mut put = |strings: &mut [u8], c: u8| -> Result<(), CompileError> {
            if w >= cap {
                return Err(err(t.pos, ErrorKind::TooLarge));
            }
            strings[w] = c;
            w += 1;
            Ok(())
        };
        if t.tok == Tok::Quoted {
            let mut i = 0;
            while i < raw.len() {
                let mut c = raw[i];
                if c == b'\\' && i + 1 < raw.len() {
                    i += 1;
                    c = raw[i];
                }
                put(self.strings, c)?;
                i += 1;
            }
        } else {
            for line in raw.split_inclusive(|c| *c == b'\n') {
                let body = line.strip_suffix(b"\n").unwrap_or(line);
                let body = body.strip_suffix(b"\r").unwrap_or(body);
                let body = if body.starts_with(b"..") {
                    &body[1..]
                } else {
                    body
                };
                for &c in body {
                    put(self.strings, c)?;
                }
                put(self.strings, b'\r')?;
                put(self.strings, b'\n')?;
            }
        }
        let mut len = w - off;
        if len > self.limits.max_string_len {
            return Err(err(t.pos, ErrorKind::StringTooLong));
        }
        if self.ext.has(Extensions::ENCODED_CHARACTER) {
            len = decode_encoded(&mut self.strings[off..off + len]).map_err(|k| err(t.pos, k))?;
        }
        self.strings_used = off + len;
        let vars = self.ext.has(Extensions::VARIABLES)
            && self.strings[off..off + len].windows(2).any(|w| w == b"${");
        self.push(
            Kind::Str {
                off: off as u32,
                len: len as u32,
                vars,
            },
            t.pos,
        )
    }

    /// Reads the tags of a command or test into a spec; `allowed` says which tags it takes.
    fn tags(&self, word: Word, args: u32, spec: &mut Spec) -> Result<(), CompileError> {
        let mut seen_cmp = false;
        let mut seen_mt = false;
        let mut seen_part = false;
        let mut seen_transform = false;
        let mut seen_zone = false;
        let mut i = args;
        while i != NONE {
            let n = self.nodes[i as usize];
            let Kind::Tag(tag) = n.kind else {
                i = n.next;
                continue;
            };
            let value = n.next;
            let need = |bit: u32, name: &'static str| {
                if self.ext.has(bit) {
                    Ok(())
                } else {
                    Err(err(n.pos, ErrorKind::MissingRequire(name)))
                }
            };
            let string_value = |what: &'static str| -> Result<&[u8], CompileError> {
                match self.nodes.get(value as usize).map(|v| v.kind) {
                    Some(Kind::Strings { count: 1 }) => match self.nodes[value as usize + 1].kind {
                        Kind::Str { off, len, .. } => {
                            Ok(&self.strings[off as usize..(off + len) as usize])
                        }
                        _ => Err(err(n.pos, ErrorKind::Expected(what))),
                    },
                    _ => Err(err(n.pos, ErrorKind::Expected(what))),
                }
            };
            let number_value = |what: &'static str| -> Result<u32, CompileError> {
                match self.nodes.get(value as usize).map(|v| v.kind) {
                    Some(Kind::Number(v)) => Ok(v),
                    _ => Err(err(n.pos, ErrorKind::Expected(what))),
                }
            };
            let list_value = |what: &'static str| -> Result<u32, CompileError> {
                match self.nodes.get(value as usize).map(|v| v.kind) {
                    Some(Kind::Strings { .. }) => Ok(value),
                    _ => Err(err(n.pos, ErrorKind::Expected(what))),
                }
            };
            let one_string = |what: &'static str| -> Result<u32, CompileError> {
                string_value(what)?;
                Ok(value)
            };
            let once = |slot: u32| {
                if slot == NONE {
                    Ok(())
                } else {
                    Err(err(n.pos, ErrorKind::DuplicateTag))
                }
            };
            let is_match = matches!(
                word,
                Word::Address
                    | Word::Envelope
                    | Word::Header
                    | Word::Hasflag
                    | Word::String
                    | Word::Body
                    | Word::Date
                    | Word::Currentdate
            );
            let is_addr = matches!(word, Word::Address | Word::Envelope);
            let mut takes_value = false;
            match tag {
                TagWord::Comparator if is_match => {
                    if seen_cmp {
                        return Err(err(n.pos, ErrorKind::DuplicateTag));
                    }
                    seen_cmp = true;
                    takes_value = true;
                    let name = string_value("a comparator name after :comparator")?;
                    spec.cmp = match name {
                        b"i;octet" => Comparator::Octet,
                        b"i;ascii-casemap" => Comparator::AsciiCasemap,
                        b"i;ascii-numeric" => {
                            need(Extensions::NUMERIC, "comparator-i;ascii-numeric")?;
                            Comparator::AsciiNumeric
                        }
                        _ => return Err(err(n.pos, ErrorKind::UnknownComparator)),
                    };
                }
                TagWord::Is
                | TagWord::Contains
                | TagWord::Matches
                | TagWord::Value
                | TagWord::Count
                    if is_match =>
                {
                    if seen_mt {
                        return Err(err(n.pos, ErrorKind::DuplicateTag));
                    }
                    seen_mt = true;
                    spec.mt = match tag {
                        TagWord::Is => MatchType::Is,
                        TagWord::Contains => MatchType::Contains,
                        TagWord::Matches => MatchType::Matches,
                        _ => {
                            need(Extensions::RELATIONAL, "relational")?;
                            takes_value = true;
                            let op = string_value("a relational operator")?;
                            let r =
                                Relation::parse(op).ok_or(err(n.pos, ErrorKind::BadRelation))?;
                            if tag == TagWord::Value {
                                MatchType::Value(r)
                            } else {
                                MatchType::Count(r)
                            }
                        }
                    };
                }
                TagWord::All
                | TagWord::Localpart
                | TagWord::Domain
                | TagWord::User
                | TagWord::Detail
                    if is_addr =>
                {
                    if seen_part {
                        return Err(err(n.pos, ErrorKind::DuplicateTag));
                    }
                    seen_part = true;
                    spec.part = match tag {
                        TagWord::All => AddrPart::All,
                        TagWord::Localpart => AddrPart::Localpart,
                        TagWord::Domain => AddrPart::Domain,
                        TagWord::User => {
                            need(Extensions::SUBADDRESS, "subaddress")?;
                            AddrPart::User
                        }
                        _ => {
                            need(Extensions::SUBADDRESS, "subaddress")?;
                            AddrPart::Detail
                        }
                    };
                }
                TagWord::Over | TagWord::Under if word == Word::Size => {
                    if seen_mt {
                        return Err(err(n.pos, ErrorKind::DuplicateTag));
                    }
                    seen_mt = true;
                    spec.over = tag == TagWord::Over;
                }
                TagWord::Copy if matches!(word, Word::Fileinto | Word::Redirect) => {
                    need(Extensions::COPY, "copy")?;
                    if spec.copy {
                        return Err(err(n.pos, ErrorKind::DuplicateTag));
                    }
                    spec.copy = true;
                }
                TagWord::Create if word == Word::Fileinto => {
                    need(Extensions::MAILBOX, "mailbox")?;
                    if spec.create {
                        return Err(err(n.pos, ErrorKind::DuplicateTag));
                    }
                    spec.create = true;
                }
                TagWord::Flags if matches!(word, Word::Fileinto | Word::Keep) => {
                    need(Extensions::IMAP4FLAGS, "imap4flags")?;
                    if spec.flags != NONE {
                        return Err(err(n.pos, ErrorKind::DuplicateTag));
                    }
                    takes_value = true;
                    match self.nodes.get(value as usize).map(|v| v.kind) {
                        Some(Kind::Strings { .. }) => spec.flags = value,
                        _ => return Err(err(n.pos, ErrorKind::Expected("a list of flags"))),
                    }
                }
                TagWord::Lower
                | TagWord::Upper
                | TagWord::Lowerfirst
                | TagWord::Upperfirst
                | TagWord::Quotewildcard
                | TagWord::Length
                    if word == Word::Set =>
                {
                    let (bit, group) = match tag {
                        TagWord::Lower => (Spec::LOWER, Spec::LOWER | Spec::UPPER),
                        TagWord::Upper => (Spec::UPPER, Spec::LOWER | Spec::UPPER),
                        TagWord::Lowerfirst => {
                            (Spec::LOWERFIRST, Spec::LOWERFIRST | Spec::UPPERFIRST)
                        }
                        TagWord::Upperfirst => {
                            (Spec::UPPERFIRST, Spec::LOWERFIRST | Spec::UPPERFIRST)
                        }
                        TagWord::Quotewildcard => (Spec::QUOTEWILDCARD, Spec::QUOTEWILDCARD),
                        _ => (Spec::LENGTH, Spec::LENGTH),
                    };
                    // One modifier of each precedence group (RFC 5229 4.1).
                    if spec.modifiers & group != 0 {
                        return Err(err(n.pos, ErrorKind::DuplicateTag));
                    }
                    spec.modifiers |= bit;
                }
                TagWord::Raw | TagWord::Content | TagWord::Text if word == Word::Body => {
                    if seen_transform {
                        return Err(err(n.pos, ErrorKind::DuplicateTag));
                    }
                    seen_transform = true;
                    spec.body = match tag {
                        TagWord::Raw => BodyTransform::Raw,
                        TagWord::Text => BodyTransform::Text,
                        _ => {
                            takes_value = true;
                            spec.c = list_value("a list of content types after :content")?;
                            BodyTransform::Content
                        }
                    };
                }
                TagWord::Zone | TagWord::Originalzone
                    if word == Word::Date
                        || (word == Word::Currentdate && tag == TagWord::Zone) =>
                {
                    if seen_zone {
                        return Err(err(n.pos, ErrorKind::DuplicateTag));
                    }
                    seen_zone = true;
                    spec.zone = if tag == TagWord::Zone {
                        takes_value = true;
                        let z = string_value("a time zone after :zone")?;
                        let vars = matches!(
                            self.nodes.get(value as usize + 1).map(|v| v.kind),
                            Some(Kind::Str { vars: true, .. })
                        );
                        match date::parse_zone(z) {
                            Some(m) => Zone::Fixed(m as i16),
                            // A zone built from variables is read when the test runs.
                            None if vars => Zone::Named(value),
                            None => {
                                return Err(err(
                                    n.pos,
                                    ErrorKind::BadValue("time zone (+hhmm or -hhmm)"),
                                ))
                            }
                        }
                    } else {
                        Zone::Original
                    };
                }
                TagWord::Index if matches!(word, Word::Header | Word::Address | Word::Date) => {
                    need(Extensions::INDEX, "index")?;
                    if spec.index != 0 {
                        return Err(err(n.pos, ErrorKind::DuplicateTag));
                    }
                    takes_value = true;
                    spec.index = number_value("a field number after :index")?;
                    if spec.index == 0 {
                        return Err(err(n.pos, ErrorKind::BadValue("field number (from 1)")));
                    }
                }
                TagWord::Last
                    if matches!(
                        word,
                        Word::Header | Word::Address | Word::Date | Word::Duplicate
                    ) =>
                {
                    if word != Word::Duplicate {
                        need(Extensions::INDEX, "index")?;
                    }
                    if spec.last {
                        return Err(err(n.pos, ErrorKind::DuplicateTag));
                    }
                    spec.last = true;
                }
                TagWord::Handle if matches!(word, Word::Duplicate | Word::Vacation) => {
                    once(spec.c)?;
                    takes_value = true;
                    spec.c = one_string("a handle after :handle")?;
                }
                TagWord::Header | TagWord::Uniqueid if word == Word::Duplicate => {
                    // One of the two (RFC 7352 3.1).
                    if spec.d != NONE || spec.e != NONE {
                        return Err(err(n.pos, ErrorKind::DuplicateTag));
                    }
                    takes_value = true;
                    if tag == TagWord::Header {
                        spec.d = one_string("a header name after :header")?;
                    } else {
                        spec.e = one_string("a unique id after :uniqueid")?;
                    }
                }
                TagWord::Seconds | TagWord::Days
                    if word == Word::Duplicate
                        || (word == Word::Vacation
                            && (tag == TagWord::Days
                                || self.ext.has(Extensions::VACATION_SECONDS))) =>
                {
                    if word == Word::Duplicate && tag == TagWord::Days {
                        return Err(err(n.pos, ErrorKind::UnknownTag));
                    }
                    if spec.seconds != NONE {
                        return Err(err(n.pos, ErrorKind::DuplicateTag));
                    }
                    takes_value = true;
                    let v = number_value("a number")?;
                    spec.seconds = if tag == TagWord::Days {
                        v.saturating_mul(86_400).min(NONE - 1)
                    } else {
                        v.min(NONE - 1)
                    };
                }
                TagWord::Subject if word == Word::Vacation => {
                    once(spec.d)?;
                    takes_value = true;
                    spec.d = one_string("a subject after :subject")?;
                }
                TagWord::From if word == Word::Vacation => {
                    once(spec.e)?;
                    takes_value = true;
                    spec.e = one_string("an address after :from")?;
                }
                TagWord::Addresses if word == Word::Vacation => {
                    once(spec.f)?;
                    takes_value = true;
                    spec.f = list_value("a list of addresses after :addresses")?;
                }
                TagWord::Mime if word == Word::Vacation => {
                    if spec.mime {
                        return Err(err(n.pos, ErrorKind::DuplicateTag));
                    }
                    spec.mime = true;
                }
                _ => return Err(err(n.pos, ErrorKind::UnknownTag)),
            }
            i = if takes_value {
                self.nodes[value as usize].next
            } else {
                n.next
            };
        }
        if spec.cmp == Comparator::AsciiNumeric
            && matches!(spec.mt, MatchType::Contains | MatchType::Matches)
        {
            return Err(err(
                self.nodes[args as usize].pos,
                ErrorKind::ComparatorMatch,
            ));
        }
        if spec.last && spec.index == 0 && word != Word::Duplicate {
            // RFC 5260 6: :last only with :index.
            return Err(err(
                self.nodes
                    .get(args as usize)
                    .map_or(Pos::default(), |n| n.pos),
                ErrorKind::BadArguments(usage(word)),
            ));
        }
        if word == Word::Size && !seen_mt {
            return Err(err(
                self.nodes
                    .get(args as usize)
                    .map_or(Pos::default(), |n| n.pos),
                ErrorKind::BadArguments(usage(word)),
            ));
        }
        Ok(())
    }

    /// The positional arguments: string lists and numbers that are not a tag's value.
    fn positional(&self, args: u32) -> heapless::Vec<(u32, Kind), 4> {
        let mut out = heapless::Vec::new();
        let mut i = args;
        let mut skip_next = false;
        while i != NONE {
            let n = self.nodes[i as usize];
            match n.kind {
                Kind::Tag(
                    TagWord::Comparator
                    | TagWord::Value
                    | TagWord::Count
                    | TagWord::Flags
                    | TagWord::Content
                    | TagWord::Zone
                    | TagWord::Index
                    | TagWord::Handle
                    | TagWord::Header
                    | TagWord::Uniqueid
                    | TagWord::Seconds
                    | TagWord::Days
                    | TagWord::Subject
                    | TagWord::From
                    | TagWord::Addresses,
                ) => skip_next = true,
                Kind::Tag(_) => {}
                k => {
                    if !skip_next {
                        let _ = out.push((i, k));
                    }
                    skip_next = false;
                }
            }
            i = n.next;
        }
        out
    }

    fn command_spec(&self, word: Word, pos: Pos, args: u32) -> Result<Spec, CompileError> {
        let mut spec = Spec::EMPTY;
        let bad = || err(pos, ErrorKind::BadArguments(usage(word)));
        let need = |bit: u32, name: &'static str| {
            if self.ext.has(bit) {
                Ok(())
            } else {
                Err(err(pos, ErrorKind::MissingRequire(name)))
            }
        };
        match word {
            Word::Fileinto => need(Extensions::FILEINTO, "fileinto")?,
            Word::Reject => need(Extensions::REJECT, "reject")?,
            Word::Ereject => need(Extensions::EREJECT, "ereject")?,
            Word::Setflag | Word::Addflag | Word::Removeflag => {
                need(Extensions::IMAP4FLAGS, "imap4flags")?
            }
            Word::Set => need(Extensions::VARIABLES, "variables")?,
            Word::Vacation => need(Extensions::VACATION, "vacation")?,
            _ => {}
        }
        self.tags(word, args, &mut spec)?;
        let pos_args = self.positional(args);
        let strings = |k: usize| match pos_args.get(k) {
            Some((i, Kind::Strings { count })) => Some((*i, *count)),
            _ => None,
        };
        let want = match word {
            Word::Require => {
                spec.a = strings(0).ok_or_else(bad)?.0;
                1
            }
            Word::Redirect | Word::Fileinto | Word::Reject | Word::Ereject | Word::Vacation => {
                let (i, count) = strings(0).ok_or_else(bad)?;
                if count != 1 {
                    return Err(bad());
                }
                // A redirect to what is not one address (RFC 5228 4.2) is refused here, where
                // `sieve check` shows it (one with variables is checked when it runs).
                let s = self.nodes[i as usize + 1];
                if let (Word::Redirect, Kind::Str { vars: false, .. }) = (word, s.kind) {
                    if crate::message::redirect_target(self.str_at(i, 0)).is_none() {
                        return Err(err(s.pos, ErrorKind::BadValue("redirect address")));
                    }
                }
                // A reason the recorded plan cannot hold is refused here, where `sieve
                // check` shows it (one with variables is checked when it runs).
                if word == Word::Vacation {
                    let s = self.nodes[i as usize + 1];
                    if let Kind::Str {
                        len, vars: false, ..
                    } = s.kind
                    {
                        if len as usize > super::VACATION_REASON_MAX {
                            return Err(err(s.pos, ErrorKind::ReasonTooLong));
                        }
                    }
                }
                spec.a = i;
                1
            }
            // With variables, an optional variable name comes first (RFC 5232 3).
            Word::Setflag | Word::Addflag | Word::Removeflag
                if pos_args.len() == 2 && self.ext.has(Extensions::VARIABLES) =>
            {
                let (name, n) = strings(0).ok_or_else(bad)?;
                if n != 1 || !is_var_name(self.str_at(name, 0)) {
                    return Err(err(pos, ErrorKind::BadValue("variable name")));
                }
                spec.b = name;
                spec.a = strings(1).ok_or_else(bad)?.0;
                2
            }
            Word::Setflag | Word::Addflag | Word::Removeflag => {
                spec.a = strings(0).ok_or_else(bad)?.0;
                1
            }
            Word::Set => {
                let (name, n1) = strings(0).ok_or_else(bad)?;
                let (value, n2) = strings(1).ok_or_else(bad)?;
                if n1 != 1 || n2 != 1 {
                    return Err(bad());
                }
                if !is_var_name(self.str_at(name, 0)) {
                    return Err(err(pos, ErrorKind::BadValue("variable name")));
                }
                spec.a = name;
                spec.b = value;
                2
            }
            _ => 0,
        };
        if pos_args.len() != want {
            return Err(bad());
        }
        Ok(spec)
    }

    fn test_spec(&self, word: Word, pos: Pos, args: u32) -> Result<Spec, CompileError> {
        let mut spec = Spec::EMPTY;
        let bad = || err(pos, ErrorKind::BadArguments(usage(word)));
        match word {
            Word::Unknown => return Err(err(pos, ErrorKind::UnknownTest)),
            Word::Envelope if !self.ext.has(Extensions::ENVELOPE) => {
                return Err(err(pos, ErrorKind::MissingRequire("envelope")))
            }
            Word::Hasflag if !self.ext.has(Extensions::IMAP4FLAGS) => {
                return Err(err(pos, ErrorKind::MissingRequire("imap4flags")))
            }
            Word::String if !self.ext.has(Extensions::VARIABLES) => {
                return Err(err(pos, ErrorKind::MissingRequire("variables")))
            }
            Word::Body if !self.ext.has(Extensions::BODY) => {
                return Err(err(pos, ErrorKind::MissingRequire("body")))
            }
            Word::Date | Word::Currentdate if !self.ext.has(Extensions::DATE) => {
                return Err(err(pos, ErrorKind::MissingRequire("date")))
            }
            Word::Duplicate if !self.ext.has(Extensions::DUPLICATE) => {
                return Err(err(pos, ErrorKind::MissingRequire("duplicate")))
            }
            Word::Address
            | Word::Envelope
            | Word::Header
            | Word::Exists
            | Word::Size
            | Word::Allof
            | Word::Anyof
            | Word::Not
            | Word::True
            | Word::False
            | Word::Hasflag
            | Word::String
            | Word::Body
            | Word::Date
            | Word::Currentdate
            | Word::Duplicate => {}
            _ => return Err(err(pos, ErrorKind::UnknownTest)),
        }
        self.tags(word, args, &mut spec)?;
        let pos_args = self.positional(args);
        let strings = |k: usize| match pos_args.get(k) {
            Some((i, Kind::Strings { .. })) => Some(*i),
            _ => None,
        };
        let want = match word {
            Word::Address | Word::Envelope | Word::Header | Word::String => {
                spec.a = strings(0).ok_or_else(bad)?;
                spec.b = strings(1).ok_or_else(bad)?;
                2
            }
            Word::Hasflag if pos_args.len() == 2 && self.ext.has(Extensions::VARIABLES) => {
                spec.a = strings(0).ok_or_else(bad)?;
                spec.b = strings(1).ok_or_else(bad)?;
                for i in 0..self.count(spec.a) {
                    if !is_var_name(self.str_at(spec.a, i)) {
                        return Err(err(pos, ErrorKind::BadValue("variable name")));
                    }
                }
                2
            }
            Word::Hasflag => {
                spec.b = strings(0).ok_or_else(bad)?;
                1
            }
            Word::Exists => {
                spec.a = strings(0).ok_or_else(bad)?;
                1
            }
            Word::Body => {
                spec.b = strings(0).ok_or_else(bad)?;
                1
            }
            Word::Date => {
                spec.c = strings(0).ok_or_else(bad)?;
                spec.a = strings(1).ok_or_else(bad)?;
                spec.b = strings(2).ok_or_else(bad)?;
                if self.count(spec.c) != 1 || self.count(spec.a) != 1 {
                    return Err(bad());
                }
                3
            }
            Word::Currentdate => {
                spec.a = strings(0).ok_or_else(bad)?;
                spec.b = strings(1).ok_or_else(bad)?;
                if self.count(spec.a) != 1 {
                    return Err(bad());
                }
                2
            }
            Word::Size => match pos_args.first() {
                Some((i, Kind::Number(_))) => {
                    spec.a = *i;
                    1
                }
                _ => return Err(bad()),
            },
            _ => 0,
        };
        if pos_args.len() != want {
            return Err(bad());
        }
        if word == Word::Address {
            // RFC 5228 5.1: the address test is restricted to headers that hold addresses;
            // the set is Pigeonhole's. A name built from variables is checked by nobody.
            for i in 0..self.count(spec.a) {
                let name = self.str_at(spec.a, i);
                let vars = matches!(
                    self.nodes[(spec.a + 1 + i) as usize].kind,
                    Kind::Str { vars: true, .. }
                );
                if !vars && !ADDRESS_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name)) {
                    return Err(err(
                        self.nodes[(spec.a + 1 + i) as usize].pos,
                        ErrorKind::NotAddressHeader,
                    ));
                }
            }
        }
        // An unknown date part compiles and makes the test fail when it runs (as Pigeonhole,
        // which warns).
        if word == Word::Envelope {
            for s in 0..self.count(spec.a) {
                let part = self.str_at(spec.a, s);
                if !part.eq_ignore_ascii_case(b"from") && !part.eq_ignore_ascii_case(b"to") {
                    return Err(err(pos, ErrorKind::BadValue("envelope part (from or to)")));
                }
            }
        }
        Ok(spec)
    }

    fn count(&self, list: u32) -> u32 {
        match self.nodes[list as usize].kind {
            Kind::Strings { count } => count,
            _ => 0,
        }
    }

    fn str_at(&self, list: u32, i: u32) -> &[u8] {
        match self.nodes[(list + 1 + i) as usize].kind {
            Kind::Str { off, len, .. } => &self.strings[off as usize..(off + len) as usize],
            _ => &[],
        }
    }
}

/// The headers the address test may look at.
const ADDRESS_HEADERS: &[&[u8]] = &[
    b"from",
    b"to",
    b"cc",
    b"bcc",
    b"sender",
    b"reply-to",
    b"resent-from",
    b"resent-to",
    b"resent-cc",
    b"resent-bcc",
    b"resent-sender",
    b"resent-reply-to",
    b"delivered-to",
    b"errors-to",
    b"x-original-to",
    b"mail-followup-to",
    b"mail-reply-to",
];

/// Whether `s` is a variable name `set` can set: an identifier.
fn is_var_name(s: &[u8]) -> bool {
    s.first()
        .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
        && s.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// The usage line of a command or test, for argument errors.
fn usage(word: Word) -> &'static str {
    match word {
        Word::Require => "require <extensions: string-list>",
        Word::If => "if <test> { ... }",
        Word::Elsif => "elsif <test> { ... }",
        Word::Else => "else { ... }",
        Word::Stop => "stop",
        Word::Keep => "keep [:flags <list>]",
        Word::Discard => "discard",
        Word::Redirect => "redirect [:copy] <address: string>",
        Word::Fileinto => "fileinto [:copy] [:create] [:flags <list>] <mailbox: string>",
        Word::Reject => "reject <reason: string>",
        Word::Ereject => "ereject <reason: string>",
        Word::Setflag => "setflag [<variable: string>] <flags: string-list>",
        Word::Addflag => "addflag [<variable: string>] <flags: string-list>",
        Word::Removeflag => "removeflag [<variable: string>] <flags: string-list>",
        Word::Address => {
            "address [COMPARATOR] [ADDRESS-PART] [MATCH-TYPE] <headers: string-list> <keys: string-list>"
        }
        Word::Envelope => {
            "envelope [COMPARATOR] [ADDRESS-PART] [MATCH-TYPE] <parts: string-list> <keys: string-list>"
        }
        Word::Header => "header [COMPARATOR] [MATCH-TYPE] <headers: string-list> <keys: string-list>",
        Word::Exists => "exists <headers: string-list>",
        Word::Size => "size <:over / :under> <limit: number>",
        Word::Allof => "allof (<test>, ...)",
        Word::Anyof => "anyof (<test>, ...)",
        Word::Not => "not <test>",
        Word::True => "true",
        Word::False => "false",
        Word::Hasflag => {
            "hasflag [MATCH-TYPE] [COMPARATOR] [<variables: string-list>] <flags: string-list>"
        }
        Word::Set => "set [MODIFIERS] <name: string> <value: string>",
        Word::String => "string [MATCH-TYPE] [COMPARATOR] <source: string-list> <keys: string-list>",
        Word::Body => "body [COMPARATOR] [MATCH-TYPE] [:raw / :content <types> / :text] <keys: string-list>",
        Word::Date => {
            "date [:zone <zone> / :originalzone] [COMPARATOR] [MATCH-TYPE] <header: string> <date-part: string> <keys: string-list>"
        }
        Word::Currentdate => {
            "currentdate [:zone <zone>] [COMPARATOR] [MATCH-TYPE] <date-part: string> <keys: string-list>"
        }
        Word::Duplicate => {
            "duplicate [:handle <handle>] [:header <name> / :uniqueid <id>] [:seconds <n>] [:last]"
        }
        Word::Vacation => {
            "vacation [:days <n>] [:subject <s>] [:from <address>] [:addresses <list>] [:mime] [:handle <s>] <reason: string>"
        }
        Word::Unknown => "a known command",
    }
}

/// Replaces `${hex:...}` and `${unicode:...}` (RFC 5228 2.4.2.4) in place; returns the new
/// length. A sequence that is not well-formed is left as it is; a well-formed one naming a
/// code point outside Unicode is an error, as the RFC says.
fn decode_encoded(s: &mut [u8]) -> Result<usize, ErrorKind> {
    let mut r = 0;
    let mut w = 0;
    while r < s.len() {
        if s[r] == b'$' && s.get(r + 1) == Some(&b'{') {
            if let Some((consumed, out)) = encoded_at(&s[r..])? {
                // The output is never longer than the sequence, so it is written in place.
                match out {
                    Encoded::Bytes(n, bytes) => {
                        for &c in bytes.iter().take(n) {
                            s[w] = c;
                            w += 1;
                        }
                    }
                    Encoded::Chars(n, cps) => {
                        let mut buf = [0u8; 4];
                        for &cp in cps.iter().take(n) {
                            let ch = char::from_u32(cp).ok_or(ErrorKind::BadValue(
                                "unicode character in ${unicode:...}",
                            ))?;
                            for &c in ch.encode_utf8(&mut buf).as_bytes() {
                                s[w] = c;
                                w += 1;
                            }
                        }
                    }
                }
                r += consumed;
                continue;
            }
        }
        s[w] = s[r];
        w += 1;
        r += 1;
    }
    Ok(w)
}

/// The most values one `${hex:...}` or `${unicode:...}` sequence may hold; a longer one is
/// left as it is.
const ENC_MAX: usize = 64;

enum Encoded {
    Bytes(usize, [u8; ENC_MAX]),
    Chars(usize, [u32; ENC_MAX]),
}

/// Parses an encoded-character sequence at the start of `s`: the bytes it spans and what
/// it stands for, or None if it is not one.
fn encoded_at(s: &[u8]) -> Result<Option<(usize, Encoded)>, ErrorKind> {
    let close = match s.iter().position(|c| *c == b'}') {
        Some(c) => c,
        None => return Ok(None),
    };
    let inner = &s[2..close];
    let colon = match inner.iter().position(|c| *c == b':') {
        Some(c) => c,
        None => return Ok(None),
    };
    let (name, body) = (&inner[..colon], &inner[colon + 1..]);
    let hex = if name.eq_ignore_ascii_case(b"hex") {
        true
    } else if name.eq_ignore_ascii_case(b"unicode") {
        false
    } else {
        return Ok(None);
    };
    let mut bytes = [0u8; ENC_MAX];
    let mut cps = [0u32; ENC_MAX];
    let mut n = 0;
    for word in body
        .split(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
        .filter(|w| !w.is_empty())
    {
        if word.iter().any(|c| !c.is_ascii_hexdigit()) || n >= ENC_MAX || (hex && word.len() > 2) {
            return Ok(None);
        }
        let mut v: u32 = 0;
        for &c in word {
            let d = (c as char).to_digit(16).unwrap_or(0);
            if v > 0x0FFF_FFFF {
                if hex {
                    return Ok(None);
                }
                return Err(ErrorKind::BadValue("unicode character in ${unicode:...}"));
            }
            v = v * 16 + d;
        }
        if hex {
            if v > 0xFF {
                return Ok(None);
            }
            bytes[n] = v as u8;
        } else {
            if char::from_u32(v).is_none() {
                return Err(ErrorKind::BadValue("unicode character in ${unicode:...}"));
            }
            cps[n] = v;
        }
        n += 1;
    }
    if n == 0 {
        return Ok(None);
    }
    let out = if hex {
        Encoded::Bytes(n, bytes)
    } else {
        Encoded::Chars(n, cps)
    };
    Ok(Some((close + 1, out)))
}
