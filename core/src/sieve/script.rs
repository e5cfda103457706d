//! The compiled form of a script: a tree of [`Node`]s in a caller-provided arena (children and
//! siblings linked by index) and the decoded strings in a caller-provided byte arena. Every
//! command and test carries a [`Spec`] the compiler filled in from its arguments, so the
//! interpreter never re-reads tags.

use super::error::Pos;

/// "No node": the end of a sibling list or an absent argument.
pub const NONE: u32 = u32::MAX;

/// A command or test name, resolved case-insensitively at compile time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Word {
    Require,
    If,
    Elsif,
    Else,
    Stop,
    Keep,
    Discard,
    Redirect,
    Fileinto,
    Reject,
    Ereject,
    Setflag,
    Addflag,
    Removeflag,
    Address,
    Envelope,
    Header,
    Exists,
    Size,
    Allof,
    Anyof,
    Not,
    True,
    False,
    Hasflag,
    Set,
    String,
    Body,
    Date,
    Currentdate,
    Duplicate,
    Vacation,
    Unknown,
}

impl Word {
    /// The word an identifier names.
    pub fn from_ident(s: &[u8]) -> Word {
        const TABLE: &[(&[u8], Word)] = &[
            (b"require", Word::Require),
            (b"if", Word::If),
            (b"elsif", Word::Elsif),
            (b"else", Word::Else),
            (b"stop", Word::Stop),
            (b"keep", Word::Keep),
            (b"discard", Word::Discard),
            (b"redirect", Word::Redirect),
            (b"fileinto", Word::Fileinto),
            (b"reject", Word::Reject),
            (b"ereject", Word::Ereject),
            (b"setflag", Word::Setflag),
            (b"addflag", Word::Addflag),
            (b"removeflag", Word::Removeflag),
            (b"address", Word::Address),
            (b"envelope", Word::Envelope),
            (b"header", Word::Header),
            (b"exists", Word::Exists),
            (b"size", Word::Size),
            (b"allof", Word::Allof),
            (b"anyof", Word::Anyof),
            (b"not", Word::Not),
            (b"true", Word::True),
            (b"false", Word::False),
            (b"hasflag", Word::Hasflag),
            (b"set", Word::Set),
            (b"string", Word::String),
            (b"body", Word::Body),
            (b"date", Word::Date),
            (b"currentdate", Word::Currentdate),
            (b"duplicate", Word::Duplicate),
            (b"vacation", Word::Vacation),
        ];
        TABLE
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(s))
            .map_or(Word::Unknown, |(_, w)| *w)
    }
}

/// A tag name, resolved case-insensitively at compile time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum TagWord {
    Is,
    Contains,
    Matches,
    Value,
    Count,
    Comparator,
    All,
    Localpart,
    Domain,
    User,
    Detail,
    Over,
    Under,
    Copy,
    Create,
    Flags,
    Lower,
    Upper,
    Lowerfirst,
    Upperfirst,
    Quotewildcard,
    Length,
    Raw,
    Content,
    Text,
    Zone,
    Originalzone,
    Index,
    Last,
    Handle,
    Header,
    Uniqueid,
    Seconds,
    Days,
    Subject,
    From,
    Addresses,
    Mime,
    Unknown,
}

