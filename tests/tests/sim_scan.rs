//! The core's scan is complete and duplicate-free against a concurrent flag-changing reader,
//! exhaustively; a naive one-pass listing is not (see sim_classic's counterexample).

use mdeliver_core::fs::{Dir, Fs};
use mdeliver_core::machine::deliver::Strategy;
use mdeliver_core::machine::scan::{move_message, scan, FixedKeySet, Move, ScanOptions};
use mdeliver_core::maildir::flags::Flags;
use mdeliver_core::maildir::name::InfoSep;
use mdeliver_core::Capabilities;
use mdeliver_tests::sim::explore::explore;
use mdeliver_tests::sim::fs::{Persistence, Semantics, SimFs};
use mdeliver_tests::sim::scenarios::{core_scan, deliverer};
use mdeliver_tests::sim::world::{AgentSpec, Config, ReaderMode};

/// Explores `cfg` exhaustively and asserts it clean.
fn clean(cfg: &Config) {
    explore(cfg, 5_000_000).assert_clean(cfg);
}

#[test]
fn complete_against_plain_flag_changes() {
    clean(&core_scan(2, ReaderMode::Plain));
    clean(&core_scan(3, ReaderMode::Plain));
}

#[test]
fn complete_against_core_flag_changes() {
    clean(&core_scan(2, ReaderMode::Core));
}

#[test]
fn complete_while_delivering_and_moving() {
    let mut cfg = Config::new(
        "core scan vs delivery + new->cur move + flag change",
        vec![
            deliverer(Strategy::Exclusive, false),
            AgentSpec::Mover {
                mode: ReaderMode::Core,
                flag_change: true,
            },
            AgentSpec::Scanner { naive: false },
        ],
    );
    cfg.seeded = 1;
    cfg.crashes = false;
    clean(&cfg);
}

fn fs_with(names: &[&str]) -> SimFs {
    let mut fs = SimFs::new(Semantics::Posix, Capabilities::LINUX_LOCAL, Persistence::P0);
    for (i, n) in names.iter().enumerate() {
        let (dir, name) = n.split_once('/').unwrap();
        let dir = if dir == "new" { Dir::New } else { Dir::Cur };
        fs.seed(dir, name, format!("m{i}").as_bytes());
    }
    fs
}

#[test]
fn blocking_scan_reports_each_key_once_with_fixed_storage() {
    let mut fs = fs_with(&["new/a,S=2", "cur/b,S=2:2,S", "cur/c:2,", "cur/.hidden"]);
    let mut keys = FixedKeySet::<8>::new();
    let sum = scan(&mut fs, &mut keys, ScanOptions::default()).unwrap();
    assert!(sum.stable);
    assert_eq!((sum.passes, sum.messages), (2, 3));
    let mut got: Vec<String> = keys
        .current(sum.final_pass)
        .map(|r| format!("{}/{}", r.dir.as_str(), r.name))
        .collect();
    got.sort();
    assert_eq!(got, ["cur/b,S=2:2,S", "cur/c:2,", "new/a,S=2"]);
    // Storage too small: an error, not a silently short listing.
    let mut small = FixedKeySet::<2>::new();
    assert!(scan(&mut fs, &mut small, ScanOptions::default()).is_err());
}

/// The move of `new/name` to cur/ with the seen flag (`S`), colon separator, no-replace rename.
fn mark_seen(name: &str) -> Move {
    Move::new(
        Dir::New,
        name,
        Flags::parse("S").unwrap(),
        InfoSep::COLON,
        true,
    )
}

#[test]
fn move_finds_a_message_again_by_key() {
    let mut fs = fs_with(&["cur/k,S=2:2,F"]);
    // We believed it was still in new/ without flags: the move finds it in cur/ by its key.
    let m = mark_seen("k,S=2");
    assert_eq!(move_message(&mut fs, m), Ok(Dir::Cur));
    assert!(fs.stat(Dir::Cur, "k,S=2:2,S").is_ok());
    assert!(fs.stat(Dir::Cur, "k,S=2:2,F").is_err());
    // The target exists already (another reader did the same): nothing is clobbered.
    let mut fs = fs_with(&["cur/k:2,S", "new/k"]);
    let m = mark_seen("k");
    assert_eq!(move_message(&mut fs, m), Ok(Dir::Cur));
    assert_eq!(fs.contents(Dir::Cur, "k:2,S"), Some(&b"m0"[..]));
    // Gone for good: reported, after a bounded search.
    let mut fs = fs_with(&[]);
    let m = Move::new(Dir::New, "k", Flags::EMPTY, InfoSep::COLON, true);
    assert!(move_message(&mut fs, m).is_err());
    // Without rename-noreplace: stat-checked plain rename.
    let mut fs = SimFs::new(Semantics::NoHardLinks, Capabilities::POSIX, Persistence::P0);
    fs.seed(Dir::New, "k", b"m0");
    let m = mark_seen("k");
    assert_eq!(move_message(&mut fs, m), Ok(Dir::Cur));
    assert_eq!(fs.contents(Dir::Cur, "k:2,S"), Some(&b"m0"[..]));
}
