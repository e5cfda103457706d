//! The Sieve language in the core: compile errors name line and column, actions follow
//! RFC 5228's rules, and hostile scripts are refused or bounded by the limits.

use mdeliver_core::sieve::{
    compile, run, Action, CompileError, ErrorKind, Limits, Message, Node, Outcome, RuntimeError,
};

const MSG: &[u8] = b"From: \"Alice\" <alice+lists@example.com>\n\
To: bob@example.org, carol@Example.ORG\n\
Subject: Hello world\n\
X-Spam-Score: 7\n\
Reply-To: \"john q\"@example.com\n\
Sender: bare\n\
\n\
body\n";

fn compile_err(src: &str) -> CompileError {
    let mut nodes = vec![Node::FREE; Limits::nodes_for(src.len())];
    let mut strings = vec![0u8; Limits::strings_for(src.len())];
    compile(src.as_bytes(), &Limits::default(), &mut nodes, &mut strings)
        .expect_err("script should not compile")
}

/// Runs `src` on MSG and renders the outcome as one line per action (implicit keep last).
fn actions_with(src: &str, limits: &Limits) -> (Vec<String>, Option<RuntimeError>) {
    let mut nodes = vec![Node::FREE; Limits::nodes_for(src.len())];
    let mut strings = vec![0u8; Limits::strings_for(src.len())];
    let script = compile(src.as_bytes(), limits, &mut nodes, &mut strings)
        .unwrap_or_else(|e| panic!("compile: {e}"));
    let msg = Message {
        header: MSG,
        size: MSG.len() as u64,
        envelope_from: b"sender@example.net",
        envelope_to: b"bob+tag@example.org",
    };
    let mut out = Box::new(Outcome::new());
    let mut scratch = vec![0u8; 4096];
    run(&script, &msg, limits, &mut scratch, &mut out);
    let s = |t| String::from_utf8_lossy(out.text(t)).into_owned();
    let mut lines: Vec<String> = out
        .actions()
        .iter()
        .map(|a| match *a {
            Action::Store {
                mailbox,
                flags,
                create,
            } => format!(
                "store {}{} [{}]",
                mailbox.map_or("INBOX".to_string(), s),
                if create { " create" } else { "" },
                s(flags)
            ),
            Action::Redirect { address } => format!("redirect {}", s(address)),
            Action::Reject { reason, extended } => {
                format!(
                    "{} {}",
                    if extended { "ereject" } else { "reject" },
                    s(reason)
                )
            }
            Action::Discard => "discard".to_string(),
            // The extensions' actions: core/tests/sieve_extensions.rs.
            Action::Track { .. } | Action::Vacation { .. } => format!("{a:?}"),
        })
        .collect();
    if out.implicit_keep() {
        lines.push(format!(
            "implicit keep [{}]",
            String::from_utf8_lossy(out.implicit_flags())
        ));
    }
    (lines, out.error())
}

fn actions(src: &str) -> Vec<String> {
    let (lines, err) = actions_with(src, &Limits::default());
    assert_eq!(err, None, "runtime error for {src}");
    lines
}

