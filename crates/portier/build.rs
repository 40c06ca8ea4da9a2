//! Links the release binary with the functions that start-up and request handling run placed
//! next to each other (`symbol-order.txt`, written by `bench/symbol-order.sh`).
//!
//! Why: the kernel maps an executable's pages in 64 KiB windows around each page a process
//! touches. With the linker's default order the ~1.7 MB of code portier runs is spread over the
//! whole 9 MB of text, and about 6 MiB of it ends up resident; ordered, about 2.3 MiB. That is
//! RSS a user sees per replica, and fewer pages and TLB entries on the hot path.
//!
//! Only with LLVM's lld, which understands `--symbol-ordering-file`: rustup's toolchains ship it
//! (`gcc-ld/ld.lld` in the sysroot) and use it by default on x86_64 Linux since Rust 1.90; it is
//! asked for explicitly here so that a toolchain defaulting to another linker still links.
//! Skipped for debug builds, for other targets, when the build names its own linker, and with
//! `PORTIER_SYMBOL_ORDER=off`. Names the binary no longer has (after a dependency or toolchain
//! change) are ignored by the linker; the file then only stops helping until it is regenerated.
//! The names carry crate hashes that change with `Cargo.lock` and the toolchain, so
//! `symbol-order.stamp` records both as they were when the file was written, and a release build
//! with others warns: one new dependency once left a third of the names stale and an idle
//! process 1.9 MiB larger, silently.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=symbol-order.txt");
    println!("cargo:rerun-if-changed=symbol-order.stamp");
    println!("cargo:rerun-if-changed=../../Cargo.lock");
    println!("cargo:rerun-if-env-changed=PORTIER_SYMBOL_ORDER");
    if let Some(args) = ordering_args() {
        for arg in args {
            println!("cargo:rustc-link-arg-bin=portier={arg}");
        }
        if let Some(why) = stale() {
            println!(
                "cargo:warning=crates/portier/symbol-order.txt was written for {why}; if bench/symbol-order.sh --check reports under 99% of its names in the binary (and then it also records this Cargo.lock), the binary is only partly ordered (more resident memory) until bench/symbol-order.sh regenerates it"
            );
        }
    }
}

/// What differs from when `symbol-order.txt` was written, if anything.
fn stale() -> Option<String> {
    let dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR")?);
    let stamp = std::fs::read_to_string(dir.join("symbol-order.stamp")).unwrap_or_default();
    let recorded = |key: &str| {
        stamp
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
            .unwrap_or("")
            .to_owned()
    };
    let lock = std::fs::read(dir.join("../../Cargo.lock")).ok()?;
    let lock = format!("{:016x}", fnv1a(&lock));
    let rustc = Command::new(env::var_os("RUSTC")?).arg("-V").output().ok()?;
    let rustc = String::from_utf8(rustc.stdout).ok()?.trim().to_owned();
    if recorded("cargo-lock-fnv1a") != lock {
        Some("another Cargo.lock".to_owned())
    } else if recorded("toolchain") != rustc {
        Some(format!("{}, not {rustc}", recorded("toolchain")))
    } else {
        None
    }
}

/// FNV-1a, 64 bits: bench/symbol_order.py computes the same.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn ordering_args() -> Option<Vec<String>> {
    if env::var("PORTIER_SYMBOL_ORDER").is_ok_and(|v| v == "off") {
        return None;
    }
    let var = |name: &str| env::var(name).unwrap_or_default();
    if var("PROFILE") != "release"
        || var("TARGET") != "x86_64-unknown-linux-gnu"
        || env::var_os("RUSTC_LINKER").is_some()
    {
        return None;
    }
    let rustc = env::var_os("RUSTC")?;
    let out = Command::new(&rustc).args(["--print", "sysroot"]).output().ok()?;
    let sysroot = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    let gcc_ld = sysroot.join("lib/rustlib/x86_64-unknown-linux-gnu/bin/gcc-ld");
    if !gcc_ld.join("ld.lld").is_file() {
        return None;
    }
    let order = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR")?).join("symbol-order.txt");
    if !order.is_file() {
        return None;
    }
    let mut args = vec![
        format!("-B{}", gcc_ld.display()),
        "-fuse-ld=lld".to_owned(),
        format!("-Wl,--symbol-ordering-file={}", order.display()),
        "-Wl,--no-warn-symbol-ordering".to_owned(),
    ];
    // The dynamic loader reads every relative relocation at start-up, so the 24-byte RELA entries
    // (360 KiB of them) all stayed resident; packed (DT_RELR, glibc 2.36 and later) they take a
    // few KiB. Only when the glibc linked against can run such a binary.
    if glibc_at_least(2, 36) {
        args.push("-Wl,-z,pack-relative-relocs".to_owned());
    }
    Some(args)
}

/// Whether this machine's glibc (the one the binary links against) is at least MAJOR.MINOR.
fn glibc_at_least(major: u32, minor: u32) -> bool {
    let Ok(out) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else {
        return false;
    };
    // "glibc 2.36"
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.trim().trim_start_matches("glibc ").split('.');
    let mut next = || parts.next().and_then(|p| p.parse::<u32>().ok());
    match (next(), next()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => false,
    }
}
