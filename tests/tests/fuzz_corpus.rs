//! The fuzz targets on stable Rust, deterministically: every file of `fuzz/corpus/<target>/`
//! (the seeds and every input a fuzzing run found worth keeping, including the crashes it
//! found, once fixed) and a few thousand seeded random inputs per target go through the same
//! bodies libFuzzer runs (`mdeliver_tests::fuzz_bodies`). Random inputs mix raw bytes with
//! tokens that matter to each target (`From `, `Delivered-To:`, separators...), so they reach
//! the interesting states that uniform bytes would almost never hit.

use std::path::{Path, PathBuf};

use mdeliver_tests::fuzz_bodies::TARGETS;

/// Random inputs per target.
const RANDOM_INPUTS: u64 = 5000;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// Tokens that the inputs of each target are built from (besides random bytes).
fn tokens(target: &str) -> &'static [&'static [u8]] {
    match target {
        "name_parse" => &[
            b"1732816800.M000042P4242Q7R0123456789abcdef.host",
            b",S=1234",
            b",W=99",
            b":2,",
            b";2,",
            b"!2,",
            b"FRST",
            b"a",
            b":1,x",
            b".",
            b"/",
            b"\0",
            b",",
            b"=",
            b"\xff",
        ],
        "flags" => &[b"DFPRST", b"a", b"z", b",", b"2", b"\xc3\xa9", b"S", b" "],
        "mbox_split" | "mbox_roundtrip" => &[
            b"From ",
            b"From a@b Sat Nov 28 18:03:09 2026\n",
            b">From ",
            b">>From ",
            b">",
            b"From",
            b"\n",
            b"\r\n",
            b"\r",
            b"\n\n",
            b"x",
            b"\xe9",
        ],
        "header" => &[
            b"From ",
            b"From a@b Sat Nov 28 18:03:09 2026\n",
            b"Delivered-To: ",
            b"Delivered-To",
            b"delivered-to :",
            b"a@b",
            b"<a@b>",
            b"A@B",
            b"Status: RO\n",
            b"X-Status: AF\n",
            b": ",
            b"\n",
            b"\r\n",
            b"\n ",
            b"\n\t",
            b"\n\n",
            b" ",
            b"\xff",
        ],
        "maildirsize" => &[
            b"1000000S,500C\n",
            b"100S\n",
            b"5C",
            b"0S",
            b"123 1\n",
            b"-123 -1\n",
            b" ",
            b"\t",
            b"\n",
            b"\r",
            b"9",
            b"999999999999999999",
            b"-",
            b"\0",
        ],
        "sieve_parse" | "sieve_run" => &[
            b"require [\"fileinto\", \"imap4flags\", \"copy\", \"relational\", \"subaddress\", \"reject\", \"encoded-character\", \"comparator-i;ascii-numeric\", \"mailbox\"];\n",
            b"if ",
            b"elsif ",
            b"else ",
            b"{ ",
            b"} ",
            b"; ",
            b"(",
            b")",
            b", ",
            b"[\"a\", \"b\"]",
            b"\"x\" ",
            b"\"*a?\" ",
            b"\"${hex:41}\"",
            b"text:\nline\n..\n.\n",
            b"header :matches \"subject\" ",
            b"address :domain :comparator \"i;octet\" \"from\" ",
            b"address :detail \"to\" ",
            b"exists \"to\" ",
            b"size :over 10 ",
            b"allof (true, not false) ",
            b"anyof (",
            b":count \"ge\" ",
            b":value \"lt\" :comparator \"i;ascii-numeric\" ",
            b"hasflag ",
            b"fileinto :copy :flags \"\\\\Seen\" \"box\";",
            b"keep;",
            b"discard;",
            b"stop;",
            b"redirect \"a@b.c\";",
            b"reject \"no\";",
            b"addflag \"x\";",
            b"removeflag \"x\";",
            b"setflag \"\\\\Flagged\";",
            b"/* c */",
            b"# c\n",
            b"Subject: hello\n",
            b"From: A <a+b@c.d>, e@f\n",
            b"To: x@y\n",
            b"\n",
            b"require [\"body\", \"date\", \"index\", \"duplicate\", \"vacation\", \"variables\"];\n",
            b"body :content \"text\" :contains ",
            b"body :raw ",
            b"date :zone \"-0130\" \"date\" \"iso8601\" ",
            b"currentdate :value \"ge\" \"year\" \"2020\" ",
            b"header :index 2 :last ",
            b"duplicate :header \"subject\" :seconds 5 :last ",
            b"vacation :days 1 :subject \"s\" :mime \"r\";",
            b"Date: Tue, 1 Dec 2026 13:05:07 +0300\n",
            b"Content-Type: multipart/mixed; boundary=B\n\n--B\n\nx\n--B--\n",
            b"Content-Transfer-Encoding: base64\n",
        ],
        _ => &[b"\0", b"\xff", b"\x01", b"\xc8", b"\xd2", b"\xe1", b"\xf5"],
    }
}

/// Random input `seed` for `target`: a config prefix of raw bytes, then a mix of tokens and
/// raw bytes.
fn random_input(target: &str, seed: u64) -> Vec<u8> {
    let mut r = mdeliver_tests::sim::rng::XorShift(
        seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5851_f42d_4c95_7f2d | 1,
    );
    let toks = tokens(target);
    let len = (r.next_u64() % 400) as usize;
    let mut out = Vec::with_capacity(len + 64);
    let prefix = (r.next_u64() % 48) as usize;
    for _ in 0..prefix {
        out.push(r.next_u64() as u8);
    }
    while out.len() < len {
        let x = r.next_u64();
        if x.is_multiple_of(3) {
            out.push((x >> 8) as u8);
        } else {
            out.extend_from_slice(toks[((x >> 8) % toks.len() as u64) as usize]);
        }
    }
    out
}

fn run_target(name: &str, body: fn(&[u8])) {
    let dir = corpus_dir(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus for {name}");
    for f in &files {
        let data = std::fs::read(f).unwrap();
        let r = std::panic::catch_unwind(|| body(&data));
        assert!(r.is_ok(), "{name}: corpus file {} fails", f.display());
    }
    for seed in 0..RANDOM_INPUTS {
        let data = random_input(name, seed);
        let r = std::panic::catch_unwind(|| body(&data));
        assert!(
            r.is_ok(),
            "{name}: random input {seed} fails; its bytes: {data:?}"
        );
    }
}

macro_rules! target_tests {
    ($($t:ident),* $(,)?) => {
        $(
            #[test]
            fn $t() {
                let (name, body) = TARGETS
                    .iter()
                    .find(|(n, _)| *n == stringify!($t))
                    .expect("a registered target");
                run_target(name, *body);
            }
        )*

        /// Every registered target has a test here (and so a corpus directory).
        #[test]
        fn every_target_is_tested() {
            let tested = [$(stringify!($t)),*];
            for (name, _) in TARGETS {
                assert!(tested.contains(name), "{name} has no test in fuzz_corpus.rs");
            }
        }
    };
}

target_tests!(
    name_parse,
    flags,
    wire,
    mbox_split,
    mbox_roundtrip,
    header,
    maildirsize,
    deliver_faults,
    deliver_arbitrary,
    scan,
    sieve_parse,
    sieve_run,
);
