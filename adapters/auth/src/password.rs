//! The [`PasswordHasher`] port for local accounts: argon2id, PHC strings,
//! a fresh random salt per hash.

use argon2::password_hash::{
    PasswordHashString, PasswordHasher as _, PasswordVerifier as _, SaltString,
};
use argon2::{Algorithm, Argon2, Params, Version};
use hearth_domain::model::PasswordHash;
use hearth_domain::ports::PasswordHasher;
use rand::rngs::OsRng;
use rand::RngCore;

/// Salt length in bytes; 16 is what the argon2 RFC recommends.
const SALT_LEN: usize = 16;

/// Why a hasher could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PasswordSetupError {
    #[error("invalid argon2 parameters: {0}")]
    Params(argon2::Error),
    #[error("could not prepare the dummy hash: {0}")]
    Dummy(argon2::password_hash::Error),
}

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Cost {
    /// Memory per hash, in KiB.
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Argon2Cost {
    /// OWASP's argon2id recommendation (19 MiB, 2 passes, 1 lane), which is
    /// also argon2's default.
    pub const OWASP: Self = Self {
        memory_kib: Params::DEFAULT_M_COST,
        iterations: Params::DEFAULT_T_COST,
        parallelism: Params::DEFAULT_P_COST,
    };

    /// The cheapest argon2 accepts. Only for tests that hash many passwords;
    /// worthless against an attacker.
    pub const INSECURE_FOR_TESTS: Self = Self {
        memory_kib: Params::MIN_M_COST,
        iterations: Params::MIN_T_COST,
        parallelism: Params::MIN_P_COST,
    };
}

/// Argon2id hasher. Verification uses the parameters stored in each hash,
/// so hashes made under older costs keep verifying after a change.
pub struct Argon2Hasher {
    argon2: Argon2<'static>,
    /// A hash of a random password under the current cost, verified against
    /// for unknown users so they cost the same time as known ones.
    dummy: PasswordHashString,
}

impl std::fmt::Debug for Argon2Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Argon2Hasher")
            .field("params", self.argon2.params())
            .finish_non_exhaustive()
    }
}

impl Argon2Hasher {
    /// OWASP-recommended cost; what production uses.
    pub fn new() -> Result<Self, PasswordSetupError> {
        Self::with_cost(Argon2Cost::OWASP)
    }

    /// Minimal cost so tests can hash and verify quickly. Never use it to
    /// store real passwords.
    pub fn fast_for_tests() -> Result<Self, PasswordSetupError> {
        Self::with_cost(Argon2Cost::INSECURE_FOR_TESTS)
    }

    pub fn with_cost(cost: Argon2Cost) -> Result<Self, PasswordSetupError> {
        let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
            .map_err(PasswordSetupError::Params)?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut secret = [0u8; 32];
        OsRng.fill_bytes(&mut secret);
        let dummy = argon2
            .hash_password(&secret, &random_salt().map_err(PasswordSetupError::Dummy)?)
            .map_err(PasswordSetupError::Dummy)?
            .serialize();
        Ok(Self { argon2, dummy })
    }
}

fn random_salt() -> Result<SaltString, argon2::password_hash::Error> {
    let mut bytes = [0u8; SALT_LEN];
    OsRng.fill_bytes(&mut bytes);
    SaltString::encode_b64(&bytes)
}

impl PasswordHasher for Argon2Hasher {
    fn hash(&self, password: &str) -> Result<PasswordHash, anyhow::Error> {
        let salt = random_salt().map_err(|err| anyhow::anyhow!("could not make a salt: {err}"))?;
        let hash = self
            .argon2
            .hash_password(password.as_bytes(), &salt)
            .map_err(|err| anyhow::anyhow!("could not hash the password: {err}"))?;
        Ok(PasswordHash::from_phc(hash.to_string()))
    }

    fn verify(&self, password: &str, hash: &PasswordHash) -> bool {
        let parsed = match argon2::password_hash::PasswordHash::new(hash.as_phc()) {
            Ok(parsed) => parsed,
            Err(_) => {
                // A corrupt stored hash must not answer faster than a wrong
                // password would, or it marks the account as odd.
                self.verify_dummy(password);
                return false;
            }
        };
        self.argon2
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    }

    fn verify_dummy(&self, password: &str) {
        // The outcome is meaningless (the dummy's password is random and
        // forgotten); only the time spent matters.
        let _ = self
            .argon2
            .verify_password(password.as_bytes(), &self.dummy.password_hash());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher() -> Argon2Hasher {
        Argon2Hasher::fast_for_tests().expect("the test cost is valid")
    }

    #[test]
    fn verifies_the_right_password_and_refuses_a_wrong_one() {
        let hasher = hasher();
        let hash = hasher.hash("correct horse").expect("hashing works");
        assert!(
            hash.as_phc().starts_with("$argon2id$v=19$"),
            "{}",
            hash.as_phc()
        );
        assert!(hasher.verify("correct horse", &hash));
        assert!(!hasher.verify("correct horse ", &hash));
        assert!(!hasher.verify("", &hash));
    }

    #[test]
    fn salts_differ_between_hashes_of_one_password() {
        let hasher = hasher();
        let a = hasher.hash("same").expect("hashing works");
        let b = hasher.hash("same").expect("hashing works");
        assert_ne!(a, b);
        assert!(hasher.verify("same", &a) && hasher.verify("same", &b));
    }

    #[test]
    fn hashes_from_another_cost_still_verify() {
        let cheap = hasher();
        let other = Argon2Hasher::with_cost(Argon2Cost {
            memory_kib: 64,
            iterations: 2,
            parallelism: 1,
        })
        .expect("a valid cost");
        let hash = other.hash("pw").expect("hashing works");
        assert!(cheap.verify("pw", &hash));
    }

    #[test]
    fn a_corrupt_hash_never_verifies() {
        let hasher = hasher();
        assert!(!hasher.verify("pw", &PasswordHash::from_phc("not a phc string")));
        assert!(!hasher.verify("pw", &PasswordHash::from_phc("")));
        hasher.verify_dummy("anything");
    }

    #[test]
    fn the_default_cost_is_owasp_argon2id() {
        assert_eq!(
            Argon2Cost::OWASP,
            Argon2Cost {
                memory_kib: 19 * 1024,
                iterations: 2,
                parallelism: 1
            }
        );
        assert!(Argon2Hasher::with_cost(Argon2Cost {
            memory_kib: 0,
            iterations: 0,
            parallelism: 0
        })
        .is_err());
    }
}
