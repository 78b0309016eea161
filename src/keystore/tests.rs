#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use super::*;

/// Hands out the pre-generated test keys instead of generating new ones.
struct TestKeys(Vec<String>);

impl TestKeys {
    fn new() -> Self {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests");
        let files = [
            "keys/test-2048.pem",
            "keys/test-3072.pem",
            "vectors/remailers/alpha/secret.pem",
            "vectors/remailers/beta/secret.pem",
        ];
        Self(
            files
                .iter()
                .rev()
                .map(|f| fs::read_to_string(root.join(f)).unwrap())
                .collect(),
        )
    }
}

impl KeyGenerator for TestKeys {
    fn generate(&mut self, _bits: usize) -> Result<(SecretKey, Zeroizing<String>), KeyGenError> {
        let pem = self.0.pop().ok_or(KeyGenError::Failed)?;
        Ok((SecretKey::from_pem(&pem).unwrap(), Zeroizing::new(pem)))
    }
}

const DAY0: u64 = 20_000;

#[test]
fn rotation_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let kdir = dir.path().join("keys");
    let policy = KeysConfig::default();
    let mut gen_ = TestKeys::new();
    let mut ks = Keystore::open(&kdir, store.clone(), policy).unwrap();
    assert!(ks.current(DAY0).is_none());

    // First key on the first day.
    let r = ks.rotate(DAY0, &mut gen_).unwrap();
    assert_eq!(r.created.len(), 1);
    let first = r.created[0].clone();
    assert_eq!(ks.current(DAY0).unwrap().key_id().to_hex(), first);
    // Nothing to do the next day, nor right before the renewal point.
    assert_eq!(ks.rotate(DAY0 + 1, &mut gen_).unwrap(), Rotation::default());
    assert_eq!(
        ks.rotate(DAY0 + 270 - 28, &mut gen_).unwrap(),
        Rotation::default()
    );

    // 28 days before expiry a successor appears and is advertised; the old
    // key still decrypts.
    let r = ks.rotate(DAY0 + 270 - 27, &mut gen_).unwrap();
    assert_eq!(r.created.len(), 1);
    let second = r.created[0].clone();
    let today = DAY0 + 270 - 27;
    assert_eq!(ks.current(today).unwrap().key_id().to_hex(), second);
    let old_id = KeyId::from_hex(&first).unwrap();
    assert!(ks.secret_key(&old_id).is_some());
    let conf = ks
        .remailer_conf("me", "http://me.onion", true, None, &[], today)
        .unwrap();
    assert!(conf.contains(&format!("KeyID: {second}")));

    // Reopening from disk gives the same keys.
    drop(ks);
    let mut ks = Keystore::open(&kdir, store.clone(), policy).unwrap();
    assert_eq!(ks.metas().len(), 2);
    assert!(ks.secret_key(&old_id).is_some());

    // Past expiry, within grace: still decrypts. After grace: deleted and
    // its file is gone.
    assert!(
        ks.rotate(DAY0 + 270 + 7, &mut gen_)
            .unwrap()
            .deleted
            .is_empty()
    );
    assert!(ks.secret_key(&old_id).is_some());
    let r = ks.rotate(DAY0 + 270 + 8, &mut gen_).unwrap();
    assert_eq!(r.deleted, vec![first.clone()]);
    assert!(ks.secret_key(&old_id).is_none());
    assert!(!kdir.join(format!("{first}.pem")).exists());
    let ks = Keystore::open(&kdir, store, policy).unwrap();
    assert!(ks.secret_key(&old_id).is_none());
    assert_eq!(ks.metas().len(), 1);
}

#[test]
fn refuses_readable_or_wrong_key_files() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let kdir = dir.path().join("keys");
    let mut ks = Keystore::open(&kdir, store.clone(), KeysConfig::default()).unwrap();
    let id = ks
        .rotate(DAY0, &mut TestKeys::new())
        .unwrap()
        .created
        .remove(0);
    drop(ks);
    let path = kdir.join(format!("{id}.pem"));
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    let err = Keystore::open(&kdir, store.clone(), KeysConfig::default()).unwrap_err();
    assert!(
        err.to_string().contains("accessible by other users"),
        "{err}"
    );
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(&path, "not a key").unwrap();
    let err = Keystore::open(&kdir, store, KeysConfig::default()).unwrap_err();
    assert!(matches!(err, KeystoreError::BadKey { .. }), "{err}");
}

#[test]
fn leftover_key_files_are_wiped() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let kdir = dir.path().join("keys");
    mimix_settings::fs::create_private_dir(&kdir).unwrap();
    let stray = kdir.join(format!("{}.pem", "ab".repeat(16)));
    fs::write(&stray, "secret").unwrap();
    let mut ks = Keystore::open(&kdir, store, KeysConfig::default()).unwrap();
    ks.rotate(DAY0, &mut TestKeys::new()).unwrap();
    assert!(!stray.exists());
}
