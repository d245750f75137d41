//! The demo of DESIGN.md: tenants `acme` and `globex`, seven users with the
//! password `hearth-demo`, areas, and devices on simulated controllers.
//! Seeding is idempotent: an existing demo is left as it is.

use std::net::SocketAddr;

use anyhow::Context as _;
use hearth_domain::model::{
    Area, Device, DeviceScope, EmailAddress, Endpoint, Membership, Role, Tenant, TenantSlug, User,
};
use hearth_domain::services::ProvisioningService;
use hearth_domain::{AreaId, DeviceId, ProfileId, SystemPrincipal, TenantId, UserId};

pub const PASSWORD: &str = "hearth-demo";

/// A membership to create: tenant, role, device scope.
type Grant = (TenantId, Role, DeviceScope);

/// Devices per tenant: acme first, then globex.
const ACME_DEVICES: &[(&str, usize)] = &[
    ("N1 heating circuit", 1),
    ("N1 domestic hot water", 1),
    ("N2 heating circuit", 2),
    ("N2 floor heating", 2),
    ("Hospital main substation", 3),
    ("Hospital ward B", 3),
];
const GLOBEX_DEVICES: &[&str] = &[
    "Plant A boiler house",
    "Plant A office wing",
    "Plant B warehouse",
];

pub const DEVICE_COUNT: usize = ACME_DEVICES.len() + GLOBEX_DEVICES.len();

/// Seeds the demo unless tenant `acme` exists. `addresses` are the simulated
/// controllers' addresses, at least [`DEVICE_COUNT`] of them. Acts as the
/// provisioner system principal, so the policy decides what seeding may do.
pub async fn seed(
    provisioning: &ProvisioningService,
    addresses: &[SocketAddr],
) -> anyhow::Result<()> {
    anyhow::ensure!(
        addresses.len() >= DEVICE_COUNT,
        "not enough simulated controllers"
    );
    let system = SystemPrincipal::provisioner();
    let profile = hearth_modbus::ecl_comfort_310();
    if provisioning
        .tenant_by_slug(&system, "acme")
        .await?
        .is_some()
    {
        tracing::info!("Demo data present; not seeding again.");
        return Ok(());
    }
    let acme = tenant("acme", "ACME District Heating")?;
    let globex = tenant("globex", "Globex Facilities")?;
    provisioning.create_tenant(&system, &acme).await?;
    provisioning.create_tenant(&system, &globex).await?;

    let north = area(acme.id, None, "North district");
    let n1 = area(acme.id, Some(north.id), "Substation N1");
    let n2 = area(acme.id, Some(north.id), "Substation N2");
    let hospital = area(acme.id, None, "City hospital");
    let plant = area(globex.id, None, "Globex plants");
    for a in [&north, &n1, &n2, &hospital, &plant] {
        provisioning.create_area(&system, a).await?;
    }
    let acme_areas = [n1.id, n2.id, hospital.id];
    let mut addresses = addresses.iter();
    let mut next_endpoint = || -> anyhow::Result<Endpoint> {
        let addr = addresses
            .next()
            .context("not enough simulated controllers")?;
        Ok(Endpoint::new(addr.ip().to_string(), addr.port(), 1)?)
    };
    for (name, area_index) in ACME_DEVICES {
        let area = acme_areas.get(area_index - 1).copied();
        let device = device(acme.id, area, name, &profile.id, next_endpoint()?);
        provisioning.create_device(&system, &device).await?;
    }
    for name in GLOBEX_DEVICES {
        let device = device(
            globex.id,
            Some(plant.id),
            name,
            &profile.id,
            next_endpoint()?,
        );
        provisioning.create_device(&system, &device).await?;
    }

    let all = DeviceScope::All;
    let users: [(&str, &str, Vec<Grant>); 7] = [
        (
            "admin@acme.test",
            "Ada Admin",
            vec![(acme.id, Role::Admin, all.clone())],
        ),
        (
            "full@acme.test",
            "Fritz Full",
            vec![(acme.id, Role::Full, all.clone())],
        ),
        (
            "limited@acme.test",
            "Lina Limited",
            vec![(acme.id, Role::Limited, all.clone())],
        ),
        (
            "basic@acme.test",
            "Bruno Basic",
            vec![(acme.id, Role::Basic, all.clone())],
        ),
        (
            "readonly@acme.test",
            "Rita Readonly",
            vec![(acme.id, Role::ReadOnly, all.clone())],
        ),
        (
            "admin@globex.test",
            "Gina Globex",
            vec![(globex.id, Role::Admin, all.clone())],
        ),
        (
            "tech@service.test",
            "Theo Technician",
            vec![
                (
                    acme.id,
                    Role::Full,
                    DeviceScope::Restricted {
                        areas: vec![north.id],
                        devices: vec![],
                    },
                ),
                (globex.id, Role::Limited, all.clone()),
            ],
        ),
    ];
    for (email, name, memberships) in users {
        let user = User {
            id: UserId::new(),
            email: EmailAddress::new(email)?,
            display_name: name.to_string(),
            password_hash: None,
            disabled: false,
            tokens_valid_from: None,
        };
        let memberships: Vec<Membership> = memberships
            .into_iter()
            .map(|(tenant_id, role, scope)| Membership {
                user_id: user.id,
                tenant_id,
                role,
                scope,
            })
            .collect();
        provisioning
            .create_user(&system, &user, PASSWORD, &memberships)
            .await?;
    }
    tracing::info!(
        devices = DEVICE_COUNT,
        "Seeded the demo: tenants acme and globex, 7 users."
    );
    Ok(())
}

fn tenant(slug: &str, name: &str) -> anyhow::Result<Tenant> {
    Ok(Tenant {
        id: TenantId::new(),
        slug: TenantSlug::new(slug)?,
        name: name.to_string(),
    })
}

fn area(tenant_id: TenantId, parent_id: Option<AreaId>, name: &str) -> Area {
    Area {
        id: AreaId::new(),
        tenant_id,
        parent_id,
        name: name.to_string(),
    }
}

fn device(
    tenant_id: TenantId,
    area_id: Option<AreaId>,
    name: &str,
    profile: &ProfileId,
    endpoint: Endpoint,
) -> Device {
    Device {
        id: DeviceId::new(),
        tenant_id,
        area_id,
        name: name.to_string(),
        profile_id: profile.clone(),
        endpoint,
    }
}
