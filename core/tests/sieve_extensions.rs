//! The Sieve extensions that need more than the header block: body (RFC 5173), date and
//! index (RFC 5260), duplicate (RFC 7352) and vacation (RFC 5230), run through
//! `run_with` and a [`Context`] (body, clock, memory of earlier runs).

use std::cell::RefCell;
use std::collections::BTreeSet;

use mdeliver_core::sieve::{
    compile, run_with, Action, Context, ErrorKind, Limits, Message, MessageReader, Node, Outcome,
    RuntimeError, Seen, VACATION_SECONDS,
};

const MSG: &[u8] = b"From: Alice <alice@example.com>\n\
To: bob@example.org\n\
Cc: carol@example.net\n\
Subject: =?UTF-8?Q?caf=C3=A9?= plans\n\
Date: Tue, 1 Dec 2026 13:05:07 +0300\n\
Received: from a by b; Mon, 30 Nov 2026 23:30:00 -0200\n\
Received: from c by d; Wed, 2 Dec 2026 01:00:00 +0000\n\
Message-ID: <m1@example.com>\n\
MIME-Version: 1.0\n\
Content-Type: multipart/mixed; boundary=\"BB\"\n\
\n\
prologue text\n\
--BB\n\
Content-Type: text/plain; charset=utf-8\n\
Content-Transfer-Encoding: quoted-printable\n\
\n\
hello caf=C3=A9 wor=\n\
ld\n\
--BB\n\
Content-Type: application/octet-stream\n\
Content-Transfer-Encoding: base64\n\
\n\
aGVsbG8gc2VjcmV0Cg==\n\
--BB--\n\
epilogue\n";

/// The keys a test store remembers.
#[derive(Default)]
struct Store(RefCell<BTreeSet<Vec<u8>>>);

impl Seen for Store {
    fn seen(&self, key: &[u8]) -> bool {
        self.0.borrow().contains(key)
    }
}

struct Env<'a> {
    msg: &'a [u8],
    from: &'a str,
    to: &'a str,
    now: Option<i64>,
    zone: i16,
    store: Option<&'a Store>,
}

impl Default for Env<'_> {
    fn default() -> Self {
        Env {
            msg: MSG,
            from: "alice@example.com",
            to: "bob@example.org",
            now: Some(1_796_212_800), // 2026-12-02T12:00:00Z
            zone: 0,
            store: None,
        }
    }
}

/// Runs `src` and renders the actions, one line each (implicit keep last).
fn outcome(src: &str, env: &Env<'_>) -> (Vec<String>, Option<RuntimeError>) {
    let limits = Limits::default();
    let mut nodes = vec![Node::FREE; Limits::nodes_for(src.len())];
    let mut strings = vec![0u8; Limits::strings_for(src.len())];
    let script = compile(src.as_bytes(), &limits, &mut nodes, &mut strings)
        .unwrap_or_else(|e| panic!("compile: {e}\n{src}"));
    let (mut h, mut b) = (vec![0u8; 8192], vec![0u8; 8192]);
    let mut reader = MessageReader::with_body(&mut h, &mut b);
    for chunk in env.msg.chunks(7) {
        reader.push(chunk);
    }
    let msg = Message {
        header: reader.header(),
        size: reader.size(),
        envelope_from: env.from.as_bytes(),
        envelope_to: env.to.as_bytes(),
    };
    let ctx = Context {
        body: reader.body(),
        now: env.now,
        local_zone: env.zone,
        seen: env.store.map(|s| s as &dyn Seen),
    };
    let mut out = Box::new(Outcome::new());
    let mut scratch = vec![0u8; 8192];
    run_with(&script, &msg, &ctx, &limits, &mut scratch, &mut out);
    let s = |t| String::from_utf8_lossy(out.text(t)).into_owned();
    let mut lines: Vec<String> = out
        .actions()
        .iter()
        .map(|a| match *a {
            Action::Store { mailbox, .. } => format!("store {}", mailbox.map_or("INBOX".into(), s)),
            Action::Track { key, seconds } => {
                format!("track {} {seconds}", s(key).replace('\0', "|"))
            }
            Action::Vacation {
                to,
                from,
                subject,
                reason,
                mime,
                in_reply_to,
                handle,
                key,
                seconds,
            } => format!(
                "vacation to={} from={} subject={} reason={} mime={mime} irt={} handle={} \
                 key={} seconds={seconds}",
                s(to),
                from.map_or("-".into(), s),
                s(subject),
                s(reason),
                s(in_reply_to),
                s(handle),
                s(key).replace('\0', "|"),
            ),
            other => format!("{other:?}"),
        })
        .collect();
    if out.implicit_keep() {
        lines.push("implicit keep".into());
    }
    (lines, out.error())
}