#[test]
fn errors_name_line_and_column() {
    let e = compile_err("require \"fileinto\";\nif true {\n  frobnicate;\n}\n");
    assert_eq!(
        (e.pos.line, e.pos.column, e.kind),
        (3, 3, ErrorKind::UnknownCommand)
    );
    assert_eq!(e.to_string(), "3:3: unknown command");
    let e = compile_err("fileinto \"x\";");
    assert_eq!(e.to_string(), "1:1: needs 'require \"fileinto\";'");
    let e = compile_err("keep;\nrequire \"fileinto\";");
    assert_eq!(
        e.to_string(),
        "2:1: 'require' must come before every other command"
    );
    let e = compile_err("if header :is \"a\" {}");
    assert_eq!(
        (e.pos.line, e.kind),
        (
            1,
            ErrorKind::BadArguments(
                "header [COMPARATOR] [MATCH-TYPE] <headers: string-list> <keys: string-list>"
            )
        )
    );
    let e = compile_err("require \"regex\";");
    assert_eq!(e.to_string(), "1:1: unsupported extension");
    let e = compile_err("if true { keep;\n");
    assert_eq!(e.to_string(), "2:1: expected '}'");
    let e = compile_err("keep;\n  \"unterminated");
    assert_eq!(e.to_string(), "2:3: string is never closed");
    let e = compile_err("else { keep; }");
    assert_eq!(e.kind, ErrorKind::OrphanElse);
    let e = compile_err("if header :comparator \"i;foo\" \"a\" \"b\" { }");
    assert_eq!(e.kind, ErrorKind::UnknownComparator);
    let e = compile_err("require \"relational\"; if header :value \"xx\" \"a\" \"b\" { }");
    assert_eq!(e.kind, ErrorKind::BadRelation);
    let e = compile_err("/* never closed\nkeep;");
    assert_eq!(e.to_string(), "1:1: comment '/*' is never closed");
    let e = compile_err("if size :over 5000000000 { }");
    assert_eq!(e.kind, ErrorKind::NumberTooLarge);
    let e = compile_err("if address \"subject\" \"x\" {}");
    assert_eq!((e.pos.column, e.kind), (12, ErrorKind::NotAddressHeader));
}

#[test]
fn no_actions_means_implicit_keep() {
    assert_eq!(actions(""), ["implicit keep []"]);
    assert_eq!(
        actions("# only a comment\n/* and another */"),
        ["implicit keep []"]
    );
}

#[test]
fn fileinto_cancels_implicit_keep_copy_does_not() {
    let req = "require [\"fileinto\", \"copy\", \"mailbox\"];\n";
    assert_eq!(actions(&format!("{req}fileinto \"A\";")), ["store A []"]);
    assert_eq!(
        actions(&format!("{req}fileinto :copy :create \"A\";")),
        ["store A create []", "implicit keep []"]
    );
    // The same mailbox twice is one store (RFC 5228 2.10.3); keep is the INBOX store.
    assert_eq!(
        actions(&format!("{req}fileinto \"A\"; fileinto \"A\"; keep; keep;")),
        ["store A []", "store INBOX []"]
    );
    // However it is spelled: `/` and `.` separate levels, and an `INBOX.` prefix is INBOX.
    assert_eq!(
        actions(&format!(
            "{req}fileinto \"A/B\"; fileinto \"A.B\"; fileinto \"INBOX.A.B\"; fileinto \"INBOX/\";"
        )),
        ["store A/B []", "store INBOX []"]
    );
}

#[test]
fn tests_address_header_envelope_size() {
    let req = "require [\"fileinto\", \"envelope\", \"subaddress\", \"relational\", \"comparator-i;ascii-numeric\"];\n";
    let cases = [
        ("address :domain \"to\" \"example.org\"", true),
        ("address :localpart :is \"from\" \"alice+lists\"", true),
        ("address :user \"from\" \"alice\"", true),
        ("address :detail \"from\" \"lists\"", true),
        ("address :detail \"to\" \"\"", false),
        (
            "address :all :comparator \"i;octet\" \"to\" \"carol@example.org\"",
            false,
        ),
        ("address :all \"to\" \"carol@example.org\"", true),
        // A quoted local part is its text (RFC 5322 3.2.4); what is not an address has no
        // local part or domain (RFC 5228 2.7.4), only `:all`.
        ("address :localpart :is \"reply-to\" \"john q\"", true),
        ("address :localpart :is \"sender\" \"bare\"", false),
        ("address :domain :is \"sender\" \"\"", false),
        ("address :all :is \"sender\" \"bare\"", true),
        ("header :contains \"subject\" \"WORLD\"", true),
        (
            "header :comparator \"i;octet\" :contains \"subject\" \"WORLD\"",
            false,
        ),
        ("header :matches \"subject\" \"H*o w?rld\"", true),
        ("header :is \"subject\" \"\"", false),
        ("header :is \"x-missing\" \"\"", false),
        ("exists [\"from\", \"to\"]", true),
        ("exists [\"from\", \"x-missing\"]", false),
        ("size :over 100", true),
        ("size :under 100", false),
        ("envelope :domain \"from\" \"example.net\"", true),
        ("envelope :detail \"to\" \"tag\"", true),
        (
            "header :value \"gt\" :comparator \"i;ascii-numeric\" \"x-spam-score\" \"5\"",
            true,
        ),
        (
            "header :value \"gt\" :comparator \"i;ascii-numeric\" \"x-spam-score\" \"10\"",
            false,
        ),
        (
            "address :count \"eq\" :comparator \"i;ascii-numeric\" \"to\" \"2\"",
            true,
        ),
        ("allof (true, not false, anyof (false, true))", true),
        ("anyof (false, not true)", false),
    ];
    for (test, want) in cases {
        let got = actions(&format!("{req}if {test} {{ fileinto \"hit\"; }}"));
        let hit = got == ["store hit []"];
        assert_eq!(hit, want, "{test}: {got:?}");
    }
}

