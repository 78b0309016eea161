//! Tells the tests whether the reference implementation's decoder is set
//! up (`MIMIX_REF` and `PYTHON2`, see the reference tool's README), so that
//! the interop test is reported as ignored, not passed, where it is not;
//! and records what `mimix version --verbose` prints about the build (the
//! git commit when built from a checkout, the features, rustc, the target).

use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=MIMIX_REF");
    println!("cargo::rerun-if-env-changed=PYTHON2");
    println!("cargo::rustc-check-cfg=cfg(mimix_reference)");
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    if set("MIMIX_REF") && set("PYTHON2") {
        println!("cargo::rustc-cfg=mimix_reference");
    }
    build_info();
}

/// `MIMIX_GIT_COMMIT` (empty outside a git checkout), `MIMIX_FEATURES`,
/// `MIMIX_RUSTC` and `MIMIX_TARGET` for `mimix version --verbose`.
fn build_info() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_default();
    // Run again when HEAD moves: HEAD itself, the branch it names, and
    // the packed refs.
    for name in ["HEAD", "packed-refs"] {
        watch_git_path(name);
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch_git_path(&branch);
    }
    let mut features: Vec<String> = std::env::vars()
        .filter_map(|(k, _)| k.strip_prefix("CARGO_FEATURE_").map(str::to_owned))
        .map(|f| f.to_lowercase().replace('_', "-"))
        .collect();
    features.sort();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc = run(&rustc, &["--version"]).unwrap_or_default();
    let target = std::env::var("TARGET").unwrap_or_default();
    println!("cargo::rustc-env=MIMIX_GIT_COMMIT={commit}");
    println!("cargo::rustc-env=MIMIX_FEATURES={}", features.join(","));
    println!("cargo::rustc-env=MIMIX_RUSTC={rustc}");
    println!("cargo::rustc-env=MIMIX_TARGET={target}");
}

fn watch_git_path(name: &str) {
    if let Some(path) = git(&["rev-parse", "--path-format=absolute", "--git-path", name])
        && std::path::Path::new(&path).exists()
    {
        println!("cargo::rerun-if-changed={path}");
    }
}

fn git(args: &[&str]) -> Option<String> {
    run("git", args)
}

/// The first line `program args` prints, if it succeeds.
fn run(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let line = text.lines().next()?.trim().to_owned();
    (out.status.success() && !line.is_empty()).then_some(line)
}
