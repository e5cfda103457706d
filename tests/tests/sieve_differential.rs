//! The referee for the Sieve interpreter: Dovecot's Pigeonhole, which nobody here wrote.
//! Generated scripts × generated messages run through both: `sieve-filter` (Debian's
//! dovecot-sieve; one run applies a script to every message of a maildir, so a few hundred
//! runs give ten thousand pairs) and `mdeliver_core::sieve`; the action sets must be equal.
//!
//! `MDELIVER_SIEVE_PAIRS` (default 10000) sets the number of pairs, `MDELIVER_SIEVE_SEED` the
//! generator's seed. Needs root (the test installs dovecot-core and dovecot-sieve when
//! missing and runs Pigeonhole as `nobody`, which it insists on) or an installed sieve-filter.
//!
//! Where the comparison normalises, it is for Pigeonhole's printing, not its semantics: flag
//! names compare case-insensitively (IMAP flags are; Pigeonhole prints system flags in lower
//! case), INBOX case-insensitively (RFC 3501; Pigeonhole prints it as the script wrote it),
//! a redirect's address without Pigeonhole's angle brackets and with its domain in
//! lower case (domains are case-insensitive; Pigeonhole prints them lowered), a reject by its presence,
//! `discard` as no store at all (Pigeonhole prints nothing for it).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use mdeliver_core::sieve::{
    compile, run, run_with, Action, Context, Limits, Message, MessageReader, Node, Outcome,
};

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

const LOCALS: &[&str] = &[
    "alice",
    "bob",
    "carol+news",
    "dave+",
    "Eve",
    "root",
    "a.b+x+y",
];
const DOMAINS: &[&str] = &["example.com", "Example.ORG", "lists.example.net", "x.test"];
const WORDS: &[&str] = &[
    "hello", "World", "urgent", "[list]", "sale", "re:", "meeting", "a*b", "q?", "SPAM", "",
];
const HEADERS: &[&str] = &[
    "subject",
    "from",
    "to",
    "cc",
    "x-tag",
    "x-spam-score",
    "list-id",
];
const ADDR_HEADERS: &[&str] = &["from", "to", "cc", "sender"];
const MAILBOXES: &[&str] = &[
    "INBOX",
    "inbox",
    "Junk",
    "lists",
    "Archive/2026",
    "work",
    "A b",
];
const FLAGS: &[&str] = &[
    "\\\\Seen",
    "${fv}",
    "\\\\Flagged",
    "\\\\Answered",
    "$Label1",
    "todo",
    "ToDo",
];

