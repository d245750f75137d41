//! End-to-end, the access matrix (issue 9, "Proof"): every GraphQL query,
//! mutation and subscription, enumerated from the SDL the code generates,
//! is called by every kind of caller (the five roles scoped to all devices
//! and to one area, the guest in both its tenants, the other tenant's admin,
//! no token and bad tokens) against a target in the caller's scope, one of
//! its tenant outside the scope, and one of the other tenant. Each answer
//! must be what DESIGN.md's role table says: allowed, or a typed
//! `FORBIDDEN`/`NOT_FOUND` (`UNAUTHENTICATED` without a good token), never
//! `INTERNAL`; and no response or error text may carry an id, name, email
//! or slug of a tenant the caller is not a member of.
//!
//! The expected outcome is derived here from [`TABLE`] (DESIGN.md's table,
//! copied by hand) and the field's [`Rule`], never from the policy file, so
//! a policy that disagrees with the design fails this test.
//!
//! ADDING A FIELD: a field in the schema that is missing here fails
//! `every_schema_field_is_classified`. Classify it with
//!   1. one line in [`MATRIX`]: `("Mutation.fooBar", Rule::…)`, and
//!   2. one entry in [`CASES`]: the operation, the targets it takes, what
//!      fresh object it needs (so a change never breaks later cases), and
//!      its variables from the resolved target (`Ctx`).
//! A [`MATRIX`] line for a field that no longer exists fails too.

// A test: a panic with its message is how a broken fixture fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_graphql::parser::types::{TypeKind, TypeSystemDefinition};
use futures::future::join_all;
use hearth_tests::{error_code, ws_connect, ws_next, ws_subscribe, Client, DemoServer, PASSWORD};
use serde_json::{json, Value};

// ------------------------------------------------------------ the design

/// The roles of DESIGN.md's access model, in the table's column order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Admin,
    Full,
    Limited,
    Basic,
    ReadOnly,
}

const ROLES: [Role; 5] = [
    Role::Admin,
    Role::Full,
    Role::Limited,
    Role::Basic,
    Role::ReadOnly,
];

impl Role {
    fn graphql(self) -> &'static str {
        match self {
            Role::Admin => "ADMIN",
            Role::Full => "FULL",
            Role::Limited => "LIMITED",
            Role::Basic => "BASIC",
            Role::ReadOnly => "READ_ONLY",
        }
    }
    fn column(self) -> usize {
        self as usize
    }
}

/// The rows of DESIGN.md's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cap {
    View,
    Acknowledge,
    WriteBasic,
    WriteLimited,
    WriteFull,
    ManageDevices,
    ManageUsers,
}

const Y: bool = true;
const N: bool = false;

/// DESIGN.md, "Access model", by hand: capability × (Admin, Full, Limited,
/// Basic, Read-only), with the names the `roles` query uses.
const TABLE: &[(Cap, &str, [bool; 5])] = &[
    (Cap::View, "view", [Y, Y, Y, Y, Y]),
    (Cap::Acknowledge, "acknowledge", [Y, Y, Y, Y, N]),
    (Cap::WriteBasic, "write_basic", [Y, Y, Y, Y, N]),
    (Cap::WriteLimited, "write_limited", [Y, Y, Y, N, N]),
    (Cap::WriteFull, "write_full", [Y, Y, N, N, N]),
    (Cap::ManageDevices, "manage_devices", [Y, Y, N, N, N]),
    (Cap::ManageUsers, "manage_users", [Y, N, N, N, N]),
];

fn role_has(role: Role, cap: Cap) -> bool {
    TABLE
        .iter()
        .any(|(c, _, cells)| *c == cap && cells[role.column()])
}

/// Who may call a field, in DESIGN.md's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// No token needed (login and the like).
    Public,
    /// Any signed-in caller, acting on themselves.
    Member,
    /// The target is a tenant: allowed where the caller is a member.
    Membership,
    /// The capability in the token's tenant; a target must be of that tenant.
    Tenant(Cap),
    /// The capability and a membership covering the whole tenant (Admin, or
    /// scope "all devices"): tenant-wide management.
    WholeTenant(Cap),
    /// The capability on one device, which must be in the caller's scope.
    Device(Cap),
    /// A listing: without a target the caller's scope exactly; filtered by a
    /// target (area or device), allowed when it is in scope, else refused.
    Filter(Cap),
}

