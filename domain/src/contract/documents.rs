//! Contract suite for the `documents` port: profile round trips,
//! replace-on-put and tenant isolation of profile listings.

use crate::error::StoreError;
use crate::ids::{PointKey, ProfileId, TenantId};
use crate::model::{DeviceProfile, FieldAddress, PointDefinition, WriteLevel};
use crate::ports::DocumentStore;

fn key(value: &str) -> PointKey {
    PointKey::new(value).expect("contract point keys are valid")
}

fn id(value: &str) -> ProfileId {
    ProfileId::new(value).expect("contract profile ids are valid")
}

/// A profile whose every field differs from its default, so a store that
/// drops or defaults a field fails the round trip.
fn profile(profile_id: &str, tenant_id: Option<TenantId>, name: &str) -> DeviceProfile {
    DeviceProfile {
        id: id(profile_id),
        tenant_id,
        name: name.to_owned(),
        poll_interval_ms: 2_500,
        live_poll_interval_ms: None,
        points: vec![
            PointDefinition {
                key: key("room_setpoint_comfort"),
                name: "Room setpoint (comfort)".into(),
                address: address(serde_json::json!({
                    "table": "holding", "address": 11_178, "data_type": "i16",
                    "word_order": "low_first", "scale": 0.1, "offset": -0.5,
                })),
                unit: "°C".into(),
                writable: true,
                write_level: WriteLevel::Basic,
                min: Some(10.0),
                max: Some(30.0),
                options: Vec::new(),
                plausible_min: None,
                plausible_max: None,
            },
            PointDefinition {
                key: key("outdoor"),
                name: "Outdoor temperature S1".into(),
                // Another protocol's address: the store keeps whatever it is.
                address: address(serde_json::json!({
                    "object": "analog-input:3", "nested": { "priority": [8, 16] },
                })),
                unit: "°C".into(),
                writable: false,
                write_level: WriteLevel::Full,
                min: None,
                max: None,
                options: Vec::new(),
                plausible_min: None,
                plausible_max: None,
            },
        ],
    }
}

/// A field address as the adapter would write it; the store must keep it
/// exactly, nested values included.
fn address(value: serde_json::Value) -> FieldAddress {
    match value {
        serde_json::Value::Object(map) => FieldAddress(map),
        _ => FieldAddress::default(),
    }
}

fn ids(profiles: &[DeviceProfile]) -> Vec<String> {
    profiles.iter().map(|p| p.id.as_str().to_owned()).collect()
}

