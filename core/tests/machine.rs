//! The delivery machine's operation sequences for each capability set and failure, against a
//! small in-memory filesystem. The sequences are snapshots a person has read; the assertions
//! next to them check the end state (what is in tmp/, new/, cur/) so that a wrong sequence
//! cannot pass by being re-blessed.

use mdeliver_core::env::Timestamp;
use mdeliver_core::fs::{perform, EntryName, Slots, Stat};
use mdeliver_core::machine::deliver::{Delivered, Durability, Publish, Strategy, LOCK_NAME};
use mdeliver_core::maildir::name::ParsedName;
use mdeliver_core::{
    Capabilities, Delivery, Dir, Env, ErrorKind, Flags, Fs, Op, OpResult, Options, Step,
};
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;

struct TestEnv {
    t: u64,
    counter: u64,
}

impl TestEnv {
    fn new() -> TestEnv {
        TestEnv {
            t: 1_700_000_000,
            counter: 0,
        }
    }
}

impl Env for TestEnv {
    fn now(&mut self) -> Timestamp {
        Timestamp {
            secs: self.t,
            micros: 5,
        }
    }
    fn random_u64(&mut self) -> u64 {
        0xabcd_0000 + self.counter
    }
    fn pid(&self) -> Option<u32> {
        Some(77)
    }
    fn host(&self) -> &str {
        "box"
    }
    fn next_counter(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }
    fn sleep(&mut self, millis: u32) {
        self.t += u64::from(millis) / 1000;
    }
}

