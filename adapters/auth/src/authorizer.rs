//! The [`Authorizer`] port served by oso evaluating `policy/hearth.polar`, the
//! one file that says who may do what (DESIGN.md, "Access model").

use hearth_domain::model::{DeviceScope, Role, WriteLevel};
use hearth_domain::ports::{
    Action, Authorizer, AuthzError, Resource, RoleCapabilities, SystemAction,
};
use hearth_domain::{Principal, SystemPrincipal};
use oso::{Oso, PolarClass, PolarValue};

/// The policy, compiled into the binary so a deployment cannot run with a
/// policy file that drifted from the code's vocabulary.
const POLICY: &str = include_str!("../policy/hearth.polar");

/// Every capability the policy may grant, in the column order of the
/// DESIGN.md table. [`capability`] maps each [`Action`] to one of these.
pub const CAPABILITIES: [&str; 7] = [
    "view",
    "acknowledge",
    "write_basic",
    "write_limited",
    "write_full",
    "manage_devices",
    "manage_users",
];

/// The policy's name for what an [`Action`] needs. `ManageTenant` maps to
/// `manage_tenant`, which the policy derives from `manage_devices` and the
/// membership's scope: it is no column of the role table, and a `grants`
/// fact naming it is refused at start-up like any unknown capability.
pub fn capability(action: Action) -> &'static str {
    match action {
        Action::View => "view",
        Action::AcknowledgeAlarms => "acknowledge",
        Action::WritePoint(WriteLevel::Basic) => "write_basic",
        Action::WritePoint(WriteLevel::Limited) => "write_limited",
        Action::WritePoint(WriteLevel::Full) => "write_full",
        Action::ManageDevices => "manage_devices",
        Action::ManageUsers => "manage_users",
        Action::ManageTenant => "manage_tenant",
    }
}

/// Why the authorizer could not be built. Any of these means the policy or
/// its registration is broken, so the server must not start.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("could not register the policy classes: {0}")]
    Register(#[source] Box<oso::OsoError>),
    #[error("could not load the policy: {0}")]
    Load(#[source] Box<oso::OsoError>),
    #[error("could not evaluate the policy: {0}")]
    Evaluate(#[source] Box<oso::OsoError>),
    /// A `grants` fact names a role or capability the code does not know; it
    /// would silently never match, so it is refused at start-up instead.
    #[error("the policy grants unknown capability `{capability}` to role `{role}`")]
    UnknownGrant { role: String, capability: String },
}

/// oso's error is large; boxing keeps every `Result` of this module small.
fn boxed(
    variant: fn(Box<oso::OsoError>) -> AuthSetupError,
) -> impl Fn(oso::OsoError) -> AuthSetupError {
    move |err| variant(Box::new(err))
}

/// The acting principal as the policy sees it. Ids travel as strings so the
/// policy compares plain values, never Rust types it cannot construct.
#[derive(Debug, Clone, PolarClass)]
#[polar(class_name = "Principal")]
struct PolarPrincipal {
    #[polar(attribute)]
    tenant_id: String,
    #[polar(attribute)]
    role: String,
    #[polar(attribute)]
    scope_all: bool,
    #[polar(attribute)]
    scoped_areas: Vec<String>,
    #[polar(attribute)]
    scoped_devices: Vec<String>,
}

impl From<&Principal> for PolarPrincipal {
    fn from(principal: &Principal) -> Self {
        let (scope_all, scoped_areas, scoped_devices) = match &principal.scope {
            DeviceScope::All => (true, Vec::new(), Vec::new()),
            DeviceScope::Restricted { areas, devices } => (
                false,
                areas.iter().map(ToString::to_string).collect(),
                devices.iter().map(ToString::to_string).collect(),
            ),
        };
        Self {
            tenant_id: principal.tenant_id.to_string(),
            role: principal.role.as_str().to_owned(),
            scope_all,
            scoped_areas,
            scoped_devices,
        }
    }
}

/// An internal job as the policy sees it: only its role.
#[derive(Debug, Clone, PolarClass)]
#[polar(class_name = "System")]
struct PolarSystem {
    #[polar(attribute)]
    role: String,
}

/// The built-in profiles: owned by no tenant.
#[derive(Debug, Clone, PolarClass)]
#[polar(class_name = "Builtins")]
struct PolarBuiltins;

/// The policy's name for what a [`SystemAction`] needs.
pub fn system_capability(action: SystemAction) -> &'static str {
    match action {
        SystemAction::ReadEndpoints => "read_endpoints",
        SystemAction::Provision => "provision",
    }
}

#[derive(Debug, Clone, PolarClass)]
#[polar(class_name = "Tenant")]
struct PolarTenant {
    #[polar(attribute)]
    tenant_id: String,
}

#[derive(Debug, Clone, PolarClass)]
#[polar(class_name = "Device")]
struct PolarDevice {
    #[polar(attribute)]
    tenant_id: String,
    #[polar(attribute)]
    device_id: String,
    /// Nearest area first; the policy only asks membership, not order.
    #[polar(attribute)]
    area_path: Vec<String>,
}

/// One cell of the role table: may `role` use `capability`?
pub type RoleTableCell = (Role, String, bool);

/// Decides with oso. `Oso` is `Send + Sync` (the crate asserts it and queries
/// share the knowledge base read-only), so no lock is needed around it.
pub struct OsoAuthorizer {
    oso: Oso,
    /// Derived once from the policy at start-up; the policy is compiled in
    /// and immutable, so the table cannot change afterwards.
    role_table: Vec<RoleTableCell>,
}

impl std::fmt::Debug for OsoAuthorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OsoAuthorizer").finish_non_exhaustive()
    }
}

