//! Exports the stepping interface from the WASI command module (a `bin` exports only `_start`
//! unless told otherwise). The list is read from `src/step.rs` itself, every
//! `pub extern "C" fn mdeliver_step_*` there, so it cannot fall behind the ABI; only a build
//! with the `step` feature, which compiles that file, asks for them.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/step.rs");
    let wasm = std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32");
    if !wasm || std::env::var_os("CARGO_FEATURE_STEP").is_none() {
        return;
    }
    let step = std::fs::read_to_string("src/step.rs").expect("src/step.rs");
    let mut exports = 0;
    for line in step.lines() {
        let Some(rest) = line.trim().strip_prefix("pub extern \"C\" fn ") else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        assert!(name.starts_with("mdeliver_step_"), "export {name}");
        println!("cargo:rustc-link-arg-bins=--export={name}");
        exports += 1;
    }
    assert!(exports > 0, "no exports found in src/step.rs");
}
