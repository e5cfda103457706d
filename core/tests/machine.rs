//! The delivery machine's operation sequences for each capability set and failure, against a
//! small in-memory filesystem. The sequences are snapshots a person has read; the assertions
//! next to them check the end state (what is in tmp/, new/, cur/) so that a wrong sequence
//! cannot pass by being re-blessed.

use mdeliver_core::fs::{perform, Slots};
use mdeliver_core::machine::deliver::{
    Delivered, Durability, Publish, Strategy, LOCK_BREAK_PREFIX, LOCK_NAME,
};
use mdeliver_core::maildir::name::ParsedName;
use mdeliver_core::testkit::{self, Hooked, Script, TestEnv};
use mdeliver_core::{
    Capabilities, Delivery, Dir, ErrorKind, Flags, Fs, Op, OpResult, Options, Step,
};
use std::cell::Cell;
use std::fmt::Write as _;
use std::rc::Rc;

/// The kit's environment with fixed values: the clock at 1700000000 s and 5 µs, pid 77, host
/// `box`, random numbers `0xabcd_0000` plus the counter.
fn test_env() -> TestEnv {
    let mut env = TestEnv::new(Rc::new(Cell::new(1_700_000_000_000)), 77);
    env.host = "box";
    env.micros = 5;
    env.counted_random = Some(0xabcd_0000);
    env
}

/// The kit's in-memory maildir with short writes (at most 5 bytes per call), files made at
/// time 0, and a queue of scripted failures keyed by operation name.
type MemFs = Hooked<testkit::MemFs, Script>;

fn memfs(caps: Capabilities) -> MemFs {
    let mut fs = testkit::MemFs::new(Rc::new(Cell::new(0)));
    fs.caps = caps;
    fs.max_write = 5;
    fs.ids = (8, 99);
    Hooked {
        fs,
        hook: Script::default(),
    }
}

/// Runs one delivery, recording every operation and its result.
fn run(
    fs: &mut MemFs,
    opts: Options,
    message: &[u8],
) -> (String, Result<Delivered, mdeliver_core::Error>) {
    run_with(fs, opts, message, |_, _| {})
}

