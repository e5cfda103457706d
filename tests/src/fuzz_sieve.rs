//! The bodies of the Sieve fuzz targets (`fuzz/fuzz_targets/sieve_*.rs`; registered in
//! [`crate::fuzz_bodies::TARGETS`], so the stable corpus test runs them too).

use mdeliver_core::sieve::{
    compile, run_with, Action, Context, Limits, Message, MessageReader, Node, Outcome,
    RuntimeError, Seen,
};

/// A memory of earlier runs that has seen every key of even length: deterministic, and
/// both answers are reached.
struct EvenKeys;

impl Seen for EvenKeys {
    fn seen(&self, key: &[u8]) -> bool {
        key.len().is_multiple_of(2)
    }
}

use crate::fuzz_bodies::Bytes;

/// Where a script starts in fuzz input: at its first `require` or `if` when it has one (the
/// stable replay's random inputs begin with raw bytes no script survives), else at once.
fn script_start(data: &[u8]) -> &[u8] {
    let find = |word: &[u8]| data.windows(word.len()).position(|w| w == word);
    match find(b"require").or_else(|| find(b"if ")) {
        Some(p) => &data[p..],
        None => data,
    }
}

/// Small limits, so the fuzzer reaches every one of them.
fn limits(b: &mut Bytes<'_>) -> Limits {
    Limits {
        max_script_size: 4096,
        max_nesting: 1 + u32::from(b.u8() % 12),
        max_string_len: 1 + usize::from(b.u8()) * 4,
        max_actions: usize::from(b.u8() % 10),
        max_redirects: usize::from(b.u8() % 5),
        max_steps: 1 + u32::from(b.u8()) * 40,
    }
}

/// The parser: any bytes compile or are refused with a place inside the script, never a
/// panic; the same input gives the same answer; a too-small arena is refused, never overrun.
pub fn sieve_parse(data: &[u8]) {
    let mut b = Bytes::new(data);
    let l = limits(&mut b);
    let src = script_start(b.rest());
    let compiled = |nodes_len: usize| {
        let mut nodes = vec![Node::FREE; nodes_len];
        let mut strings = vec![0u8; Limits::strings_for(src.len())];
        match compile(src, &l, &mut nodes, &mut strings) {
            Ok(s) => {
                assert!(s.nodes.len() <= nodes_len);
                assert!(s.strings.len() <= Limits::strings_for(src.len()));
                format!("ok {:?} {:?} {}", s.nodes, s.strings, s.first)
            }
            Err(e) => {
                let lines = src.iter().filter(|c| **c == b'\n').count() as u32 + 1;
                assert!(
                    e.pos.line >= 1 && e.pos.line <= lines && e.pos.column >= 1,
                    "{e} outside the script ({lines} lines)"
                );
                assert!(!e.to_string().is_empty());
                format!("err {e}")
            }
        }
    };
    let full = compiled(Limits::nodes_for(src.len()));
    assert_eq!(full, compiled(Limits::nodes_for(src.len())));
    let _ = compiled(3);
}

/// The interpreter: any script that compiles runs on any message (its body, a clock and a
/// memory of earlier runs given, for body, date, duplicate and vacation) within the limits
/// (actions, redirects, steps), a runtime error leaves only the implicit keep, at most one
/// vacation is decided and never with a reject, and the outcome does not depend on how the
/// message was cut into chunks.
pub fn sieve_run(data: &[u8]) {
    let mut b = Bytes::new(data);
    let l = limits(&mut b);
    let chunk = 1 + usize::from(b.u8() % 32);
    let script_len = usize::from(b.u8()) * 4 + usize::from(b.u8() % 4);
    let src = script_start(b.take(script_len));
    let envelope_from = b.short(24);
    let envelope_to = b.short(24);
    let now = i64::from(b.u8()) * 86_400 * 200 - 86_400 * 365;
    let local_zone = i16::from(b.u8() as i8) * 7;
    let msg = b.rest();
    let mut nodes = vec![Node::FREE; Limits::nodes_for(src.len())];
    let mut strings = vec![0u8; Limits::strings_for(src.len())];
    let Ok(script) = compile(src, &l, &mut nodes, &mut strings) else {
        return;
    };
    let outcome = |chunk: usize| -> (String, Box<Outcome>) {
        let mut header = vec![0u8; 2048];
        let mut body = vec![0u8; 2048];
        let mut reader = MessageReader::with_body(&mut header, &mut body);
        for c in msg.chunks(chunk) {
            reader.push(c);
        }
        assert_eq!(reader.size(), msg.len() as u64);
        let m = Message {
            header: reader.header(),
            size: reader.size(),
            envelope_from,
            envelope_to,
        };
        let ctx = Context {
            body: reader.body(),
            now: Some(now),
            local_zone,
            seen: Some(&EvenKeys),
        };
        let mut out = Box::new(Outcome::new());
        let mut scratch = vec![0u8; 2048];
        run_with(&script, &m, &ctx, &l, &mut scratch, &mut out);
        (format!("{:?}", out), out)
    };
    let (text, out) = outcome(chunk);
    assert_eq!(
        text,
        outcome(msg.len().max(1)).0,
        "chunking changed the outcome"
    );
    assert!(out.actions().len() <= l.max_actions);
    assert!(out.steps() <= l.max_steps.saturating_add(1));
    let redirects = out
        .actions()
        .iter()
        .filter(|a| matches!(a, Action::Redirect { .. }))
        .count();
    assert!(redirects <= l.max_redirects);
    if out.error().is_some() {
        assert!(out.actions().is_empty() && out.implicit_keep());
    }
    let rejects = out
        .actions()
        .iter()
        .filter(|a| matches!(a, Action::Reject { .. }))
        .count();
    let delivers = out
        .actions()
        .iter()
        .any(|a| matches!(a, Action::Store { .. } | Action::Redirect { .. }));
    assert!(
        rejects <= 1 && !(rejects == 1 && delivers),
        "reject mixed with delivery"
    );
    let vacations = out
        .actions()
        .iter()
        .filter(|a| matches!(a, Action::Vacation { .. }))
        .count();
    assert!(vacations <= 1 && !(vacations == 1 && rejects == 1));
    for a in out.actions() {
        if let Action::Vacation { to, key, .. } = *a {
            assert!(
                !out.text(to).is_empty(),
                "a vacation reply to the null sender"
            );
            assert!(
                !EvenKeys.seen(out.text(key)),
                "a vacation reply already sent"
            );
        }
    }
    let _ = RuntimeError::BudgetExhausted.to_string();
}