/// Every field of the schema and its rule: ONE LINE PER FIELD.
const MATRIX: &[(&str, Rule)] = &[
    ("Query.me", Rule::Member),
    ("Query.users", Rule::Tenant(Cap::ManageUsers)),
    ("Query.roles", Rule::Tenant(Cap::View)),
    ("Query.areas", Rule::Filter(Cap::View)),
    ("Query.devices", Rule::Filter(Cap::View)),
    ("Query.device", Rule::Device(Cap::View)),
    ("Query.history", Rule::Device(Cap::View)),
    ("Query.historySeries", Rule::Device(Cap::View)),
    ("Query.auditLog", Rule::Filter(Cap::ManageDevices)),
    ("Query.profiles", Rule::Tenant(Cap::View)),
    ("Mutation.login", Rule::Public),
    ("Mutation.logout", Rule::Member),
    ("Mutation.refreshToken", Rule::Public),
    ("Mutation.switchTenant", Rule::Membership),
    ("Mutation.createUser", Rule::Tenant(Cap::ManageUsers)),
    ("Mutation.setMembership", Rule::Tenant(Cap::ManageUsers)),
    ("Mutation.removeMembership", Rule::Tenant(Cap::ManageUsers)),
    ("Mutation.addGuest", Rule::Tenant(Cap::ManageUsers)),
    ("Mutation.disableUser", Rule::Tenant(Cap::ManageUsers)),
    ("Mutation.enableUser", Rule::Tenant(Cap::ManageUsers)),
    ("Mutation.resetPassword", Rule::Tenant(Cap::ManageUsers)),
    ("Mutation.deleteUser", Rule::Tenant(Cap::ManageUsers)),
    ("Mutation.createArea", Rule::WholeTenant(Cap::ManageDevices)),
    ("Mutation.renameArea", Rule::WholeTenant(Cap::ManageDevices)),
    ("Mutation.moveArea", Rule::WholeTenant(Cap::ManageDevices)),
    ("Mutation.deleteArea", Rule::WholeTenant(Cap::ManageDevices)),
    (
        "Mutation.createDevice",
        Rule::WholeTenant(Cap::ManageDevices),
    ),
    (
        "Mutation.updateDevice",
        Rule::WholeTenant(Cap::ManageDevices),
    ),
    (
        "Mutation.deleteDevice",
        Rule::WholeTenant(Cap::ManageDevices),
    ),
    ("Mutation.writeParameter", Rule::Device(Cap::WriteBasic)),
    ("Mutation.putProfile", Rule::WholeTenant(Cap::ManageDevices)),
    ("Subscription.liveValues", Rule::Filter(Cap::View)),
    ("Subscription.deviceStatus", Rule::Filter(Cap::View)),
];

// ------------------------------------------------------------- the cases

/// What a case acts on. `In`: acme's North district (an area there, a
/// device there, a user of acme); `Out`: acme's City hospital, outside the
/// area-scoped callers' scope; `Other`: globex. Own or other tenant depends
/// on the caller: for globex's admin, `Other` is its own tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// No target: the caller's own tenant as a whole.
    None,
    In,
    Out,
    Other,
}

const NONE: &[Target] = &[Target::None];
const SCOPED: &[Target] = &[Target::In, Target::Out, Target::Other];
const LISTING: &[Target] = &[Target::None, Target::In, Target::Out, Target::Other];
const TENANTS: &[Target] = &[Target::In, Target::Other];

/// A fresh object a case needs when it is expected to succeed (a change to
/// a shared target would break later cases). Created by the target
/// tenant's admin; a case expected to be refused gets the shared target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fresh {
    Nothing,
    /// A new session of the caller (for `logout`).
    Session,
    /// A refresh token of the caller (`readonly@acme.test` without one).
    RefreshToken,
    /// A user of the target tenant.
    User,
    /// A user of a tenant the caller is not in (a guest to add).
    Guest,
    /// An empty area under the target area.
    Area,
    /// A device in the target area.
    Device,
}

/// What to verify in an allowed answer beyond "no error, data present".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Nothing,
    DeviceNames,
    AreaNames,
    RoleTable,
    MeTenant,
}

/// One request per (caller, target): the operation and its variables.
struct Case {
    field: &'static str,
    targets: &'static [Target],
    fresh: Fresh,
    /// Overrides the rule's capability (the write levels of `writeParameter`).
    level: Option<Cap>,
    check: Check,
    doc: &'static str,
    vars: fn(&Ctx) -> Value,
}

