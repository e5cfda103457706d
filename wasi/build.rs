//! Exports the stepping interface from the WASI command module (a `bin` exports only `_start`
//! unless told otherwise).
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        for f in [
            "mdeliver_step_buf",
            "mdeliver_step_new",
            "mdeliver_step_env_push",
            "mdeliver_step_poll",
            "mdeliver_step_feed",
            "mdeliver_step_drop",
        ] {
            println!("cargo:rustc-link-arg-bins=--export={f}");
        }
    }
}
