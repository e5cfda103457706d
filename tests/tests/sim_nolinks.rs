//! Hard links refused (and no rename-noreplace): `Exclusive` falls back to CheckedRename
//! (`O_EXCL` tmp file, `stat` the target, plain `rename`). The check and the rename are not
//! atomic, so the kernel no longer refuses to replace; what is guaranteed instead, and checked
//! here exhaustively with a crash (P2) at every state:
//! - the published name embeds the tmp file's device and inode, so two live deliveries never
//!   choose the same target even when every other uniqueness source collides;
//! - hence no overwrite, no duplicate, no loss, no partial file, honest status (1–7).
//!
//! Not guaranteed (outside the model): a filesystem that reuses an inode number while an
//! identical environment (same second, pid, counter, entropy) delivers.

use mdeliver_core::fs::Capabilities;
use mdeliver_core::machine::deliver::{Publish, Strategy};
use mdeliver_tests::sim::explore::explore;
use mdeliver_tests::sim::fs::Semantics;
use mdeliver_tests::sim::scenarios::two_plus_reader;
use mdeliver_tests::sim::world::{Agent, ReaderMode};

fn run(collide: bool, mode: ReaderMode) {
    let mut cfg = two_plus_reader(
        &format!("no hard links, collide={collide}, reader={mode:?}"),
        Strategy::Exclusive,
        Capabilities::POSIX,
        collide,
        mode,
    );
    cfg.sem = Semantics::NoHardLinks;
    let w = cfg.build();
    let Agent::Deliver(d) = &w.agents[0] else {
        panic!()
    };
    assert_eq!(d.machine.publish_path(), Publish::CheckedRename);
    explore(&cfg, 5_000_000).assert_clean(&cfg);
}

#[test]
fn checked_rename_unique_names() {
    run(false, ReaderMode::Plain);
}

#[test]
fn checked_rename_colliding_names() {
    run(true, ReaderMode::Plain);
    run(true, ReaderMode::Core);
}