impl TagWord {
    /// The tag a `:name` names (without the colon).
    pub fn from_ident(s: &[u8]) -> TagWord {
        const TABLE: &[(&[u8], TagWord)] = &[
            (b"is", TagWord::Is),
            (b"contains", TagWord::Contains),
            (b"matches", TagWord::Matches),
            (b"value", TagWord::Value),
            (b"count", TagWord::Count),
            (b"comparator", TagWord::Comparator),
            (b"all", TagWord::All),
            (b"localpart", TagWord::Localpart),
            (b"domain", TagWord::Domain),
            (b"user", TagWord::User),
            (b"detail", TagWord::Detail),
            (b"over", TagWord::Over),
            (b"under", TagWord::Under),
            (b"copy", TagWord::Copy),
            (b"create", TagWord::Create),
            (b"flags", TagWord::Flags),
            (b"lower", TagWord::Lower),
            (b"upper", TagWord::Upper),
            (b"lowerfirst", TagWord::Lowerfirst),
            (b"upperfirst", TagWord::Upperfirst),
            (b"quotewildcard", TagWord::Quotewildcard),
            (b"length", TagWord::Length),
            (b"raw", TagWord::Raw),
            (b"content", TagWord::Content),
            (b"text", TagWord::Text),
            (b"zone", TagWord::Zone),
            (b"originalzone", TagWord::Originalzone),
            (b"index", TagWord::Index),
            (b"last", TagWord::Last),
            (b"handle", TagWord::Handle),
            (b"header", TagWord::Header),
            (b"uniqueid", TagWord::Uniqueid),
            (b"seconds", TagWord::Seconds),
            (b"days", TagWord::Days),
            (b"subject", TagWord::Subject),
            (b"from", TagWord::From),
            (b"addresses", TagWord::Addresses),
            (b"mime", TagWord::Mime),
        ];
        TABLE
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(s))
            .map_or(TagWord::Unknown, |(_, w)| *w)
    }
}

/// A comparator (RFC 4790 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Comparator {
    /// `i;octet`: bytes as they are.
    Octet,
    /// `i;ascii-casemap`: ASCII letters compare case-insensitively (the default).
    #[default]
    AsciiCasemap,
    /// `i;ascii-numeric`: the leading decimal digits as a number; no digits is +infinity.
    AsciiNumeric,
}

/// A relational operator (RFC 5231).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Relation {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl Relation {
    /// The operator a relational string names, case-insensitively.
    pub fn parse(s: &[u8]) -> Option<Relation> {
        let r = [
            (b"gt", Relation::Gt),
            (b"ge", Relation::Ge),
            (b"lt", Relation::Lt),
            (b"le", Relation::Le),
            (b"eq", Relation::Eq),
            (b"ne", Relation::Ne),
        ];
        r.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(s))
            .map(|(_, r)| *r)
    }

    /// Whether `ord` (left compared with right) satisfies the operator.
    pub fn holds(self, ord: core::cmp::Ordering) -> bool {
        use core::cmp::Ordering::*;
        match self {
            Relation::Gt => ord == Greater,
            Relation::Ge => ord != Less,
            Relation::Lt => ord == Less,
            Relation::Le => ord != Greater,
            Relation::Eq => ord == Equal,
            Relation::Ne => ord != Equal,
        }
    }
}

/// A match type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MatchType {
    /// `:is` (the default).
    #[default]
    Is,
    /// `:contains`.
    Contains,
    /// `:matches` (`*` and `?` wildcards, `\` escapes).
    Matches,
    /// `:value "op"` (relational).
    Value(Relation),
    /// `:count "op"` (relational): the number of values compared with the key.
    Count(Relation),
}

/// Which part of an address a test looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AddrPart {
    /// `:all` (the default): `local@domain`.
    #[default]
    All,
    /// `:localpart`.
    Localpart,
    /// `:domain`.
    Domain,
    /// `:user` (subaddress): the local part before the separator.
    User,
    /// `:detail` (subaddress): the local part after the separator.
    Detail,
}

/// The body test's transform (RFC 5173 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyTransform {
    /// `:text` (the default): the text parts, decoded.
    #[default]
    Text,
    /// `:raw`: the body as it is.
    Raw,
    /// `:content <types>`: the parts of the given MIME types, decoded.
    Content,
}

/// The time zone the date test converts to (RFC 5260 4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Zone {
    /// The local zone (the caller's, in [`super::Context`]).
    #[default]
    Local,
    /// `:originalzone`: the zone the date was written in.
    Original,
    /// `:zone "+hhmm"`: this offset, in minutes east of UTC.
    Fixed(i16),
    /// `:zone` with a string built from variables (its string list node), read when the
    /// test runs; a value that is no zone makes the test fail.
    Named(u32),
}

