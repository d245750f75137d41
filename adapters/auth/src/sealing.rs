//! [`SecretSealer`] with AES-256-GCM (`ring`): each sealed value is
//! `v1:` + base64url(nonce ‖ ciphertext ‖ tag), with a fresh random 96-bit
//! nonce and the caller's context (the user id) as associated data, so a
//! sealed secret copied into another user's row does not open.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hearth_domain::ports::SecretSealer;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

/// The key file's name in the data directory.
pub const SEALING_KEY_FILE: &str = "two-factor.key";
const KEY_LEN: usize = 32;
const PREFIX: &str = "v1:";

/// Seals with one AES-256 key.
pub struct AesGcmSealer {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl AesGcmSealer {
    /// `key` must be 32 bytes.
    pub fn new(key: &[u8]) -> anyhow::Result<Self> {
        anyhow::ensure!(
            key.len() == KEY_LEN,
            "a two-factor key must be {KEY_LEN} bytes"
        );
        let key = UnboundKey::new(&AES_256_GCM, key)
            .map_err(|_| anyhow::anyhow!("not an AES-256 key"))?;
        Ok(Self {
            key: LessSafeKey::new(key),
            rng: SystemRandom::new(),
        })
    }
}

impl SecretSealer for AesGcmSealer {
    fn seal(&self, plaintext: &[u8], context: &str) -> anyhow::Result<String> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| anyhow::anyhow!("no randomness for a nonce"))?;
        let mut sealed = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| anyhow::anyhow!("sealing failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(out)))
    }

    fn open(&self, sealed: &str, context: &str) -> anyhow::Result<Vec<u8>> {
        let body = sealed
            .strip_prefix(PREFIX)
            .ok_or_else(|| anyhow::anyhow!("unknown sealing format"))?;
        let bytes = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| anyhow::anyhow!("sealed value is not base64"))?;
        anyhow::ensure!(bytes.len() > NONCE_LEN, "sealed value too short");
        let (nonce, rest) = bytes.split_at(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| anyhow::anyhow!("bad nonce"))?;
        let mut rest = rest.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut rest)
            .map_err(|_| anyhow::anyhow!("sealed value does not open with this key and context"))?;
        Ok(plain.to_vec())
    }
}

/// Reads the 32-byte key from `path`, or creates one there (mode 0600) when
/// the file does not exist yet. Two processes starting at once agree: the
/// loser of the `create_new` race reads the winner's key.
pub fn load_or_create_sealing_key(path: &Path) -> io::Result<Vec<u8>> {
    match fs::read(path) {
        Ok(key) => return checked(key),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let mut key = vec![0u8; KEY_LEN];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| io::Error::other("no randomness for a key"))?;
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(&key)?;
            file.sync_all()?;
            Ok(key)
        }
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => checked(fs::read(path)?),
        Err(err) => Err(err),
    }
}

fn checked(key: Vec<u8>) -> io::Result<Vec<u8>> {
    if key.len() == KEY_LEN {
        Ok(key)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the two-factor key file must hold exactly {KEY_LEN} bytes"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_context() {
        // Given two sealers with different keys
        let sealer = AesGcmSealer::new(&[7u8; 32]).unwrap();
        let other = AesGcmSealer::new(&[8u8; 32]).unwrap();
        // When a secret is sealed twice for one user
        let a = sealer.seal(b"twenty bytes secret!", "user-1").unwrap();
        let b = sealer.seal(b"twenty bytes secret!", "user-1").unwrap();
        // Then the sealed texts differ (fresh nonces) and both open
        assert_ne!(a, b);
        assert!(!a.contains("twenty"));
        assert_eq!(sealer.open(&a, "user-1").unwrap(), b"twenty bytes secret!");
        // And another context, another key or a flipped byte fails
        assert!(sealer.open(&a, "user-2").is_err());
        assert!(other.open(&a, "user-1").is_err());
        let mut tampered = a.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(sealer.open(&tampered, "user-1").is_err());
        assert!(sealer.open("v0:abc", "user-1").is_err());
        assert!(AesGcmSealer::new(&[1u8; 16]).is_err());
    }

    #[test]
    fn the_key_file_is_created_once_private_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join(SEALING_KEY_FILE);
        let first = load_or_create_sealing_key(&path).unwrap();
        let again = load_or_create_sealing_key(&path).unwrap();
        assert_eq!(first.len(), 32);
        assert_eq!(first, again);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        fs::write(&path, b"short").unwrap();
        assert!(load_or_create_sealing_key(&path).is_err());
    }
}
