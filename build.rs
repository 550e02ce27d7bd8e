//! Links GCC's unwinder into the dynamic glibc build from libgcc_eh.a, so
//! that drainit needs libc.so.6 alone. Rust asks for libgcc_s.so.1 only for
//! that unwinder (panics), and loading it cost every start a second library
//! to open, map and relocate: 9 syscalls, 27,000 of 293,000 instructions
//! from exec to exit, 8 page faults, and 88 KiB of mappings in the RSS
//! (the binary grows by 24 KB instead). libgcc_eh.a is the same unwinder,
//! made to be linked in this way (gcc -static-libgcc).
//!
//! Everything else keeps Rust's defaults: musl and static glibc builds
//! already link their unwinder statically, a cross build's `cc` is not the
//! target's, and without libgcc_eh.a the build links libgcc_s as before.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CC");
    let var = |name: &str| env::var(name).unwrap_or_default();
    let dynamic_glibc = var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu"
        && !var("CARGO_CFG_TARGET_FEATURE")
            .split(',')
            .any(|f| f == "crt-static");
    if !dynamic_glibc || var("TARGET") != var("HOST") {
        return;
    }
    if let Some(dir) = libgcc_eh_dir() {
        println!("cargo:rustc-link-search=native={}", dir.display());
        // Not bundled into the rlib: linked where libgcc_s would have been,
        // which --as-needed then leaves out.
        println!("cargo:rustc-link-lib=static:-bundle=gcc_eh");
    }
}

/// Where the C compiler keeps libgcc_eh.a, if it has one.
fn libgcc_eh_dir() -> Option<PathBuf> {
    let cc = env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()?;
    // Without the file, cc prints the bare name back.
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !path.is_absolute() || !path.is_file() {
        return None;
    }
    path.parent().map(PathBuf::from)
}
