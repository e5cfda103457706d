//! The fault-injecting and tracing `Fs` wrappers around the simulated filesystem, and the
//! delivery's honesty under injected faults (ENOSPC, EDQUOT, EIO, EINTR, short writes).

use mdeliver_core::fs::{Capabilities, Dir, Fs};
use mdeliver_core::machine::deliver::{deliver, Options, Outcome, Strategy};
use mdeliver_core::ErrorKind;
use mdeliver_tests::sim::env::SimEnv;
use mdeliver_tests::sim::explore::{explore, run_random, Sched};
use mdeliver_tests::sim::fs::{Persistence, Semantics, SimFs};
use mdeliver_tests::sim::rng::Rng;
use mdeliver_tests::sim::scenarios::{path_caps, two_plus_reader};
use mdeliver_tests::sim::world::ReaderMode;
use mdeliver_tests::wrap::{Fault, FaultFs, FaultPlan, OpKind, TraceFs};

const MSG: &[u8] = b"From: a@example.org\n\nhello\n";

/// Delivers [`MSG`] through `fs` with the default options and a fixed unique environment.
fn deliver_msg<F: Fs>(fs: &mut F) -> Outcome {
    let mut env = SimEnv::unique(0, 7);
    deliver(
        fs,
        &mut env,
        Options::default(),
        &mut &MSG[..],
        &mut [0u8; 8],
    )
}

/// Delivers [`MSG`] on a simulated filesystem with `caps` under the faults of `plan`; returns
/// the operation trace with the outcome, and the filesystem afterwards.
fn run(caps: Capabilities, plan: FaultPlan) -> (String, SimFs) {
    let fs = SimFs::new(Semantics::Posix, caps, Persistence::P2);
    let mut fs = TraceFs::new(FaultFs::new(fs, plan));
    let out = deliver_msg(&mut fs);
    let text = format!("{}\n=> {out:?}", fs.log.join("\n"));
    (text, fs.inner.inner)
}

#[test]
fn short_writes_and_eintr_still_store_the_whole_message() {
    let plan = FaultPlan {
        script: vec![
            (OpKind::Write, 0, Fault::ShortWrite),
            (OpKind::Write, 2, Fault::Fail(ErrorKind::Interrupted)),
            (OpKind::SyncDir, 0, Fault::Fail(ErrorKind::Interrupted)),
        ],
        random: None,
    };
    let (text, fs) = run(Capabilities::POSIX, plan);
    insta::assert_snapshot!("faults_short_write_eintr", text);
    let (name, _) = fs.names(Dir::New).next().expect("delivered");
    assert_eq!(fs.contents(Dir::New, name), Some(MSG));
}

#[test]
fn enospc_at_directory_sync_unpublishes_and_reports() {
    let plan = FaultPlan {
        script: vec![(OpKind::SyncDir, 0, Fault::Fail(ErrorKind::NoSpace))],
        random: None,
    };
    let (text, fs) = run(Capabilities::POSIX, plan);
    insta::assert_snapshot!("faults_enospc_sync_dir", text);
    assert_eq!(fs.names(Dir::New).count(), 0);
    assert_eq!(fs.names(Dir::Tmp).count(), 0);
}

#[test]
fn every_single_fault_leaves_an_honest_state() {
    for caps in ["anonymous-link", "rename-noreplace", "link-unlink"].map(path_caps) {
        for op in [
            OpKind::Create,
            OpKind::CreateAnonymous,
            OpKind::Write,
            OpKind::SyncFile,
            OpKind::Close,
            OpKind::LinkAnonymous,
            OpKind::Link,
            OpKind::Rename,
            OpKind::Unlink,
            OpKind::SyncDir,
        ] {
            for kind in [ErrorKind::NoSpace, ErrorKind::Quota, ErrorKind::Io] {
                let plan = FaultPlan {
                    script: vec![(op, 0, Fault::Fail(kind))],
                    random: None,
                };
                let fs = SimFs::new(Semantics::Posix, caps, Persistence::P2);
                let mut fs = FaultFs::new(fs, plan);
                let out = deliver_msg(&mut fs);
                let visible: Vec<_> = [Dir::New, Dir::Cur]
                    .iter()
                    .flat_map(|&d| {
                        fs.inner
                            .names(d)
                            .map(|(n, _)| n.to_string())
                            .collect::<Vec<_>>()
                    })
                    .collect();
                match out {
                    Ok(d) => {
                        assert_eq!(visible, vec![d.name.to_string()], "{op:?} {kind:?}");
                        assert_eq!(fs.inner.contents(d.dir, &d.name), Some(MSG));
                    }
                    Err(e) => {
                        assert!(visible.is_empty(), "{op:?} {kind:?} {e}: {visible:?}");
                        assert!(e.is_temporary());
                    }
                }
            }
        }
    }
}

#[test]
fn exhaustive_with_a_failing_directory_sync() {
    let mut cfg = two_plus_reader(
        "exclusive + reader, first fsync(new/) fails with EIO",
        Strategy::Exclusive,
        path_caps("link-unlink"),
        false,
        ReaderMode::Plain,
    );
    cfg.faults = FaultPlan {
        script: vec![(OpKind::SyncDir, 0, Fault::Fail(ErrorKind::Io))],
        random: None,
    };
    explore(&cfg, 5_000_000).assert_clean(&cfg);
}

#[test]
fn random_faults_never_break_an_invariant() {
    let mut cfg = two_plus_reader(
        "exclusive + reader, 5% random faults",
        Strategy::Exclusive,
        path_caps("link-unlink"),
        true,
        ReaderMode::Core,
    );
    cfg.faults = FaultPlan {
        script: Vec::new(),
        random: Some((
            Rng::new(99),
            50,
            vec![
                Fault::Fail(ErrorKind::NoSpace),
                Fault::Fail(ErrorKind::Quota),
                Fault::Fail(ErrorKind::Io),
                Fault::Fail(ErrorKind::Interrupted),
                Fault::ShortWrite,
            ],
        )),
    };
    run_random(&cfg, Sched::Random, 0..2000).assert_clean(&cfg);
}