/// A target resolved for one request; empty strings where it has none.
struct Ctx {
    tenant_id: String,
    slug: String,
    device: String,
    area: String,
    /// The target area itself (the fresh area's parent).
    parent: String,
    user: String,
    email: String,
    token: String,
    profile: String,
    unique: String,
}

impl Ctx {
    fn opt(s: &str) -> Value {
        if s.is_empty() {
            Value::Null
        } else {
            json!(s)
        }
    }
    fn device_list(&self) -> Value {
        if self.device.is_empty() {
            json!([])
        } else {
            json!([self.device])
        }
    }
    fn device_input(&self) -> Value {
        json!({ "name": format!("Matrix device {}", self.unique), "areaId": Ctx::opt(&self.parent),
                "profileId": self.profile, "endpoint": { "host": "127.0.0.1", "port": 9, "unitId": 1 } })
    }
}

const HISTORY_FROM: &str = "2020-01-01T00:00:00Z";
const HISTORY_TO: &str = "2020-01-02T00:00:00Z";

macro_rules! case {
    ($field:literal, $targets:expr, $fresh:expr, $check:expr, $doc:literal, $vars:expr) => {
        Case {
            field: $field,
            targets: $targets,
            fresh: $fresh,
            level: None,
            check: $check,
            doc: $doc,
            vars: $vars,
        }
    };
}

