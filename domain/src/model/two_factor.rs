//! Two-factor authentication of local accounts: TOTP (RFC 6238: HMAC-SHA-1,
//! six digits, 30-second steps) and single-use recovery codes, stored only
//! as hashes. The TOTP secret itself is kept sealed by the store's caller
//! (see [`SecretSealer`](crate::ports::SecretSealer)); this module only
//! computes and compares codes.

use std::fmt;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::ids::UserId;

/// Length of a TOTP step.
pub const TOTP_PERIOD_SECS: i64 = 30;

/// A TOTP shared secret: 160 random bits (RFC 4226's recommended length).
/// Never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret([u8; TotpSecret::LEN]);

impl TotpSecret {
    pub const LEN: usize = 20;

    pub fn generate() -> Self {
        use rand::RngCore;
        let mut bytes = [0u8; Self::LEN];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// `None` unless exactly [`Self::LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        <[u8; Self::LEN]>::try_from(bytes).ok().map(Self)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// RFC 4648 base32 without padding, as authenticator apps expect.
    pub fn to_base32(&self) -> String {
        data_encoding::BASE32_NOPAD.encode(&self.0)
    }

    /// Whether `code` is the code of a step within one step of `now`'s;
    /// the matching step, newest first (so a replayed older step is
    /// preferred last). Constant work per step: all three are computed.
    pub fn matching_step(&self, code: &str, now: DateTime<Utc>) -> Option<u64> {
        let code = code.trim();
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let wanted: u32 = code.parse().ok()?;
        let step = totp_step(now);
        let mut found = None;
        for candidate in [step.saturating_add(1), step, step.saturating_sub(1)] {
            if totp(&self.0, candidate, 6) == wanted && found.is_none() {
                found = Some(candidate);
            }
        }
        found
    }
}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(..)")
    }
}

/// The TOTP step (RFC 6238's `T`) of an instant: 30-second steps since the
/// epoch; instants before the epoch are step 0.
pub fn totp_step(at: DateTime<Utc>) -> u64 {
    u64::try_from(at.timestamp().div_euclid(TOTP_PERIOD_SECS)).unwrap_or(0)
}

/// The HOTP value (RFC 4226) of `secret` at counter `step`, `digits` long
/// (6 to 9).
pub fn totp(secret: &[u8], step: u64, digits: u32) -> u32 {
    // HMAC accepts keys of any length, so this never fails.
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(secret) else {
        return u32::MAX;
    };
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[19] & 0x0f);
    let binary = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    binary % 10u32.pow(digits.clamp(6, 9))
}

/// The `otpauth://` URI an authenticator app scans: label `Hearth:<email>`,
/// issuer `Hearth`, the defaults (SHA1, 6 digits, 30 s) stated explicitly.
pub fn otpauth_uri(email: &str, secret: &TotpSecret) -> String {
    format!(
        "otpauth://totp/Hearth:{}?secret={}&issuer=Hearth&algorithm=SHA1&digits=6&period=30",
        percent_encode(email),
        secret.to_base32()
    )
}

/// Percent-encodes everything but unreserved characters and `@`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A recovery code as stored: the hex SHA-256 of the user id and the
/// normalised code. Codes are 80 random bits, so a fast hash suffices (and
/// checking ten of them at login must not cost ten argon2 runs); the user id
/// in the hash keeps equal codes of two users apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecoveryCodeHash(String);

impl RecoveryCodeHash {
    /// Characters of a recovery code, without the separators.
    pub const CODE_LEN: usize = 16;

    /// A fresh code to show the user: 16 base32 characters in groups of four.
    pub fn generate_code() -> String {
        use rand::RngCore;
        let mut bytes = [0u8; 10];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let plain = data_encoding::BASE32_NOPAD.encode(&bytes).to_lowercase();
        plain
            .as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("-")
    }

