//! Use-case tier: internal jobs act as system principals whose rights are
//! the rules of `hearth.polar`, checked by the real policy. The poller may
//! read every device's endpoint and its tenant's profile, and nothing else;
//! the provisioner may provision, and poll nothing.

use std::sync::Arc;

use hearth_auth::{Argon2Hasher, JwtTokens, OsoAuthorizer};
use hearth_domain::model::{
    Device, DeviceProfile, DeviceScope, EmailAddress, Endpoint, Membership, Role, Tenant,
    TenantSlug, User,
};
use hearth_domain::ports::NoWatchInterest;
use hearth_domain::services::{Adapters, LoginLimits, Services};
use hearth_domain::{DeviceId, DomainError, ProfileId, SystemPrincipal, TenantId, UserId};
use hearth_inproc::bus::InProcessBus;
use hearth_inproc::directory::MemoryDirectory;
use hearth_inproc::documents::MemoryDocuments;
use hearth_inproc::readings::MemoryReadings;
use hearth_modbus::{ecl_comfort_310, GatewayConfig, ModbusGateway};

fn services() -> anyhow::Result<Services> {
    Ok(Services::new(
        Adapters {
            directory: Arc::new(MemoryDirectory::new()),
            documents: Arc::new(MemoryDocuments::new()),
            readings: Arc::new(MemoryReadings::new()),
            live: Arc::new(InProcessBus::new()),
            // Nothing polls here, so nobody needs to know who watches.
            watch: Arc::new(NoWatchInterest),
            field: Arc::new(ModbusGateway::new(GatewayConfig::default())),
            authorizer: Arc::new(OsoAuthorizer::new()?),
            passwords: Arc::new(Argon2Hasher::fast_for_tests()?),
            tokens: Arc::new(JwtTokens::new(&[7u8; 64], chrono::Duration::hours(1))?),
        },
        LoginLimits::default(),
    ))
}

fn tenant(slug: &str) -> anyhow::Result<Tenant> {
    Ok(Tenant {
        id: TenantId::new(),
        slug: TenantSlug::new(slug)?,
        name: slug.to_uppercase(),
    })
}

fn device(tenant: TenantId, name: &str, profile: &str) -> anyhow::Result<Device> {
    Ok(Device {
        id: DeviceId::new(),
        tenant_id: tenant,
        area_id: None,
        name: name.into(),
        profile_id: ProfileId::new(profile)?,
        endpoint: Endpoint::new("127.0.0.1", 1502, 1)?,
    })
}

#[tokio::test]
async fn the_poller_gets_every_device_with_its_own_tenants_profile_only() -> anyhow::Result<()> {
    // Given two tenants provisioned with a built-in profile, and acme's own
    // profile (stored by acme's admin) whose id a globex device names too
    let s = services()?;
    let provisioner = SystemPrincipal::provisioner();
    let (acme, globex) = (tenant("acme")?, tenant("globex")?);
    s.provisioning.create_tenant(&provisioner, &acme).await?;
    s.provisioning.create_tenant(&provisioner, &globex).await?;
    let builtin = ecl_comfort_310();
    s.provisioning
        .put_builtin_profile(&provisioner, &builtin)
        .await?;
    let own = DeviceProfile {
        id: ProfileId::new("acme.own")?,
        tenant_id: Some(acme.id),
        ..builtin.clone()
    };
    let admin = User {
        id: UserId::new(),
        email: EmailAddress::new("admin@acme.test")?,
        display_name: "Admin".into(),
        password_hash: None,
        disabled: false,
        tokens_valid_from: None,
    };
    s.provisioning
        .create_user(
            &provisioner,
            &admin,
            "secret-password",
            &[Membership {
                user_id: admin.id,
                tenant_id: acme.id,
                role: Role::Admin,
                scope: DeviceScope::All,
            }],
        )
        .await?;
    let session = s
        .auth
        .login("admin@acme.test", "secret-password", None, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let principal = s.auth.authenticate(&session.token).await?;
    s.profiles.put_profile(&principal, own.clone()).await?;
    let on_builtin = device(acme.id, "a1", builtin.id.as_str())?;
    let on_own = device(acme.id, "a2", "acme.own")?;
    let borrowing = device(globex.id, "g1", "acme.own")?;
    for d in [&on_builtin, &on_own, &borrowing] {
        s.provisioning.create_device(&provisioner, d).await?;
    }

    // When the poller asks for its targets
    let targets = s.ingest.poll_targets(&SystemPrincipal::poller()).await?;

    // Then it gets every device, each with the profile its tenant may see
    let profile_of = |id: DeviceId| {
        targets
            .iter()
            .find(|t| t.device().id == id)
            .map(|t| t.profile().map(|p| p.id.clone()))
    };
    assert_eq!(targets.len(), 3);
    assert_eq!(profile_of(on_builtin.id), Some(Some(builtin.id.clone())));
    assert_eq!(profile_of(on_own.id), Some(Some(own.id.clone())));
    assert_eq!(
        profile_of(borrowing.id),
        Some(None),
        "globex's device must not be polled by acme's profile"
    );
    Ok(())
}

#[tokio::test]
async fn each_system_role_is_refused_what_its_rules_do_not_give() -> anyhow::Result<()> {
    // Given a provisioned tenant with one device
    let s = services()?;
    let provisioner = SystemPrincipal::provisioner();
    let poller = SystemPrincipal::poller();
    let acme = tenant("acme")?;
    s.provisioning.create_tenant(&provisioner, &acme).await?;
    s.provisioning
        .create_device(
            &provisioner,
            &device(acme.id, "a1", ecl_comfort_310().id.as_str())?,
        )
        .await?;

    // When the poller tries to provision
    let refused = s
        .provisioning
        .create_tenant(&poller, &tenant("evil")?)
        .await;
    // Then it is Forbidden and nothing was created
    assert!(
        matches!(refused, Err(DomainError::Forbidden(_))),
        "{refused:?}"
    );
    assert!(s
        .provisioning
        .tenant_by_slug(&provisioner, "evil")
        .await?
        .is_none());
    let builtin = s
        .provisioning
        .put_builtin_profile(&poller, &ecl_comfort_310())
        .await;
    assert!(
        matches!(builtin, Err(DomainError::Forbidden(_))),
        "{builtin:?}"
    );

    // And when the provisioner asks for poll targets, it gets none
    let targets = s.ingest.poll_targets(&provisioner).await?;
    assert!(targets.is_empty(), "{targets:?}");
    // While the poller gets the device
    assert_eq!(s.ingest.poll_targets(&poller).await?.len(), 1);
    Ok(())
}