fn address(r: &mut Rng) -> String {
    let a = format!("{}@{}", r.pick(LOCALS), r.pick(DOMAINS));
    match r.below(3) {
        0 => a,
        1 => format!("\"{} {}\" <{a}>", r.pick(WORDS), r.pick(LOCALS)),
        _ => format!("{} <{a}>", r.pick(LOCALS)),
    }
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A header value of RFC 2047 encoded words (B and Q, UTF-8 and ISO-8859-1) and plain words.
fn encoded_words(r: &mut Rng) -> String {
    let mut parts = Vec::new();
    for _ in 0..1 + r.below(3) {
        let word = if r.chance(30) { "café" } else { r.pick(WORDS) };
        let part = match r.below(5) {
            0 => word.to_string(),
            1 => format!("=?UTF-8?B?{}?=", base64(word.as_bytes())),
            2 => format!(
                "=?utf-8?q?{}?=",
                word.replace('é', "=C3=A9").replace(' ', "_")
            ),
            3 => {
                let latin1: Vec<u8> = word.chars().map(|c| c as u32 as u8).collect();
                format!("=?ISO-8859-1?B?{}?=", base64(&latin1))
            }
            _ => format!("=?iso-8859-1?Q?{}?=", word.replace('é', "=E9")),
        };
        parts.push(part);
    }
    parts.join(" ")
}

fn message(r: &mut Rng, i: usize) -> Vec<u8> {
    let mut m = String::new();
    let _ = writeln!(m, "Message-ID: <m{i}@diff.test>");
    let _ = writeln!(m, "From: {}", address(r));
    let n = 1 + r.below(3);
    let to: Vec<String> = (0..n).map(|_| address(r)).collect();
    let sep = if r.chance(20) { ",\n\t" } else { ", " };
    let to_name = if r.chance(15) { "TO" } else { "To" };
    let _ = writeln!(m, "{to_name}: {}", to.join(sep));
    if r.chance(40) {
        let _ = writeln!(m, "Cc: {}", address(r));
    }
    for _ in 0..r.below(3) {
        let words: Vec<&str> = (0..1 + r.below(4)).map(|_| r.pick(WORDS)).collect();
        if r.chance(20) {
            let _ = writeln!(m, "Subject: {}\n {}", words.join(" "), r.pick(WORDS));
        } else {
            let _ = writeln!(m, "Subject: {}", words.join(" "));
        }
    }
    if r.chance(25) {
        let _ = writeln!(m, "Subject: {}", encoded_words(r));
    }
    if r.chance(50) {
        let _ = writeln!(m, "X-Spam-Score: {}", r.below(20));
    }
    if r.chance(40) {
        let _ = writeln!(m, "x-TAG: {} ", r.pick(WORDS));
    }
    if r.chance(30) {
        let _ = writeln!(m, "List-Id: <{}.example.com>", r.pick(WORDS));
    }
    m.push('\n');
    for _ in 0..r.below(40) {
        let _ = writeln!(m, "{}", r.pick(WORDS).repeat(1 + r.below(8)));
    }
    m.into_bytes()
}

fn quoted(s: &str) -> String {
    format!("\"{s}\"")
}

/// A string literal for `s` (already in Sieve source form: backslashes escaped) that spells
/// one letter another way now and then: a needless backslash escape, `${hex:..}` or
/// `${unicode:..}` (encoded-character is required by every generated script).
fn spelled(r: &mut Rng, s: &str) -> String {
    let letters: Vec<usize> = s
        .char_indices()
        .filter(|(_, c)| c.is_ascii_alphanumeric())
        .map(|(i, _)| i)
        .collect();
    if letters.is_empty() || r.chance(70) {
        return quoted(s);
    }
    let at = letters[r.below(letters.len())];
    let c = s.as_bytes()[at];
    let spelled = match r.below(3) {
        0 if !c.is_ascii_digit() && !b"nrt".contains(&c.to_ascii_lowercase()) => {
            format!("\\{}", c as char)
        }
        1 => format!("${{hex:{c:02x}}}"),
        _ => format!("${{unicode: {c:x} }}"),
    };
    quoted(&format!("{}{spelled}{}", &s[..at], &s[at + 1..]))
}

fn list(r: &mut Rng, pool: &[&str]) -> String {
    if r.chance(60) {
        let v = r.pick(pool);
        spelled(r, v)
    } else {
        let n = 1 + r.below(3);
        let items: Vec<String> = (0..n)
            .map(|_| {
                let v = r.pick(pool);
                spelled(r, v)
            })
            .collect();
        format!("[{}]", items.join(", "))
    }
}

/// A command or test name in a random letter case (identifiers are case-insensitive).
fn ident(r: &mut Rng, name: &str) -> String {
    if r.chance(90) {
        return name.to_string();
    }
    name.chars()
        .map(|c| {
            if r.chance(50) {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

/// The keys tests compare with: every word the messages are made of, and patterns.
fn keys() -> &'static [&'static str] {
    static KEYS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let mut pool: Vec<&str> = WORDS.to_vec();
        pool.extend(LOCALS);
        pool.extend(DOMAINS);
        pool.extend(["café", "caf?", "*é*", "hello World", "=?UTF-8?B?aGVsbG8=?="]);
        pool.extend([
            "*",
            "*example*",
            "?*",
            "*.com",
            "1",
            "5",
            "10",
            "h*o",
            "*+*",
            "\\\\*",
        ]);
        pool
    })
}

fn comparator_and_match(r: &mut Rng, numeric_ok: bool) -> String {
    let mut s = String::new();
    let numeric = numeric_ok && r.chance(15);
    if numeric {
        s += " :comparator \"i;ascii-numeric\"";
    } else if r.chance(30) {
        s += r.pick(&[
            " :comparator \"i;octet\"",
            " :comparator \"i;ascii-casemap\"",
        ]);
    }
    let rel = r.pick(&["gt", "ge", "lt", "le", "eq", "ne"]);
    let mt = if numeric { r.below(3) * 2 } else { r.below(5) };
    s += &match mt {
        0 => String::new(),
        1 => " :contains".into(),
        2 => format!(" :value \"{rel}\""),
        3 => " :matches".into(),
        _ => format!(" :count \"{rel}\""),
    };
    s
}

/// Values that use variables: user variables (names compare case-insensitively) and the
/// match variables of the last successful :matches.
const VAR_VALUES: &[&str] = &[
    "${v1}",
    "${V1}",
    "${v2}",
    "${1}",
    "${2}",
    "${0}",
    "x${1}y",
    "${v2}-${v1}",
    "${unset}",
    "",
];

fn string_test(r: &mut Rng) -> String {
    let cm = comparator_and_match(r, true);
    let mut keys_and_vars: Vec<&str> = keys().to_vec();
    keys_and_vars.extend(VAR_VALUES);
    format!(
        "string{cm} {} {}",
        list(r, VAR_VALUES),
        list(r, &keys_and_vars)
    )
}

fn test(r: &mut Rng, depth: usize) -> String {
    if r.chance(8) {
        return string_test(r);
    }
    let k = keys();
    let choice = if depth > 2 { r.below(6) } else { r.below(10) };
    match choice {
        0 | 1 => {
            let cm = comparator_and_match(r, true);
            let header = ident(r, "header");
            format!("{header}{cm} {} {}", list(r, HEADERS), list(r, k))
        }
        2 | 3 => {
            let cm = comparator_and_match(r, true);
            let part = r.pick(&["", " :all", " :localpart", " :domain", " :user", " :detail"]);
            format!("address{cm}{part} {} {}", list(r, ADDR_HEADERS), list(r, k))
        }
        4 => format!("exists {}", list(r, HEADERS)),
        5 => format!(
            "size {} {}",
            r.pick(&[":over", ":under"]),
            r.pick(&["100", "300", "1K", "0", "450"])
        ),
        6 => format!("not {}", test(r, depth + 1)),
        7 => {
            let cm = comparator_and_match(r, false);
            let vars = if r.chance(25) {
                r.pick(&[" \"fv\"", " [\"fv\", \"v1\"]"])
            } else {
                ""
            };
            format!("hasflag{cm}{vars} {}", list(r, FLAGS))
        }
        _ => {
            let n = 1 + r.below(3);
            let tests: Vec<String> = (0..n).map(|_| test(r, depth + 1)).collect();
            format!("{} ({})", r.pick(&["allof", "anyof"]), tests.join(", "))
        }
    }
}

fn command(r: &mut Rng, depth: usize, out: &mut String) {
    let indent = "  ".repeat(depth);
    match r.chance(8).then(|| r.below(3)) {
        Some(0) => {
            let _ = writeln!(out, "{indent}# a comment {{ \"not code\" }}");
        }
        Some(1) => {
            let _ = writeln!(out, "{indent}/* a bracket comment;\n   keep; */");
        }
        _ => {}
    }
    if r.chance(3) {
        // Not ereject: Debian's Pigeonhole (2.3.19) does not know it, so it has no referee.
        let cmd = "reject";
        if r.chance(50) {
            let _ = writeln!(out, "{indent}{cmd} text:\n{}\n..dot\n.\n;", r.pick(WORDS));
        } else {
            let _ = writeln!(out, "{indent}{cmd} {};", quoted(r.pick(WORDS)));
        }
        return;
    }
    if r.chance(10) {
        let modifier = r.pick(&[
            "",
            "",
            "",
            " :lower",
            " :upper",
            " :upperfirst",
            " :lowerfirst",
            " :quotewildcard",
            " :length",
            " :lower :upperfirst",
        ]);
        let name = r.pick(&["v1", "V1", "v2"]);
        let mut pool: Vec<&str> = WORDS.to_vec();
        pool.extend(VAR_VALUES);
        let value = r.pick(&pool);
        let _ = writeln!(out, "{indent}set{modifier} \"{name}\" \"{value}\";");
        return;
    }
    if r.chance(2) {
        for _ in 0..3 + r.below(4) {
            let to = format!("{}@{}", r.pick(LOCALS), r.pick(DOMAINS));
            let _ = writeln!(out, "{indent}redirect {};", quoted(&to));
        }
        return;
    }
    match r.below(if depth > 2 { 8 } else { 11 }) {
        0 => {
            let flags = if r.chance(20) {
                format!(" :flags {}", list(r, FLAGS))
            } else {
                String::new()
            };
            let _ = writeln!(out, "{indent}keep{flags};");
        }
        1 => {
            let _ = writeln!(out, "{indent}discard;");
        }
        2 | 3 => {
            let mut tags = String::new();
            if r.chance(30) {
                tags += " :copy";
            }
            if r.chance(10) {
                tags += " :create";
            }
            if r.chance(20) {
                tags += &format!(" :flags {}", list(r, FLAGS));
            }
            let fileinto = ident(r, "fileinto");
            let mailbox = if r.chance(15) {
                quoted(r.pick(&["f-${v1}", "m-${1}", "m-${0}-${2}", "${v2}x", "f${unset}"]))
            } else {
                let mailbox = r.pick(MAILBOXES);
                spelled(r, mailbox)
            };
            let _ = writeln!(out, "{indent}{fileinto}{tags} {mailbox};");
        }
        4 => {
            let copy = if r.chance(40) { " :copy" } else { "" };
            let to = format!("{}@{}", r.pick(LOCALS), r.pick(DOMAINS));
            let _ = writeln!(out, "{indent}redirect{copy} {};", quoted(&to));
        }
        5 | 6 => {
            let cmd = r.pick(&["setflag", "addflag", "addflag", "removeflag"]);
            // With variables, the flags of a named variable instead of the internal one.
            let var = if r.chance(25) {
                format!(" \"{}\"", r.pick(&["fv", "FV"]))
            } else {
                String::new()
            };
            let _ = writeln!(out, "{indent}{cmd}{var} {};", list(r, FLAGS));
        }
        7 => {
            if r.chance(30) {
                let _ = writeln!(out, "{indent}stop;");
            } else {
                let _ = writeln!(out, "{indent}keep;");
            }
        }
        _ => {
            let if_ = ident(r, "if");
            let _ = writeln!(out, "{indent}{if_} {} {{", test(r, 0));
            for _ in 0..1 + r.below(3) {
                command(r, depth + 1, out);
            }
            while r.chance(30) {
                let _ = writeln!(out, "{indent}}} elsif {} {{", test(r, 0));
                command(r, depth + 1, out);
            }
            if r.chance(40) {
                let _ = writeln!(out, "{indent}}} else {{");
                command(r, depth + 1, out);
            }
            let _ = writeln!(out, "{indent}}}");
        }
    }
}

fn script(r: &mut Rng) -> String {
    let mut s = String::from(
        "require [\"fileinto\", \"copy\", \"imap4flags\", \"relational\", \
         \"comparator-i;ascii-numeric\", \"subaddress\", \"mailbox\", \"reject\", \"variables\", \
         \"encoded-character\"];\n",
    );
    for _ in 0..1 + r.below(5) {
        command(r, 0, &mut s);
    }
    s
}

/// Our action set for one message.
fn ours(script_src: &str, msg: &[u8]) -> BTreeSet<String> {
    ours_at(script_src, msg, None)
}

/// Our action set for one message, with the body and, for `currentdate`, the clock at `now`
/// (the local zone is UTC, as the referee runs with TZ=UTC).
fn ours_at(script_src: &str, msg: &[u8], now: Option<i64>) -> BTreeSet<String> {
    let limits = Limits::default();
    let mut nodes = vec![Node::FREE; Limits::nodes_for(script_src.len())];
    let mut strings = vec![0u8; Limits::strings_for(script_src.len())];
    let script = compile(script_src.as_bytes(), &limits, &mut nodes, &mut strings)
        .unwrap_or_else(|e| panic!("ours does not compile: {e}\n{script_src}"));
    let mut header = vec![0u8; 64 * 1024];
    let mut body = vec![0u8; 64 * 1024];
    let mut reader = MessageReader::with_body(&mut header, &mut body);
    reader.push(msg);
    let m = Message {
        header: reader.header(),
        size: reader.size(),
        envelope_from: b"",
        envelope_to: b"",
    };
    let ctx = Context {
        body: reader.body(),
        now,
        local_zone: 0,
        seen: None,
    };
    let mut out = Box::new(Outcome::new());
    let mut scratch = vec![0u8; 64 * 1024];
    run_with(&script, &m, &ctx, &limits, &mut scratch, &mut out);
    let text = |t| String::from_utf8_lossy(out.text(t)).into_owned();
    let flags = |f: &[u8]| -> String {
        let s = String::from_utf8_lossy(f).to_lowercase();
        let set: BTreeSet<&str> = s.split(' ').filter(|w| !w.is_empty()).collect();
        set.into_iter().collect::<Vec<_>>().join(" ")
    };
    let mut set = BTreeSet::new();
    for a in out.actions() {
        match *a {
            Action::Store {
                mailbox, flags: f, ..
            } => {
                let name = mailbox.map_or("INBOX".to_string(), text);
                set.insert(format!("store {name} [{}]", flags(out.text(f))));
            }
            Action::Redirect { address } => {
                set.insert(format!("redirect {}", lower_domain(&text(address))));
            }
            Action::Reject { .. } => {
                set.insert("reject".to_string());
            }
            Action::Discard => {}
            // sieve-filter prints no tracking (sieve-test prints "track duplicate" without its
            // key): the duplicate test's result is what is compared, through the rule's folder.
            Action::Track { .. } => {}
            // Never generated here (sieve-filter has no envelope): see
            // vacation_agrees_with_pigeonhole.
            Action::Vacation { .. } => {
                set.insert("vacation".to_string());
            }
        }
    }
    if out.implicit_keep() {
        set.insert(format!("store INBOX [{}]", flags(out.implicit_flags())));
    }
    set
}

/// Pigeonhole's action sets, by message index, from sieve-filter's output.
fn theirs(output: &str) -> Vec<(usize, BTreeSet<String>)> {
    let mut result = Vec::new();
    for chunk in output.split(">> Filtering message:").skip(1) {
        let id = chunk
            .lines()
            .find_map(|l| l.trim().strip_prefix("ID:"))
            .and_then(|v| v.trim().strip_prefix("<m"))
            .and_then(|v| v.split('@').next())
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or_else(|| panic!("no message id in:\n{chunk}"));
        let mut set = BTreeSet::new();
        // A runtime error: the message stays where it is, as the implicit keep would leave it.
        if chunk.contains("sieve script execution failed for this message") {
            set.insert("store INBOX []".to_string());
            result.push((id, set));
            continue;
        }
        let mut last: Option<String> = None;
        let flush = |last: &mut Option<String>, set: &mut BTreeSet<String>| {
            if let Some(l) = last.take() {
                set.insert(l);
            }
        };
        for line in chunk.lines() {
            let t = line.trim();
            if let Some(folder) = t.strip_prefix("* store message in folder: ") {
                flush(&mut last, &mut set);
                // INBOX is case-insensitive (RFC 3501 5.1); Pigeonhole prints it as written.
                let folder = if folder.eq_ignore_ascii_case("INBOX") {
                    "INBOX"
                } else {
                    folder
                };
                last = Some(format!("store {folder} []"));
            } else if let Some(flags) = t.strip_prefix("+ add IMAP flags: ") {
                if let Some(l) = last.as_mut() {
                    let s = flags.to_lowercase();
                    let fs: BTreeSet<&str> = s.split(' ').filter(|w| !w.is_empty()).collect();
                    let fs = fs.into_iter().collect::<Vec<_>>().join(" ");
                    *l = l.replace("[]", &format!("[{fs}]"));
                }
            } else if let Some(to) = t.strip_prefix("* redirect message to: ") {
                flush(&mut last, &mut set);
                let to = to.trim_start_matches('<').trim_end_matches('>');
                set.insert(format!("redirect {}", lower_domain(to)));
            } else if t.starts_with("* track duplicate") {
                flush(&mut last, &mut set);
                set.insert("track".to_string());
            } else if t.starts_with("* reject message") {
                flush(&mut last, &mut set);
                set.insert("reject".to_string());
            } else if t.starts_with("* ") {
                flush(&mut last, &mut set);
                if !t.starts_with("* discard") {
                    set.insert(format!("unknown {t}"));
                }
            }
        }
        flush(&mut last, &mut set);
        result.push((id, set));
    }
    result
}

/// The one documented difference that is Pigeonhole's choice rather than the RFC's: a store
/// or redirect that repeats an earlier `:copy` one (same mailbox or address) is merged into
/// it as a duplicate, so it neither cancels the implicit keep (after `fileinto :copy "X"`, a
/// later `fileinto "X"` leaves Pigeonhole's implicit keep in place; RFC 5228 4.1 and RFC 3894
/// say a fileinto without :copy cancels it, and 2.10.3's "deliver once" is about the copy,
/// not the keep) nor is merged with a later `keep` when the first was `fileinto :copy
/// "INBOX"` (Pigeonhole then stores into INBOX twice, which 2.10.3 says not to do). Such a
/// pair differs only by stores into INBOX that Pigeonhole has and we do not, and its script
/// has a :copy action and a plain one with the same target.
fn copy_then_same_target(src: &str, want: &BTreeSet<String>, got: &BTreeSet<String>) -> bool {
    let extra_inbox_only =
        got.is_subset(want) && want.difference(got).all(|a| a.starts_with("store INBOX ["));
    // (target, :copy) of every keep, fileinto and redirect (the generator writes one a line).
    let targets: Vec<(String, bool)> = src
        .lines()
        .map(str::trim)
        .filter_map(|l| {
            let lower = l.to_lowercase();
            let copy = l.contains(":copy");
            if lower.starts_with("keep") {
                return Some(("store inbox".to_string(), copy));
            }
            let kind = if lower.starts_with("fileinto") {
                "store"
            } else if lower.starts_with("redirect") {
                "redirect"
            } else {
                return None;
            };
            let raw = l.trim_end_matches(';').rsplit('"').nth(1)?;
            Some((format!("{kind} {}", unspell(raw).to_lowercase()), copy))
        })
        .collect();
    let both = targets
        .iter()
        .any(|(t, copy)| *copy && targets.iter().any(|(u, c)| u == t && !c));
    both && extra_inbox_only
}

/// A generated string literal's value: backslash escapes and encoded characters undone.
fn unspell(raw: &str) -> String {
    let mut out = String::new();
    let mut rest = raw;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("${") {
            if let Some((inner, tail)) = after.split_once('}') {
                if let Some((kind, hex)) = inner.split_once(':') {
                    if let Ok(v) = u32::from_str_radix(hex.trim(), 16) {
                        if kind == "hex" || kind == "unicode" {
                            out.push(char::from_u32(v).unwrap_or('?'));
                            rest = tail;
                            continue;
                        }
                    }
                }
            }
        }
        if c == '\\' {
            rest = &rest[1..];
            if let Some(n) = rest.chars().next() {
                out.push(n);
                rest = &rest[n.len_utf8()..];
            }
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Domains are case-insensitive; Pigeonhole prints a redirect's domain in lower case.
fn lower_domain(a: &str) -> String {
    match a.rsplit_once('@') {
        Some((l, d)) => format!("{l}@{}", d.to_lowercase()),
        None => a.to_string(),
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// The sieve-filter binary, installed when missing and we are root.
fn sieve_filter() -> Option<&'static str> {
    let path = "/usr/bin/sieve-filter";
    if !Path::new(path).exists() && is_root() {
        let _ = Command::new("sh")
            .arg("-c")
            .arg(
                "timeout 300 sh -c 'apt-get update -qq; DEBIAN_FRONTEND=noninteractive \
                 apt-get install -y -qq dovecot-core dovecot-sieve' >/dev/null 2>&1",
            )
            .status();
    }
    if Path::new(path).exists() {
        Some(path)
    } else {
        eprintln!(
            "skipped: sieve-filter is not installed (apt-get install dovecot-sieve, as root)"
        );
        None
    }
}

/// Runs sieve-filter (as `nobody` when root, with TZ=UTC) on every message of the maildir
/// `md` with the script at `path`; returns its output (errors kept in their message).
fn filter_run(filter: &str, root: &Path, md: &Path, path: &Path, src: &str) -> String {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "exec \"$@\" 2>&1", "sh"]);
    if is_root() {
        cmd.args([
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
        ]);
    }
    cmd.arg(filter);
    let out = cmd
        .env("HOME", root)
        .env("TZ", "UTC")
        .arg("-v")
        .arg("-o")
        .arg(format!("mail_location=maildir:{}", md.display()))
        .arg(path)
        .arg("INBOX")
        .output()
        .expect("run sieve-filter");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "sieve-filter failed on {}:\n{src}\n{stdout}",
        path.display()
    );
    stdout
}

#[test]
fn generated_scripts_and_messages_agree_with_pigeonhole() {
    let Some(filter) = sieve_filter() else {
        return;
    };
    let pairs: usize = std::env::var("MDELIVER_SIEVE_PAIRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let seed: u64 = std::env::var("MDELIVER_SIEVE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x005e_ed17);
    let per_script = 100;
    let scripts = pairs.div_ceil(per_script);
    let mut r = Rng(seed | 1);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let md = root.join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(md.join(sub)).unwrap();
    }
    let messages: Vec<Vec<u8>> = (0..per_script).map(|i| message(&mut r, i)).collect();
    for (i, m) in messages.iter().enumerate() {
        std::fs::write(md.join("cur").join(format!("{i}.diff:2,")), m).unwrap();
    }
    let root_user = is_root();
    if root_user {
        let ok = Command::new("chown")
            .args(["-R", "nobody:nogroup"])
            .arg(root)
            .status()
            .unwrap()
            .success();
        assert!(ok, "chown");
    }
    let mut compared = 0usize;
    let mut documented = 0usize;
    let mut mismatches = Vec::new();
    for s in 0..scripts {
        let src = script(&mut r);
        let path = root.join(format!("s{s}.sieve"));
        std::fs::write(&path, &src).unwrap();
        let stdout = filter_run(filter, root, &md, &path, &src);
        let results = theirs(&stdout);
        assert_eq!(results.len(), per_script, "{stdout}");
        for (id, want) in results {
            let got = ours(&src, &messages[id]);
            compared += 1;
            if got != want && copy_then_same_target(&src, &want, &got) {
                documented += 1;
                continue;
            }
            if got != want {
                let first_for_script = !mismatches.iter().any(|(ms, _)| *ms == s);
                let shown = mismatches
                    .iter()
                    .filter(|(_, t): &&(usize, String)| !t.is_empty())
                    .count();
                let text = if first_for_script && shown < 8 {
                    let m = String::from_utf8_lossy(&messages[id]);
                    let head = m.split("\n\n").next().unwrap_or("");
                    format!(
                        "script {s}:\n{src}\nmessage {id} (header):\n{head}\nPigeonhole: {want:?}\nours:       {got:?}\n"
                    )
                } else {
                    String::new()
                };
                mismatches.push((s, text));
            }
        }
    }
    eprintln!(
        "sieve differential: {compared} pairs ({scripts} scripts x {per_script} messages), \
         {} mismatches, {documented} differing only by Pigeonhole's documented :copy merge",
        mismatches.len()
    );
    assert!(
        mismatches.is_empty(),
        "{} of {compared} pairs differ; the first ones:\n{}",
        mismatches.len(),
        mismatches
            .iter()
            .map(|(_, t)| t.as_str())
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(compared >= pairs);
}

/// The `envelope` test, which sieve-filter cannot referee (it has no envelope): Pigeonhole's
/// `sieve-test` runs once per (sender, recipient) pair on a script of generated envelope rules,
/// each filing into its own folder with :copy, so one run checks every rule.
/// `MDELIVER_SIEVE_ENVELOPES` (default 60) sets the number of envelopes.
#[test]
fn envelope_tests_agree_with_pigeonhole() {
    if sieve_filter().is_none() {
        return;
    }
    let runs: usize = std::env::var("MDELIVER_SIEVE_ENVELOPES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let mut r = Rng(0xe4e1_0bed);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let msg = b"From: a@b.c\nSubject: envelope\n\nbody\n";
    std::fs::write(root.join("m.eml"), msg).unwrap();
    let mut mismatches = Vec::new();
    let mut rules_checked = 0;
    for run_no in 0..runs {
        let mut src = String::from(
            "require [\"envelope\", \"fileinto\", \"copy\", \"subaddress\", \"relational\", \
             \"comparator-i;ascii-numeric\"];\n",
        );
        let k = keys();
        for i in 0..20 {
            let cm = comparator_and_match(&mut r, true);
            let part = r.pick(&["", " :all", " :localpart", " :domain", " :user", " :detail"]);
            let which = r.pick(&["\"from\"", "\"to\"", "[\"from\", \"to\"]"]);
            let _ = writeln!(
                src,
                "if envelope{cm}{part} {which} {} {{ fileinto :copy \"e{i}\"; }}",
                list(&mut r, k)
            );
        }
        // Never the null sender: sieve-test's -f refuses both "" and "<>" (the core tests
        // cover it).
        let from = format!("{}@{}", r.pick(LOCALS), r.pick(DOMAINS));
        let to = format!("{}@{}", r.pick(LOCALS), r.pick(DOMAINS));
        let path = root.join(format!("e{run_no}.sieve"));
        std::fs::write(&path, &src).unwrap();
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "nobody:nogroup"])
                .arg(root)
                .status()
                .unwrap()
                .success();
            assert!(ok);
        }
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "exec \"$@\" 2>&1", "sh"]);
        if is_root() {
            cmd.args([
                "setpriv",
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
            ]);
        }
        let out = cmd
            .arg("/usr/bin/sieve-test")
            .env("HOME", root)
            .args(["-f", &from, "-a", &to, "-r", &to])
            .arg(&path)
            .arg(root.join("m.eml"))
            .output()
            .expect("run sieve-test");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{src}\n{text}");
        let want: BTreeSet<String> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("* store message in folder: "))
            .filter(|f| f.starts_with('e'))
            .map(str::to_string)
            .collect();
        let limits = Limits::default();
        let mut nodes = vec![Node::FREE; Limits::nodes_for(src.len())];
        let mut strings = vec![0u8; Limits::strings_for(src.len())];
        let script = compile(src.as_bytes(), &limits, &mut nodes, &mut strings)
            .unwrap_or_else(|e| panic!("{e}\n{src}"));
        let m = Message {
            header: msg,
            size: msg.len() as u64,
            envelope_from: from.as_bytes(),
            envelope_to: to.as_bytes(),
        };
        let mut o = Box::new(Outcome::new());
        let mut scratch = vec![0u8; 4096];
        run(&script, &m, &limits, &mut scratch, &mut o);
        let got: BTreeSet<String> = o
            .actions()
            .iter()
            .filter_map(|a| match *a {
                Action::Store {
                    mailbox: Some(t), ..
                } => Some(String::from_utf8_lossy(o.text(t)).into_owned()),
                _ => None,
            })
            .collect();
        rules_checked += 20;
        if got != want {
            mismatches.push(format!(
                "from <{from}> to <{to}>:\n{src}\nPigeonhole: {want:?}\nours:       {got:?}"
            ));
        }
    }
    eprintln!(
        "sieve envelope differential: {rules_checked} rules on {runs} envelopes, {} mismatches",
        mismatches.len()
    );
    assert!(
        mismatches.is_empty(),
        "{}",
        mismatches[..mismatches.len().min(3)].join("\n")
    );
}