/// [`run`], letting `tamper` change each result before the machine sees it (a lost reply).
fn run_with(
    fs: &mut MemFs,
    opts: Options,
    message: &[u8],
    mut tamper: impl FnMut(&Op<'_>, &mut OpResult),
) -> (String, Result<Delivered, mdeliver_core::Error>) {
    let mut env = test_env();
    let mut machine = Delivery::new(opts, fs.capabilities(), &mut env);
    let mut slots = Slots::default();
    let mut source = message;
    let mut buf = [0u8; 16];
    let mut trace = String::new();
    for _ in 0..200 {
        let op = match machine.poll() {
            Step::Op(op) => op,
            Step::Done(outcome) => {
                writeln!(trace, "=> {outcome:?}").unwrap();
                return (trace, outcome);
            }
        };
        write!(trace, "{op:?}").unwrap();
        let (mut result, _) = perform(fs, &mut env, &mut slots, op, &mut source, &mut buf);
        tamper(&op, &mut result);
        writeln!(trace, " -> {result:?}").unwrap();
        machine.feed(result, &mut env);
    }
    panic!("delivery did not finish in 200 steps:\n{trace}");
}

const MSG: &[u8] = b"From: a@example.org\nSubject: hi\n\nbody\n";

fn opts() -> Options {
    Options::default()
}

fn no_caps() -> Capabilities {
    Capabilities {
        anonymous_tmp: false,
        rename_noreplace: false,
        hard_links: false,
        ..Capabilities::POSIX
    }
}

/// The message is in `dir` exactly once, byte-identical, its name carries its size, and the
/// other places are empty.
fn assert_delivered_only(fs: &MemFs, d: &Delivered, dir: Dir) {
    assert_eq!(d.dir, dir);
    assert_eq!(fs.fs.list(dir), vec![d.name.to_string()]);
    assert_eq!(fs.fs.get(dir, &d.name).unwrap(), MSG);
    let parsed = ParsedName::parse(&d.name, Default::default()).unwrap();
    assert_eq!(parsed.size(), Some(MSG.len() as u64));
    assert_eq!(d.size, MSG.len() as u64);
    for other in [Dir::Tmp, Dir::New, Dir::Cur] {
        if other != dir {
            assert!(
                fs.fs.list(other).is_empty(),
                "{other:?} not empty: {:?}",
                fs.fs.list(other)
            );
        }
    }
}

fn assert_nothing_left(fs: &MemFs) {
    for d in [Dir::Tmp, Dir::New, Dir::Cur] {
        assert!(
            fs.fs.list(d).is_empty(),
            "{d:?} not empty: {:?}",
            fs.fs.list(d)
        );
    }
}

/// Delivers with default options on `fs`, asserts the publish path used and that the message
/// is in new/ only, and returns the trace for the caller's snapshot.
fn delivers_by(mut fs: MemFs, path: Publish) -> String {
    let (trace, out) = run(&mut fs, opts(), MSG);
    let d = out.unwrap();
    assert_eq!(d.publish, path);
    assert_delivered_only(&fs, &d, Dir::New);
    trace
}

#[test]
fn anonymous_link_path() {
    let fs = memfs(Capabilities::LINUX_LOCAL);
    let trace = delivers_by(fs, Publish::AnonymousLink);
    insta::assert_snapshot!(trace);
}

#[test]
fn rename_noreplace_path() {
    let caps = Capabilities {
        anonymous_tmp: false,
        ..Capabilities::LINUX_LOCAL
    };
    let fs = memfs(caps);
    let trace = delivers_by(fs, Publish::RenameNoReplace);
    insta::assert_snapshot!(trace);
}

#[test]
fn link_unlink_path() {
    let fs = memfs(Capabilities::POSIX);
    let trace = delivers_by(fs, Publish::LinkUnlink);
    insta::assert_snapshot!(trace);
}

#[test]
fn checked_rename_path_without_hard_links() {
    let fs = memfs(no_caps());
    let trace = delivers_by(fs, Publish::CheckedRename);
    insta::assert_snapshot!(trace);
}

#[test]
fn unsupported_features_downgrade_at_run_time() {
    // The adapter believed in O_TMPFILE and renameat2, the filesystem says no to both, then
    // refuses hard links too: the machine ends on the checked rename and still delivers.
    let mut fs = memfs(Capabilities {
        anonymous_tmp: true,
        ..Capabilities::LINUX_LOCAL
    });
    fs.hook.0.extend([
        ("create_anonymous", ErrorKind::Unsupported),
        ("rename", ErrorKind::Unsupported),
        ("link", ErrorKind::Unsupported),
    ]);
    let trace = delivers_by(fs, Publish::CheckedRename);
    insta::assert_snapshot!(trace);
}

#[test]
fn collisions_get_fresh_names_and_are_bounded() {
    let mut fs = memfs(Capabilities::POSIX);
    fs.hook
        .0
        .extend([("create", ErrorKind::Exists), ("link", ErrorKind::Exists)]);
    let (trace, out) = run(&mut fs, opts(), MSG);
    assert_delivered_only(&fs, &out.unwrap(), Dir::New);
    insta::assert_snapshot!(trace);

    let mut fs = memfs(Capabilities::POSIX);
    fs.hook
        .0
        .extend(std::iter::repeat_n(("create", ErrorKind::Exists), 100));
    let (_, out) = run(
        &mut fs,
        Options {
            max_attempts: 4,
            ..opts()
        },
        MSG,
    );
    assert_eq!(out.unwrap_err().kind, ErrorKind::Collisions);
    assert_nothing_left(&fs);
}

#[test]
fn flags_deliver_into_cur_with_info() {
    let mut fs = memfs(Capabilities::LINUX_LOCAL);
    let flags = Flags::parse("SF").unwrap();
    let (_, out) = run(
        &mut fs,
        Options {
            flags: Some(flags),
            ..opts()
        },
        MSG,
    );
    let d = out.unwrap();
    assert!(d.name.ends_with(",S=38,W=42:2,FS"), "{}", d.name);
    assert_delivered_only(&fs, &d, Dir::Cur);
}

#[test]
fn failed_dir_sync_unpublishes() {
    for caps in [Capabilities::LINUX_LOCAL, Capabilities::POSIX, no_caps()] {
        let mut fs = memfs(caps);
        fs.hook.0.push_back(("sync_dir", ErrorKind::Io));
        let (trace, out) = run(&mut fs, opts(), MSG);
        let e = out.unwrap_err();
        assert_eq!(
            (e.kind, e.phase),
            (ErrorKind::Io, mdeliver_core::Phase::SyncDir)
        );
        assert_nothing_left(&fs);
        if caps == Capabilities::POSIX {
            insta::assert_snapshot!(trace);
        }
    }
}

#[test]
fn every_failure_cleans_up() {
    let points = [
        "create",
        "write",
        "sync_file",
        "close",
        "link",
        "rename",
        "link_anonymous",
        "sync_dir",
    ];
    for caps in [
        Capabilities::LINUX_LOCAL,
        Capabilities {
            anonymous_tmp: false,
            ..Capabilities::LINUX_LOCAL
        },
        Capabilities::POSIX,
        no_caps(),
    ] {
        for point in points {
            for kind in [ErrorKind::NoSpace, ErrorKind::Io, ErrorKind::Quota] {
                let mut fs = memfs(caps);
                fs.hook.0.push_back((point, kind));
                let (trace, out) = run(&mut fs, opts(), MSG);
                match out {
                    Ok(d) => assert_delivered_only(&fs, &d, Dir::New),
                    Err(e) => {
                        assert_eq!(e.kind, kind, "{trace}");
                        assert_nothing_left(&fs);
                    }
                }
            }
        }
    }
}

#[test]
fn empty_message_is_a_data_error() {
    for caps in [Capabilities::LINUX_LOCAL, Capabilities::POSIX] {
        let mut fs = memfs(caps);
        let (_, out) = run(&mut fs, opts(), b"");
        let e = out.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Data);
        assert!(!e.is_temporary());
        assert_nothing_left(&fs);
    }
}