impl OsoAuthorizer {
    /// Loads the policy, checks that its grants use only known roles and
    /// capabilities, and derives the role table.
    pub fn new() -> Result<Self, AuthSetupError> {
        Self::from_policy(POLICY)
    }

    /// Separate from [`OsoAuthorizer::new`] only so tests can feed broken
    /// policies; production always runs the compiled-in one.
    fn from_policy(policy: &str) -> Result<Self, AuthSetupError> {
        let mut oso = Oso::new();
        for class in [
            PolarPrincipal::get_polar_class(),
            PolarTenant::get_polar_class(),
            PolarDevice::get_polar_class(),
            PolarSystem::get_polar_class(),
            PolarBuiltins::get_polar_class(),
        ] {
            oso.register_class(class)
                .map_err(boxed(AuthSetupError::Register))?;
        }
        oso.load_str(policy).map_err(boxed(AuthSetupError::Load))?;
        check_grants(&oso)?;
        let role_table = derive_role_table(&oso)?;
        Ok(Self { oso, role_table })
    }

    /// Every (role, capability) pair in the order of DESIGN.md's table (roles
    /// as [`Role::ALL`], capabilities as [`CAPABILITIES`]) with whether the
    /// policy allows it, for the UI's "compare roles" view.
    pub fn role_table(&self) -> Vec<RoleTableCell> {
        self.role_table.clone()
    }
}

/// Refuses `grants` facts with a role or capability the code never sends.
fn check_grants(oso: &Oso) -> Result<(), AuthSetupError> {
    let query = oso
        .query_rule(
            "grants",
            (
                PolarValue::Variable("role".to_owned()),
                PolarValue::Variable("capability".to_owned()),
            ),
        )
        .map_err(boxed(AuthSetupError::Evaluate))?;
    for result in query {
        let result = result.map_err(boxed(AuthSetupError::Evaluate))?;
        let role: String = result
            .get_typed("role")
            .map_err(boxed(AuthSetupError::Evaluate))?;
        let capability: String = result
            .get_typed("capability")
            .map_err(boxed(AuthSetupError::Evaluate))?;
        if role.parse::<Role>().is_err() || !CAPABILITIES.contains(&capability.as_str()) {
            return Err(AuthSetupError::UnknownGrant { role, capability });
        }
    }
    Ok(())
}

/// Asks `allow` itself (not the `grants` facts) for a probe actor on its own
/// tenant, so the table shows what `authorize` would really decide.
fn derive_role_table(oso: &Oso) -> Result<Vec<RoleTableCell>, AuthSetupError> {
    const PROBE_TENANT: &str = "role-table-probe";
    let mut table = Vec::with_capacity(Role::ALL.len() * CAPABILITIES.len());
    for role in Role::ALL {
        for capability in CAPABILITIES {
            let actor = PolarPrincipal {
                tenant_id: PROBE_TENANT.to_owned(),
                role: role.as_str().to_owned(),
                scope_all: true,
                scoped_areas: Vec::new(),
                scoped_devices: Vec::new(),
            };
            let tenant = PolarTenant {
                tenant_id: PROBE_TENANT.to_owned(),
            };
            let allowed = oso
                .is_allowed(actor, capability, tenant)
                .map_err(boxed(AuthSetupError::Evaluate))?;
            table.push((role, capability.to_owned(), allowed));
        }
    }
    Ok(table)
}