/// The compiler against Pigeonhole's `sievec`: each script compiles with both or with
/// neither, and where both refuse, on the same line.
#[test]
fn compile_errors_agree_with_pigeonhole() {
    if sieve_filter().is_none() {
        return;
    }
    let req = "require [\"fileinto\", \"imap4flags\", \"variables\", \"relational\", \"copy\", \"envelope\"];\n";
    let cases: &[&str] = &[
        "keep;",
        "kep;",
        "if true { keep; }",
        "if true keep;",
        "if true { keep; ",
        "else { keep; }",
        "if true {} elsif false {} else {}",
        "if true {} else {} else {}",
        "fileinto \"a\";",
        "require \"fileinto\"; fileinto \"a\";",
        "keep; require \"fileinto\";",
        "require \"nosuchext\";",
        "if header :is \"a\" {}",
        "if header :is :contains \"a\" \"b\" {}",
        "if header :comparator \"i;nope\" \"a\" \"b\" {}",
        "if header :comparator \"i;ascii-numeric\" \"a\" \"b\" {}",
        "if size 5 {}",
        "if size :over {}",
        "if size :over 1K {}",
        "if allof () {}",
        "if anyof (true, false) {}",
        "if not {}",
        "if address :domain \"subject\" \"a\" {}",
        "if address :domain \"reply-to\" \"a\" {}",
        "if exists [\"a\", \"b\"] {}",
        "redirect;",
        "redirect \"a@b.c\" \"d\";",
        "discard \"x\";",
        "stop;",
        "/* unterminated",
        "\"string\";",
        "keep # comment",
        "if header :matches \"subject\" text:\nfoo\n.\n {}",
        "if header :value \"gt\" \"a\" \"b\" {}",
        // The extensions (each with its own require).
        "if body :raw \"x\" {}",
        "require \"body\"; if body :raw \"x\" {}",
        "require \"body\"; if body :content \"text\" :contains \"x\" {}",
        "require \"body\"; if body :content :contains \"x\" {}",
        "require \"body\"; if body :raw :text \"x\" {}",
        "require \"body\"; if body \"a\" \"b\" {}",
        "require \"date\"; if date \"date\" \"year\" \"2026\" {}",
        "require \"date\"; if date \"date\" \"century\" \"20\" {}",
        "require \"date\"; if date :zone \"+0100\" \"date\" \"hour\" \"1\" {}",
        "require \"date\"; if date :zone \"+0100\" :originalzone \"date\" \"hour\" \"1\" {}",
        "require \"date\"; if date \"date\" \"year\" {}",
        "require \"date\"; if currentdate \"year\" \"2026\" {}",
        "require \"date\"; if currentdate :originalzone \"year\" \"2026\" {}",
        "require \"date\"; if header :index 1 \"a\" \"b\" {}",
        "require [\"date\", \"index\"]; if header :index 2 :last \"a\" \"b\" {}",
        "require [\"date\", \"index\"]; if date :index 1 \"received\" \"year\" \"2026\" {}",
        "require \"index\"; if address :index 1 \"to\" \"b\" {}",
        "require \"duplicate\"; if duplicate {}",
        "require \"duplicate\"; if duplicate :handle \"h\" :header \"subject\" :seconds 60 :last {}",
        "require \"duplicate\"; if duplicate :header \"a\" :uniqueid \"b\" {}",
        "require \"duplicate\"; if duplicate \"x\" {}",
        "if duplicate {}",
        "require \"vacation\"; vacation \"away\";",
        "require \"vacation\"; vacation :days 3 :subject \"s\" :from \"a@b.c\" :addresses [\"x@y.z\"] :mime :handle \"h\" \"away\";",
        "require \"vacation\"; vacation;",
        "require \"vacation\"; vacation :days \"x\" \"away\";",
        "require \"vacation\"; vacation :seconds 60 \"away\";",
        "vacation \"away\";",
    ];
    let with_req: &[&str] = &[
        "fileinto :copy :flags \"\\\\Seen\" \"a\";",
        "fileinto :flags \"a\";",
        "set \"a\" \"b\";",
        "set \"1\" \"b\";",
        "set :lower :upper \"a\" \"b\";",
        "set :lower :upperfirst \"a\" \"b\";",
        "if string :is \"${a}\" \"\" {}",
        "if header :value \"gt\" \"a\" \"b\" {}",
        "if header :value \"xx\" \"a\" \"b\" {}",
        "if header :count \"ge\" :comparator \"i;ascii-numeric\" \"a\" \"1\" {}",
        "if envelope :domain \"from\" \"x\" {}",
        "if envelope \"bogus\" \"x\" {}",
        "if hasflag \"\\\\Seen\" {}",
        "addflag \"v\" \"x\";",
        "redirect :copy \"a@b.c\";",
        "keep :copy;",
    ];
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut disagreements = Vec::new();
    let all: Vec<String> = cases
        .iter()
        .map(|s| s.to_string())
        .chain(with_req.iter().map(|s| format!("{req}{s}")))
        .collect();
    for (i, src) in all.iter().enumerate() {
        let path = root.join(format!("c{i}.sieve"));
        std::fs::write(&path, src).unwrap();
        if is_root() {
            let _ = Command::new("chown")
                .args(["-R", "nobody:nogroup"])
                .arg(root)
                .status();
        }
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "exec \"$@\" 2>&1", "sh"]);
        if is_root() {
            cmd.args([
                "setpriv",
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
            ]);
        }
        let out = cmd
            .arg("/usr/bin/sievec")
            .env("HOME", root)
            .arg(&path)
            .arg(root.join(format!("c{i}.svbin")))
            .output()
            .expect("run sievec");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        // Pigeonhole's first error line: "c3: line 1: error: ...".
        let their_line = text.lines().find_map(|l| {
            let rest = l.split_once(": line ")?.1;
            let (n, what) = rest.split_once(": ")?;
            what.starts_with("error").then(|| n.parse::<u32>().ok())?
        });
        let limits = Limits::default();
        let mut nodes = vec![Node::FREE; Limits::nodes_for(src.len())];
        let mut strings = vec![0u8; Limits::strings_for(src.len())];
        let ours = compile(src.as_bytes(), &limits, &mut nodes, &mut strings);
        let agree = match (&ours, out.status.success()) {
            (Ok(_), true) => true,
            (Err(e), false) => their_line.is_none_or(|l| l == e.pos.line),
            _ => false,
        };
        if !agree {
            disagreements.push(format!(
                "{src:?}\n  ours: {:?}\n  Pigeonhole: {}",
                ours.map(|_| ()).map_err(|e| e.to_string()),
                text.lines().next().unwrap_or("ok")
            ));
        }
    }
    eprintln!(
        "sieve compile differential: {} scripts, {} disagreements",
        all.len(),
        disagreements.len()
    );
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