/// The folders of `fileinto :copy` rules that matched.
fn hits(src_rules: &str, env: &Env<'_>) -> Vec<String> {
    let src = format!(
        "require [\"body\", \"date\", \"index\", \"fileinto\", \"copy\", \"variables\", \
         \"relational\", \"comparator-i;ascii-numeric\"];\n{src_rules}"
    );
    let (lines, err) = outcome(&src, env);
    assert_eq!(err, None, "{src}");
    lines
        .into_iter()
        .filter_map(|l| l.strip_prefix("store ").map(str::to_string))
        .filter(|l| l != "INBOX")
        .collect()
}

#[test]
fn body_raw_content_and_text() {
    let rules = r#"
if body :raw :contains "caf=C3=A9" { fileinto :copy "raw-undecoded"; }
if body :raw :contains "café" { fileinto :copy "raw-decoded"; }
if body :content "text" :is "hello café world" { fileinto :copy "text-part"; }
if body :content "text/plain" :contains "café" { fileinto :copy "text-plain"; }
if body :content "application" :contains "secret" { fileinto :copy "base64"; }
if body :content "multipart" :contains "prologue" { fileinto :copy "prologue"; }
if body :content "multipart" :contains "epilogue" { fileinto :copy "epilogue"; }
if body :content "" :contains "secret" { fileinto :copy "any-type"; }
if body :content "image" :contains "" { fileinto :copy "no-image"; }
if body :text :contains "café" { fileinto :copy "text"; }
if body :text :contains "secret" { fileinto :copy "text-not-binary"; }
if body :contains "WORLD" { fileinto :copy "default-text-casemap"; }
if body :comparator "i;octet" :contains "WORLD" { fileinto :copy "octet"; }
if body :content "text" :matches "hello * world" { fileinto :copy "m-${1}"; }
if body :content "text" :count "eq" :comparator "i;ascii-numeric" "1" { fileinto :copy "count1"; }
"#;
    assert_eq!(
        hits(rules, &Env::default()),
        [
            "raw-undecoded",
            "text-part",
            "text-plain",
            "base64",
            "prologue",
            "epilogue",
            "any-type",
            "text",
            "default-text-casemap",
            "m-café",
            "count1",
        ]
    );
}

#[test]
fn body_of_a_plain_message_and_without_a_body() {
    let env = Env {
        msg: b"Subject: x\n\nline one\nline two\n",
        ..Env::default()
    };
    let rules = "if body :raw :is \"line one\\nline two\\n\" { fileinto :copy \"no\"; }\n\
                 if body :raw :is text:\nline one\nline two\n.\n { fileinto :copy \"crlf\"; }\n\
                 if body :text :contains \"two\" { fileinto :copy \"text\"; }\n\
                 if body :raw :matches \"line one?line two?\" { fileinto :copy \"lf\"; }";
    assert_eq!(hits(rules, &env), ["text", "lf"]);
    let env = Env {
        msg: b"Subject: x\n",
        ..Env::default()
    };
    // No body: :raw has no value, :text the empty one (as Pigeonhole).
    assert_eq!(
        hits(
            "if body :raw :is \"\" { fileinto :copy \"raw\"; }\n\
             if body :text :is \"\" { fileinto :copy \"text\"; }",
            &env
        ),
        ["text"]
    );
}

