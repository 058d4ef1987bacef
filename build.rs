//! Release builds place the functions a running daemon executes next to each other.
//!
//! The kernel maps executable pages 64 KiB at a time around each page that faults, so code
//! scattered over the 9 MiB `.text` kept most of it resident although a daemon runs under
//! 2 MiB of it. `benches/symbol-order.sh` records the functions a start, polls, a reload
//! and a stop execute (callgrind) into `benches/symbol-order.txt`; lld links them first.
//! A stale list (other dependency versions or another rustc) costs nothing but the
//! saving: names that no longer exist are ignored.

use std::path::Path;
use std::process::Command;

const ORDER_FILE: &str = "benches/symbol-order.txt";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={ORDER_FILE}");
    println!("cargo:rerun-if-env-changed=OAUTH_POLLER_NO_SYMBOL_ORDER");
    if std::env::var("PROFILE").as_deref() != Ok("release")
        || std::env::var_os("OAUTH_POLLER_NO_SYMBOL_ORDER").is_some()
        || !links_with_lld()
    {
        return;
    }
    if glibc_has_relr() {
        // Relative relocations packed (DT_RELR, glibc 2.36): the loader reads ~10 KiB, not
        // the 370 KiB of `.rela.dyn` that stayed resident.
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    let order = Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join(ORDER_FILE);
    if order.is_file() {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

/// `--symbol-ordering-file` is an lld option: rustc links x86_64 Linux binaries with its own
/// lld from 1.90 on, unless a linker or linker flags were chosen (then leave them alone).
fn links_with_lld() -> bool {
    if std::env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu")
        || std::env::var_os("RUSTC_LINKER").is_some()
    {
        return false;
    }
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if flags.contains("link") {
        return false;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = Command::new(rustc).arg("-V").output() else {
        return false;
    };
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let version = String::from_utf8_lossy(&out.stdout);
    let minor = version
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.split('.').nth(1))
        .and_then(|m| m.parse::<u32>().ok());
    matches!(minor, Some(m) if m >= 90)
}

/// DT_RELR binaries need glibc 2.36 to load; build with it only where the build machine
/// (whose glibc the binary already requires) has it.
fn glibc_has_relr() -> bool {
    let Ok(out) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else {
        return false;
    };
    // "glibc 2.36"
    let version = String::from_utf8_lossy(&out.stdout);
    let mut parts = version
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (2, 36)
}