#[test]
fn deferred_dir_sync_is_left_to_the_driver() {
    let mut fs = memfs(Capabilities::LINUX_LOCAL);
    let (trace, out) = run(
        &mut fs,
        Options {
            durability: Durability::DeferDirSync,
            ..opts()
        },
        MSG,
    );
    assert!(out.unwrap().needs_dir_sync);
    assert!(!trace.contains("SyncDir"));
    let mut fs = memfs(Capabilities::LINUX_LOCAL);
    let (trace, out) = run(
        &mut fs,
        Options {
            durability: Durability::None,
            ..opts()
        },
        MSG,
    );
    assert!(!out.unwrap().needs_dir_sync);
    assert!(!trace.contains("Sync"));
}

#[test]
fn nfs_link_reported_failed_but_made_is_trusted_by_link_count() {
    // The link lands, but the server's reply is lost: the machine checks st_nlink == 2.
    let mut fs = memfs(Capabilities::POSIX);
    let (trace, out) = run_with(&mut fs, opts(), MSG, |op, result| {
        if matches!(op, Op::Link { .. }) && *result == OpResult::Done {
            *result = OpResult::Err(ErrorKind::Io);
        }
    });
    let d = out.unwrap();
    assert_delivered_only(&fs, &d, Dir::New);
    assert!(trace.contains("Stat { dir: Tmp"), "{trace}");
}

#[test]
fn classic_recipe_sequence() {
    let mut fs = memfs(Capabilities::POSIX);
    let (trace, out) = run(
        &mut fs,
        Options {
            strategy: Strategy::Classic {
                exclusive_create: false,
            },
            ..opts()
        },
        MSG,
    );
    let d = out.unwrap();
    assert_eq!(d.name, "1700000000.77.box");
    assert_eq!(fs.fs.get(Dir::New, &d.name).unwrap(), MSG);
    insta::assert_snapshot!(trace);
}