/// What the compiler read from a command's or test's arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// The comparator.
    pub cmp: Comparator,
    /// The match type.
    pub mt: MatchType,
    /// The address part.
    pub part: AddrPart,
    /// `:copy` was given.
    pub copy: bool,
    /// `:create` was given.
    pub create: bool,
    /// `:over` (size).
    pub over: bool,
    /// The `:flags` string list node, or [`NONE`].
    pub flags: u32,
    /// The first positional argument (a string list node), or [`NONE`]; for `size`, the limit.
    pub a: u32,
    /// The second positional argument (a string list node), or [`NONE`].
    pub b: u32,
    /// `set`'s modifiers (the `Spec::LOWER`... bits).
    pub modifiers: u8,
    /// `body`'s transform.
    pub body: BodyTransform,
    /// `date`'s zone.
    pub zone: Zone,
    /// `:index` (RFC 5260 6): the field to look at, from 1; 0 for every field.
    pub index: u32,
    /// `:last`: `:index` counts from the last field; `duplicate :last`: the period runs
    /// from the last time seen.
    pub last: bool,
    /// `vacation :mime`.
    pub mime: bool,
    /// `:seconds`/`:days` in seconds, or [`NONE`] when not given.
    pub seconds: u32,
    /// A third string list: `body :content`'s types, `date`'s header name, `duplicate`'s
    /// and `vacation`'s `:handle`; or [`NONE`].
    pub c: u32,
    /// A fourth: `duplicate :header`, `vacation :subject`; or [`NONE`].
    pub d: u32,
    /// A fifth: `duplicate :uniqueid`, `vacation :from`; or [`NONE`].
    pub e: u32,
    /// A sixth: `vacation :addresses`; or [`NONE`].
    pub f: u32,
}

impl Spec {
    /// The spec of a command or test without arguments.
    pub const EMPTY: Spec = Spec {
        cmp: Comparator::AsciiCasemap,
        mt: MatchType::Is,
        part: AddrPart::All,
        copy: false,
        create: false,
        over: false,
        flags: NONE,
        a: NONE,
        b: NONE,
        modifiers: 0,
        body: BodyTransform::Text,
        zone: Zone::Local,
        index: 0,
        last: false,
        mime: false,
        seconds: NONE,
        c: NONE,
        d: NONE,
        e: NONE,
        f: NONE,
    };

    /// `:lower`.
    pub const LOWER: u8 = 1;
    /// `:upper`.
    pub const UPPER: u8 = 2;
    /// `:lowerfirst`.
    pub const LOWERFIRST: u8 = 4;
    /// `:upperfirst`.
    pub const UPPERFIRST: u8 = 8;
    /// `:quotewildcard`.
    pub const QUOTEWILDCARD: u8 = 16;
    /// `:length`.
    pub const LENGTH: u8 = 32;
}

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A free arena slot.
    Free,
    /// A command: its test (for `if`/`elsif`) and its block's first command.
    Command {
        /// Which command.
        word: Word,
        /// What its arguments say.
        spec: Spec,
        /// The test of `if`/`elsif`, or [`NONE`].
        test: u32,
        /// The first command of its block, or [`NONE`] (also for an empty block).
        block: u32,
    },
    /// A test: its sub-tests (for `allof`/`anyof`/`not`).
    Test {
        /// Which test.
        word: Word,
        /// What its arguments say.
        spec: Spec,
        /// The first sub-test, or [`NONE`].
        tests: u32,
    },
    /// A tag argument (only kept while compiling).
    Tag(TagWord),
    /// A number argument.
    Number(u32),
    /// A string list: `count` [`Kind::Str`] nodes follow it directly.
    Strings {
        /// How many strings.
        count: u32,
    },
    /// One string of a list: its bytes in the string arena.
    Str {
        /// Offset in the string arena.
        off: u32,
        /// Length in bytes.
        len: u32,
        /// It holds `${...}` and the script requires variables: expanded when used.
        vars: bool,
    },
}

