//! Links the three binaries as position-dependent executables (`-no-pie`):
//! the dynamic loader then has no relative relocations to apply at start-up
//! (about 10,000 of them, a fifth of a short call's instructions), since
//! every binary carries the whole library behind the backend seam.

fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
    println!("cargo:rerun-if-changed=build.rs");
}
