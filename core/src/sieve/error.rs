//! Compile errors: each names the line and column of the token it is about, and a kind that
//! says what is wrong in words an administrator can act on.

use core::fmt;

/// A place in the script: 1-based line and column (columns count UTF-8 characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// The line, from 1.
    pub line: u32,
    /// The column, from 1.
    pub column: u32,
}

/// Why a script does not compile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A character that starts no token.
    UnexpectedChar(u8),
    /// A `/*` comment without its `*/`.
    UnterminatedComment,
    /// A string without its closing quote or `.` line.
    UnterminatedString,
    /// `text:` not followed by the end of its line.
    BadMultiLine,
    /// `:` not followed by an identifier.
    BadTag,
    /// Digits run into letters.
    BadNumber,
    /// A number beyond 2^32 - 1.
    NumberTooLarge,
    /// A token where another was needed; the text says what was expected.
    Expected(&'static str),
    /// An identifier that names no command.
    UnknownCommand,
    /// An identifier that names no test.
    UnknownTest,
    /// A tag this command or test does not take.
    UnknownTag,
    /// `require` of an extension this implementation does not have.
    UnsupportedExtension,
    /// A command, test or tag used without the `require` of its extension.
    MissingRequire(&'static str),
    /// `require` after another command.
    RequireNotFirst,
    /// `elsif`/`else` without an `if` before it.
    OrphanElse,
    /// The arguments do not fit the command (count or type); the text says what it takes.
    BadArguments(&'static str),
    /// The same tag (or two tags of one group) given twice.
    DuplicateTag,
    /// A comparator this implementation does not have.
    UnknownComparator,
    /// A match type the comparator cannot do (i;ascii-numeric with :contains or :matches).
    ComparatorMatch,
    /// A relational operator other than gt ge lt le eq ne.
    BadRelation,
    /// An address part or other value outside its allowed set.
    BadValue(&'static str),
    /// Blocks and tests nested deeper than the limit.
    TooDeep,
    /// The script is larger than the limit.
    TooLarge,
    /// The script has more elements than the compiled form's capacity.
    TooManyNodes,
    /// A string is longer than the limit.
    StringTooLong,
    /// A `vacation` reason longer than [`crate::sieve::VACATION_REASON_MAX`].
    ReasonTooLong,
    /// The address test on a header that holds no addresses (RFC 5228 5.1).
    NotAddressHeader,
}

/// A compile error at a place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileError {
    /// Where.
    pub pos: Pos,
    /// What.
    pub kind: ErrorKind,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::UnexpectedChar(c) if c.is_ascii_graphic() => {
                write!(f, "unexpected character '{}'", *c as char)
            }
            ErrorKind::UnexpectedChar(c) => write!(f, "unexpected byte 0x{c:02x}"),
            ErrorKind::UnterminatedComment => f.write_str("comment '/*' is never closed"),
            ErrorKind::UnterminatedString => f.write_str("string is never closed"),
            ErrorKind::BadMultiLine => {
                f.write_str("'text:' must be followed by the end of the line")
            }
            ErrorKind::BadTag => f.write_str("':' must be followed by a tag name"),
            ErrorKind::BadNumber => f.write_str("malformed number"),
            ErrorKind::NumberTooLarge => f.write_str("number is larger than 4294967295"),
            ErrorKind::Expected(what) => write!(f, "expected {what}"),
            ErrorKind::UnknownCommand => f.write_str("unknown command"),
            ErrorKind::UnknownTest => f.write_str("unknown test"),
            ErrorKind::UnknownTag => f.write_str("tag not allowed here"),
            ErrorKind::UnsupportedExtension => f.write_str("unsupported extension"),
            ErrorKind::MissingRequire(ext) => write!(f, "needs 'require \"{ext}\";'"),
            ErrorKind::RequireNotFirst => {
                f.write_str("'require' must come before every other command")
            }
            ErrorKind::OrphanElse => f.write_str("'elsif' or 'else' without 'if' before it"),
            ErrorKind::BadArguments(usage) => write!(f, "wrong arguments, usage: {usage}"),
            ErrorKind::DuplicateTag => f.write_str("tag given twice or conflicts with another"),
            ErrorKind::UnknownComparator => f.write_str("unknown comparator"),
            ErrorKind::ComparatorMatch => {
                f.write_str("this comparator does not support this match type")
            }
            ErrorKind::BadRelation => {
                f.write_str("relational operator must be one of gt ge lt le eq ne")
            }
            ErrorKind::BadValue(what) => write!(f, "invalid {what}"),
            ErrorKind::TooDeep => f.write_str("blocks and tests are nested too deeply"),
            ErrorKind::TooLarge => f.write_str("script is larger than the size limit"),
            ErrorKind::TooManyNodes => f.write_str("script has too many elements"),
            ErrorKind::StringTooLong => f.write_str("string is longer than the limit"),
            ErrorKind::ReasonTooLong => write!(
                f,
                "the vacation reason is longer than {} bytes",
                crate::sieve::VACATION_REASON_MAX
            ),
            ErrorKind::NotAddressHeader => f.write_str(
                "the address test takes only headers that hold addresses (From, To, Cc, Bcc, \
                 Sender, Reply-To, Resent-*, Delivered-To, Errors-To, X-Original-To, \
                 Mail-Followup-To, Mail-Reply-To)",
            ),
        }
    }
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.pos.line, self.pos.column, self.kind)
    }
}

/// Why a run stopped with the implicit keep instead of its actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeError {
    /// More actions than `Limits::max_actions`.
    TooManyActions,
    /// More redirects than `Limits::max_redirects`.
    TooManyRedirects,
    /// More steps than `Limits::max_steps`.
    BudgetExhausted,
    /// The outcome's buffers are full.
    OutOfSpace,
    /// `reject` together with `keep`/`fileinto`/`redirect`/`vacation` (RFC 5429 2.1 lets an
    /// implementation refuse the combination; this one does).
    RejectConflict,
    /// `vacation` twice in one run (RFC 5230 4.7 allows one).
    TwoVacations,
    /// A `redirect` to something that is not one mailbox address once its variables are
    /// expanded (RFC 5228 4.2; a constant one is refused when the script compiles).
    BadRedirect,
    /// A `vacation` reason longer than [`VACATION_REASON_MAX`](super::VACATION_REASON_MAX) once its variables are
    /// expanded (a reason without variables is refused when the script compiles).
    ReasonTooLong,
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RuntimeError::TooManyActions => "the script decided more actions than the limit",
            RuntimeError::TooManyRedirects => "the script redirects more often than the limit",
            RuntimeError::BudgetExhausted => "the script ran longer than its instruction budget",
            RuntimeError::OutOfSpace => "the script's actions need more memory than the limit",
            RuntimeError::RejectConflict => {
                "reject cannot be combined with keep, fileinto, redirect or vacation"
            }
            RuntimeError::TwoVacations => "vacation can be used only once per message",
            RuntimeError::BadRedirect => "redirect to something that is not one mail address",
            RuntimeError::ReasonTooLong => {
                "the vacation reason is longer than 4096 bytes once its variables are expanded"
            }
        })
    }
}