#[test]
fn redirect_goes_to_one_address_each_once() {
    // A constant that is not one address is refused when the script compiles.
    for bad in [
        "a@example.net, b@example.net",
        "",
        "bob",
        "Bob b@example.net",
    ] {
        let e = compile_err(&format!("redirect \"{bad}\";"));
        assert_eq!(e.kind, ErrorKind::BadValue("redirect address"), "{bad:?}");
    }
    // One that becomes so with its variables is a runtime error: the implicit keep.
    let src = "require \"variables\"; set \"to\" \"a@x, b@y\"; redirect \"${to}\";";
    let (lines, err) = actions_with(src, &Limits::default());
    assert_eq!(err, Some(RuntimeError::BadRedirect));
    assert_eq!(lines, ["implicit keep []"]);
    // The same mailbox is one redirect: a display name, brackets and the domain's case do not
    // count, the local part's does (RFC 5321 2.4).
    assert_eq!(
        actions(
            "redirect \"x@example.net\"; redirect \"X <x@EXAMPLE.net>\"; redirect \"X@example.net\";"
        ),
        ["redirect x@example.net", "redirect X@example.net"]
    );
}

#[test]
fn if_elsif_else_and_stop() {
    let req = "require \"fileinto\";\n";
    let s = format!("{req}if false {{ fileinto \"a\"; }} elsif true {{ fileinto \"b\"; }} elsif true {{ fileinto \"c\"; }} else {{ fileinto \"d\"; }}");
    assert_eq!(actions(&s), ["store b []"]);
    let s = format!("{req}if false {{ fileinto \"a\"; }} else {{ fileinto \"d\"; }} fileinto \"e\"; stop; fileinto \"f\";");
    assert_eq!(actions(&s), ["store d []", "store e []"]);
}

#[test]
fn imap4flags_follow_the_internal_variable() {
    let s = "require [\"imap4flags\", \"fileinto\"];\n\
             setflag \"\\\\Seen\"; addflag [\"a b\", \"A\"]; fileinto \"one\";\n\
             removeflag \"b\"; fileinto :flags \"\\\\Flagged\" \"two\";\n\
             if hasflag :contains \"se\" { fileinto \"three\"; }\n\
             keep;";
    assert_eq!(
        actions(s),
        [
            "store one [\\Seen a b]",
            "store two [\\Flagged]",
            "store three [\\Seen a]",
            "store INBOX [\\Seen a]"
        ]
    );
}

#[test]
fn strings_decode_escapes_multiline_and_encoded_characters() {
    let s = "require [\"fileinto\", \"encoded-character\"];\n\
             fileinto \"a\\\"b\\\\c\\d\";\n\
             fileinto \"${hex:41 42}${unicode:263a}${bogus:1}\";\n\
             fileinto text:\n..dot\nline\n.\n;";
    assert_eq!(
        actions(s),
        [
            "store a\"b\\cd []",
            "store AB\u{263a}${bogus:1} []",
            "store .dot\r\nline\r\n []"
        ]
    );
    let e = compile_err("require \"encoded-character\"; keep :flags \"${unicode:D800}\";");
    assert!(matches!(e.kind, ErrorKind::BadValue(_)), "{e}");
}

