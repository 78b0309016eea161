//! `mimix version [--verbose]`: what this binary is, for bug reports and
//! upgrades (`mimix --version` prints the first line).

use clap::Args;

/// The version and, when built from a git checkout, the commit.
pub const SHORT: &str = match env!("MIMIX_GIT_COMMIT").as_bytes() {
    [] => env!("CARGO_PKG_VERSION"),
    _ => concat!(
        env!("CARGO_PKG_VERSION"),
        " (commit ",
        env!("MIMIX_GIT_COMMIT"),
        ")"
    ),
};

/// Arguments of `mimix version`.
#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Also print the build: commit, features, compiler, target, Arti.
    #[arg(long, short)]
    verbose: bool,
}

/// `mimix version`.
pub fn run(a: VersionArgs) -> anyhow::Result<()> {
    print!("{}", text(a.verbose));
    Ok(())
}

/// What `mimix version` prints.
fn text(verbose: bool) -> String {
    let mut out = format!("mimix {}\n", env!("CARGO_PKG_VERSION"));
    if !verbose {
        return out;
    }
    let or = |v: &'static str, none: &'static str| if v.is_empty() { none } else { v };
    let profile = match cfg!(debug_assertions) {
        true => "debug",
        false => "release",
    };
    let rows = [
        (
            "commit",
            or(
                env!("MIMIX_GIT_COMMIT"),
                "unknown (not built from a git checkout)",
            )
            .to_owned(),
        ),
        ("features", or(env!("MIMIX_FEATURES"), "none").to_owned()),
        ("build", format!("{profile}, {}", env!("MIMIX_TARGET"))),
        ("compiler", or(env!("MIMIX_RUSTC"), "unknown").to_owned()),
        (
            "arti",
            format!(
                "arti-client {} ({})",
                mimix_tor::ARTI_VERSION,
                mimix_tor::ARTI_FEATURES.join(", ")
            ),
        ),
        ("protocol", "Mimix v1".to_owned()),
    ];
    for (k, v) in rows {
        out.push_str(&format!("{k:<9} {v}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbose_adds_the_build_lines() {
        let short = text(false);
        assert_eq!(short, format!("mimix {}\n", env!("CARGO_PKG_VERSION")));
        let long = text(true);
        assert!(long.starts_with(&short), "{long}");
        for key in [
            "commit ",
            "features ",
            "build ",
            "compiler ",
            "arti ",
            "protocol ",
        ] {
            assert!(long.contains(&format!("\n{key}")), "{key}: {long}");
        }
        assert!(long.contains(mimix_tor::ARTI_VERSION), "{long}");
        assert!(SHORT.starts_with(env!("CARGO_PKG_VERSION")));
    }
}
