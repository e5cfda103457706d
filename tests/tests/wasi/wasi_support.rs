//! Building, caching and running the WASI module under wasmtime, for the host tests.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use wasmtime::{Config, Engine, Linker, Module, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Builds the release module once per test binary with `scripts/build-wasi.sh` and returns its
/// path. It builds into `wasi-module` inside the running test's own target directory (found
/// from the test executable's path, `<target>/<profile>/deps/<test>`): a directory of its own,
/// so the outer cargo's lock is never contended, and not shared with test runs that use
/// another `CARGO_TARGET_DIR`.
pub fn module_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| build(false))
}

/// The same release module built with the `step` feature (`build-wasi.sh --step`): the shipped
/// module's code plus the core's stepping ABI, which only a host stepping the compiled machines
/// (the differential test) uses.
pub fn step_module_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| build(true))
}

fn build(step: bool) -> PathBuf {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    if !installed.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("wasm32-wasip1")) {
        let st = Command::new("rustup")
            .args(["target", "add", "wasm32-wasip1"])
            .status();
        assert!(
            st.is_ok_and(|s| s.success()),
            "cannot install the wasm32-wasip1 target"
        );
    }
    let exe = std::env::current_exe().expect("current_exe");
    let target_dir = exe
        .ancestors()
        .nth(3)
        .expect("<target>/<profile>/deps/<test>")
        .join("wasi-module");
    // The release build (cargo's `wasm` profile, then wasm-opt): what is shipped is tested.
    let mut cmd = Command::new("bash");
    cmd.current_dir(workspace())
        .env("CARGO_TARGET_DIR", &target_dir)
        .arg("scripts/build-wasi.sh");
    if step {
        cmd.arg("--step");
    }
    let out = cmd
        .output()
        .expect("run scripts/build-wasi.sh to build the WASI module");
    assert!(
        out.status.success(),
        "building the WASI module failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(
        path.lines()
            .last()
            .expect("the script prints the module's path"),
    )
}

/// One engine for all tests: fuel metering on, so a limit can be set per run.
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut c = Config::new();
        c.consume_fuel(true);
        Engine::new(&c).expect("wasmtime engine")
    })
}

/// The compiled module, cached serialized next to the `.wasm` so later runs (and later test
/// binaries) skip compilation.
pub fn module() -> &'static Module {
    static MODULE: OnceLock<Module> = OnceLock::new();
    MODULE.get_or_init(|| load_module(engine(), module_path()))
}

/// The compiled module with the stepping ABI ([`step_module_path`]).
pub fn step_module() -> &'static Module {
    static MODULE: OnceLock<Module> = OnceLock::new();
    MODULE.get_or_init(|| load_module(engine(), step_module_path()))
}

/// Loads `wasm` for `engine` from its serialized cache when that is newer, else compiles and
/// writes the cache.
pub fn load_module(engine: &Engine, wasm: &Path) -> Module {
    let cache = wasm.with_extension("cwasm");
    let fresh = |p: &Path| p.metadata().and_then(|m| m.modified()).ok();
    if let (Some(c), Some(w)) = (fresh(&cache), fresh(wasm)) {
        if c >= w {
            // SAFETY: the cache file was written by `Module::serialize` of this same wasmtime
            // (same engine configuration) in this target directory; a mismatching file is
            // rejected by wasmtime's header check and we fall back to compiling.
            if let Ok(m) = unsafe { Module::deserialize_file(engine, &cache) } {
                return m;
            }
        }
    }
    let m = Module::from_file(engine, wasm).expect("compile the WASI module");
    let tmp = cache.with_extension(format!("cwasm.{}", std::process::id()));
    std::fs::write(&tmp, m.serialize().expect("serialize module")).expect("write module cache");
    std::fs::rename(&tmp, &cache).expect("publish module cache");
    m
}

/// Resource limits for one run.
#[derive(Copy, Clone, Debug, Default)]
pub struct Limits {
    /// Maximum linear memory in bytes.
    pub memory: Option<usize>,
    /// Fuel (roughly, instructions) the run may consume.
    pub fuel: Option<u64>,
}

/// A store's data: the WASI context and the resource limits.
pub struct Host {
    wasi: WasiP1Ctx,
    limits: StoreLimits,
}

/// A store for `host` with its limits and `fuel`, and the module instantiated in it (which
/// can already hit a limit).
fn instantiate_in(
    host: Host,
    fuel: u64,
    module: &Module,
) -> (Store<Host>, wasmtime::Result<wasmtime::Instance>) {
    let mut store = Store::new(engine(), host);
    store.limiter(|h| &mut h.limits);
    store.set_fuel(fuel).unwrap();
    let mut linker: Linker<Host> = Linker::new(engine());
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |h| &mut h.wasi).unwrap();
    let instance = linker.instantiate(&mut store, module);
    (store, instance)
}

/// Instantiates the module with the stepping ABI without running it (no arguments, no
/// preopens), to call its exported stepping interface.
pub fn instantiate() -> (Store<Host>, wasmtime::Instance) {
    let host = Host {
        wasi: WasiCtxBuilder::new().build_p1(),
        limits: StoreLimitsBuilder::new().build(),
    };
    let (store, instance) = instantiate_in(host, u64::MAX / 2, step_module());
    (store, instance.expect("instantiate the module"))
}

/// What one run did.
#[derive(Debug)]
pub struct RunResult {
    /// The exit status, or -1 when the run trapped.
    pub code: i32,
    /// Captured standard output.
    pub stdout: String,
    /// Captured standard error.
    pub stderr: String,
    /// The trap's message, when it trapped.
    pub trap: String,
}

/// Runs the module as `mdeliver-wasi ARGS...` with `stdin`, `preopen` mapped to `/mail`.
pub fn run(
    args: &[&str],
    stdin: &[u8],
    preopen: &Path,
    env: &[(&str, &str)],
    limits: Limits,
) -> RunResult {
    let out = MemoryOutputPipe::new(1 << 20);
    let err = MemoryOutputPipe::new(1 << 20);
    let mut argv = vec!["mdeliver-wasi"];
    argv.extend_from_slice(args);
    let mut b = WasiCtxBuilder::new();
    b.args(&argv)
        .stdin(MemoryInputPipe::new(stdin.to_vec()))
        .stdout(out.clone())
        .stderr(err.clone());
    for (k, v) in env {
        b.env(k, v);
    }
    b.preopened_dir(preopen, "/mail", FsPerms::ReadWrite)
        .expect("preopen");
    let mut lb = StoreLimitsBuilder::new();
    if let Some(m) = limits.memory {
        lb = lb.memory_size(m);
    }
    let host = Host {
        wasi: b.build_p1(),
        limits: lb.build(),
    };
    let (mut store, instance) = instantiate_in(host, limits.fuel.unwrap_or(u64::MAX / 2), module());
    let outcome = instance
        .and_then(|i| i.get_typed_func::<(), ()>(&mut store, "_start"))
        .and_then(|f| f.call(&mut store, ()));
    let (code, trap) = match outcome {
        Ok(()) => (0, String::new()),
        Err(e) => match e.downcast_ref::<I32Exit>() {
            Some(x) => (x.0, String::new()),
            None => (-1, format!("{e:?}")),
        },
    };
    RunResult {
        code,
        stdout: String::from_utf8_lossy(&out.contents()).into_owned(),
        stderr: String::from_utf8_lossy(&err.contents()).into_owned(),
        trap,
    }
}