#[test]
fn locked_sequence_takes_and_releases_the_lock() {
    let mut fs = memfs(Capabilities::POSIX);
    let (trace, out) = run(
        &mut fs,
        Options {
            strategy: Strategy::Locked,
            ..opts()
        },
        MSG,
    );
    let d = out.unwrap();
    assert_delivered_only(&fs, &d, Dir::New);
    assert!(
        fs.fs.list(Dir::Root).is_empty(),
        "lock left behind: {:?}",
        fs.fs.list(Dir::Root)
    );
    insta::assert_snapshot!(trace);
}

#[test]
fn locked_waits_for_a_held_lock_then_gives_up_busy() {
    let mut fs = memfs(Capabilities::POSIX);
    fs.fs.clock.set(1_700_000_000_000); // held by a live deliverer: fresh
    fs.create(Dir::Root, LOCK_NAME, true).unwrap();
    let o = Options {
        strategy: Strategy::Locked,
        lock_timeout_ms: 3000,
        ..opts()
    };
    let (_, out) = run(&mut fs, o, MSG);
    assert_eq!(out.unwrap_err().kind, ErrorKind::Busy);
    assert_nothing_left(&fs);
    // Only the foreign lock remains; our unique lock file is gone.
    assert_eq!(fs.fs.list(Dir::Root), vec![LOCK_NAME.to_string()]);
}

#[test]
fn locked_breaks_a_stale_lock() {
    let mut fs = memfs(Capabilities::POSIX);
    fs.create(Dir::Root, LOCK_NAME, true).unwrap(); // mtime 0: abandoned long ago
    let (_, out) = run(
        &mut fs,
        Options {
            strategy: Strategy::Locked,
            ..opts()
        },
        MSG,
    );
    assert_delivered_only(&fs, &out.unwrap(), Dir::New);
    // Only the claim that let this deliverer alone break it stays.
    assert_eq!(fs.fs.list(Dir::Root), vec![format!("{LOCK_BREAK_PREFIX}0")]);
}

#[test]
fn locked_leaves_a_stale_lock_to_the_deliverer_that_claimed_it() {
    let mut fs = memfs(Capabilities::POSIX);
    fs.create(Dir::Root, LOCK_NAME, true).unwrap(); // mtime 0: stale
    fs.fs.clock.set(1_700_000_000_000); // claimed a moment ago by a live deliverer
    fs.create(Dir::Root, &format!("{LOCK_BREAK_PREFIX}0"), true)
        .unwrap();
    let o = Options {
        strategy: Strategy::Locked,
        lock_timeout_ms: 3000,
        ..opts()
    };
    let (trace, out) = run(&mut fs, o, MSG);
    assert_eq!(out.unwrap_err().kind, ErrorKind::Busy, "{trace}");
    assert_nothing_left(&fs);
    // The stale lock is the claimer's to remove, however long it takes.
    assert_eq!(
        fs.fs.list(Dir::Root),
        vec![LOCK_NAME.to_string(), format!("{LOCK_BREAK_PREFIX}0")]
    );
    assert!(!trace.contains(&format!("Unlink {{ dir: Root, name: \"{LOCK_NAME}\" }}")));
}

#[test]
fn locked_claims_the_claim_of_a_deliverer_that_died_before_breaking() {
    let mut fs = memfs(Capabilities::POSIX);
    fs.create(Dir::Root, LOCK_NAME, true).unwrap(); // mtime 0: stale
    fs.create(Dir::Root, &format!("{LOCK_BREAK_PREFIX}0"), true)
        .unwrap(); // mtime 0: its claimer died long ago
    let o = Options {
        strategy: Strategy::Locked,
        ..opts()
    };
    let (trace, out) = run(&mut fs, o, MSG);
    assert_delivered_only(&fs, &out.unwrap(), Dir::New);
    assert_eq!(
        fs.fs.list(Dir::Root),
        vec![
            format!("{LOCK_BREAK_PREFIX}0"),
            format!("{LOCK_BREAK_PREFIX}0.0")
        ],
        "{trace}"
    );
}