#[test]
fn date_parts_zones_and_received() {
    let rules = r#"
if date "date" "iso8601" "2026-12-01T10:05:07Z" { fileinto :copy "local-utc"; }
if date :originalzone "date" "hour" "13" { fileinto :copy "original"; }
if date :zone "-0130" "date" "time" "08:35:07" { fileinto :copy "zone"; }
if date "date" "std11" "Tue, 01 Dec 2026 10:05:07 +0000" { fileinto :copy "std11"; }
if date "date" "julian" "61375" { fileinto :copy "julian"; }
if date "date" "weekday" "2" { fileinto :copy "weekday"; }
if date :value "ge" "date" "date" "2026-11-30" { fileinto :copy "after"; }
if date "received" "date" "2026-12-01" { fileinto :copy "received-any"; }
if date :index 1 "received" "date" "2026-12-01" { fileinto :copy "received-first"; }
if date :index 2 "received" "date" "2026-12-01" { fileinto :copy "received-second"; }
if date :index 1 :last "received" "hour" "01" { fileinto :copy "received-last"; }
if date "subject" "year" "2026" { fileinto :copy "not-a-date"; }
if date "x-missing" "year" "2026" { fileinto :copy "missing"; }
if date :matches "date" "century" "*" { fileinto :copy "unknown-part"; }
if currentdate "date" "2026-12-02" { fileinto :copy "today"; }
if currentdate :zone "+1300" "date" "2026-12-03" { fileinto :copy "tomorrow-there"; }
if currentdate :matches "iso8601" "*" { fileinto :copy "now-${1}"; }
"#;
    assert_eq!(
        hits(rules, &Env::default()),
        [
            "local-utc",
            "original",
            "zone",
            "std11",
            "julian",
            "weekday",
            "after",
            "received-any",
            "received-first",
            "received-last",
            "today",
            "tomorrow-there",
            "now-2026-12-02T12:00:00Z",
        ]
    );
    // The caller's local zone is the default, and without a clock currentdate fails.
    let env = Env {
        zone: 180,
        now: None,
        ..Env::default()
    };
    assert_eq!(
        hits(
            "if date \"date\" \"zone\" \"+0300\" { fileinto :copy \"local\"; }\n\
             if currentdate :matches \"year\" \"*\" { fileinto :copy \"clock\"; }",
            &env
        ),
        ["local"]
    );
}

#[test]
fn index_picks_one_field_of_header_and_address() {
    let env = Env {
        msg: b"X-A: one\nTo: a@x.test\nX-A: two\nTo: b@x.test, c@x.test\nX-A: three\n\nbody\n",
        ..Env::default()
    };
    let rules = r#"
if header :index 2 "x-a" "two" { fileinto :copy "second"; }
if header :index 1 :last "x-a" "three" { fileinto :copy "last"; }
if header :index 4 "x-a" "three" { fileinto :copy "none"; }
if header :index 3 :last "x-a" "one" { fileinto :copy "third-from-last"; }
if address :index 2 :localpart "to" "c" { fileinto :copy "second-to"; }
if address :index 1 :count "eq" :comparator "i;ascii-numeric" "to" "1" { fileinto :copy "count"; }
"#;
    assert_eq!(
        hits(rules, &env),
        ["second", "last", "third-from-last", "second-to", "count"]
    );
}

#[test]
fn extension_compile_errors() {
    let err = |src: &str| {
        let mut nodes = vec![Node::FREE; Limits::nodes_for(src.len())];
        let mut strings = vec![0u8; Limits::strings_for(src.len())];
        compile(src.as_bytes(), &Limits::default(), &mut nodes, &mut strings)
            .map(|_| ())
            .map_err(|e| e.kind)
    };
    assert_eq!(
        err("if body :raw \"x\" {}"),
        Err(ErrorKind::MissingRequire("body"))
    );
    // An unknown date part compiles (as Pigeonhole, which warns); the test fails.
    assert_eq!(
        err("require \"date\"; if date \"date\" \"century\" \"x\" {}"),
        Ok(())
    );
    assert_eq!(
        err("require \"date\"; if date :zone \"CET\" \"date\" \"year\" \"x\" {}"),
        Err(ErrorKind::BadValue("time zone (+hhmm or -hhmm)"))
    );
    assert_eq!(
        err("require \"date\"; if header :index 1 \"a\" \"b\" {}"),
        Err(ErrorKind::MissingRequire("index"))
    );
    assert!(matches!(
        err("require [\"date\", \"index\"]; if header :last \"a\" \"b\" {}"),
        Err(ErrorKind::BadArguments(_))
    ));
    assert_eq!(
        err("require \"duplicate\"; if duplicate :header \"a\" :uniqueid \"b\" {}"),
        Err(ErrorKind::DuplicateTag)
    );
    assert_eq!(
        err("require \"vacation\"; vacation :seconds 5 \"x\";"),
        Err(ErrorKind::UnknownTag)
    );
    assert_eq!(
        err("require [\"vacation\", \"vacation-seconds\"]; vacation :seconds 5 \"x\";"),
        Ok(())
    );
    assert!(matches!(
        err("require \"body\"; if body :raw :text \"x\" {}"),
        Err(ErrorKind::DuplicateTag)
    ));
    assert_eq!(
        err("require \"vacation\"; if vacation \"x\" {}"),
        Err(ErrorKind::UnknownTest)
    );
}