/// One entry per field (more for a field with variants): how to call it.
const CASES: &[Case] = &[
    case!("Query.me", NONE, Fresh::Nothing, Check::MeTenant,
        "{ me { user { id email } tenant { id slug name } role memberships { tenant { id } role } } }",
        |_| json!({})),
    case!("Query.users", NONE, Fresh::Nothing, Check::Nothing,
        "{ users(first: 200) { totalCount nodes { id email displayName role scope { allDevices areaIds deviceIds } } } }",
        |_| json!({})),
    case!("Query.roles", NONE, Fresh::Nothing, Check::RoleTable,
        "{ roles { role capabilities } }", |_| json!({})),
    case!("Query.areas", NONE, Fresh::Nothing, Check::AreaNames,
        "{ areas { id name parentId } }", |_| json!({})),
    case!("Query.devices", LISTING, Fresh::Nothing, Check::DeviceNames,
        "query($a: ID) { devices(first: 200, areaId: $a) { totalCount nodes { id name area { id name } points { key value } } } }",
        |c| json!({ "a": Ctx::opt(&c.parent) })),
    case!("Query.device", SCOPED, Fresh::Nothing, Check::Nothing,
        "query($d: ID!) { device(id: $d) { id name area { id name } profileId points { key value } } }",
        |c| json!({ "d": c.device })),
    case!("Query.history", SCOPED, Fresh::Nothing, Check::Nothing,
        "query($d: ID!, $f: DateTime!, $t: DateTime!) { history(deviceId: $d, point: \"outdoor_temp\", from: $f, to: $t, bucketSeconds: 3600) { timestamp value } }",
        |c| json!({ "d": c.device, "f": HISTORY_FROM, "t": HISTORY_TO })),
    case!("Query.historySeries", SCOPED, Fresh::Nothing, Check::Nothing,
        "query($d: ID!, $f: DateTime!, $t: DateTime!) { historySeries(deviceId: $d, points: [\"outdoor_temp\"], from: $f, to: $t, bucketSeconds: 3600) { point buckets { timestamp value } } }",
        |c| json!({ "d": c.device, "f": HISTORY_FROM, "t": HISTORY_TO })),
    case!("Query.auditLog", LISTING, Fresh::Nothing, Check::Nothing,
        "query($d: ID) { auditLog(first: 1000, deviceId: $d) { edges { node { actorId action deviceId point outcome detail } } } }",
        |c| json!({ "d": Ctx::opt(&c.device) })),
    case!("Query.profiles", NONE, Fresh::Nothing, Check::Nothing,
        "{ profiles { id name builtIn } }", |_| json!({})),
    case!("Mutation.login", NONE, Fresh::Nothing, Check::Nothing,
        "mutation($e: String!, $p: String!, $t: ID) { login(email: $e, password: $p, tenantId: $t) { token tenant { id slug name } role } }",
        |c| json!({ "e": c.email, "p": PASSWORD, "t": c.tenant_id })),
    case!("Mutation.logout", NONE, Fresh::Session, Check::Nothing,
        "mutation { logout }", |_| json!({})),
    case!("Mutation.refreshToken", NONE, Fresh::RefreshToken, Check::Nothing,
        "mutation($r: String!) { refreshToken(token: $r) { token tenant { id slug name } } }",
        |c| json!({ "r": c.token })),
    case!("Mutation.switchTenant", TENANTS, Fresh::Nothing, Check::Nothing,
        "mutation($t: ID!) { switchTenant(tenantId: $t) { token tenant { id slug name } role } }",
        |c| json!({ "t": c.tenant_id })),
    case!("Mutation.createUser", SCOPED, Fresh::Nothing, Check::Nothing,
        "mutation($i: CreateUserInput!) { createUser(input: $i) { user { id email scope { areaIds } } } }",
        |c| json!({ "i": { "email": format!("matrix-{}@example.test", c.unique), "displayName": "Matrix user",
            "role": "READ_ONLY", "scope": { "allDevices": false, "areaIds": [c.parent] } } })),
    case!("Mutation.setMembership", TENANTS, Fresh::User, Check::Nothing,
        "mutation($u: ID!) { setMembership(userId: $u, role: BASIC, scope: { allDevices: true }) { id role } }",
        |c| json!({ "u": c.user })),
    case!("Mutation.removeMembership", TENANTS, Fresh::User, Check::Nothing,
        "mutation($u: ID!) { removeMembership(userId: $u) }", |c| json!({ "u": c.user })),
    case!("Mutation.addGuest", SCOPED, Fresh::Guest, Check::Nothing,
        "mutation($e: String!, $a: ID!) { addGuest(email: $e, role: READ_ONLY, scope: { allDevices: false, areaIds: [$a] }) { id email } }",
        |c| json!({ "e": c.email, "a": c.parent })),
    case!("Mutation.disableUser", TENANTS, Fresh::User, Check::Nothing,
        "mutation($u: ID!) { disableUser(userId: $u) { id disabled } }", |c| json!({ "u": c.user })),
    case!("Mutation.enableUser", TENANTS, Fresh::User, Check::Nothing,
        "mutation($u: ID!) { enableUser(userId: $u) { id disabled } }", |c| json!({ "u": c.user })),
    case!("Mutation.resetPassword", TENANTS, Fresh::User, Check::Nothing,
        "mutation($u: ID!) { resetPassword(userId: $u, password: \"matrix-password-reset-1\") { oneTimePassword } }",
        |c| json!({ "u": c.user })),
    case!("Mutation.deleteUser", TENANTS, Fresh::User, Check::Nothing,
        "mutation($u: ID!) { deleteUser(userId: $u) }", |c| json!({ "u": c.user })),
    case!("Mutation.createArea", SCOPED, Fresh::Nothing, Check::Nothing,
        "mutation($n: String!, $p: ID) { createArea(name: $n, parentId: $p) { id name parentId } }",
        |c| json!({ "n": format!("Matrix area {}", c.unique), "p": c.parent })),
    case!("Mutation.renameArea", SCOPED, Fresh::Area, Check::Nothing,
        "mutation($a: ID!, $n: String!) { renameArea(id: $a, name: $n) { id name } }",
        |c| json!({ "a": c.area, "n": format!("Matrix renamed {}", c.unique) })),
    case!("Mutation.moveArea", SCOPED, Fresh::Area, Check::Nothing,
        "mutation($a: ID!) { moveArea(id: $a) { id parentId } }", |c| json!({ "a": c.area })),
    case!("Mutation.deleteArea", SCOPED, Fresh::Area, Check::Nothing,
        "mutation($a: ID!) { deleteArea(id: $a) }", |c| json!({ "a": c.area })),
    case!("Mutation.createDevice", SCOPED, Fresh::Nothing, Check::Nothing,
        "mutation($i: DeviceInput!) { createDevice(input: $i) { id name } }",
        |c| json!({ "i": c.device_input() })),
    case!("Mutation.updateDevice", SCOPED, Fresh::Device, Check::Nothing,
        "mutation($d: ID!, $i: DeviceInput!) { updateDevice(id: $d, input: $i) { id name } }",
        |c| json!({ "d": c.device, "i": c.device_input() })),
    case!("Mutation.deleteDevice", SCOPED, Fresh::Device, Check::Nothing,
        "mutation($d: ID!) { deleteDevice(id: $d) }", |c| json!({ "d": c.device })),
    case!("Mutation.writeParameter", SCOPED, Fresh::Nothing, Check::Nothing,
        "mutation($d: ID!) { writeParameter(deviceId: $d, point: \"room_setpoint_comfort\", value: 21.0) { status value } }",
        |c| json!({ "d": c.device })),
    Case {
        level: Some(Cap::WriteLimited),
        ..case!("Mutation.writeParameter", SCOPED, Fresh::Nothing, Check::Nothing,
            "mutation($d: ID!) { writeParameter(deviceId: $d, point: \"heat_curve_slope\", value: 1.2) { status value } }",
            |c| json!({ "d": c.device }))
    },
    Case {
        level: Some(Cap::WriteFull),
        ..case!("Mutation.writeParameter", SCOPED, Fresh::Nothing, Check::Nothing,
            "mutation($d: ID!) { writeParameter(deviceId: $d, point: \"motor_runtime\", value: 60.0) { status value } }",
            |c| json!({ "d": c.device }))
    },
    case!("Mutation.putProfile", TENANTS, Fresh::Nothing, Check::Nothing,
        "mutation($p: DeviceProfileInput!) { putProfile(input: $p) { id name } }",
        |c| json!({ "p": { "id": format!("{}.matrix-{}", c.slug, c.unique), "name": "Matrix AHU", "points": [
            { "key": "supply_temp", "name": "Supply air", "register": "INPUT", "address": 1, "dataType": "I16" } ] } })),
    case!("Subscription.liveValues", LISTING, Fresh::Nothing, Check::Nothing,
        "subscription($ids: [ID!]!) { liveValues(deviceIds: $ids) { deviceId point value } }",
        |c| json!({ "ids": c.device_list() })),
    case!("Subscription.deviceStatus", LISTING, Fresh::Nothing, Check::Nothing,
        "subscription($ids: [ID!]!) { deviceStatus(deviceIds: $ids) { deviceId online } }",
        |c| json!({ "ids": c.device_list() })),
];