// ---- The extensions that need more than the header block: body, date, index, duplicate.

/// Words of the generated bodies (and the keys the body test looks for).
const BODY_WORDS: &[&str] = &[
    "hello", "World", "café", "secret", "line", "end", "a*b", "q?", "=3D", "naïve", "",
];

fn quoted_printable(text: &str) -> String {
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        let mut len = 0;
        for b in line.bytes() {
            let piece = if b == b'\n' {
                "\n".to_string()
            } else if b == b'=' || b >= 0x80 {
                format!("={b:02X}")
            } else {
                (b as char).to_string()
            };
            // Soft line breaks now and then (RFC 2045 6.7 rule 5).
            if len > 20 && b != b'\n' {
                out.push_str("=\n");
                len = 0;
            }
            len += piece.len();
            out.push_str(&piece);
        }
    }
    out
}

fn text_lines(r: &mut Rng) -> String {
    let mut t = String::new();
    for _ in 0..1 + r.below(4) {
        let words: Vec<&str> = (0..1 + r.below(5)).map(|_| r.pick(BODY_WORDS)).collect();
        let _ = writeln!(t, "{}", words.join(" "));
    }
    t
}

/// A leaf part: its header fields and encoded body.
fn leaf(r: &mut Rng) -> (String, String) {
    let text = text_lines(r);
    match r.below(6) {
        0 => (
            "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n"
                .into(),
            quoted_printable(&text),
        ),
        1 => (
            "Content-Type: text/plain; charset=\"UTF-8\"\nContent-Transfer-Encoding: base64\n"
                .into(),
            format!("{}\n", base64(text.as_bytes())),
        ),
        2 => (
            "Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n".into(),
            format!("{}\n", base64(text.as_bytes())),
        ),
        3 => (String::new(), text),
        _ => (
            "Content-Type: text/plain; charset=utf-8\n".into(),
            text,
        ),
    }
}

