//! Bytes → `JwtTokens::verify`, the check every request with a bearer
//! token runs before anything else. Anything but a token this service
//! issued must be refused, without a panic.

#![no_main]

use std::sync::OnceLock;

use hearth_auth::JwtTokens;
use hearth_domain::ports::TokenService;
use libfuzzer_sys::fuzz_target;

/// The secret the seed corpus's valid-looking token is signed with.
pub const SECRET: &[u8] = b"hearth-fuzz-secret-hearth-fuzz-secret!";

fn tokens() -> &'static JwtTokens {
    static TOKENS: OnceLock<JwtTokens> = OnceLock::new();
    TOKENS
        .get_or_init(|| JwtTokens::new(SECRET, chrono::Duration::hours(1)).expect("a valid secret"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let tokens = tokens();
    if let Ok(claims) = tokens.verify(token) {
        // Whatever verifies must be a token of ours, so it must round-trip.
        let (again, _) = tokens
            .issue(claims.user_id, claims.tenant_id, claims.session)
            .expect("issuing for verified claims");
        assert_eq!(
            tokens.verify(&again).map(|c| c.session),
            Ok(claims.session)
        );
    }
});
