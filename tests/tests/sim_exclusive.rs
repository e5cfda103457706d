//! `Exclusive` holds every invariant, exhaustively: two deliverers and a reader, every
//! interleaving and readdir answer, a crash (P2) at every state, on every publish path, with
//! unique and with forced-colliding names, against a plain-rename and a no-replace reader.

use mdeliver_core::deliver::Strategy;
use mdeliver_tests::sim::explore::{explore, render, Report};
use mdeliver_tests::sim::scenarios::{path_caps, two_plus_reader};
use mdeliver_tests::sim::world::{Config, ReaderMode};

fn assert_clean(cfg: &Config, r: &Report) {
    let failures: Vec<String> = r.failures.values().map(|f| render(cfg, f)).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(!r.stats.truncated, "{}: exploration truncated", cfg.name);
    // Every message reaches a final state in some execution, and crashes were checked.
    assert!(
        r.stats.executions > 0 && r.stats.crash_images > 0,
        "{:?}",
        r.stats
    );
    eprintln!("{}: {:?}", cfg.name, r.stats);
}

fn run(path: &str, collide: bool, mode: ReaderMode) {
    let name = format!("exclusive {path} collide={collide} reader={mode:?}");
    let cfg = two_plus_reader(&name, Strategy::Exclusive, path_caps(path), collide, mode);
    let r = explore(&cfg, 5_000_000);
    assert_clean(&cfg, &r);
}

#[test]
fn anonymous_link_unique_names() {
    run("anonymous-link", false, ReaderMode::Plain);
    run("anonymous-link", false, ReaderMode::Core);
}

#[test]
fn anonymous_link_colliding_names() {
    run("anonymous-link", true, ReaderMode::Plain);
    run("anonymous-link", true, ReaderMode::Core);
}

#[test]
fn rename_noreplace_unique_names() {
    run("rename-noreplace", false, ReaderMode::Plain);
    run("rename-noreplace", false, ReaderMode::Core);
}

#[test]
fn rename_noreplace_colliding_names() {
    run("rename-noreplace", true, ReaderMode::Plain);
    run("rename-noreplace", true, ReaderMode::Core);
}

#[test]
fn link_unlink_unique_names() {
    run("link-unlink", false, ReaderMode::Plain);
    run("link-unlink", false, ReaderMode::Core);
}

#[test]
fn link_unlink_colliding_names() {
    run("link-unlink", true, ReaderMode::Plain);
    run("link-unlink", true, ReaderMode::Core);
}