fn multipart(r: &mut Rng, boundary: &str, depth: usize) -> (String, String) {
    let sub = r.pick(&["mixed", "alternative", "related"]);
    let head = format!("Content-Type: multipart/{sub}; boundary=\"{boundary}\"\n");
    let mut body = String::new();
    if r.chance(40) {
        let _ = writeln!(body, "prologue {}", r.pick(BODY_WORDS));
    }
    for p in 0..1 + r.below(3) {
        let _ = writeln!(body, "--{boundary}");
        let (h, b) = if depth < 1 && r.chance(20) {
            multipart(r, &format!("{boundary}-{p}"), depth + 1)
        } else {
            leaf(r)
        };
        let _ = write!(body, "{h}\n{b}");
    }
    let _ = writeln!(body, "--{boundary}--");
    if r.chance(40) {
        let _ = writeln!(body, "epilogue {}", r.pick(BODY_WORDS));
    }
    (head, body)
}

const ZONES: &[&str] = &[
    "+0000", "+0300", "-0130", "+1245", "-1100", "GMT", "EST", "+0100",
];

/// An RFC 5322 date, now and then in an obsolete form or broken.
fn date_value(r: &mut Rng) -> String {
    let day = 1 + r.below(28);
    let month = r.pick(&[
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]);
    let year = r.pick(&["2026", "2025", "1999", "2030", "99", "2000"]);
    let (h, m, sec) = (r.below(24), r.below(60), r.below(60));
    let zone = r.pick(ZONES);
    let dow = if r.chance(50) { "" } else { "Wed, " };
    match r.below(12) {
        0 => format!("{day} {month} {year} {h:02}:{m:02} {zone}"),
        1 => format!("{dow}{day} {month} {year} {h:02}:{m:02}:{sec:02} {zone} (comment)"),
        2 => "not a date".into(),
        _ => format!("{dow}{day} {month} {year} {h:02}:{m:02}:{sec:02} {zone}"),
    }
}

