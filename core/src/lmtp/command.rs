//! One LMTP command line, parsed into a borrowed view ([`Command`]). The parser is strict about
//! what it must understand (the verb, the path, the parameters it acts on) and says what is
//! wrong as the [`Fixed`] reply the session sends.

use super::reply::Fixed;
use crate::message::ADDRESS_MAX;

/// A parsed command line (without its line ending).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// `LHLO domain`.
    Lhlo(&'a [u8]),
    /// `HELO` or `EHLO`: SMTP greetings, which an LMTP server refuses (RFC 2033 section 4.1).
    SmtpGreeting,
    /// `MAIL FROM:<path> [SIZE=n] [BODY=...]`; `b""` is the null sender.
    Mail {
        /// The reverse path, without angle brackets or source route.
        from: &'a [u8],
        /// The `SIZE=` parameter.
        size: Option<u64>,
    },
    /// `RCPT TO:<path>`.
    Rcpt {
        /// The forward path, without angle brackets or source route.
        to: &'a [u8],
    },
    /// `DATA`.
    Data,
    /// `RSET`.
    Rset,
    /// `NOOP`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `VRFY`: answered without saying whether a user exists.
    Vrfy,
    /// `BDAT`, `STARTTLS`, `AUTH` and the like: known verbs this server does not offer.
    NotImplemented,
    /// A verb that is no LMTP command.
    Unknown,
    /// A known verb with bad arguments: the reply that says what is wrong (one of
    /// [`Fixed::LhloDomain`], [`Fixed::PathSyntax`], [`Fixed::Address`],
    /// [`Fixed::AddressTooLong`], [`Fixed::NullRecipient`], [`Fixed::Parameter`],
    /// [`Fixed::Size`], [`Fixed::Arguments`]).
    Invalid(Fixed),
}

fn split_verb(line: &[u8]) -> (&[u8], &[u8]) {
    match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &[]),
    }
}

fn strip_prefix_ci<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

/// Parses `<path> params`: the address inside the brackets (a source route `@a,@b:` dropped)
/// and the parameter text after them.
fn path(rest: &[u8]) -> Result<(&[u8], &[u8]), Fixed> {
    // `MAIL FROM: <a@b>` (a space after the colon) is common enough to accept.
    let rest = rest.trim_ascii_start();
    let inner = rest.strip_prefix(b"<").ok_or(Fixed::Address)?;
    let close = inner
        .iter()
        .position(|&b| b == b'>')
        .ok_or(Fixed::Address)?;
    let (addr, params) = (&inner[..close], &inner[close + 1..]);
    if !params.is_empty() && params[0] != b' ' {
        return Err(Fixed::Address);
    }
    let addr = match addr.first() {
        Some(b'@') => {
            let colon = addr.iter().position(|&b| b == b':').ok_or(Fixed::Address)?;
            &addr[colon + 1..]
        }
        _ => addr,
    };
    if addr.len() > ADDRESS_MAX {
        return Err(Fixed::AddressTooLong);
    }
    // Quoted local parts may hold anything; everything else must be a plain printable
    // address: no blanks, brackets or control characters.
    if addr
        .iter()
        .any(|&b| b <= b' ' || b == 0x7f || b == b'<' || b == b'>')
        && !addr.starts_with(b"\"")
    {
        return Err(Fixed::Address);
    }
    if addr.iter().any(|&b| b < b' ' || b == 0x7f) {
        return Err(Fixed::Address);
    }
    Ok((addr, params))
}

fn parameters(params: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    params
        .split(|&b| b == b' ')
        .filter(|p| !p.is_empty())
        .map(|p| match p.iter().position(|&b| b == b'=') {
            Some(i) => (&p[..i], &p[i + 1..]),
            None => (p, &[][..]),
        })
}

fn mail(rest: &[u8]) -> Result<Command<'_>, Fixed> {
    let rest = strip_prefix_ci(rest, b"FROM:").ok_or(Fixed::PathSyntax)?;
    let (from, params) = path(rest)?;
    let mut size = None;
    for (key, value) in parameters(params) {
        if key.eq_ignore_ascii_case(b"SIZE") {
            let digits = core::str::from_utf8(value).map_err(|_| Fixed::Size)?;
            size = Some(digits.parse::<u64>().map_err(|_| Fixed::Size)?);
        } else if key.eq_ignore_ascii_case(b"BODY") {
            // 7BIT and 8BITMIME are stored alike; anything else is refused.
            if !value.eq_ignore_ascii_case(b"7BIT") && !value.eq_ignore_ascii_case(b"8BITMIME") {
                return Err(Fixed::Parameter);
            }
        } else {
            return Err(Fixed::Parameter);
        }
    }
    Ok(Command::Mail { from, size })
}

fn rcpt(rest: &[u8]) -> Result<Command<'_>, Fixed> {
    let rest = strip_prefix_ci(rest, b"TO:").ok_or(Fixed::PathSyntax)?;
    let (to, params) = path(rest)?;
    if to.is_empty() {
        return Err(Fixed::NullRecipient);
    }
    if parameters(params).next().is_some() {
        return Err(Fixed::Parameter);
    }
    Ok(Command::Rcpt { to })
}