/// Our lock link's reply is lost (`Io`, whether or not it was made) and our unique lock file's
/// link count cannot be read: the lock may be ours, orphaned.
fn orphaned(op: &Op<'_>, result: &mut OpResult) {
    match op {
        Op::Link {
            to: (Dir::Root, LOCK_NAME),
            ..
        } => *result = OpResult::Err(ErrorKind::Io),
        Op::Stat {
            dir: Dir::Root,
            name,
        } if *name != LOCK_NAME && !name.starts_with(LOCK_BREAK_PREFIX) => {
            *result = OpResult::Err(ErrorKind::Io)
        }
        _ => {}
    }
}

/// A `Locked` delivery on `fs` whose lock may be [`orphaned`]: it fails with the lock's error,
/// leaving nothing in tmp/, new/ or cur/. Its trace.
fn deliver_orphaned(fs: &mut MemFs) -> String {
    let o = Options {
        strategy: Strategy::Locked,
        ..opts()
    };
    let (trace, out) = run_with(fs, o, MSG, orphaned);
    let e = out.unwrap_err();
    assert_eq!(
        (e.kind, e.phase),
        (ErrorKind::Io, mdeliver_core::Phase::Lock),
        "{trace}"
    );
    assert_nothing_left(fs);
    trace
}

#[test]
fn locked_claims_an_orphaned_lock_before_removing_it() {
    let mut fs = memfs(Capabilities::POSIX);
    let trace = deliver_orphaned(&mut fs);
    // Our link was made: the lock (made at time 0) lost our name, was claimed, then removed.
    let claim = format!("{LOCK_BREAK_PREFIX}0");
    assert_eq!(fs.fs.list(Dir::Root), vec![claim.clone()], "{trace}");
    let claimed = trace.find(&format!("WriteFile {{ dir: Root, name: \"{claim}\""));
    let removed = trace.find(&format!("Unlink {{ dir: Root, name: \"{LOCK_NAME}\" }}"));
    assert!(claimed.is_some() && claimed < removed, "{trace}");
}

#[test]
fn locked_leaves_an_orphaned_lock_to_the_deliverer_that_claimed_it() {
    // Another deliverer whose lock link was lost as well claimed this orphan a moment ago: it
    // removes it. Removing it here too, by name, could remove a fresh lock another deliverer
    // takes in between (before the claim, both removed it: two deliverers then held the lock).
    let mut fs = memfs(Capabilities::POSIX);
    fs.create(Dir::Root, LOCK_NAME, true).unwrap(); // one name: its creator's is gone
    fs.create(Dir::Root, &format!("{LOCK_BREAK_PREFIX}0"), true)
        .unwrap();
    let trace = deliver_orphaned(&mut fs);
    assert_eq!(
        fs.fs.list(Dir::Root),
        vec![LOCK_NAME.to_string(), format!("{LOCK_BREAK_PREFIX}0")],
        "{trace}"
    );
    assert!(!trace.contains(&format!("Unlink {{ dir: Root, name: \"{LOCK_NAME}\" }}")));
}

#[test]
fn flags_learnt_while_writing_choose_cur() {
    // An mbox import learns `Status: RO` only while streaming: the hook moves the message to
    // cur/ with flags, on every publish path and also without syncs.
    for caps in [Capabilities::LINUX_LOCAL, Capabilities::POSIX, no_caps()] {
        for durability in [Durability::Full, Durability::None] {
            let mut fs = memfs(caps);
            let mut env = test_env();
            let mut src = MSG;
            let mut buf = [0u8; 16];
            let o = Options {
                durability,
                ..opts()
            };
            let mut took = None;
            let d = mdeliver_core::machine::deliver::deliver_with(
                &mut fs,
                &mut env,
                o,
                &mut src,
                &mut buf,
                |w| {
                    took = Some(w.machine.set_flags(Some(Flags::parse("S").unwrap())));
                },
            )
            .unwrap();
            assert_eq!(took, Some(true));
            assert!(d.name.ends_with(":2,S"), "{}", d.name);
            assert_delivered_only(&fs, &d, Dir::Cur);
        }
    }
}