fn ext_message(r: &mut Rng, i: usize) -> Vec<u8> {
    let mut m = String::new();
    let _ = writeln!(m, "Message-ID: <m{i}@diff.test>");
    for _ in 0..r.below(4) {
        let _ = writeln!(
            m,
            "Received: from {} by mx.test; {}",
            r.pick(LOCALS),
            date_value(r)
        );
    }
    let _ = writeln!(m, "From: {}", address(r));
    for _ in 0..1 + r.below(2) {
        let _ = writeln!(m, "To: {}", address(r));
    }
    let _ = writeln!(m, "Subject: {}", r.pick(WORDS));
    if r.chance(85) {
        let _ = writeln!(m, "Date: {}", date_value(r));
    }
    if r.chance(20) {
        let _ = writeln!(m, "Date: {}", date_value(r));
    }
    for _ in 0..r.below(4) {
        let _ = writeln!(m, "X-Tag: {}", r.pick(WORDS));
    }
    let (head, body) = match r.below(3) {
        0 => multipart(r, &format!("b{i}"), 0),
        1 => leaf(r),
        _ => (String::new(), text_lines(r)),
    };
    if !head.is_empty() {
        m.push_str("MIME-Version: 1.0\n");
    }
    let _ = write!(m, "{head}\n{body}");
    m.into_bytes()
}