    /// The hash of `code` for `user`, or `None` when `code` is not shaped
    /// like a recovery code (case, spaces and hyphens do not matter).
    pub fn of(user: UserId, code: &str) -> Option<Self> {
        let normalised: String = code
            .chars()
            .filter(|c| !matches!(c, '-' | ' '))
            .map(|c| c.to_ascii_lowercase())
            .collect();
        let shaped = normalised.len() == Self::CODE_LEN
            && normalised
                .bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b));
        shaped.then(|| {
            let mut hasher = Sha256::new();
            hasher.update(user.to_string().as_bytes());
            hasher.update(b":");
            hasher.update(normalised.as_bytes());
            Self(hex::encode(hasher.finalize()))
        })
    }

    /// A hash read back from a store (64 hex digits), or `None`.
    pub fn from_stored(hash: &str) -> Option<Self> {
        (hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| Self(hash.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A user's TOTP enrolment as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwoFactorEnrolment {
    pub user_id: UserId,
    /// The secret, sealed (encrypted and authenticated) for this user.
    pub sealed_secret: String,
    /// Confirmed with a first code: from then on login asks for codes.
    pub confirmed: bool,
    /// The last TOTP step a code was accepted for: codes of it and of
    /// earlier steps are refused, so each code works once.
    pub last_step: Option<u64>,
    /// The unused recovery codes.
    pub recovery_codes: Vec<RecoveryCodeHash>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238, appendix B: the SHA-1 seed and its 8-digit codes.
    const SEED: &[u8] = b"12345678901234567890";
    const VECTORS: [(i64, u32); 6] = [
        (59, 94_287_082),
        (1_111_111_109, 7_081_804),
        (1_111_111_111, 14_050_471),
        (1_234_567_890, 89_005_924),
        (2_000_000_000, 69_279_037),
        (20_000_000_000, 65_353_130),
    ];

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    #[test]
    fn codes_match_the_rfc_6238_test_vectors() {
        for (time, code) in VECTORS {
            // Given the RFC's time, When its step's code is computed
            let step = totp_step(at(time));
            // Then the 8-digit code is the RFC's and the 6-digit code its last six digits
            assert_eq!(totp(SEED, step, 8), code, "T = {time}");
            assert_eq!(totp(SEED, step, 6), code % 1_000_000, "T = {time}");
        }
    }

    #[test]
    fn a_code_matches_its_own_step_and_its_neighbours_only() {
        let secret = TotpSecret::from_bytes(SEED).unwrap();
        let now = at(1_111_111_111);
        let step = totp_step(now);
        let code = |s: u64| format!("{:06}", totp(SEED, s, 6));
        // Then the previous, current and next step are accepted as themselves
        for s in [step - 1, step, step + 1] {
            assert_eq!(secret.matching_step(&code(s), now), Some(s));
        }
        // And two steps away, or malformed input, is not
        assert_eq!(secret.matching_step(&code(step + 2), now), None);
        assert_eq!(secret.matching_step(&code(step - 2), now), None);
        for bad in ["", "12345", "1234567", "abcdef", "05047１"] {
            assert_eq!(secret.matching_step(bad, now), None, "{bad}");
        }
    }

    #[test]
    fn the_otpauth_uri_names_hearth_and_the_base32_secret() {
        let secret = TotpSecret::from_bytes(SEED).unwrap();
        let uri = otpauth_uri("ana+ops@acme.test", &secret);
        assert_eq!(
            uri,
            "otpauth://totp/Hearth:ana%2Bops@acme.test?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=Hearth&algorithm=SHA1&digits=6&period=30"
        );
    }

    #[test]
    fn recovery_codes_hash_per_user_and_ignore_case_and_separators() {
        let (ana, bob) = (UserId::new(), UserId::new());
        let code = RecoveryCodeHash::generate_code();
        assert_eq!(code.len(), 19, "{code}");
        let hash = RecoveryCodeHash::of(ana, &code).unwrap();
        assert_eq!(
            RecoveryCodeHash::of(ana, &code.to_uppercase().replace('-', " ")),
            Some(hash.clone())
        );
        assert_ne!(RecoveryCodeHash::of(bob, &code), Some(hash.clone()));
        assert_eq!(RecoveryCodeHash::from_stored(hash.as_str()), Some(hash));
        assert_eq!(RecoveryCodeHash::of(ana, "123456"), None);
        assert_eq!(RecoveryCodeHash::of(ana, "aaaa-aaaa-aaaa-aaa1"), None);
    }
}