// ------------------------------------------------------ classification

/// `Type.field` of every root field in the SDL the code generates.
fn schema_fields() -> BTreeSet<String> {
    let doc = async_graphql::parser::parse_schema(hearth::api::sdl()).expect("the SDL parses");
    let mut fields = BTreeSet::new();
    for def in doc.definitions {
        let TypeSystemDefinition::Type(ty) = def else {
            continue;
        };
        let name = ty.node.name.node.to_string();
        if !matches!(name.as_str(), "Query" | "Mutation" | "Subscription") {
            continue;
        }
        if let TypeKind::Object(object) = ty.node.kind {
            for field in object.fields {
                fields.insert(format!("{name}.{}", field.node.name.node));
            }
        }
    }
    fields
}

fn rule_of(field: &str) -> Option<Rule> {
    MATRIX.iter().find(|(f, _)| *f == field).map(|(_, r)| *r)
}

#[test]
fn every_schema_field_is_classified() {
    let schema = schema_fields();
    assert!(
        schema.len() > 20,
        "the SDL names too few root fields: {schema:?}"
    );
    let mut problems = Vec::new();
    for field in &schema {
        if rule_of(field).is_none() {
            problems.push(format!(
                "{field} is in the schema but not classified: add one line to MATRIX in tests/access_matrix.rs naming who may call it (see DESIGN.md's role table)"
            ));
        }
        if !CASES.iter().any(|c| c.field == field) {
            problems.push(format!(
                "{field} has no entry in CASES (tests/access_matrix.rs): add how to call it"
            ));
        }
    }
    let mut seen = BTreeSet::new();
    for (field, _) in MATRIX {
        if !schema.contains(*field) {
            problems.push(format!(
                "MATRIX names {field}, which is no longer in the schema: remove it"
            ));
        }
        if !seen.insert(*field) {
            problems.push(format!("MATRIX names {field} twice"));
        }
    }
    for case in CASES {
        if rule_of(case.field).is_none() {
            problems.push(format!("CASES has {} without a MATRIX line", case.field));
        }
        let root = case.field.split('.').next().unwrap_or_default();
        let keyword = match root {
            "Mutation" => Some("mutation"),
            "Subscription" => Some("subscription"),
            _ => None,
        };
        let name = case.field.split('.').nth(1).unwrap_or_default();
        if !case.doc.contains(&format!("{name}("))
            && !case.doc.contains(&format!("{name} "))
            && !case.doc.ends_with(name)
        {
            problems.push(format!(
                "the CASES entry of {} does not call it",
                case.field
            ));
        }
        if keyword.is_some_and(|k| !case.doc.starts_with(k)) {
            problems.push(format!("the CASES entry of {} is not a {root}", case.field));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