/// One generated extension test (its rule files into a folder of its own, so every rule of
/// a script is compared).
fn ext_test(r: &mut Rng) -> (String, bool) {
    let mt = |r: &mut Rng| -> String {
        r.pick(&[
            "",
            " :contains",
            " :matches",
            " :comparator \"i;octet\" :contains",
            " :value \"gt\"",
            " :count \"ge\" :comparator \"i;ascii-numeric\"",
        ])
        .to_string()
    };
    match r.below(10) {
        0..=2 => {
            let transform = r.pick(&[
                " :raw",
                " :text",
                "",
                " :content \"text\"",
                " :content \"text/plain\"",
                " :content \"application\"",
                " :content \"\"",
                " :content [\"text\", \"application\"]",
                " :content \"multipart\"",
                " :content \"TEXT/PLAIN\"",
            ]);
            let mut keys: Vec<&str> = BODY_WORDS.to_vec();
            keys.extend(["*secret*", "*", "*café*", "hello*", "=3D", "1"]);
            let m = mt(r);
            let key = if m.contains(":count") {
                r.pick(&["\"1\"", "\"2\"", "\"0\""]).to_string()
            } else {
                list(r, &keys)
            };
            (format!("body{m}{transform} {key}"), false)
        }
        3..=5 => {
            let zone = r.pick(&[
                "",
                "",
                " :originalzone",
                " :zone \"+0000\"",
                " :zone \"-0130\"",
                " :zone \"+1400\"",
            ]);
            let header = r.pick(&["date", "received", "x-tag", "date"]);
            let index = if r.chance(25) {
                format!(
                    " :index {}{}",
                    1 + r.below(3),
                    if r.chance(40) { " :last" } else { "" }
                )
            } else {
                String::new()
            };
            let part = r.pick(&[
                "year", "month", "day", "date", "julian", "hour", "minute", "second", "time",
                "iso8601", "std11", "zone", "weekday",
            ]);
            if r.chance(60) {
                // The whole value, through a match variable into the folder name.
                return (
                    format!("date{zone}{index} :matches \"{header}\" \"{part}\" \"*\""),
                    true,
                );
            }
            let cmp = r.pick(&[
                " :value \"ge\"",
                " :value \"lt\"",
                "",
                " :contains",
                " :count \"eq\" :comparator \"i;ascii-numeric\"",
            ]);
            let key = r.pick(&[
                "2026",
                "12",
                "06",
                "2026-06-01",
                "2",
                "+0000",
                "-0130",
                "00:00:00",
                "1",
                "0",
                "61000",
            ]);
            (
                format!("date{zone}{index}{cmp} \"{header}\" \"{part}\" \"{key}\""),
                false,
            )
        }
        6 => {
            let zone = r.pick(&["", " :zone \"+0000\"", " :zone \"-1200\""]);
            let (part, cmp, key) = *[
                ("year", " :value \"ge\"", "2020"),
                ("year", " :value \"lt\"", "2020"),
                ("date", " :value \"gt\"", "2001-01-01"),
                ("zone", "", "+0000"),
                ("zone", "", "-1200"),
                ("iso8601", " :matches", "20*"),
                ("julian", " :value \"gt\"", "50000"),
            ]
            .get(r.below(7))
            .unwrap_or(&("year", "", "2026"));
            (
                format!("currentdate{zone}{cmp} \"{part}\" \"{key}\""),
                false,
            )
        }
        7 | 8 => {
            let index = format!(
                " :index {}{}",
                1 + r.below(3),
                if r.chance(40) { " :last" } else { "" }
            );
            if r.chance(50) {
                let h = r.pick(&["x-tag", "to", "received", "subject"]);
                (format!("header{index} :matches \"{h}\" \"*\""), true)
            } else {
                let part = r.pick(&["", " :localpart", " :domain"]);
                (format!("address{index}{part} :matches \"to\" \"*\""), true)
            }
        }
        _ => {
            let mut t = String::from("duplicate");
            if r.chance(40) {
                t += &format!(" :handle \"{}\"", r.pick(&["h1", "h2", ""]));
            }
            match r.below(3) {
                0 => t += &format!(" :header \"{}\"", r.pick(&["subject", "x-tag", "x-none"])),
                1 => t += &format!(" :uniqueid \"{}\"", r.pick(&["u1", ""])),
                _ => {}
            }
            if r.chance(30) {
                t += " :seconds 60";
            }
            if r.chance(20) {
                t += " :last";
            }
            let t = if r.chance(50) { format!("not {t}") } else { t };
            (t, false)
        }
    }
}

fn ext_script(r: &mut Rng, rules: usize) -> String {
    let mut s = String::from(
        "require [\"body\", \"date\", \"index\", \"duplicate\", \"fileinto\", \"copy\", \
         \"variables\", \"relational\", \"comparator-i;ascii-numeric\"];\n",
    );
    for i in 0..rules {
        let (test, capture) = ext_test(r);
        let folder = if capture {
            format!("r{i}-${{1}}")
        } else {
            format!("r{i}")
        };
        let _ = writeln!(s, "if {test} {{ fileinto :copy \"{folder}\"; }}");
    }
    s
}

/// The extensions against Pigeonhole: generated MIME messages (multiparts, quoted-printable
/// and base64 parts, dates in several zones and forms, several Received and X-Tag fields)
/// and scripts of 16 rules each (body, date, currentdate, header/address :index, duplicate),
/// each rule filing into its own folder with :copy, and the date and :index values captured
/// into the folder name, so the comparison sees them byte for byte. Pigeonhole runs with
/// TZ=UTC; ours with a UTC local zone and the clock of the run (currentdate's keys are
/// chosen not to depend on the second). `MDELIVER_SIEVE_EXT_PAIRS` (default 10000) sets the
/// number of pairs.
#[test]
fn extensions_agree_with_pigeonhole() {
    let Some(filter) = sieve_filter() else {
        return;
    };
    let pairs: usize = std::env::var("MDELIVER_SIEVE_EXT_PAIRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let seed: u64 = std::env::var("MDELIVER_SIEVE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x0e47_0175);
    let per_script = 200;
    let rules = 16;
    let scripts = pairs.div_ceil(per_script);
    let mut r = Rng(seed | 1);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let md = root.join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(md.join(sub)).unwrap();
    }
    let messages: Vec<Vec<u8>> = (0..per_script).map(|i| ext_message(&mut r, i)).collect();
    for (i, m) in messages.iter().enumerate() {
        std::fs::write(md.join("cur").join(format!("{i}.diff:2,")), m).unwrap();
    }
    if is_root() {
        let ok = Command::new("chown")
            .args(["-R", "nobody:nogroup"])
            .arg(root)
            .status()
            .unwrap()
            .success();
        assert!(ok, "chown");
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut compared = 0usize;
    let mut mismatches = Vec::new();
    let (mut referee_time, mut our_time) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    for s in 0..scripts {
        let src = ext_script(&mut r, rules);
        let path = root.join(format!("x{s}.sieve"));
        std::fs::write(&path, &src).unwrap();
        let started = std::time::Instant::now();
        let stdout = filter_run(filter, root, &md, &path, &src);
        referee_time += started.elapsed();
        let results = theirs(&stdout);
        assert_eq!(results.len(), per_script, "{stdout}");
        for (id, want) in results {
            let started = std::time::Instant::now();
            let got = ours_at(&src, &messages[id], Some(now));
            our_time += started.elapsed();
            compared += 1;
            if got != want {
                if mismatches.len() < 4 {
                    let m = String::from_utf8_lossy(&messages[id]);
                    let only_theirs: Vec<_> = want.difference(&got).collect();
                    let only_ours: Vec<_> = got.difference(&want).collect();
                    mismatches.push(format!(
                        "script {s}:\n{src}\nmessage {id}:\n{m}\nonly Pigeonhole: {only_theirs:?}\nonly ours: {only_ours:?}\n"
                    ));
                } else {
                    mismatches.push(String::new());
                }
            }
        }
    }
    eprintln!(
        "sieve extensions differential: {compared} pairs ({scripts} scripts of {rules} rules x \
         {per_script} messages), {} mismatches (sieve-filter {:.1} s, ours {:.1} s)",
        mismatches.len(),
        referee_time.as_secs_f64(),
        our_time.as_secs_f64()
    );
    assert!(
        mismatches.is_empty(),
        "{} of {compared} pairs differ; the first ones:\n{}",
        mismatches.len(),
        mismatches
            .iter()
            .filter(|t| !t.is_empty())
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(compared >= pairs);
}

/// Runs Pigeonhole's sieve-test (as `nobody` when root, TZ=UTC) on one message with an
/// envelope; returns its output.
fn sieve_test_run(root: &Path, script: &Path, msg: &Path, from: &str, to: &str) -> String {
    if is_root() {
        let ok = Command::new("chown")
            .args(["-R", "nobody:nogroup"])
            .arg(root)
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "exec \"$@\" 2>&1", "sh"]);
    if is_root() {
        cmd.args([
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
        ]);
    }
    let out = cmd
        .arg("/usr/bin/sieve-test")
        .env("HOME", root)
        .env("TZ", "UTC")
        .args(["-f", from, "-a", to, "-r", to])
        .arg(script)
        .arg(msg)
        .output()
        .expect("run sieve-test");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    text
}

