//! Identity and access adapters: the oso [`Authorizer`](hearth_domain::ports::Authorizer)
//! reading `policy/hearth.polar`, argon2id password hashing and HS256 bearer
//! tokens for local accounts, AES-256-GCM sealing of two-factor secrets, and OIDC bearer tokens of tenants' own identity
//! providers (`oidc`).

pub mod authorizer;
pub mod oidc;
pub mod password;
pub mod sealing;
pub mod token;

pub use authorizer::{capability, AuthSetupError, OsoAuthorizer, RoleTableCell, CAPABILITIES};
pub use oidc::{OidcProviderConfig, OidcSetupError, OidcVerifier};
pub use password::{Argon2Cost, Argon2Hasher, PasswordSetupError};
pub use sealing::{load_or_create_sealing_key, AesGcmSealer, SEALING_KEY_FILE};
pub use token::{load_or_create_secret, JwtTokens, TokenSetupError, MIN_SECRET_LEN, SECRET_FILE};
