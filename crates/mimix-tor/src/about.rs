//! Which Arti this crate embeds, for `mimix version --verbose`.
//!
//! `Cargo.toml` pins `arti-client` to one exact version; the tests below
//! check that these constants say what `Cargo.toml` and `Cargo.lock` do.

/// The `arti-client` version built in.
pub const ARTI_VERSION: &str = "0.47.0";

/// The `arti-client` features enabled (its defaults are off).
pub const ARTI_FEATURES: &[&str] = &[
    "tokio",
    "native-tls",
    "compression",
    "onion-service-client",
    "onion-service-service",
    "experimental-api",
];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn the_constants_match_the_manifest_and_the_lock_file() {
        let manifest: toml::Table = include_str!("../Cargo.toml").parse().unwrap();
        let arti = &manifest["dependencies"]["arti-client"];
        assert_eq!(arti["version"].as_str(), Some(&*format!("={ARTI_VERSION}")));
        let features: Vec<&str> = arti["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        assert_eq!(features, ARTI_FEATURES);

        let lock: toml::Table = include_str!("../../../Cargo.lock").parse().unwrap();
        let locked: Vec<&str> = lock["package"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["name"].as_str() == Some("arti-client"))
            .map(|p| p["version"].as_str().unwrap())
            .collect();
        assert_eq!(locked, [ARTI_VERSION]);
    }
}