/// An in-memory maildir: names to inodes, inodes with data and link counts, plus a queue of
/// scripted failures keyed by operation name.
#[derive(Default)]
struct MemFs {
    caps: Option<Capabilities>,
    names: BTreeMap<(Dir, String), usize>,
    inodes: Vec<(Vec<u8>, u64)>,
    /// Modification time given to files created from now on (stat reports it).
    clock: u64,
    mtimes: BTreeMap<usize, u64>,
    faults: VecDeque<(&'static str, ErrorKind)>,
}

impl MemFs {
    fn with(caps: Capabilities) -> MemFs {
        MemFs {
            caps: Some(caps),
            ..MemFs::default()
        }
    }
    fn fault(&mut self, op: &'static str) -> Result<(), ErrorKind> {
        if let Some(&(name, kind)) = self.faults.front() {
            if name == op {
                self.faults.pop_front();
                return Err(kind);
            }
        }
        Ok(())
    }
    fn listing(&self, dir: Dir) -> Vec<String> {
        self.names
            .keys()
            .filter(|(d, _)| *d == dir)
            .map(|(_, n)| n.clone())
            .collect()
    }
    fn content(&self, dir: Dir, name: &str) -> &[u8] {
        &self.inodes[self.names[&(dir, name.to_string())]].0
    }
}

impl Fs for MemFs {
    type File = usize;
    type DirStream = ();
    fn capabilities(&self) -> Capabilities {
        self.caps.unwrap()
    }
    fn create(&mut self, dir: Dir, name: &str, exclusive: bool) -> Result<usize, ErrorKind> {
        self.fault("create")?;
        let key = (dir, name.to_string());
        if let Some(&ino) = self.names.get(&key) {
            if exclusive {
                return Err(ErrorKind::Exists);
            }
            self.inodes[ino].0.clear();
            return Ok(ino);
        }
        self.inodes.push((Vec::new(), 1));
        self.mtimes.insert(self.inodes.len() - 1, self.clock);
        self.names.insert(key, self.inodes.len() - 1);
        Ok(self.inodes.len() - 1)
    }
    fn create_anonymous(&mut self, _dir: Dir) -> Result<usize, ErrorKind> {
        self.fault("create_anonymous")?;
        self.inodes.push((Vec::new(), 0));
        Ok(self.inodes.len() - 1)
    }
    fn file_id(&self, file: &usize) -> Option<(u64, u64)> {
        Some((8, *file as u64 + 100))
    }
    fn write(&mut self, file: &mut usize, buf: &[u8]) -> Result<usize, ErrorKind> {
        self.fault("write")?;
        // Short writes on purpose: at most 5 bytes per call.
        let n = buf.len().min(5);
        self.inodes[*file].0.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn sync_file(&mut self, _file: &mut usize) -> Result<(), ErrorKind> {
        self.fault("sync_file")
    }
    fn close(&mut self, _file: usize) -> Result<(), ErrorKind> {
        self.fault("close")
    }
    fn link_anonymous(&mut self, file: &usize, dir: Dir, name: &str) -> Result<(), ErrorKind> {
        self.fault("link_anonymous")?;
        let key = (dir, name.to_string());
        if self.names.contains_key(&key) {
            return Err(ErrorKind::Exists);
        }
        self.inodes[*file].1 += 1;
        self.names.insert(key, *file);
        Ok(())
    }
    fn link(&mut self, from: (Dir, &str), to: (Dir, &str)) -> Result<(), ErrorKind> {
        self.fault("link")?;
        let ino = *self
            .names
            .get(&(from.0, from.1.to_string()))
            .ok_or(ErrorKind::NotFound)?;
        let key = (to.0, to.1.to_string());
        if self.names.contains_key(&key) {
            return Err(ErrorKind::Exists);
        }
        self.inodes[ino].1 += 1;
        self.names.insert(key, ino);
        Ok(())
    }
    fn rename(
        &mut self,
        from: (Dir, &str),
        to: (Dir, &str),
        noreplace: bool,
    ) -> Result<(), ErrorKind> {
        self.fault("rename")?;
        let src = (from.0, from.1.to_string());
        let ino = *self.names.get(&src).ok_or(ErrorKind::NotFound)?;
        let key = (to.0, to.1.to_string());
        if noreplace && self.names.contains_key(&key) {
            return Err(ErrorKind::Exists);
        }
        self.names.remove(&src);
        self.names.insert(key, ino);
        Ok(())
    }
    fn unlink(&mut self, dir: Dir, name: &str) -> Result<(), ErrorKind> {
        self.fault("unlink")?;
        let ino = self
            .names
            .remove(&(dir, name.to_string()))
            .ok_or(ErrorKind::NotFound)?;
        self.inodes[ino].1 -= 1;
        Ok(())
    }
    fn stat(&mut self, dir: Dir, name: &str) -> Result<Stat, ErrorKind> {
        self.fault("stat")?;
        let ino = *self
            .names
            .get(&(dir, name.to_string()))
            .ok_or(ErrorKind::NotFound)?;
        let (data, nlink) = &self.inodes[ino];
        let mtime = self.mtimes.get(&ino).copied().unwrap_or(0);
        Ok(Stat {
            nlink: *nlink,
            size: data.len() as u64,
            mtime,
            regular: true,
        })
    }
    fn sync_dir(&mut self, _dir: Dir) -> Result<(), ErrorKind> {
        self.fault("sync_dir")
    }
    fn mkdir(&mut self, _dir: Dir) -> Result<(), ErrorKind> {
        Ok(())
    }
    fn open_dir(&mut self, _dir: Dir) -> Result<(), ErrorKind> {
        Err(ErrorKind::Unsupported)
    }
    fn stat_listed(&mut self, _: &(), _: &str) -> Result<Stat, ErrorKind> {
        Err(ErrorKind::Unsupported)
    }
    fn open_folder_dir(&mut self, _: Dir, _: &[u8], _: Dir) -> Result<(), ErrorKind> {
        Err(ErrorKind::Unsupported)
    }
    fn read_dir(&mut self, _s: &mut (), _out: &mut EntryName) -> Result<bool, ErrorKind> {
        Ok(false)
    }
    // A delivery never appends, reads small files or sets times: refused, so a machine that
    // started to would show it in the recorded trace.
    fn append(&mut self, _: Dir, _: &str, _: &[u8], _: bool) -> Result<(), ErrorKind> {
        Err(ErrorKind::Unsupported)
    }
    fn read_file(&mut self, _: Dir, _: &str, _: &mut [u8]) -> Result<usize, ErrorKind> {
        Err(ErrorKind::Unsupported)
    }
    fn set_mtime(&mut self, _: &usize, _: i64) -> Result<(), ErrorKind> {
        Err(ErrorKind::Unsupported)
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
    let mut env = TestEnv::new();
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
    assert_eq!(fs.listing(dir), vec![d.name.to_string()]);
    assert_eq!(fs.content(dir, &d.name), MSG);
    let parsed = ParsedName::parse(&d.name, Default::default()).unwrap();
    assert_eq!(parsed.size(), Some(MSG.len() as u64));
    assert_eq!(d.size, MSG.len() as u64);
    for other in [Dir::Tmp, Dir::New, Dir::Cur] {
        if other != dir {
            assert!(
                fs.listing(other).is_empty(),
                "{other:?} not empty: {:?}",
                fs.listing(other)
            );
        }
    }
}

fn assert_nothing_left(fs: &MemFs) {
    for d in [Dir::Tmp, Dir::New, Dir::Cur] {
        assert!(
            fs.listing(d).is_empty(),
            "{d:?} not empty: {:?}",
            fs.listing(d)
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
    let fs = MemFs::with(Capabilities::LINUX_LOCAL);
    let trace = delivers_by(fs, Publish::AnonymousLink);
    insta::assert_snapshot!(trace);
}

#[test]
fn rename_noreplace_path() {
    let caps = Capabilities {
        anonymous_tmp: false,
        ..Capabilities::LINUX_LOCAL
    };
    let fs = MemFs::with(caps);
    let trace = delivers_by(fs, Publish::RenameNoReplace);
    insta::assert_snapshot!(trace);
}

#[test]
fn link_unlink_path() {
    let fs = MemFs::with(Capabilities::POSIX);
    let trace = delivers_by(fs, Publish::LinkUnlink);
    insta::assert_snapshot!(trace);
}

#[test]
fn checked_rename_path_without_hard_links() {
    let fs = MemFs::with(no_caps());
    let trace = delivers_by(fs, Publish::CheckedRename);
    insta::assert_snapshot!(trace);
}

#[test]
fn unsupported_features_downgrade_at_run_time() {
    // The adapter believed in O_TMPFILE and renameat2, the filesystem says no to both, then
    // refuses hard links too: the machine ends on the checked rename and still delivers.
    let mut fs = MemFs::with(Capabilities {
        anonymous_tmp: true,
        ..Capabilities::LINUX_LOCAL
    });
    fs.faults.extend([
        ("create_anonymous", ErrorKind::Unsupported),
        ("rename", ErrorKind::Unsupported),
        ("link", ErrorKind::Unsupported),
    ]);
    let trace = delivers_by(fs, Publish::CheckedRename);
    insta::assert_snapshot!(trace);
}

#[test]
fn collisions_get_fresh_names_and_are_bounded() {
    let mut fs = MemFs::with(Capabilities::POSIX);
    fs.faults
        .extend([("create", ErrorKind::Exists), ("link", ErrorKind::Exists)]);
    let (trace, out) = run(&mut fs, opts(), MSG);
    assert_delivered_only(&fs, &out.unwrap(), Dir::New);
    insta::assert_snapshot!(trace);

    let mut fs = MemFs::with(Capabilities::POSIX);
    fs.faults
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
    let mut fs = MemFs::with(Capabilities::LINUX_LOCAL);
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
        let mut fs = MemFs::with(caps);
        fs.faults.push_back(("sync_dir", ErrorKind::Io));
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
                let mut fs = MemFs::with(caps);
                fs.faults.push_back((point, kind));
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
        let mut fs = MemFs::with(caps);
        let (_, out) = run(&mut fs, opts(), b"");
        let e = out.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Data);
        assert!(!e.is_temporary());
        assert_nothing_left(&fs);
    }
}

#[test]
fn deferred_dir_sync_is_left_to_the_driver() {
    let mut fs = MemFs::with(Capabilities::LINUX_LOCAL);
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
    let mut fs = MemFs::with(Capabilities::LINUX_LOCAL);
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
    let mut fs = MemFs::with(Capabilities::POSIX);
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
    let mut fs = MemFs::with(Capabilities::POSIX);
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
    assert_eq!(fs.content(Dir::New, &d.name), MSG);
    insta::assert_snapshot!(trace);
}

#[test]
fn locked_sequence_takes_and_releases_the_lock() {
    let mut fs = MemFs::with(Capabilities::POSIX);
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
        fs.listing(Dir::Root).is_empty(),
        "lock left behind: {:?}",
        fs.listing(Dir::Root)
    );
    insta::assert_snapshot!(trace);
}

#[test]
fn locked_waits_for_a_held_lock_then_gives_up_busy() {
    let mut fs = MemFs::with(Capabilities::POSIX);
    fs.clock = 1_700_000_000; // held by a live deliverer: fresh
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
    assert_eq!(fs.listing(Dir::Root), vec![LOCK_NAME.to_string()]);
}

#[test]
fn locked_breaks_a_stale_lock() {
    let mut fs = MemFs::with(Capabilities::POSIX);
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
    assert!(fs.listing(Dir::Root).is_empty());
}

#[test]
fn flags_learnt_while_writing_choose_cur() {
    // An mbox import learns `Status: RO` only while streaming: the hook moves the message to
    // cur/ with flags, on every publish path and also without syncs.
    for caps in [Capabilities::LINUX_LOCAL, Capabilities::POSIX, no_caps()] {
        for durability in [Durability::Full, Durability::None] {
            let mut fs = MemFs::with(caps);
            let mut env = TestEnv::new();
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
            let mut env = TestEnv::new();
            let o = Options {
                durability,
                ..opts()
            };
            let mut fs = MemFs::with(Capabilities::POSIX);
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
    let mut fs = MemFs::with(Capabilities::POSIX);
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
    let new = fs.listing(Dir::New);
    assert_eq!(new.len(), 1, "{trace}");
    assert_eq!(fs.content(Dir::New, &new[0]), MSG);
    assert!(fs.listing(Dir::Tmp).is_empty(), "{trace}");
    assert!(fs.listing(Dir::Root).is_empty(), "{trace}");
}

#[test]
fn unverifiable_link_is_taken_back() {
    // The publish link's reply is lost (`Io`, though the link was made) and our tmp file's link
    // count cannot be read either: the name is ours by construction, so the machine removes it
    // and reports the failure; nothing is left for the MTA's retry to duplicate.
    let mut fs = MemFs::with(Capabilities::POSIX);
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