#[test]
fn a_modification_time_is_an_operation_between_the_write_and_the_flush() {
    // `-M` learns a message's date only while streaming: the machine asks for `SetMtime` right
    // after the write (so a simulator or a stepping host sees it), before the file's flush
    // (or, without flushes, before the name), and a failure to set it loses nothing.
    for durability in [Durability::Full, Durability::None] {
        for fail in [false, true] {
            let mut env = test_env();
            let o = Options {
                durability,
                ..opts()
            };
            let mut fs = memfs(Capabilities::POSIX);
            let mut m = Delivery::new(o, fs.capabilities(), &mut env);
            let (mut slots, mut src, mut buf) = (Slots::default(), MSG, [0u8; 16]);
            let mut ops = Vec::new();
            let outcome = loop {
                let op = match m.poll() {
                    Step::Op(op) => op,
                    Step::Done(outcome) => break outcome,
                };
                ops.push(format!("{op:?}"));
                let (mut result, _) =
                    perform(&mut fs, &mut env, &mut slots, op, &mut src, &mut buf);
                match op {
                    Op::WriteMessage => assert!(m.set_mtime(-60)),
                    Op::SetMtime { .. } if fail => result = OpResult::Err(ErrorKind::Unsupported),
                    _ => {}
                }
                m.feed(result, &mut env);
            };
            assert!(outcome.is_ok(), "{outcome:?}");
            assert!(!m.set_mtime(0), "too late once written");
            let at = |name: &str| ops.iter().position(|o| o.starts_with(name));
            let set = at("SetMtime { secs: -60 }").expect("asked for");
            assert_eq!(ops.iter().filter(|o| o.starts_with("SetMtime")).count(), 1);
            assert_eq!(set, at("WriteMessage").unwrap() + 1, "{ops:?}");
            if durability == Durability::Full {
                assert_eq!(at("SyncFile"), Some(set + 1), "{ops:?}");
            }
        }
    }
}

#[test]
fn locked_link_exists_with_unreadable_tmp_leaves_the_target_alone() {
    // Under the lock, the publish link answers `Exists` (a lost reply retransmitted: the link
    // was made) and then our tmp file's link count cannot be read. The name may be another
    // deliverer's message, so the machine fails without unlinking it; it still removes its tmp
    // name and releases the lock.
    let mut fs = memfs(Capabilities::POSIX);
    let o = Options {
        strategy: Strategy::Locked,
        ..opts()
    };
    let (trace, out) = run_with(&mut fs, o, MSG, |op, result| match op {
        Op::Link {
            to: (Dir::New, _), ..
        } if *result == OpResult::Done => *result = OpResult::Err(ErrorKind::Exists),
        Op::Stat { dir: Dir::Tmp, .. } => *result = OpResult::Err(ErrorKind::Io),
        _ => {}
    });
    let e = out.unwrap_err();
    assert_eq!(
        (e.kind, e.phase),
        (ErrorKind::Io, mdeliver_core::Phase::Publish),
        "{trace}"
    );
    let new = fs.fs.list(Dir::New);
    assert_eq!(new.len(), 1, "{trace}");
    assert_eq!(fs.fs.get(Dir::New, &new[0]).unwrap(), MSG);
    assert!(fs.fs.list(Dir::Tmp).is_empty(), "{trace}");
    assert!(fs.fs.list(Dir::Root).is_empty(), "{trace}");
}

#[test]
fn unverifiable_link_is_taken_back() {
    // The publish link's reply is lost (`Io`, though the link was made) and our tmp file's link
    // count cannot be read either: the name is ours by construction, so the machine removes it
    // and reports the failure; nothing is left for the MTA's retry to duplicate.
    let mut fs = memfs(Capabilities::POSIX);
    let (trace, out) = run_with(&mut fs, opts(), MSG, |op, result| match op {
        Op::Link { .. } if *result == OpResult::Done => *result = OpResult::Err(ErrorKind::Io),
        Op::Stat { dir: Dir::Tmp, .. } => *result = OpResult::Err(ErrorKind::Io),
        _ => {}
    });
    let e = out.unwrap_err();
    assert_eq!(
        (e.kind, e.phase),
        (ErrorKind::Io, mdeliver_core::Phase::Publish),
        "{trace}"
    );
    assert!(trace.contains("Unlink { dir: New"), "{trace}");
    assert_nothing_left(&fs);
}