#[test]
fn duplicate_tracks_unseen_ids_and_reports_seen_ones() {
    let src = "require [\"duplicate\", \"fileinto\"];\n\
               if duplicate { fileinto \"dup\"; }\n\
               if duplicate :handle \"h\" :header \"subject\" :seconds 60 { fileinto \"dup2\"; }\n\
               if duplicate :uniqueid \"abc\" :seconds 999999 :last { fileinto \"dup3\"; }";
    let store = Store::default();
    let env = Env {
        store: Some(&store),
        ..Env::default()
    };
    let (first, err) = outcome(src, &env);
    assert_eq!(err, None);
    assert_eq!(
        first,
        [
            "track duplicate||<m1@example.com> 43200",
            "track duplicate|h|=?UTF-8?Q?caf=C3=A9?= plans 60",
            "track duplicate||abc 172800",
            "implicit keep",
        ]
    );
    // The driver records the keys once the message is delivered; the next run sees them.
    let mut ours = Box::new(Outcome::new());
    let limits = Limits::default();
    let mut nodes = vec![Node::FREE; Limits::nodes_for(src.len())];
    let mut strings = vec![0u8; Limits::strings_for(src.len())];
    let script = compile(src.as_bytes(), &limits, &mut nodes, &mut strings).unwrap();
    let msg = Message {
        header: MSG,
        size: MSG.len() as u64,
        envelope_from: b"",
        envelope_to: b"",
    };
    let mut scratch = vec![0u8; 4096];
    run_with(
        &script,
        &msg,
        &Context::NONE,
        &limits,
        &mut scratch,
        &mut ours,
    );
    for a in ours.actions() {
        if let Action::Track { key, .. } = *a {
            store.0.borrow_mut().insert(ours.text(key).to_vec());
        }
    }
    let (second, _) = outcome(src, &env);
    // Seen: no new track, except :last, which refreshes its period.
    assert_eq!(
        second,
        [
            "store dup",
            "store dup2",
            "track duplicate||abc 172800",
            "store dup3"
        ]
    );
    // A message without a Message-ID is no duplicate and is not tracked.
    let env = Env {
        msg: b"Subject: x\n\nbody\n",
        store: Some(&store),
        ..Env::default()
    };
    let (lines, _) = outcome("require \"duplicate\"; if duplicate { discard; }", &env);
    assert_eq!(lines, ["implicit keep"]);
}