impl Authorizer for OsoAuthorizer {
    fn authorize(
        &self,
        principal: &Principal,
        action: Action,
        resource: &Resource,
    ) -> Result<(), AuthzError> {
        self.decide(
            PolarPrincipal::from(principal),
            capability(action),
            resource,
        )
    }

    fn authorize_system(
        &self,
        system: &SystemPrincipal,
        action: SystemAction,
        resource: &Resource,
    ) -> Result<(), AuthzError> {
        let actor = PolarSystem {
            role: system.role().as_str().to_owned(),
        };
        self.decide(actor, system_capability(action), resource)
    }

    /// The derived table grouped per role: only the cells the policy allows.
    fn role_capabilities(&self) -> Vec<RoleCapabilities> {
        Role::ALL
            .into_iter()
            .map(|role| RoleCapabilities {
                role,
                capabilities: self
                    .role_table
                    .iter()
                    .filter(|(r, _, allowed)| *r == role && *allowed)
                    .map(|(_, capability, _)| capability.clone())
                    .collect(),
            })
            .collect()
    }
}

impl OsoAuthorizer {
    /// One policy query; any error is a policy failure, never an allow.
    fn decide(
        &self,
        actor: impl oso::ToPolar,
        capability: &str,
        resource: &Resource,
    ) -> Result<(), AuthzError> {
        let allowed = match resource {
            Resource::Tenant(tenant_id) => self.oso.is_allowed(
                actor,
                capability,
                PolarTenant {
                    tenant_id: tenant_id.to_string(),
                },
            ),
            Resource::Device {
                tenant_id,
                device_id,
                area_path,
            } => self.oso.is_allowed(
                actor,
                capability,
                PolarDevice {
                    tenant_id: tenant_id.to_string(),
                    device_id: device_id.to_string(),
                    area_path: area_path.iter().map(ToString::to_string).collect(),
                },
            ),
            Resource::Builtins => self.oso.is_allowed(actor, capability, PolarBuiltins),
        }
        .map_err(|err| AuthzError::Policy(err.to_string()))?;
        if allowed {
            Ok(())
        } else {
            Err(AuthzError::Denied)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_domain::ids::{AreaId, DeviceId, TenantId, UserId};
    use hearth_domain::model::EmailAddress;

    const ALL_ACTIONS: [Action; 7] = [
        Action::View,
        Action::AcknowledgeAlarms,
        Action::WritePoint(WriteLevel::Basic),
        Action::WritePoint(WriteLevel::Limited),
        Action::WritePoint(WriteLevel::Full),
        Action::ManageDevices,
        Action::ManageUsers,
    ];

    fn authorizer() -> OsoAuthorizer {
        OsoAuthorizer::new().expect("the compiled-in policy loads")
    }

    fn principal(tenant_id: TenantId, role: Role, scope: DeviceScope) -> Principal {
        Principal {
            user_id: UserId::new(),
            email: EmailAddress::new("someone@acme.test").expect("a valid test address"),
            tenant_id,
            role,
            scope,
        }
    }

    fn device(tenant_id: TenantId, device_id: DeviceId, area_path: Vec<AreaId>) -> Resource {
        Resource::Device {
            tenant_id,
            device_id,
            area_path,
        }
    }

    #[test]
    fn role_table_derived_from_the_policy_is_the_design_table() {
        // Copied by hand from DESIGN.md, "Access model"; columns are
        // view, acknowledge, write_basic, write_limited, write_full,
        // manage_devices, manage_users.
        let expected: [(Role, [bool; 7]); 5] = [
            (Role::Admin, [true, true, true, true, true, true, true]),
            (Role::Full, [true, true, true, true, true, true, false]),
            (Role::Limited, [true, true, true, true, false, false, false]),
            (Role::Basic, [true, true, true, false, false, false, false]),
            (
                Role::ReadOnly,
                [true, false, false, false, false, false, false],
            ),
        ];
        let expected: Vec<RoleTableCell> = expected
            .into_iter()
            .flat_map(|(role, row)| {
                CAPABILITIES
                    .into_iter()
                    .zip(row)
                    .map(move |(capability, allowed)| (role, capability.to_owned(), allowed))
            })
            .collect();
        assert_eq!(authorizer().role_table(), expected);
    }

    #[test]
    fn a_grant_with_a_typo_stops_start_up() {
        let typo = format!("{POLICY}\ngrants(\"full\", \"manage_user\");\n");
        assert!(matches!(
            OsoAuthorizer::from_policy(&typo),
            Err(AuthSetupError::UnknownGrant { role, capability })
                if role == "full" && capability == "manage_user"
        ));
        let unknown_role = format!("{POLICY}\ngrants(\"owner\", \"view\");\n");
        assert!(matches!(
            OsoAuthorizer::from_policy(&unknown_role),
            Err(AuthSetupError::UnknownGrant { .. })
        ));
        assert!(matches!(
            OsoAuthorizer::from_policy("allow(x, y, z) if"),
            Err(AuthSetupError::Load(_))
        ));
    }

    #[test]
    fn authorize_agrees_with_the_role_table_on_tenant_and_in_scope_device() {
        let authz = authorizer();
        let tenant = TenantId::new();
        let table = authz.role_table();
        for role in Role::ALL {
            let who = principal(tenant, role, DeviceScope::All);
            for action in ALL_ACTIONS {
                let expected = table
                    .iter()
                    .find(|(r, c, _)| *r == role && c == capability(action))
                    .map(|(_, _, allowed)| *allowed)
                    .expect("every action has a column");
                let on_tenant = authz
                    .authorize(&who, action, &Resource::Tenant(tenant))
                    .is_ok();
                let on_device = authz
                    .authorize(&who, action, &device(tenant, DeviceId::new(), vec![]))
                    .is_ok();
                assert_eq!(on_tenant, expected, "{role} {action:?} on tenant");
                assert_eq!(on_device, expected, "{role} {action:?} on device");
            }
        }
    }

    #[test]
    fn every_role_of_one_tenant_is_denied_everything_on_another() {
        let authz = authorizer();
        let (tenant_a, tenant_b) = (TenantId::new(), TenantId::new());
        let (area_b, device_b) = (AreaId::new(), DeviceId::new());
        // Even a scope that names tenant B's area and device must not help.
        let scopes = [
            DeviceScope::All,
            DeviceScope::Restricted {
                areas: vec![area_b],
                devices: vec![device_b],
            },
        ];
        let resources = [
            Resource::Tenant(tenant_b),
            device(tenant_b, device_b, vec![area_b]),
            device(tenant_b, DeviceId::new(), vec![]),
        ];
        for role in Role::ALL {
            for scope in &scopes {
                let who = principal(tenant_a, role, scope.clone());
                for action in ALL_ACTIONS {
                    for resource in &resources {
                        assert!(
                            matches!(
                                authz.authorize(&who, action, resource),
                                Err(AuthzError::Denied)
                            ),
                            "{role} of tenant A did {action:?} on {resource:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn restricted_scope_covers_area_subtrees_and_single_devices_only() {
        let authz = authorizer();
        let tenant = TenantId::new();
        let (site, building, plant_room, other_building) =
            (AreaId::new(), AreaId::new(), AreaId::new(), AreaId::new());
        let single = DeviceId::new();
        let who = principal(
            tenant,
            Role::Limited,
            DeviceScope::Restricted {
                areas: vec![building],
                devices: vec![single],
            },
        );
        let view = |resource: &Resource| authz.authorize(&who, Action::View, resource).is_ok();

        // In the granted area, directly and deeper in its subtree.
        assert!(view(&device(tenant, DeviceId::new(), vec![building, site])));
        assert!(view(&device(
            tenant,
            DeviceId::new(),
            vec![plant_room, building, site]
        )));
        // The single device, wherever it sits.
        assert!(view(&device(tenant, single, vec![other_building, site])));
        assert!(view(&device(tenant, single, vec![])));
        // Not above the granted area, not beside it, not without an area.
        assert!(!view(&device(tenant, DeviceId::new(), vec![site])));
        assert!(!view(&device(
            tenant,
            DeviceId::new(),
            vec![other_building, site]
        )));
        assert!(!view(&device(tenant, DeviceId::new(), vec![])));

        // Scope narrows devices; the role still bounds actions on them.
        let in_scope = device(tenant, DeviceId::new(), vec![building]);
        let limited_write = Action::WritePoint(WriteLevel::Limited);
        let full_write = Action::WritePoint(WriteLevel::Full);
        assert!(authz.authorize(&who, limited_write, &in_scope).is_ok());
        assert!(authz.authorize(&who, full_write, &in_scope).is_err());
        let out_of_scope = device(tenant, DeviceId::new(), vec![other_building]);
        assert!(authz.authorize(&who, limited_write, &out_of_scope).is_err());
    }

    #[test]
    fn an_empty_restricted_scope_sees_no_device() {
        let authz = authorizer();
        let tenant = TenantId::new();
        let nothing = DeviceScope::Restricted {
            areas: vec![],
            devices: vec![],
        };
        for role in [Role::Full, Role::Limited, Role::Basic, Role::ReadOnly] {
            let who = principal(tenant, role, nothing.clone());
            let resource = device(tenant, DeviceId::new(), vec![AreaId::new()]);
            assert!(
                authz.authorize(&who, Action::View, &resource).is_err(),
                "{role}"
            );
            // Tenant-wide view (listings) still works: the store filters them.
            assert!(authz
                .authorize(&who, Action::View, &Resource::Tenant(tenant))
                .is_ok());
        }
    }

    #[test]
    fn admin_ignores_a_stored_restricted_scope() {
        let authz = authorizer();
        let tenant = TenantId::new();
        let who = principal(
            tenant,
            Role::Admin,
            DeviceScope::Restricted {
                areas: vec![AreaId::new()],
                devices: vec![],
            },
        );
        let elsewhere = device(tenant, DeviceId::new(), vec![AreaId::new()]);
        for action in ALL_ACTIONS {
            assert!(
                authz.authorize(&who, action, &elsewhere).is_ok(),
                "{action:?}"
            );
        }
    }

    #[test]
    fn system_roles_have_exactly_the_rights_their_rules_give() {
        // Given the policy and a device and tenant of any tenant
        let authz = authorizer();
        let tenant = TenantId::new();
        let any_device = device(tenant, DeviceId::new(), vec![AreaId::new()]);
        let the_tenant = Resource::Tenant(tenant);
        let (poller, provisioner) = (SystemPrincipal::poller(), SystemPrincipal::provisioner());
        let may = |who: &SystemPrincipal, action, resource: &Resource| {
            authz.authorize_system(who, action, resource).is_ok()
        };

        // Then the poller reads every device's endpoint and nothing else
        assert!(may(&poller, SystemAction::ReadEndpoints, &any_device));
        assert!(!may(&poller, SystemAction::Provision, &the_tenant));
        assert!(!may(&poller, SystemAction::Provision, &Resource::Builtins));
        assert!(!may(&poller, SystemAction::ReadEndpoints, &the_tenant));
        // And the provisioner provisions tenants and built-ins but polls nothing
        assert!(may(&provisioner, SystemAction::Provision, &the_tenant));
        assert!(may(
            &provisioner,
            SystemAction::Provision,
            &Resource::Builtins
        ));
        assert!(!may(&provisioner, SystemAction::Provision, &any_device));
        assert!(!may(&provisioner, SystemAction::ReadEndpoints, &any_device));
        // And no user action is open to a system role through the user rules
        for action in ALL_ACTIONS {
            for who in [&poller, &provisioner] {
                let name = capability(action);
                let allowed = authz
                    .oso
                    .is_allowed(
                        PolarSystem {
                            role: who.role().as_str().to_owned(),
                        },
                        name,
                        PolarTenant {
                            tenant_id: tenant.to_string(),
                        },
                    )
                    .unwrap_or(true);
                assert!(!allowed, "{who:?} must not get user capability {name}");
            }
        }
    }

    #[test]
    fn users_never_get_system_capabilities() {
        // Given an admin of the tenant with every device in scope
        let authz = authorizer();
        let tenant = TenantId::new();
        let admin = principal(tenant, Role::Admin, DeviceScope::All);
        // Then the system capabilities are no user's, on any resource
        for name in ["read_endpoints", "provision"] {
            for resource in [
                Resource::Tenant(tenant),
                device(tenant, DeviceId::new(), vec![]),
            ] {
                assert!(
                    authz
                        .decide(PolarPrincipal::from(&admin), name, &resource)
                        .is_err(),
                    "an admin must not get `{name}` on {resource:?}"
                );
            }
        }
    }

    #[test]
    fn managing_the_tenant_needs_manage_devices_and_an_unscoped_membership() {
        let authz = authorizer();
        let tenant = TenantId::new();
        let area_only = DeviceScope::Restricted {
            areas: vec![AreaId::new()],
            devices: vec![],
        };
        let device_only = DeviceScope::Restricted {
            areas: vec![],
            devices: vec![DeviceId::new()],
        };
        let may = |role, scope: &DeviceScope| {
            authz
                .authorize(
                    &principal(tenant, role, scope.clone()),
                    Action::ManageTenant,
                    &Resource::Tenant(tenant),
                )
                .is_ok()
        };
        // Admin always (a stored scope does not narrow an admin); Full only unscoped.
        for scope in [&DeviceScope::All, &area_only, &device_only] {
            assert!(may(Role::Admin, scope), "admin, {scope:?}");
        }
        assert!(may(Role::Full, &DeviceScope::All));
        assert!(!may(Role::Full, &area_only), "a scoped Full guest");
        assert!(
            !may(Role::Full, &device_only),
            "a Full member with single devices"
        );
        // Roles without manage_devices never, whatever the scope.
        for role in [Role::Limited, Role::Basic, Role::ReadOnly] {
            assert!(!may(role, &DeviceScope::All), "{role}");
        }
        // Not on another tenant, and not through a device resource.
        let admin = principal(tenant, Role::Admin, DeviceScope::All);
        assert!(authz
            .authorize(
                &admin,
                Action::ManageTenant,
                &Resource::Tenant(TenantId::new())
            )
            .is_err());
        assert!(authz
            .authorize(
                &admin,
                Action::ManageTenant,
                &device(tenant, DeviceId::new(), vec![])
            )
            .is_err());
        // And the scoped Full guest still manages devices in its scope.
        let guest = principal(tenant, Role::Full, area_only);
        assert!(authz
            .authorize(&guest, Action::ManageDevices, &Resource::Tenant(tenant))
            .is_ok());
    }

    #[test]
    fn manage_tenant_cannot_be_granted_as_a_fact() {
        // A grant would let scoped members through the generic tenant rule.
        let granted = format!("{POLICY}\ngrants(\"full\", \"manage_tenant\");\n");
        assert!(matches!(
            OsoAuthorizer::from_policy(&granted),
            Err(AuthSetupError::UnknownGrant { capability, .. }) if capability == "manage_tenant"
        ));
    }

    #[test]
    fn the_authorizer_can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<OsoAuthorizer>();

        let authz = std::sync::Arc::new(authorizer());
        let tenant = TenantId::new();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let authz = authz.clone();
                std::thread::spawn(move || {
                    let who = principal(tenant, Role::Basic, DeviceScope::All);
                    (0..50).all(|_| {
                        authz
                            .authorize(&who, Action::View, &Resource::Tenant(tenant))
                            .is_ok()
                    })
                })
            })
            .collect();
        for handle in handles {
            assert!(handle.join().expect("worker thread finished"));
        }
    }

    /// Rough cost of one decision; run with
    /// `cargo test -p hearth-auth --release -- --ignored --nocapture authorize_cost`.
    #[test]
    #[ignore = "timing report, not a check"]
    fn authorize_cost() {
        let authz = authorizer();
        let tenant = TenantId::new();
        let areas: Vec<AreaId> = (0..5).map(|_| AreaId::new()).collect();
        let who = principal(
            tenant,
            Role::Limited,
            DeviceScope::Restricted {
                areas: vec![areas[3]],
                devices: (0..5).map(|_| DeviceId::new()).collect(),
            },
        );
        let cases = [
            ("tenant view", Resource::Tenant(tenant)),
            (
                "device via area",
                device(tenant, DeviceId::new(), areas.clone()),
            ),
            (
                "device denied",
                device(tenant, DeviceId::new(), vec![AreaId::new()]),
            ),
        ];
        for (name, resource) in &cases {
            for _ in 0..100 {
                let _ = authz.authorize(&who, Action::View, resource);
            }
            let runs = 2_000u32;
            let start = std::time::Instant::now();
            for _ in 0..runs {
                let _ = authz.authorize(&who, Action::View, resource);
            }
            println!("authorize ({name}): {:?} per call", start.elapsed() / runs);
        }
    }
}