#[test]
fn reject_and_discard() {
    assert_eq!(
        actions("require \"reject\"; reject \"go away\";"),
        ["reject go away"]
    );
    assert_eq!(actions("discard;"), ["discard"]);
    let (lines, err) = actions_with(
        "require [\"reject\", \"fileinto\"]; fileinto \"x\"; reject \"no\";",
        &Limits::default(),
    );
    assert_eq!(err, Some(RuntimeError::RejectConflict));
    assert_eq!(lines, ["implicit keep []"]);
}

#[test]
fn hostile_scripts_are_refused_or_bounded() {
    // Deep nesting: refused at compile time with a place.
    let deep = "if true {".repeat(100) + &"}".repeat(100);
    assert_eq!(compile_err(&deep).kind, ErrorKind::TooDeep);
    let deep = format!("if {}true{} {{}}", "not ".repeat(100), "");
    assert_eq!(compile_err(&deep).kind, ErrorKind::TooDeep);
    // A huge string: refused.
    let huge = format!(
        "require \"fileinto\"; fileinto \"{}\";",
        "x".repeat(100_000)
    );
    assert_eq!(compile_err(&huge).kind, ErrorKind::StringTooLong);
    // A huge script: refused before it is read.
    let big = "keep;".repeat(300_000);
    assert_eq!(compile_err(&big).kind, ErrorKind::TooLarge);
    // An action storm: a runtime error, and the implicit keep.
    let storm = format!(
        "require \"fileinto\";\n{}",
        (0..100)
            .map(|i| format!("fileinto \"f{i}\";\n"))
            .collect::<String>()
    );
    let (lines, err) = actions_with(&storm, &Limits::default());
    assert_eq!(err, Some(RuntimeError::TooManyActions));
    assert_eq!(lines, ["implicit keep []"]);
    let redirects = (0..5)
        .map(|i| format!("redirect \"r{i}@example.com\";"))
        .collect::<String>();
    let (lines, err) = actions_with(&redirects, &Limits::default());
    assert_eq!(err, Some(RuntimeError::TooManyRedirects));
    assert_eq!(lines, ["implicit keep []"]);
    // A budget: many cheap tests run out of steps.
    let limits = Limits {
        max_steps: 1000,
        ..Limits::default()
    };
    let many = "if header :contains \"subject\" \"zz\" { keep; }\n".repeat(500);
    let (lines, err) = actions_with(&many, &limits);
    assert_eq!(err, Some(RuntimeError::BudgetExhausted));
    assert_eq!(lines, ["implicit keep []"]);
    // A tiny node arena: refused, not overrun.
    let mut nodes = [Node::FREE; 4];
    let mut strings = [0u8; 64];
    let e = compile(
        b"keep; keep; keep; keep; keep;",
        &Limits::default(),
        &mut nodes,
        &mut strings,
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooManyNodes);
}

#[test]
fn pathological_matches_pattern_is_bounded() {
    // Exponential for a naive backtracking matcher; one backtrack point keeps it linear-ish.
    let key = "*a".repeat(200) + "b";
    let s = format!(
        "require \"fileinto\"; if header :matches \"subject\" \"{key}\" {{ fileinto \"x\"; }}"
    );
    assert_eq!(actions(&s), ["implicit keep []"]);
}