#[test]
fn vacation_replies_once_and_never_to_lists_or_robots() {
    let src = "require \"vacation\";\nvacation :days 3 :addresses [\"b@x.test\"] \"Away\";";
    let (lines, err) = outcome(src, &Env::default());
    assert_eq!(err, None);
    assert_eq!(
        lines,
        [
            "vacation to=alice@example.com from=- subject=Auto: café plans reason=Away \
             mime=false irt=<m1@example.com> handle=Away<default-subject><default-from><NO-MIME> \
             key=vacation|Away<default-subject><default-from><NO-MIME>|alice@example.com \
             seconds=259200",
            "implicit keep",
        ]
    );
    let full = "require [\"vacation\", \"vacation-seconds\"];\n\
                vacation :seconds 10 :subject \"Out\" :from \"me@example.org\" :mime \
                :handle \"h\" \"Content-Type: text/plain\r\n\r\nAway\";";
    let (lines, _) = outcome(full, &Env::default());
    assert_eq!(
        lines[0],
        "vacation to=alice@example.com from=me@example.org subject=Out \
         reason=Content-Type: text/plain\r\n\r\nAway mime=true irt=<m1@example.com> handle=h \
         key=vacation|h|alice@example.com seconds=86400"
    );
    // Replied already: the store has the key.
    let store = Store::default();
    store
        .0
        .borrow_mut()
        .insert(b"vacation\0h\0alice@example.com".to_vec());
    let env = Env {
        from: "ALICE@example.com",
        store: Some(&store),
        ..Env::default()
    };
    assert_eq!(outcome(full, &env).0, ["implicit keep"]);
    // Never to the null sender, robots, lists, bulk mail, oneself, or mail not addressed
    // to the user.
    let no_reply: &[(&str, &[u8], &str)] = &[
        ("", MSG, "bob@example.org"),
        ("MAILER-DAEMON@example.com", MSG, "bob@example.org"),
        ("owner-list@example.com", MSG, "bob@example.org"),
        ("list-request@example.com", MSG, "bob@example.org"),
        ("bob@example.org", MSG, "bob@example.org"),
        (
            "alice@example.com",
            b"To: bob@example.org\nAuto-Submitted: auto-replied\n\n",
            "bob@example.org",
        ),
        (
            "alice@example.com",
            b"To: bob@example.org\nList-Id: <l.example.com>\n\n",
            "bob@example.org",
        ),
        (
            "alice@example.com",
            b"To: bob@example.org\nPrecedence: bulk\n\n",
            "bob@example.org",
        ),
        (
            "alice@example.com",
            b"To: someone@example.org\n\n",
            "bob@example.org",
        ),
    ];
    for (from, msg, to) in no_reply {
        let env = Env {
            msg,
            from,
            to,
            ..Env::default()
        };
        assert_eq!(
            outcome("require \"vacation\"; vacation \"Away\";", &env).0,
            ["implicit keep"],
            "{from} {}",
            String::from_utf8_lossy(msg)
        );
    }
    // Addressed to the user: in Cc, by :addresses, or as the recipient without +detail.
    let yes: &[(&[u8], &str)] = &[
        (
            b"Cc: Bob <bob@example.org>\nAuto-Submitted: no\n\n",
            "bob@example.org",
        ),
        (b"To: alias@example.org\n\n", "bob@example.org"),
        (b"To: bob@example.org\n\n", "bob+tag@example.org"),
    ];
    for (msg, to) in yes {
        let env = Env {
            msg,
            to,
            ..Env::default()
        };
        let lines = outcome(
            "require \"vacation\"; vacation :addresses \"alias@example.org\" \"Away\";",
            &env,
        )
        .0;
        assert!(
            lines[0].starts_with("vacation to=alice@example.com"),
            "{lines:?}"
        );
        assert!(lines[0].contains(&format!("seconds={VACATION_SECONDS}")));
    }
    // Once per run, and never with reject.
    assert_eq!(
        outcome(
            "require \"vacation\"; vacation \"a\"; vacation \"b\";",
            &Env::default()
        )
        .1,
        Some(RuntimeError::TwoVacations)
    );
    assert_eq!(
        outcome(
            "require [\"vacation\", \"reject\"]; reject \"no\"; vacation \"b\";",
            &Env::default()
        )
        .1,
        Some(RuntimeError::RejectConflict)
    );
}

#[test]
fn many_body_tests_on_a_large_body_run_out_of_budget() {
    let mut big = b"Subject: big\n\n".to_vec();
    big.extend(std::iter::repeat_n(b'x', 1 << 20));
    let limits = Limits {
        max_steps: 10_000,
        ..Limits::default()
    };
    let mut src = String::from("require \"body\";\n");
    for _ in 0..200 {
        src.push_str("if body :raw :contains \"y\" { discard; }\n");
    }
    let mut nodes = vec![Node::FREE; Limits::nodes_for(src.len())];
    let mut strings = vec![0u8; Limits::strings_for(src.len())];
    let script = compile(src.as_bytes(), &limits, &mut nodes, &mut strings).unwrap();
    let (mut h, mut b) = (vec![0u8; 1024], vec![0u8; 2 << 20]);
    let mut reader = MessageReader::with_body(&mut h, &mut b);
    reader.push(&big);
    let msg = Message {
        header: reader.header(),
        size: reader.size(),
        envelope_from: b"",
        envelope_to: b"",
    };
    let ctx = Context {
        body: reader.body(),
        ..Context::NONE
    };
    let mut out = Box::new(Outcome::new());
    let mut scratch = vec![0u8; 4096];
    run_with(&script, &msg, &ctx, &limits, &mut scratch, &mut out);
    assert_eq!(out.error(), Some(RuntimeError::BudgetExhausted));
    assert!(out.actions().is_empty() && out.implicit_keep());
    assert!(out.steps() <= limits.max_steps + 1);
}
