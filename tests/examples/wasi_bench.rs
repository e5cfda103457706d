//! Per-message cost of delivering through the WASI module (instantiated in-process from the
//! serialized, cached module) against the native binary (one process per message), with
//! spawning `/bin/true` as the reference measured in the same run.
//!
//! `cargo build --release -p mdeliver && cargo run --release -p mdeliver-tests --features wasi-bench --example wasi_bench [N]`

// Shared with the host tests; not every helper is used here.
#[allow(dead_code)]
#[path = "../tests/wasi/wasi_support.rs"]
mod wasi_support;

use std::process::{Command, Stdio};
use std::time::Instant;
use wasi_support::{run, Limits};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    let msg = b"From: a@example.org\nSubject: bench\n\nbody\n".repeat(20);
    let dir = tempfile::tempdir().unwrap();
    for d in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(dir.path().join("w").join(d)).unwrap();
        std::fs::create_dir_all(dir.path().join("n").join(d)).unwrap();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| wasi_support::workspace().join("target"));
    let native = target.join("release/mdeliver");
    assert!(
        native.exists(),
        "build the native binary first: cargo build --release -p mdeliver"
    );
    // Warm up: build and compile the module, fill caches.
    let _ = run(
        &["--no-fsync", "/mail/w"],
        &msg,
        dir.path(),
        &[],
        Limits::default(),
    );

    let t = Instant::now();
    for _ in 0..n {
        let st = Command::new("/bin/true").status().unwrap();
        assert!(st.success());
    }
    let truth = t.elapsed().as_secs_f64() / n as f64;

    let t = Instant::now();
    for _ in 0..n {
        let mut c = Command::new(&native)
            .args(["--no-fsync"])
            .arg(dir.path().join("n"))
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        c.stdin.take().unwrap().write_all(&msg).unwrap();
        assert!(c.wait().unwrap().success());
    }
    let nat = t.elapsed().as_secs_f64() / n as f64;

    let t = Instant::now();
    for _ in 0..n {
        let r = run(
            &["--no-fsync", "/mail/w"],
            &msg,
            dir.path(),
            &[],
            Limits::default(),
        );
        assert_eq!(r.code, 0, "{r:?}");
    }
    let wasm = t.elapsed().as_secs_f64() / n as f64;

    println!(
        "messages per variant: {n} ({} bytes each, --no-fsync)",
        msg.len()
    );
    println!(
        "spawn /bin/true          {:8.1} µs/msg   1.00×",
        truth * 1e6
    );
    println!(
        "native mdeliver (spawn)  {:8.1} µs/msg   {:.2}× /bin/true",
        nat * 1e6,
        nat / truth
    );
    println!(
        "WASI module (in-process) {:8.1} µs/msg   {:.2}× /bin/true, {:.2}× native",
        wasm * 1e6,
        wasm / truth,
        wasm / nat
    );
}
