//! Bytes → the GraphQL request path as an anonymous HTTP client drives it:
//! JSON body decoding (or, when the bytes are not a JSON request, the bytes
//! as the query text), cost limits, parsing, validation and execution
//! against the real schema on in-memory adapters.
//!
//! Beyond "no panic": every error must carry a code and a bounded message.

#![no_main]

use std::sync::{Arc, OnceLock};

use async_graphql::Executor;
use hearth::api::error::MAX_ERROR_MESSAGE_CHARS;
use hearth::api::{build_schema, Caller, CodedSchema};
use hearth_auth::{Argon2Hasher, JwtTokens, OsoAuthorizer};
use hearth_domain::services::{Adapters, LoginLimits, Services};
use hearth_inproc::bus::InProcessBus;
use hearth_inproc::directory::MemoryDirectory;
use hearth_inproc::documents::MemoryDocuments;
use hearth_inproc::readings::MemoryReadings;
use hearth_modbus::{GatewayConfig, ModbusGateway};
use libfuzzer_sys::fuzz_target;
use tokio::runtime::Runtime;

struct Target {
    runtime: Runtime,
    schema: CodedSchema,
}

/// Built once: the runtime, the stores and the schema (oso loads the
/// policy, which is far too slow to do per input).
fn target() -> &'static Target {
    static TARGET: OnceLock<Target> = OnceLock::new();
    TARGET.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let schema = runtime.block_on(async {
            let bus = Arc::new(InProcessBus::new());
            let adapters = Adapters {
                directory: Arc::new(MemoryDirectory::new()),
                documents: Arc::new(MemoryDocuments::new()),
                readings: Arc::new(MemoryReadings::new()),
                live: bus.clone(),
                watch: bus,
                field: Arc::new(ModbusGateway::new(GatewayConfig::default())),
                authorizer: Arc::new(OsoAuthorizer::new().expect("the policy loads")),
                // Anonymous logins still check a dummy hash; keep it cheap.
                passwords: Arc::new(Argon2Hasher::fast_for_tests().expect("argon2")),
                tokens: Arc::new(
                    JwtTokens::new(&[7u8; 32], chrono::Duration::hours(1)).expect("a secret"),
                ),
            };
            CodedSchema::new(build_schema(Services::new(adapters, LoginLimits::default())).finish())
        });
        Target { runtime, schema }
    })
}

fuzz_target!(|data: &[u8]| {
    let request = match hearth::http_request::from_json(data) {
        Ok(request) => request,
        Err(_) => match std::str::from_utf8(data) {
            Ok(query) => async_graphql::Request::new(query),
            Err(_) => return,
        },
    };
    let target = target();
    let response = target
        .runtime
        .block_on(target.schema.execute(request.data(Caller::Anonymous)));
    for error in &response.errors {
        let code = error.extensions.as_ref().and_then(|e| e.get("code"));
        assert!(code.is_some(), "an error without a code: {error:?}");
        assert!(
            error.message.chars().count() <= MAX_ERROR_MESSAGE_CHARS + 1,
            "an unbounded message: {} characters",
            error.message.chars().count()
        );
    }
});