/// `vacation` against Pigeonhole's `sieve-test`, which prints the reply it would send: its
/// period, `:subject`, `:from`, handle and body are compared for generated commands.
/// sieve-test prints a reply whatever the message (it leaves the RFC 5230 4.5/4.6 "do not
/// reply" checks to the sending step, which it does not run), so the messages here are ones
/// those rules let through; the core tests cover the rules. `MDELIVER_SIEVE_VACATIONS`
/// (default 40) sets the number of runs.
#[test]
fn vacation_agrees_with_pigeonhole() {
    if sieve_filter().is_none() {
        return;
    }
    let runs: usize = std::env::var("MDELIVER_SIEVE_VACATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let mut r = Rng(0x0ac4_7104);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut mismatches = Vec::new();
    for run_no in 0..runs {
        let from = format!("{}@{}", r.pick(&["alice", "carol", "eve"]), r.pick(DOMAINS));
        let to = "bob@example.org";
        let msg = format!(
            "From: {from}\nTo: {}\nSubject: {}\nMessage-ID: <v{run_no}@diff.test>\n\nhello\n",
            r.pick(&["bob@example.org", "Bob <bob@example.org>, x@y.test"]),
            r.pick(WORDS)
        );
        let mut cmd = String::from("vacation");
        let mut tags: Vec<String> = Vec::new();
        if r.chance(70) {
            tags.push(format!(
                " :days {}",
                r.pick(&["0", "1", "3", "7", "30", "100"])
            ));
        }
        if r.chance(50) {
            tags.push(format!(
                " :subject \"{}\"",
                r.pick(&["Away", "Out of office", "re: x"])
            ));
        }
        if r.chance(40) {
            tags.push(format!(
                " :from \"{}\"",
                r.pick(&["me@example.org", "Bob <bob@example.org>"])
            ));
        }
        if r.chance(30) {
            tags.push(" :addresses [\"bob@example.org\", \"b@x.test\"]".to_string());
        }
        if r.chance(30) {
            tags.push(" :mime".to_string());
        }
        if r.chance(30) {
            tags.push(format!(" :handle \"{}\"", r.pick(&["h1", "summer", ""])));
        }
        while !tags.is_empty() {
            let t = tags.remove(r.below(tags.len()));
            cmd += &t;
        }
        let reason = r.pick(&["I am away", "Back on Monday.", "text:\nline 1\nline 2\n.\n"]);
        let reason = if reason.starts_with("text:") {
            reason.to_string()
        } else {
            quoted(reason)
        };
        let src = format!("require \"vacation\";\n{cmd} {reason};\n");
        let script = root.join(format!("v{run_no}.sieve"));
        let mpath = root.join(format!("v{run_no}.eml"));
        std::fs::write(&script, &src).unwrap();
        std::fs::write(&mpath, &msg).unwrap();
        let text = sieve_test_run(root, &script, &mpath, &from, to);
        // Pigeonhole's reply: "=> name : value" lines, then the body.
        let mut want = BTreeSet::new();
        if let Some(block) = text.split("* send vacation message:").nth(1) {
            // A value runs to the next "=>" (a handle made from a multi-line reason spans
            // lines).
            let fields = block.split("START MESSAGE").next().unwrap_or("");
            for item in fields.split("\n    => ").skip(1) {
                if let Some((k, v)) = item.split_once(" :") {
                    let v = v.replace("\r\n", "\n");
                    want.insert(format!("{} {}", k.trim(), v.trim()));
                }
            }
            if let Some(body) = block
                .split_once("START MESSAGE\n")
                .and_then(|(_, b)| b.split_once("\nEND MESSAGE"))
            {
                want.insert(format!("body {:?}", body.0.replace("\r\n", "\n")));
            }
        }
        let limits = Limits::default();
        let mut nodes = vec![Node::FREE; Limits::nodes_for(src.len())];
        let mut strings = vec![0u8; Limits::strings_for(src.len())];
        let compiled = compile(src.as_bytes(), &limits, &mut nodes, &mut strings)
            .unwrap_or_else(|e| panic!("{e}\n{src}"));
        let m = Message {
            header: msg.as_bytes(),
            size: msg.len() as u64,
            envelope_from: from.as_bytes(),
            envelope_to: to.as_bytes(),
        };
        let mut o = Box::new(Outcome::new());
        let mut scratch = vec![0u8; 4096];
        run_with(&compiled, &m, &Context::NONE, &limits, &mut scratch, &mut o);
        let mut got = BTreeSet::new();
        let t = |x| String::from_utf8_lossy(o.text(x)).into_owned();
        for a in o.actions() {
            if let Action::Vacation {
                from,
                subject,
                reason,
                handle,
                seconds,
                ..
            } = *a
            {
                got.insert(format!("seconds {seconds}"));
                // Pigeonhole prints only a given :subject (ours fills in the default).
                if src.contains(":subject") {
                    got.insert(format!("subject {}", t(subject).trim()));
                }
                if let Some(f) = from {
                    got.insert(format!("from {}", t(f).trim()));
                }
                got.insert(format!("handle {}", t(handle).replace("\r\n", "\n").trim()));
                got.insert(format!(
                    "body {:?}",
                    t(reason).replace("\r\n", "\n").trim_end_matches('\n')
                ));
            }
        }
        // sieve-test prints the body without its last line end.
        let want: BTreeSet<String> = want
            .into_iter()
            .map(|w| match w.strip_prefix("body ") {
                Some(b) => format!(
                    "body {:?}",
                    b.trim_matches('"')
                        .replace("\\n", "\n")
                        .trim_end_matches('\n')
                ),
                None => w,
            })
            .collect();
        if got != want {
            mismatches.push(format!(
                "{src}\n{msg}\nPigeonhole: {want:?}\nours:       {got:?}"
            ));
        }
    }
    eprintln!(
        "sieve vacation differential: {runs} runs, {} mismatches",
        mismatches.len()
    );
    assert!(
        mismatches.is_empty(),
        "{}",
        mismatches[..mismatches.len().min(3)].join("\n")
    );
}
