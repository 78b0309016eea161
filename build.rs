//! Tells the tests whether the reference implementation's decoder is set
//! up (`MIMIX_REF` and `PYTHON2`, see the reference tool's README), so that
//! the interop test is reported as ignored, not passed, where it is not.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=MIMIX_REF");
    println!("cargo::rerun-if-env-changed=PYTHON2");
    println!("cargo::rustc-check-cfg=cfg(mimix_reference)");
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    if set("MIMIX_REF") && set("PYTHON2") {
        println!("cargo::rustc-cfg=mimix_reference");
    }
}