/// Parses one command line (its line ending already removed).
pub fn parse(line: &[u8]) -> Command<'_> {
    let (verb, rest) = split_verb(line);
    let no_args = |c: Command<'static>| {
        if rest.trim_ascii().is_empty() {
            c
        } else {
            Command::Invalid(Fixed::Arguments)
        }
    };
    let is = |v: &[u8]| verb.eq_ignore_ascii_case(v);
    let r = if is(b"LHLO") {
        let domain = rest.trim_ascii();
        if domain.is_empty() {
            Err(Fixed::LhloDomain)
        } else {
            Ok(Command::Lhlo(domain))
        }
    } else if is(b"HELO") || is(b"EHLO") {
        Ok(Command::SmtpGreeting)
    } else if is(b"MAIL") {
        mail(rest)
    } else if is(b"RCPT") {
        rcpt(rest)
    } else if is(b"DATA") {
        Ok(no_args(Command::Data))
    } else if is(b"RSET") {
        Ok(no_args(Command::Rset))
    } else if is(b"QUIT") {
        Ok(no_args(Command::Quit))
    } else if is(b"NOOP") {
        // NOOP may carry a string (RFC 5321 section 4.1.1.9).
        Ok(Command::Noop)
    } else if is(b"VRFY") {
        Ok(Command::Vrfy)
    } else if [
        &b"BDAT"[..],
        b"STARTTLS",
        b"AUTH",
        b"EXPN",
        b"HELP",
        b"ETRN",
        b"TURN",
    ]
    .iter()
    .any(|v| is(v))
    {
        Ok(Command::NotImplemented)
    } else {
        Ok(Command::Unknown)
    };
    r.unwrap_or_else(Command::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_are_case_insensitive_and_paths_lose_their_brackets() {
        assert_eq!(parse(b"lhlo mx.example"), Command::Lhlo(b"mx.example"));
        assert_eq!(
            parse(b"MAIL FROM:<a@b.example> SIZE=120 BODY=8BITMIME"),
            Command::Mail {
                from: b"a@b.example",
                size: Some(120)
            }
        );
        assert_eq!(
            parse(b"mail from: <>"),
            Command::Mail {
                from: b"",
                size: None
            }
        );
        assert_eq!(
            parse(b"RCPT TO:<@relay.example,@r2.example:bob@x.example>"),
            Command::Rcpt {
                to: b"bob@x.example"
            }
        );
        assert_eq!(parse(b"data"), Command::Data);
        assert_eq!(parse(b"NOOP anything"), Command::Noop);
        assert_eq!(parse(b"EHLO x"), Command::SmtpGreeting);
        assert_eq!(parse(b"BDAT 10 LAST"), Command::NotImplemented);
    }

    #[test]
    fn bad_arguments_say_what_is_wrong() {
        let inv = |l: &[u8]| match parse(l) {
            Command::Invalid(i) => Some(i),
            _ => None,
        };
        assert_eq!(inv(b"LHLO"), Some(Fixed::LhloDomain));
        assert_eq!(inv(b"MAIL TO:<a@b>"), Some(Fixed::PathSyntax));
        assert_eq!(inv(b"MAIL FROM:a@b"), Some(Fixed::Address));
        assert_eq!(inv(b"MAIL FROM:<a@b"), Some(Fixed::Address));
        assert_eq!(inv(b"MAIL FROM:<a b@c>"), Some(Fixed::Address));
        assert_eq!(inv(b"MAIL FROM:<a@b>x"), Some(Fixed::Address));
        assert_eq!(inv(b"MAIL FROM:<a@b> SIZE=x"), Some(Fixed::Size));
        assert_eq!(inv(b"MAIL FROM:<a@b> SMTPUTF8"), Some(Fixed::Parameter));
        assert_eq!(
            inv(b"MAIL FROM:<a@b> BODY=BINARYMIME"),
            Some(Fixed::Parameter)
        );
        assert_eq!(inv(b"RCPT TO:<>"), Some(Fixed::NullRecipient));
        assert_eq!(inv(b"RCPT TO:<a@b> NOTIFY=NEVER"), Some(Fixed::Parameter));
        assert_eq!(inv(b"DATA now"), Some(Fixed::Arguments));
        let mut long = std::vec::Vec::from(&b"RCPT TO:<"[..]);
        long.resize(long.len() + ADDRESS_MAX + 1, b'a');
        long.push(b'>');
        assert_eq!(inv(&long), Some(Fixed::AddressTooLong));
    }

    #[test]
    fn garbage_is_unknown_never_a_panic() {
        for line in [
            &b""[..],
            b" ",
            b"\x00\xff",
            b"MAIL",
            b"RCPT",
            b"RCPT TO:",
            b"MAIL FROM:<",
        ] {
            let _ = parse(line);
        }
        assert_eq!(parse(b"\x00\xff"), Command::Unknown);
        assert_eq!(parse(b""), Command::Unknown);
    }
}