/// Checks every promise of [`DocumentStore`] against an empty store.
pub async fn documents_contract(store: &dyn DocumentStore) {
    let tenant_a = TenantId::new();
    let tenant_b = TenantId::new();
    let tenant_c = TenantId::new();

    // Given an empty store
    assert_eq!(
        store
            .profile(tenant_a, &id("nope"))
            .await
            .expect("profile() on an empty store"),
        None,
        "an unknown profile id must read as None"
    );
    assert!(
        store
            .profiles(tenant_a)
            .await
            .expect("profiles() on an empty store")
            .is_empty(),
        "an empty store must list no profiles"
    );

    // When a built-in and one profile per tenant are stored (ids chosen so
    // insertion order differs from id order)
    let builtin = profile("m-builtin", None, "Built-in ECL 310");
    let of_a = profile("z-acme", Some(tenant_a), "Acme custom");
    let of_a_2 = profile("a-acme", Some(tenant_a), "Acme other");
    let of_b = profile("k-globex", Some(tenant_b), "Globex custom");
    for p in [&of_a, &builtin, &of_b, &of_a_2] {
        store
            .put_profile(p)
            .await
            .expect("put_profile of a valid profile");
    }

    // Then each reads back exactly as written
    for p in [&builtin, &of_a, &of_a_2, &of_b] {
        let owner = p.tenant_id.unwrap_or(tenant_c);
        let read = store
            .profile(owner, &p.id)
            .await
            .expect("profile() after put");
        assert_eq!(
            read.as_ref(),
            Some(p),
            "profile `{}` must round-trip unchanged",
            p.id
        );
    }

    // And listings hold built-ins plus the tenant's own, ordered by id
    let listed_a = store.profiles(tenant_a).await.expect("profiles(A)");
    assert_eq!(
        ids(&listed_a),
        vec!["a-acme", "m-builtin", "z-acme"],
        "profiles(A) must be the built-ins plus A's own, ordered by id"
    );
    assert_eq!(
        listed_a,
        vec![of_a_2.clone(), builtin.clone(), of_a.clone()],
        "profiles(A) must carry full documents"
    );
    let listed_b = store.profiles(tenant_b).await.expect("profiles(B)");
    assert_eq!(
        ids(&listed_b),
        vec!["k-globex", "m-builtin"],
        "profiles(B) must never include tenant A's profiles"
    );
    let listed_c = store.profiles(tenant_c).await.expect("profiles(C)");
    assert_eq!(
        ids(&listed_c),
        vec!["m-builtin"],
        "a tenant without profiles must see the built-ins only"
    );

    // Then another tenant's profile is never returned, exactly as if missing
    assert_eq!(
        store
            .profile(tenant_b, &of_a.id)
            .await
            .expect("profile(B, A's id)"),
        None,
        "profile() must not return another tenant's profile"
    );
    assert_eq!(
        store
            .profile(tenant_b, &builtin.id)
            .await
            .expect("profile(B, built-in)"),
        Some(builtin.clone()),
        "profile() must return built-ins to every tenant"
    );

    // When tenant B puts a profile under A's id, or over a built-in
    let mut hijack = of_a.clone();
    hijack.tenant_id = Some(tenant_b);
    hijack.name = "Globex took this".into();
    let mut over_builtin = builtin.clone();
    over_builtin.tenant_id = Some(tenant_b);
    for attempt in [&hijack, &over_builtin] {
        // Then it is a Conflict and the owner's profile is unchanged
        let refused = store.put_profile(attempt).await;
        assert!(
            matches!(refused, Err(StoreError::Conflict(_))),
            "put_profile over another owner's id `{}` must be a Conflict, got {refused:?}",
            attempt.id
        );
    }
    assert_eq!(
        store
            .profile(tenant_a, &of_a.id)
            .await
            .expect("profile(A) after a refused hijack"),
        Some(of_a.clone()),
        "a refused put_profile must leave the owner's profile as it was"
    );
    assert_eq!(
        store
            .profile(tenant_c, &builtin.id)
            .await
            .expect("built-in after a refused put"),
        Some(builtin.clone()),
        "a tenant must never replace a built-in"
    );

    // When a profile is put again under the same id (after being listed, so a
    // read cache must notice the change)
    let mut renamed = of_a.clone();
    renamed.name = "Acme custom v2".into();
    renamed.poll_interval_ms = 5_000;
    renamed.points.truncate(1);
    store
        .put_profile(&renamed)
        .await
        .expect("put_profile replacing an existing one");

    // Then it replaces the stored one everywhere
    assert_eq!(
        store
            .profile(tenant_a, &renamed.id)
            .await
            .expect("profile() after replace"),
        Some(renamed.clone()),
        "put_profile must replace the profile with the same id"
    );
    let relisted_a = store
        .profiles(tenant_a)
        .await
        .expect("profiles(A) after replace");
    assert_eq!(
        relisted_a,
        vec![of_a_2.clone(), builtin.clone(), renamed.clone()],
        "profiles() must show the replaced profile once, with its new content"
    );
    assert_eq!(
        ids(&store
            .profiles(tenant_b)
            .await
            .expect("profiles(B) after replace")),
        vec!["k-globex", "m-builtin"],
        "replacing A's profile must not change B's listing"
    );

    // When a new built-in appears after listings were read
    let builtin_2 = profile("b-builtin", None, "Built-in ECL 210");
    store
        .put_profile(&builtin_2)
        .await
        .expect("put_profile of a second built-in");

    // Then every tenant sees it
    assert_eq!(
        ids(&store
            .profiles(tenant_c)
            .await
            .expect("profiles(C) after a new built-in")),
        vec!["b-builtin", "m-builtin"],
        "a new built-in must be listed for every tenant"
    );
    assert_eq!(
        ids(&store
            .profiles(tenant_b)
            .await
            .expect("profiles(B) after a new built-in")),
        vec!["b-builtin", "k-globex", "m-builtin"],
        "a new built-in must be listed for every tenant, in id order"
    );
}