/// One element of the compiled form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    /// What it is.
    pub kind: Kind,
    /// Where it starts in the script.
    pub pos: Pos,
    /// The next sibling (command in a block, test in a list, argument), or `NONE` (`u32::MAX`).
    pub next: u32,
}

impl Node {
    /// An unused arena slot (to fill a fresh arena with).
    pub const FREE: Node = Node {
        kind: Kind::Free,
        pos: Pos { line: 0, column: 0 },
        next: NONE,
    };
}

/// Extensions a script required (a bit set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Extensions(pub u32);

/// One supported extension: its `require` name and its bit.
#[derive(Debug, Clone, Copy)]
pub struct Extension {
    /// The name given to `require`.
    pub name: &'static str,
    /// Its bit in [`Extensions`].
    pub bit: u32,
}

#[allow(missing_docs)]
impl Extensions {
    pub const FILEINTO: u32 = 1 << 0;
    pub const REJECT: u32 = 1 << 1;
    pub const EREJECT: u32 = 1 << 2;
    pub const ENVELOPE: u32 = 1 << 3;
    pub const ENCODED_CHARACTER: u32 = 1 << 4;
    pub const IMAP4FLAGS: u32 = 1 << 5;
    pub const COPY: u32 = 1 << 6;
    pub const SUBADDRESS: u32 = 1 << 7;
    pub const MAILBOX: u32 = 1 << 8;
    pub const RELATIONAL: u32 = 1 << 9;
    pub const NUMERIC: u32 = 1 << 10;
    pub const COMPARATOR_OCTET: u32 = 1 << 11;
    pub const COMPARATOR_CASEMAP: u32 = 1 << 12;
    pub const VARIABLES: u32 = 1 << 13;
    pub const BODY: u32 = 1 << 14;
    pub const DATE: u32 = 1 << 15;
    pub const INDEX: u32 = 1 << 16;
    pub const DUPLICATE: u32 = 1 << 17;
    pub const VACATION: u32 = 1 << 18;
    pub const VACATION_SECONDS: u32 = 1 << 19;

    /// Every extension this implementation supports, by its `require` name.
    pub const SUPPORTED: &'static [Extension] = &[
        Extension {
            name: "fileinto",
            bit: Self::FILEINTO,
        },
        Extension {
            name: "reject",
            bit: Self::REJECT,
        },
        Extension {
            name: "ereject",
            bit: Self::EREJECT,
        },
        Extension {
            name: "envelope",
            bit: Self::ENVELOPE,
        },
        Extension {
            name: "encoded-character",
            bit: Self::ENCODED_CHARACTER,
        },
        Extension {
            name: "imap4flags",
            bit: Self::IMAP4FLAGS,
        },
        Extension {
            name: "copy",
            bit: Self::COPY,
        },
        Extension {
            name: "subaddress",
            bit: Self::SUBADDRESS,
        },
        Extension {
            name: "mailbox",
            bit: Self::MAILBOX,
        },
        Extension {
            name: "relational",
            bit: Self::RELATIONAL,
        },
        Extension {
            name: "comparator-i;ascii-numeric",
            bit: Self::NUMERIC,
        },
        Extension {
            name: "comparator-i;octet",
            bit: Self::COMPARATOR_OCTET,
        },
        Extension {
            name: "comparator-i;ascii-casemap",
            bit: Self::COMPARATOR_CASEMAP,
        },
        Extension {
            name: "variables",
            bit: Self::VARIABLES,
        },
        Extension {
            name: "body",
            bit: Self::BODY,
        },
        Extension {
            name: "date",
            bit: Self::DATE,
        },
        Extension {
            name: "index",
            bit: Self::INDEX,
        },
        Extension {
            name: "duplicate",
            bit: Self::DUPLICATE,
        },
        Extension {
            name: "vacation",
            bit: Self::VACATION,
        },
        // RFC 6131: vacation-seconds includes vacation.
        Extension {
            name: "vacation-seconds",
            bit: Self::VACATION_SECONDS | Self::VACATION,
        },
    ];

    /// Whether `bit` is in the set.
    pub fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }
}