#[test]
fn a_long_header_against_a_costly_pattern_runs_out_of_budget() {
    // 256 KiB of 'a' in a Subject against "*aaaa...ab": every start position matches 4000
    // letters before the b fails, a billion byte comparisons.
    // The budget counts byte comparisons, so the run stops with an error (and the implicit
    // keep) instead of running for minutes.
    let mut msg = b"Subject: ".to_vec();
    msg.extend(std::iter::repeat_n(b'a', 256 * 1024));
    msg.extend_from_slice(b"\n\nbody\n");
    let key = "*".to_string() + &"a".repeat(4000) + "b";
    let src = format!(
        "require \"fileinto\"; if header :matches \"subject\" \"{key}\" {{ fileinto \"x\"; }}"
    );
    let limits = Limits::default();
    let mut nodes = vec![Node::FREE; Limits::nodes_for(src.len())];
    let mut strings = vec![0u8; Limits::strings_for(src.len())];
    let script = compile(src.as_bytes(), &limits, &mut nodes, &mut strings).unwrap();
    let m = Message {
        header: &msg,
        size: msg.len() as u64,
        envelope_from: b"",
        envelope_to: b"",
    };
    let mut out = Box::new(Outcome::new());
    let mut scratch = vec![0u8; msg.len()];
    run(&script, &m, &limits, &mut scratch, &mut out);
    assert_eq!(out.error(), Some(RuntimeError::BudgetExhausted));
    assert!(out.actions().is_empty() && out.implicit_keep());
}

#[test]
fn variables_set_expand_modify_and_match() {
    let s = "require [\"variables\", \"fileinto\", \"imap4flags\"];\n\
             set \"Box\" \"Lists\";\n\
             set :lower :upperfirst \"n\" \"hELLO\";\n\
             set :length \"len\" \"${box}\";\n\
             set :quotewildcard \"q\" \"a*b?\";\n\
             fileinto \"${BOX}.${n}.${len}.${q}.${unset}.${bad name}\";\n\
             if header :matches \"subject\" \"*o w*\" { fileinto \"m.${1}.${2}.${0}.${3}\"; }\n\
             if string :is \"${unset}\" \"\" { addflag \"${n}\"; }\n\
             if string :count \"eq\" [\"\", \"x\", \"${box}\"] \"2\" { keep; }\n";
    let s = s.replace(
        "require [\"variables\"",
        "require [\"variables\", \"relational\"",
    );
    assert_eq!(
        actions(&s),
        [
            "store Lists.Hello.5.a\\*b\\?..${bad name} []",
            "store m.Hell.orld.Hello world. []",
            "store INBOX [Hello]"
        ]
    );
    let e = compile_err("require \"variables\"; set \"1\" \"x\";");
    assert_eq!(e.kind, ErrorKind::BadValue("variable name"));
    let e = compile_err("require \"variables\"; set :lower :upper \"a\" \"x\";");
    assert_eq!(e.kind, ErrorKind::DuplicateTag);
    let e = compile_err("set \"a\" \"x\";");
    assert_eq!(e.to_string(), "1:1: needs 'require \"variables\";'");
}

#[test]
fn imap4flags_on_a_named_variable() {
    let s = "require [\"variables\", \"imap4flags\", \"fileinto\"];\n\
             addflag \"fv\" [\"a\", \"b c\"]; removeflag \"FV\" \"b\"; addflag \"x\";\n\
             if hasflag \"fv\" \"c\" { fileinto :flags \"${fv}\" \"one\"; }\n\
             if hasflag \"x\" { fileinto \"two\"; }\n\
             if hasflag [\"fv\", \"other\"] \"x\" { fileinto \"three\"; }";
    assert_eq!(actions(s), ["store one [a c]", "store two [x]"]);
    let e = compile_err("require [\"variables\", \"imap4flags\"]; setflag \"9\" \"a\";");
    assert_eq!(e.kind, ErrorKind::BadValue("variable name"));
}

#[test]
fn hasflag_compares_an_empty_key_as_the_empty_string() {
    // As Pigeonhole: a key with no flags in it matches no flag, except under :value, where it
    // is the empty string.
    let s = "require [\"imap4flags\", \"relational\", \"fileinto\"];\n\
             addflag \"x\";\n\
             if hasflag :value \"ne\" \"\" { fileinto \"ne\"; }\n\
             if hasflag :is \"\" { fileinto \"is\"; }\n\
             if hasflag :contains \"\" { fileinto \"contains\"; }";
    assert_eq!(actions(s), ["store ne [x]"]);
}
