//! Links the `fastlane` binary with packed relative relocations (`-z pack-relative-relocs`)
//! where the linker has them: the table of relocations the loader reads at start shrinks from
//! megabytes to kilobytes, and so does the memory it takes while the program runs.

use std::io::Write;
use std::process::{Command, Stdio};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    let native = std::env::var("TARGET").ok() == std::env::var("HOST").ok();
    if linux && native && linker_packs_relocations() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether the C compiler driver (the linker Rust uses here) links a program with the option.
fn linker_packs_relocations() -> bool {
    let out = std::env::temp_dir().join(format!("fastlane-relr-probe-{}", std::process::id()));
    let child = Command::new("cc")
        .args(["-x", "c", "-", "-o"])
        .arg(&out)
        .arg("-Wl,-z,pack-relative-relocs")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let ok = child.is_ok_and(|mut child| {
        let wrote = child
            .stdin
            .take()
            .is_some_and(|mut stdin| stdin.write_all(b"int main(void) { return 0; }\n").is_ok());
        wrote && child.wait().is_ok_and(|status| status.success())
    });
    let _ = std::fs::remove_file(&out);
    ok
}
