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
//!
//! A [`MATRIX`] line for a field that no longer exists fails too.

// A test: a panic with its message is how a broken fixture fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_graphql::parser::types::{TypeKind, TypeSystemDefinition};
use futures::future::join_all;
use hearth_domain::services::LoginLimits;
use hearth_domain::{DeviceId, PointKey};
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
    /// Platform operators only: no tenant role grants it, not even Admin;
    /// only the one caller granted the operator role is allowed.
    PlatformOperator,
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
    ("Query.notificationFailures", Rule::Tenant(Cap::ManageUsers)),
    ("Query.twoFactor", Rule::Member),
    ("Query.alarmRules", Rule::WholeTenant(Cap::ManageDevices)),
    ("Query.alarms", Rule::Filter(Cap::View)),
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
    ("Mutation.enrolTwoFactor", Rule::Member),
    ("Mutation.confirmTwoFactor", Rule::Member),
    ("Mutation.disableTwoFactor", Rule::Member),
    ("Mutation.verifyTwoFactor", Rule::Public),
    (
        "Mutation.setTwoFactorRequired",
        Rule::Tenant(Cap::ManageUsers),
    ),
    ("Mutation.resetTwoFactor", Rule::Tenant(Cap::ManageUsers)),
    ("Mutation.createTenant", Rule::PlatformOperator),
    (
        "Mutation.putAlarmRule",
        Rule::WholeTenant(Cap::ManageDevices),
    ),
    (
        "Mutation.deleteAlarmRule",
        Rule::WholeTenant(Cap::ManageDevices),
    ),
    ("Mutation.acknowledgeAlarm", Rule::Device(Cap::Acknowledge)),
    ("Subscription.liveValues", Rule::Filter(Cap::View)),
    ("Subscription.deviceStatus", Rule::Filter(Cap::View)),
    ("Subscription.alarmEvents", Rule::Filter(Cap::View)),
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
    /// An alarm rule of the target tenant.
    AlarmRule,
    /// A raised alarm on the target device.
    Alarm,
}

/// What to verify in an allowed answer beyond "no error, data present".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Nothing,
    DeviceNames,
    AreaNames,
    RoleTable,
    MeTenant,
    /// The listed alarms are of visible devices, the shared ones included.
    AlarmDevices,
}

/// One request per (caller, target): the operation and its variables.
struct Case {
    field: &'static str,
    targets: &'static [Target],
    fresh: Fresh,
    /// Overrides the rule's capability (the write levels of `writeParameter`).
    level: Option<Cap>,
    check: Check,
    /// An error code that counts as allowed: the call got past every access
    /// check to the field's own validation (a wrong two-factor code: the
    /// matrix never knows a right one, and must not turn two-factor login
    /// on for the shared demo users).
    passes: Option<&'static str>,
    doc: &'static str,
    vars: fn(&Ctx) -> Value,
}

/// A target resolved for one request; empty strings where it has none.
#[derive(Clone)]
struct Ctx {
    tenant_id: String,
    slug: String,
    device: String,
    area: String,
    /// The target area itself (the fresh area's parent).
    parent: String,
    user: String,
    email: String,
    password: String,
    token: String,
    profile: String,
    /// An alarm rule of the target tenant.
    rule: String,
    /// A raised alarm on the target device.
    alarm: String,
    unique: String,
}

impl Ctx {
    /// The same request naming objects that exist nowhere.
    fn made_up(&self) -> Ctx {
        let id = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                uuid::Uuid::new_v4().to_string()
            }
        };
        Ctx {
            tenant_id: id(&self.tenant_id),
            slug: "nosuchtenant".to_owned(),
            device: id(&self.device),
            area: id(&self.area),
            parent: id(&self.parent),
            user: id(&self.user),
            rule: id(&self.rule),
            alarm: id(&self.alarm),
            ..self.clone()
        }
    }
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
            passes: None,
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
    case!("Query.notificationFailures", NONE, Fresh::Nothing, Check::Nothing,
        "{ notificationFailures(first: 50) { edges { cursor node { alarmId ruleName channel target attempts error failedAt } } } }",
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
    case!("Query.twoFactor", NONE, Fresh::Nothing, Check::Nothing,
        "{ twoFactor { enabled pending required recoveryCodesLeft } }", |_| json!({})),
    case!("Query.alarmRules", NONE, Fresh::Nothing, Check::Nothing,
        "{ alarmRules { id name enabled target { deviceId areaId tenant } } }", |_| json!({})),
    case!("Query.alarms", LISTING, Fresh::Nothing, Check::AlarmDevices,
        "query($a: ID) { alarms(first: 200, areaId: $a) { totalCount nodes { id deviceId state ruleName } } }",
        |c| json!({ "a": Ctx::opt(&c.parent) })),
    case!("Mutation.login", NONE, Fresh::Nothing, Check::Nothing,
        "mutation($e: String!, $p: String!, $t: ID) { login(email: $e, password: $p, tenantId: $t) { token tenant { id slug name } role } }",
        |c| json!({ "e": c.email, "p": c.password, "t": c.tenant_id })),
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
    // Two-factor login, on the caller's own account. Allowed: enrolling,
    // never confirmed (a pending enrolment asks no code at login, so the
    // shared users stay usable); confirming and disabling reach the code
    // check and are refused for the code (`passes`), which is never a
    // TOTP code (not digits). `enrolTwoFactor` comes first, so a
    // confirmation always finds the enrolment it waits for.
    case!("Mutation.enrolTwoFactor", NONE, Fresh::Nothing, Check::Nothing,
        "mutation { enrolTwoFactor { secret otpauthUri recoveryCodes } }", |_| json!({})),
    Case {
        passes: Some("BAD_USER_INPUT"),
        ..case!("Mutation.confirmTwoFactor", NONE, Fresh::Nothing, Check::Nothing,
            "mutation { confirmTwoFactor(code: \"not-a-code\") { status { enabled pending } session { token } } }",
            |_| json!({}))
    },
    Case {
        passes: Some("BAD_USER_INPUT"),
        ..case!("Mutation.disableTwoFactor", NONE, Fresh::Nothing, Check::Nothing,
            "mutation { disableTwoFactor(code: \"not-a-code\") { enabled pending } }", |_| json!({}))
    },
    // Public: a made-up challenge is the login that does not exist.
    Case {
        passes: Some("UNAUTHENTICATED"),
        ..case!("Mutation.verifyTwoFactor", NONE, Fresh::Nothing, Check::Nothing,
            "mutation($c: String!) { verifyTwoFactor(challenge: $c, code: \"000000\") { token } }",
            |c| json!({ "c": format!("matrix-no-such-challenge-{}", c.unique) }))
    },
    // NEVER `required: true`: it would stop every later login of the tenant.
    case!("Mutation.setTwoFactorRequired", NONE, Fresh::Nothing, Check::Nothing,
        "mutation { setTwoFactorRequired(required: false) }", |_| json!({})),
    case!("Mutation.resetTwoFactor", TENANTS, Fresh::User, Check::Nothing,
        "mutation($u: ID!) { resetTwoFactor(userId: $u) }", |c| json!({ "u": c.user })),
    case!("Mutation.createTenant", NONE, Fresh::Nothing, Check::Nothing,
        "mutation($s: String!, $e: String!) { createTenant(slug: $s, name: \"Matrix tenant\", adminEmail: $e) { tenant { id slug } adminId } }",
        |c| json!({ "s": format!("matrix-{}", c.unique), "e": format!("operator-{}@example.test", c.unique) })),
    case!("Mutation.putAlarmRule", SCOPED, Fresh::Nothing, Check::Nothing,
        "mutation($i: PutAlarmRuleInput!) { putAlarmRule(input: $i) { id name target { areaId } } }",
        |c| json!({ "i": { "name": format!("Matrix rule {}", c.unique), "severity": "MINOR",
            "target": { "areaId": c.parent }, "condition": { "offline": { "afterSeconds": 3600 } } } })),
    case!("Mutation.deleteAlarmRule", TENANTS, Fresh::AlarmRule, Check::Nothing,
        "mutation($r: ID!) { deleteAlarmRule(id: $r) }", |c| json!({ "r": c.rule })),
    case!("Mutation.acknowledgeAlarm", SCOPED, Fresh::Alarm, Check::Nothing,
        "mutation($a: ID!) { acknowledgeAlarm(id: $a, comment: \"matrix\") { id state } }",
        |c| json!({ "a": c.alarm })),
    case!("Subscription.liveValues", LISTING, Fresh::Nothing, Check::Nothing,
        "subscription($ids: [ID!]!) { liveValues(deviceIds: $ids) { deviceId point value } }",
        |c| json!({ "ids": c.device_list() })),
    case!("Subscription.deviceStatus", LISTING, Fresh::Nothing, Check::Nothing,
        "subscription($ids: [ID!]!) { deviceStatus(deviceIds: $ids) { deviceId online } }",
        |c| json!({ "ids": c.device_list() })),
    case!("Subscription.alarmEvents", NONE, Fresh::Nothing, Check::Nothing,
        "subscription { alarmEvents { transition alarm { id deviceId state } } }", |_| json!({})),
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

// --------------------------------------------------------------- the run

/// The demo's two tenants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tn {
    Acme,
    Globex,
}

impl Tn {
    fn ix(self) -> usize {
        self as usize
    }
    fn other(self) -> Tn {
        match self {
            Tn::Acme => Tn::Globex,
            Tn::Globex => Tn::Acme,
        }
    }
}

/// The demo's devices and areas by name (DESIGN.md's demo, `demo.rs`).
const ACME_DEVICES: [&str; 6] = [
    "N1 heating circuit",
    "N1 domestic hot water",
    "N2 heating circuit",
    "N2 floor heating",
    "Hospital main substation",
    "Hospital ward B",
];
const NORTH_DEVICES: [&str; 4] = [
    "N1 heating circuit",
    "N1 domestic hot water",
    "N2 heating circuit",
    "N2 floor heating",
];
const N1_DEVICES: [&str; 2] = ["N1 heating circuit", "N1 domestic hot water"];
const HOSPITAL_DEVICES: [&str; 2] = ["Hospital main substation", "Hospital ward B"];
const GLOBEX_DEVICES: [&str; 3] = [
    "Plant A boiler house",
    "Plant A office wing",
    "Plant B warehouse",
];
const ACME_AREAS: [&str; 4] = [
    "North district",
    "Substation N1",
    "Substation N2",
    "City hospital",
];
const NORTH_AREAS: [&str; 3] = ["North district", "Substation N1", "Substation N2"];
const GLOBEX_AREAS: [&str; 1] = ["Globex plants"];

const SCOPED_PASSWORD: &str = "matrix-password-1";

/// A signed-in caller's membership as DESIGN.md describes it.
struct Member {
    role: Role,
    /// Scope "all devices"; `false`: acme's North district only.
    all: bool,
    /// Tenants the caller is a member of.
    tenants: Vec<Tn>,
    /// Granted the platform operator role (`hearth operator`).
    operator: bool,
}

struct Caller {
    label: String,
    client: Client,
    /// Email and password for a fresh session; `None` for bad tokens.
    login: Option<(String, String)>,
    /// The tenant the token is bound to (acme for callers without one).
    home: Tn,
    member: Option<Member>,
}

impl Caller {
    fn covers_tenant(&self) -> bool {
        self.member
            .as_ref()
            .is_some_and(|m| m.role == Role::Admin || m.all)
    }
    fn member_of(&self, t: Tn) -> bool {
        self.member.as_ref().is_some_and(|m| m.tenants.contains(&t))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Allowed,
    Denied,
    /// Denied, the target being another tenant's: `FORBIDDEN`, `NOT_FOUND`,
    /// or `BAD_USER_INPUT` for an input naming it, each answered exactly as
    /// for an object that does not exist (checked with a made-up one).
    Foreign,
    Unauthenticated,
}

fn tenant_of(target: Target, home: Tn) -> Tn {
    match target {
        Target::None => home,
        Target::In | Target::Out => Tn::Acme,
        Target::Other => Tn::Globex,
    }
}

/// What DESIGN.md says `caller` gets for a field with `rule` on `target`.
fn expect(caller: &Caller, rule: Rule, level: Option<Cap>, target: Target) -> Expect {
    let Some(member) = &caller.member else {
        return if rule == Rule::Public {
            Expect::Allowed
        } else {
            Expect::Unauthenticated
        };
    };
    let tenant = tenant_of(target, caller.home);
    let own = tenant == caller.home;
    // `Out` is outside the North district; every other target of the own
    // tenant is inside it, and the whole tenant covers both.
    let in_scope = own && (caller.covers_tenant() || target != Target::Out);
    let has = |cap: Cap| role_has(member.role, level.unwrap_or(cap));
    let allowed = match rule {
        Rule::Public | Rule::Member => true,
        Rule::Membership => caller.member_of(tenant),
        Rule::Tenant(cap) => has(cap) && own,
        Rule::WholeTenant(cap) => has(cap) && own && caller.covers_tenant(),
        Rule::Device(cap) | Rule::Filter(cap) => has(cap) && in_scope,
        Rule::PlatformOperator => member.operator,
    };
    match (allowed, own) {
        (true, _) => Expect::Allowed,
        (false, true) => Expect::Denied,
        (false, false) => Expect::Foreign,
    }
}

/// The demo, logged in, with the ids of the targets and every string that
/// identifies something of each tenant.
struct World {
    server: DemoServer,
    admins: [Client; 2],
    tenant_ids: [String; 2],
    slugs: [String; 2],
    /// Device and area ids by name, both tenants.
    devices: BTreeMap<String, String>,
    areas: BTreeMap<String, String>,
    /// Shared target users, one per tenant (never changed by an allowed case).
    target_users: [String; 2],
    /// Shared users a refused `addGuest` names, one per tenant.
    candidates: [String; 2],
    profile: String,
    /// A shared alarm rule per tenant (disabled: only the matrix raises).
    rules: [String; 2],
    /// A shared raised alarm per target device (never acknowledged).
    alarms: BTreeMap<String, String>,
    /// Ids, names, emails of each tenant's devices, areas, users, profiles.
    objects: [Vec<String>; 2],
    /// Each tenant's id, quoted slug and name (its members may see them).
    identity: [Vec<String>; 2],
}

static UNIQUE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn unique() -> String {
    let n = UNIQUE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{n}-{}", std::process::id())
}

fn str_at(v: &Value, path: &[&str]) -> String {
    let mut at = v;
    for key in path {
        at = &at[*key];
    }
    at.as_str()
        .unwrap_or_else(|| panic!("no {path:?} in {v}"))
        .to_owned()
}

fn nodes(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

async fn login(server: &DemoServer, email: &str, password: &str, tenant: &str) -> Client {
    let mut client = server.client();
    let res = client
        .gql(
            "mutation($e: String!, $p: String!, $t: ID) { login(email: $e, password: $p, tenantId: $t) { token refreshToken } }",
            json!({ "e": email, "p": password, "t": tenant }),
        )
        .await
        .expect("login answers");
    client.token = Some(str_at(&res, &["data", "login", "token"]));
    client
}

async fn refresh_token(server: &DemoServer, email: &str, password: &str, tenant: &str) -> String {
    let res = server
        .client()
        .gql(
            "mutation($e: String!, $p: String!, $t: ID) { login(email: $e, password: $p, tenantId: $t) { refreshToken } }",
            json!({ "e": email, "p": password, "t": tenant }),
        )
        .await
        .expect("login answers");
    str_at(&res, &["data", "login", "refreshToken"])
}

async fn create_user(admin: &Client, email: &str, role: Role, scope: Value) -> String {
    let data = admin
        .data(
            "mutation($i: CreateUserInput!) { createUser(input: $i) { user { id } } }",
            json!({ "i": { "email": email, "displayName": format!("Matrix {email}"),
                "password": SCOPED_PASSWORD, "role": role.graphql(), "scope": scope } }),
        )
        .await
        .expect("the admin creates a user");
    str_at(&data, &["createUser", "user", "id"])
}

impl World {
    async fn start() -> World {
        // Every member calls `confirmTwoFactor` and `disableTwoFactor` with a
        // wrong code, all from 127.0.0.1: throttling of the address (and of
        // the guest's account, called twice) must not lock later logins out.
        let server = DemoServer::start_with_login_limits(LoginLimits {
            account_free_failures: 1_000,
            address_free_failures: 1_000,
            ..LoginLimits::default()
        })
        .await
        .expect("the demo starts");
        let admins = [
            server.login("admin@acme.test").await.expect("acme admin"),
            server
                .login("admin@globex.test")
                .await
                .expect("globex admin"),
        ];
        let mut tenant_ids = [String::new(), String::new()];
        let mut slugs = [String::new(), String::new()];
        let mut identity = [Vec::new(), Vec::new()];
        let mut devices = BTreeMap::new();
        let mut areas = BTreeMap::new();
        for (i, admin) in admins.iter().enumerate() {
            let me = admin
                .data("{ me { tenant { id slug name } } }", json!({}))
                .await
                .expect("me");
            tenant_ids[i] = str_at(&me, &["me", "tenant", "id"]);
            slugs[i] = str_at(&me, &["me", "tenant", "slug"]);
            identity[i] = vec![
                tenant_ids[i].clone(),
                format!("\"{}\"", slugs[i]),
                str_at(&me, &["me", "tenant", "name"]),
            ];
            let listed = admin
                .data(
                    "{ devices(first: 200) { nodes { id name } } areas { id name } }",
                    json!({}),
                )
                .await
                .expect("listings");
            for d in nodes(&listed["devices"]["nodes"]) {
                devices.insert(str_at(&d, &["name"]), str_at(&d, &["id"]));
            }
            for a in nodes(&listed["areas"]) {
                areas.insert(str_at(&a, &["name"]), str_at(&a, &["id"]));
            }
        }
        let acme_admin = &admins[0];
        let profile = acme_admin
            .data(
                "query($d: ID!) { device(id: $d) { profileId } }",
                json!({ "d": devices["N1 heating circuit"] }),
            )
            .await
            .expect("a device's profile");
        let profile = str_at(&profile, &["device", "profileId"]);
        let all = json!({ "allDevices": true });
        let mut target_users = [String::new(), String::new()];
        let mut candidates = [String::new(), String::new()];
        for (i, admin) in admins.iter().enumerate() {
            let slug = &slugs[i];
            target_users[i] = create_user(
                admin,
                &format!("target@{slug}.test"),
                Role::ReadOnly,
                all.clone(),
            )
            .await;
            candidates[i] = format!("candidate@{slug}.test");
            create_user(admin, &candidates[i], Role::ReadOnly, all.clone()).await;
            // A profile of the tenant's own, which the other must never see.
            admin
                .data(
                    "mutation($p: DeviceProfileInput!) { putProfile(input: $p) { id } }",
                    json!({ "p": { "id": format!("{slug}.matrix-secret"), "name": format!("Secret AHU of {slug}"),
                        "points": [{ "key": "supply_temp", "name": "Supply air", "register": "INPUT", "address": 1, "dataType": "I16" }] } }),
                )
                .await
                .expect("own profile");
        }
        let mut rules = [String::new(), String::new()];
        for (i, admin) in admins.iter().enumerate() {
            let data = admin
                .data(
                    "mutation($i: PutAlarmRuleInput!) { putAlarmRule(input: $i) { id } }",
                    json!({ "i": { "name": format!("Matrix rule of {}", slugs[i]), "enabled": false,
                        "severity": "MAJOR", "target": { "tenant": true },
                        "condition": { "offline": { "afterSeconds": 3600 } } } }),
                )
                .await
                .expect("a shared alarm rule");
            rules[i] = str_at(&data, &["putAlarmRule", "id"]);
        }
        let mut world = World {
            server,
            admins,
            tenant_ids,
            slugs,
            devices,
            areas,
            target_users,
            candidates,
            profile,
            rules,
            alarms: BTreeMap::new(),
            objects: [Vec::new(), Vec::new()],
            identity,
        };
        world.collect_objects().await;
        for (tenant, device) in [
            (Tn::Acme, "N1 heating circuit"),
            (Tn::Acme, "Hospital main substation"),
            (Tn::Globex, "Plant A boiler house"),
        ] {
            let device = world.devices[device].clone();
            let alarm = world.raise(tenant, &device).await;
            world.objects[tenant.ix()].push(alarm.clone());
            world.alarms.insert(device, alarm);
        }
        for i in 0..2 {
            let rule = world.rules[i].clone();
            world.objects[i].push(rule);
            world.objects[i].push(format!("Matrix rule of {}", world.slugs[i]));
        }
        world
    }

    /// Raises an alarm of `tenant`'s shared rule on `device` through the
    /// alarm service, as the evaluator does (a new point each time, so it
    /// is a new alarm); its id.
    async fn raise(&self, tenant: Tn, device: &str) -> String {
        let alarms = self
            .server
            .running
            .services
            .alarms()
            .expect("the alarm service")
            .clone();
        let rule = alarms
            .all_rules()
            .await
            .expect("the alarm rules")
            .into_iter()
            .find(|r| r.id.to_string() == self.rules[tenant.ix()])
            .expect("the shared rule");
        let point = format!("matrix_{}", unique().replace('-', "_"));
        let alarm = alarms
            .raise(
                &rule,
                device.parse::<DeviceId>().expect("a device id"),
                Some(PointKey::new(point).expect("a point key")),
                Some(99.0),
                chrono::Utc::now(),
                "matrix alarm".into(),
            )
            .await
            .expect("an alarm raised");
        alarm.id.to_string()
    }

    /// Every id, name and email of each tenant's objects, except users who
    /// are members of both (the guest).
    async fn collect_objects(&mut self) {
        // Per tenant: its objects' strings, and (email, strings) per user.
        type Strings = (Vec<String>, Vec<(String, Vec<String>)>);
        let mut per_tenant: Vec<Strings> = Vec::new();
        for admin in &self.admins {
            let data = admin
                .data(
                    "{ devices(first: 200) { nodes { id name } } areas { id name }
                       users(first: 200) { nodes { id email displayName } }
                       profiles { id name builtIn } }",
                    json!({}),
                )
                .await
                .expect("the admin lists everything");
            let mut objects = Vec::new();
            for d in nodes(&data["devices"]["nodes"])
                .into_iter()
                .chain(nodes(&data["areas"]))
            {
                objects.push(str_at(&d, &["id"]));
                objects.push(str_at(&d, &["name"]));
            }
            for p in nodes(&data["profiles"]) {
                if p["builtIn"] == false {
                    objects.push(str_at(&p, &["id"]));
                    objects.push(str_at(&p, &["name"]));
                }
            }
            let users = nodes(&data["users"]["nodes"])
                .iter()
                .map(|u| {
                    (
                        str_at(u, &["email"]),
                        vec![
                            str_at(u, &["id"]),
                            str_at(u, &["email"]),
                            str_at(u, &["displayName"]),
                        ],
                    )
                })
                .collect();
            per_tenant.push((objects, users));
        }
        let emails = |i: usize| -> BTreeSet<String> {
            per_tenant[i].1.iter().map(|(e, _)| e.clone()).collect()
        };
        let (acme_emails, globex_emails) = (emails(0), emails(1));
        for (i, (objects, users)) in per_tenant.iter().enumerate() {
            let mut all = objects.clone();
            for (email, strings) in users {
                if !(acme_emails.contains(email) && globex_emails.contains(email)) {
                    all.extend(strings.iter().cloned());
                }
            }
            self.objects[i] = all;
        }
        assert!(
            self.objects.iter().all(|o| o.len() > 10),
            "too few secrets collected"
        );
    }

    /// What `caller` must never see: the other tenant's objects, and its
    /// identity unless the caller is also a member there.
    fn forbidden(&self, caller: &Caller) -> Vec<String> {
        let other = caller.home.other();
        let mut strings = self.objects[other.ix()].clone();
        if !caller.member_of(other) {
            strings.extend(self.identity[other.ix()].iter().cloned());
        }
        strings
    }

    fn admin(&self, t: Tn) -> &Client {
        &self.admins[t.ix()]
    }

    /// The target resolved for `caller`, with fresh objects when `fresh`.
    async fn ctx(&self, caller: &Caller, case: &Case, target: Target, fresh: bool) -> Ctx {
        let tenant = tenant_of(target, caller.home);
        let (device, area) = match target {
            Target::None => ("", ""),
            Target::In => ("N1 heating circuit", "Substation N1"),
            Target::Out => ("Hospital main substation", "City hospital"),
            Target::Other => ("Plant A boiler house", "Globex plants"),
        };
        let device = self.devices.get(device).cloned().unwrap_or_default();
        let area = self.areas.get(area).cloned().unwrap_or_default();
        let (email, password) = caller
            .login
            .clone()
            .unwrap_or_else(|| ("readonly@acme.test".to_owned(), PASSWORD.to_owned()));
        let mut ctx = Ctx {
            tenant_id: self.tenant_ids[tenant.ix()].clone(),
            slug: self.slugs[tenant.ix()].clone(),
            device,
            parent: area.clone(),
            area,
            user: self.target_users[tenant.ix()].clone(),
            email: email.clone(),
            password: password.clone(),
            token: String::new(),
            profile: self.profile.clone(),
            rule: self.rules[tenant.ix()].clone(),
            alarm: String::new(),
            unique: unique(),
        };
        ctx.alarm = self.alarms.get(&ctx.device).cloned().unwrap_or_default();
        let home_id = &self.tenant_ids[caller.home.ix()];
        match case.fresh {
            Fresh::Nothing | Fresh::Session => {}
            Fresh::RefreshToken => {
                ctx.token = refresh_token(&self.server, &email, &password, home_id).await;
            }
            Fresh::Guest => {
                let from = caller.home.other();
                ctx.email = self.candidates[from.ix()].clone();
                if fresh {
                    ctx.email = format!("guest-{}@{}.test", ctx.unique, self.slugs[from.ix()]);
                    create_user(
                        self.admin(from),
                        &ctx.email,
                        Role::ReadOnly,
                        json!({ "allDevices": true }),
                    )
                    .await;
                }
            }
            Fresh::User if fresh => {
                ctx.user = create_user(
                    self.admin(tenant),
                    &format!("fresh-{}@{}.test", ctx.unique, self.slugs[tenant.ix()]),
                    Role::ReadOnly,
                    json!({ "allDevices": true }),
                )
                .await;
            }
            Fresh::Area if fresh => {
                let data = self
                    .admin(tenant)
                    .data(
                        "mutation($n: String!, $p: ID) { createArea(name: $n, parentId: $p) { id } }",
                        json!({ "n": format!("Fresh area {}", ctx.unique), "p": ctx.parent }),
                    )
                    .await
                    .expect("a fresh area");
                ctx.area = str_at(&data, &["createArea", "id"]);
            }
            Fresh::Device if fresh => {
                let data = self
                    .admin(tenant)
                    .data(
                        "mutation($i: DeviceInput!) { createDevice(input: $i) { id } }",
                        json!({ "i": ctx.device_input() }),
                    )
                    .await
                    .expect("a fresh device");
                ctx.device = str_at(&data, &["createDevice", "id"]);
            }
            Fresh::AlarmRule if fresh => {
                let data = self
                    .admin(tenant)
                    .data(
                        "mutation($i: PutAlarmRuleInput!) { putAlarmRule(input: $i) { id } }",
                        json!({ "i": { "name": format!("Fresh rule {}", ctx.unique), "enabled": false,
                            "severity": "MINOR", "target": { "tenant": true },
                            "condition": { "offline": { "afterSeconds": 3600 } } } }),
                    )
                    .await
                    .expect("a fresh alarm rule");
                ctx.rule = str_at(&data, &["putAlarmRule", "id"]);
            }
            Fresh::Alarm if fresh => {
                ctx.alarm = self.raise(tenant, &ctx.device).await;
            }
            Fresh::User | Fresh::Area | Fresh::Device | Fresh::AlarmRule | Fresh::Alarm => {}
        }
        ctx
    }

    fn names_to_ids(&self, names: &[&str]) -> BTreeSet<String> {
        names
            .iter()
            .map(|n| self.devices.get(*n).cloned().unwrap_or_default())
            .collect()
    }

    /// Devices `caller` may see, by name, filtered by `target`'s area.
    fn visible_devices(&self, caller: &Caller, target: Target) -> BTreeSet<&'static str> {
        let names: &[&'static str] = match (caller.home, target) {
            (Tn::Globex, _) => &GLOBEX_DEVICES,
            (Tn::Acme, Target::None) if caller.covers_tenant() => &ACME_DEVICES,
            (Tn::Acme, Target::None) => &NORTH_DEVICES,
            (Tn::Acme, Target::In) => &N1_DEVICES,
            (Tn::Acme, Target::Out) => &HOSPITAL_DEVICES,
            (Tn::Acme, Target::Other) => &[],
        };
        names.iter().copied().collect()
    }

    fn visible_areas(&self, caller: &Caller) -> BTreeSet<&'static str> {
        let names: &[&'static str] = match caller.home {
            Tn::Globex => &GLOBEX_AREAS,
            Tn::Acme if caller.covers_tenant() => &ACME_AREAS,
            Tn::Acme => &NORTH_AREAS,
        };
        names.iter().copied().collect()
    }

    /// Checks an allowed answer's content beyond its presence.
    fn check(
        &self,
        caller: &Caller,
        case: &Case,
        target: Target,
        data: &Value,
    ) -> Result<(), String> {
        let names = |list: &Value| -> BTreeSet<String> {
            nodes(list).iter().map(|n| str_at(n, &["name"])).collect()
        };
        let want = |set: BTreeSet<&str>| -> BTreeSet<String> {
            set.into_iter().map(str::to_owned).collect()
        };
        match case.check {
            Check::Nothing => Ok(()),
            Check::DeviceNames => {
                let got = names(&data["devices"]["nodes"]);
                let expected = want(self.visible_devices(caller, target));
                let total = data["devices"]["totalCount"].as_u64().unwrap_or(u64::MAX);
                if got == expected && total == expected.len() as u64 {
                    Ok(())
                } else {
                    Err(format!(
                        "devices {got:?} (total {total}), expected {expected:?}"
                    ))
                }
            }
            Check::AreaNames => {
                let got = names(&data["areas"]);
                let expected = want(self.visible_areas(caller));
                (got == expected)
                    .then_some(())
                    .ok_or_else(|| format!("areas {got:?}, expected {expected:?}"))
            }
            Check::RoleTable => {
                for role in ROLES {
                    let row = nodes(&data["roles"])
                        .into_iter()
                        .find(|r| r["role"] == role.graphql())
                        .ok_or_else(|| format!("no row for {role:?}"))?;
                    let got: BTreeSet<String> = nodes(&row["capabilities"])
                        .iter()
                        .filter_map(|c| c.as_str().map(str::to_owned))
                        .collect();
                    let expected: BTreeSet<String> = TABLE
                        .iter()
                        .filter(|(_, _, cells)| cells[role.column()])
                        .map(|(_, name, _)| (*name).to_owned())
                        .collect();
                    if got != expected {
                        return Err(format!(
                            "the policy gives {role:?} {got:?}; DESIGN.md's table says {expected:?}"
                        ));
                    }
                }
                Ok(())
            }
            Check::AlarmDevices => {
                let visible = self.names_to_ids(
                    &self
                        .visible_devices(caller, target)
                        .into_iter()
                        .collect::<Vec<_>>(),
                );
                let got: BTreeSet<String> = nodes(&data["alarms"]["nodes"])
                    .iter()
                    .map(|n| str_at(n, &["deviceId"]))
                    .collect();
                let shared: BTreeSet<String> = self
                    .alarms
                    .keys()
                    .filter(|d| visible.contains(*d))
                    .cloned()
                    .collect();
                if got.is_subset(&visible) && shared.is_subset(&got) && !shared.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "alarms of {got:?}, expected those of {visible:?} including {shared:?}"
                    ))
                }
            }
            Check::MeTenant => {
                let tenant = str_at(data, &["me", "tenant", "id"]);
                let role = data["me"]["role"].as_str().unwrap_or_default();
                let expected_role = caller.member.as_ref().map(|m| m.role.graphql());
                if tenant == self.tenant_ids[caller.home.ix()] && Some(role) == expected_role {
                    Ok(())
                } else {
                    Err(format!("me is {tenant} as {role}"))
                }
            }
        }
    }
}

/// Tallies and failures of the whole run.
#[derive(Default)]
struct Tally {
    requests: usize,
    allowed: usize,
    denied: usize,
    unauthenticated: usize,
    failures: Vec<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        self.allowed += other.allowed;
        self.denied += other.denied;
        self.unauthenticated += other.unauthenticated;
        self.failures.extend(other.failures);
    }

    /// Judges one answer (a whole HTTP body, or a WebSocket message).
    fn judge(
        &mut self,
        what: &str,
        forbidden: &[String],
        expected: Expect,
        answer: &Value,
        allowed: Option<Result<(), String>>,
        passes: Option<&str>,
    ) {
        self.requests += 1;
        let text = answer.to_string();
        for secret in forbidden {
            if text.contains(secret.as_str()) {
                self.failures
                    .push(format!("{what}: LEAK of {secret} in {text}"));
            }
        }
        if expected == Expect::Allowed
            && passes.is_some()
            && error_code(answer).as_deref() == passes
        {
            self.allowed += 1;
            return;
        }
        let errors = nodes(&answer["errors"]);
        for e in &errors {
            let code = e["extensions"]["code"].as_str();
            let foreign_input = expected == Expect::Foreign && code == Some("BAD_USER_INPUT");
            if !foreign_input
                && !matches!(code, Some("FORBIDDEN" | "NOT_FOUND" | "UNAUTHENTICATED"))
            {
                self.failures.push(format!(
                    "{what}: expected {expected:?}, got code {code:?}: {text}"
                ));
                return;
            }
        }
        let code = error_code(answer);
        match (expected, code.as_deref()) {
            (Expect::Allowed, None) => match allowed {
                Some(Err(why)) => self.failures.push(format!("{what}: allowed, but {why}")),
                None => self
                    .failures
                    .push(format!("{what}: allowed without data: {text}")),
                Some(Ok(())) => self.allowed += 1,
            },
            (Expect::Denied, Some("FORBIDDEN" | "NOT_FOUND")) => self.denied += 1,
            (Expect::Foreign, Some("FORBIDDEN" | "NOT_FOUND" | "BAD_USER_INPUT")) => {
                self.denied += 1
            }
            (Expect::Unauthenticated, Some("UNAUTHENTICATED")) => self.unauthenticated += 1,
            (_, code) => self.failures.push(format!(
                "{what}: expected {expected:?}, got {code:?}: {text}"
            )),
        }
    }
}

fn field_name(case: &Case) -> &'static str {
    case.field.split('.').nth(1).unwrap_or_default()
}

/// Runs the HTTP cases of `root` for one caller.
async fn run_http(world: &World, caller: &Caller, root: &str) -> Tally {
    let mut tally = Tally::default();
    let forbidden = world.forbidden(caller);
    for case in CASES.iter().filter(|c| c.field.starts_with(root)) {
        let rule = rule_of(case.field).expect("classified");
        let targets: &[Target] = if caller.member.is_some() {
            case.targets
        } else {
            &case.targets[..1]
        };
        for &target in targets {
            let expected = expect(caller, rule, case.level, target);
            let ctx = world
                .ctx(caller, case, target, expected == Expect::Allowed)
                .await;
            let mut client = caller.client.clone();
            if case.fresh == Fresh::Session && expected == Expect::Allowed {
                if let Some((email, password)) = &caller.login {
                    client = login(
                        &world.server,
                        email,
                        password,
                        &world.tenant_ids[caller.home.ix()],
                    )
                    .await;
                }
            }
            let answer = client
                .gql(case.doc, (case.vars)(&ctx))
                .await
                .expect("an answer");
            let what = format!(
                "{} {} on {target:?}{}",
                caller.label,
                case.field,
                case.level.map(|l| format!(" ({l:?})")).unwrap_or_default()
            );
            let data = &answer["data"];
            let allowed = (!data[field_name(case)].is_null())
                .then(|| world.check(caller, case, target, data));
            tally.judge(&what, &forbidden, expected, &answer, allowed, case.passes);
            if expected == Expect::Foreign {
                // The other tenant's object must be answered exactly as one
                // that does not exist.
                let made_up = ctx.made_up();
                let unknown = client
                    .gql(case.doc, (case.vars)(&made_up))
                    .await
                    .expect("an answer");
                tally.requests += 1;
                if unknown["errors"] != answer["errors"] {
                    tally.failures.push(format!(
                        "{what}: the other tenant's object is answered unlike a made-up one: {answer} vs {unknown}"
                    ));
                }
            }
            if expected != Expect::Allowed && !data.is_null() && !data[field_name(case)].is_null() {
                tally
                    .failures
                    .push(format!("{what}: refused but data came back: {answer}"));
            }
        }
    }
    tally
}

/// An allowed subscription that may stay silent: device status changes and
/// alarms are rare (the matrix raises its alarms later, among the mutations).
fn silent_ok(case: &Case) -> bool {
    matches!(
        case.field,
        "Subscription.deviceStatus" | "Subscription.alarmEvents"
    )
}

/// Runs every subscription case for one caller over one WebSocket
/// (`graphql-transport-ws`). An allowed `liveValues` must deliver a value
/// of the right devices; an allowed `deviceStatus` must stay silent or
/// deliver the right devices (status changes are rare) until the others
/// are settled; a refused one must end with a typed error.
async fn run_ws(world: &World, caller: &Caller) -> Tally {
    let mut tally = Tally::default();
    let forbidden = world.forbidden(caller);
    let payload = match &caller.client.token {
        Some(token) => json!({ "authorization": format!("Bearer {token}") }),
        None => json!({}),
    };
    let (mut ws, ack) = ws_connect(world.server.addr(), "graphql-transport-ws", payload)
        .await
        .expect("a WebSocket");
    let subscriptions: Vec<&Case> = CASES
        .iter()
        .filter(|c| c.field.starts_with("Subscription."))
        .collect();
    if ack
        .as_ref()
        .map(|a| a["type"] != "connection_ack")
        .unwrap_or(true)
    {
        // A bad token: refused at `connection_init`, before any operation.
        let expected_refusal = caller.member.is_none() && caller.client.token.is_some();
        tally.requests += subscriptions.len();
        if expected_refusal {
            tally.unauthenticated += subscriptions.len();
        } else {
            tally.failures.push(format!(
                "{}: connection_init refused: {ack:?}",
                caller.label
            ));
        }
        return tally;
    }
    if caller.member.is_none() && caller.client.token.is_some() {
        tally
            .failures
            .push(format!("{}: a bad token was acknowledged", caller.label));
    }
    // Operation id -> (what, case, target, expected, wanted device ids).
    let mut open: BTreeMap<String, (String, &Case, Target, Expect, BTreeSet<String>)> =
        BTreeMap::new();
    for case in &subscriptions {
        let rule = rule_of(case.field).expect("classified");
        for &target in case.targets {
            let expected = expect(caller, rule, case.level, target);
            let ctx = world.ctx(caller, case, target, false).await;
            let id = format!("op{}", open.len());
            ws_subscribe(&mut ws, &id, case.doc, (case.vars)(&ctx))
                .await
                .expect("subscribe");
            let wanted = if target == Target::None {
                world.names_to_ids(
                    &world
                        .visible_devices(caller, Target::None)
                        .into_iter()
                        .collect::<Vec<_>>(),
                )
            } else {
                BTreeSet::from([ctx.device.clone()])
            };
            open.insert(
                id,
                (
                    format!("{} {} on {target:?}", caller.label, case.field),
                    case,
                    target,
                    expected,
                    wanted,
                ),
            );
        }
    }
    // Values arrive with the next poll (about a second); a refusal at once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    let quiet = |open: &BTreeMap<String, (String, &Case, Target, Expect, BTreeSet<String>)>| {
        open.values()
            .all(|(_, case, _, expected, _)| *expected == Expect::Allowed && silent_ok(case))
    };
    while !open.is_empty() && !quiet(&open) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Ok(Some(msg)) = ws_next(&mut ws, left.max(Duration::from_millis(1))).await else {
            break;
        };
        let Some(id) = msg["id"].as_str() else {
            continue;
        };
        let Some((what, case, _, expected, wanted)) = open.remove(id) else {
            // A later value of a settled operation: only the leak check.
            for secret in &forbidden {
                if msg.to_string().contains(secret.as_str()) {
                    tally
                        .failures
                        .push(format!("{}: LEAK of {secret} in {msg}", caller.label));
                }
            }
            continue;
        };
        let answer = match msg["type"].as_str() {
            Some("next") => msg["payload"].clone(),
            Some("error") => json!({ "errors": msg["payload"] }),
            _ => json!({ "unexpected": msg }),
        };
        let field = field_name(case);
        let allowed = (!answer["data"][field].is_null()).then(|| {
            let event = &answer["data"][field];
            let device = event["deviceId"]
                .as_str()
                .or_else(|| event["alarm"]["deviceId"].as_str())
                .unwrap_or_default();
            wanted
                .contains(device)
                .then_some(())
                .ok_or_else(|| format!("a value of {device}, outside {wanted:?}"))
        });
        tally.judge(&what, &forbidden, expected, &answer, allowed, None);
    }
    // Still open: allowed status streams with nothing to say (fine), or
    // operations that never answered (not fine).
    for (what, case, _, expected, _) in open.into_values() {
        tally.requests += 1;
        if expected == Expect::Allowed && silent_ok(case) {
            tally.allowed += 1;
        } else {
            tally.failures.push(format!(
                "{what}: no answer within 8 s (expected {expected:?})"
            ));
        }
    }
    tally
}

/// Every caller: the roles scoped to all devices and to acme's North
/// district, the guest in each of its tenants, globex's admin, and callers
/// without a good token.
async fn callers(world: &World) -> Vec<Caller> {
    let acme = world.tenant_ids[Tn::Acme.ix()].clone();
    let globex = world.tenant_ids[Tn::Globex.ix()].clone();
    let mut callers = Vec::new();
    let demo = [
        ("admin@acme.test", Role::Admin),
        ("full@acme.test", Role::Full),
        ("limited@acme.test", Role::Limited),
        ("basic@acme.test", Role::Basic),
        ("readonly@acme.test", Role::ReadOnly),
    ];
    for (email, role) in demo {
        callers.push(Caller {
            label: format!("{email} ({role:?}, all devices)"),
            client: login(&world.server, email, PASSWORD, &acme).await,
            login: Some((email.to_owned(), PASSWORD.to_owned())),
            home: Tn::Acme,
            member: Some(Member {
                role,
                all: true,
                tenants: vec![Tn::Acme],
                operator: false,
            }),
        });
    }
    // The same roles scoped to the North district (an Admin's scope is
    // ignored: Admin always covers the tenant).
    let north = world.areas["North district"].clone();
    for role in ROLES {
        let email = format!("scoped-{}@acme.test", role.graphql().to_lowercase());
        create_user(
            world.admin(Tn::Acme),
            &email,
            role,
            json!({ "allDevices": false, "areaIds": [north] }),
        )
        .await;
        callers.push(Caller {
            label: format!("{email} ({role:?}, North district)"),
            client: login(&world.server, &email, SCOPED_PASSWORD, &acme).await,
            login: Some((email.clone(), SCOPED_PASSWORD.to_owned())),
            home: Tn::Acme,
            member: Some(Member {
                role,
                all: false,
                tenants: vec![Tn::Acme],
                operator: false,
            }),
        });
    }
    // A read-only member of acme granted the platform operator role on the
    // command line, as `hearth operator` does: its tenant role is unchanged.
    let email = "operator@acme.test";
    create_user(
        world.admin(Tn::Acme),
        email,
        Role::ReadOnly,
        json!({ "allDevices": true }),
    )
    .await;
    let config = hearth::app::Config {
        data_dir: world.server.data_dir.path().to_path_buf(),
        ..hearth::app::Config::default()
    };
    assert!(
        hearth::app::set_operator(&config, email, true)
            .await
            .expect("the operator grant"),
        "a new grant"
    );
    callers.push(Caller {
        label: format!("{email} (ReadOnly, all devices, platform operator)"),
        client: login(&world.server, email, SCOPED_PASSWORD, &acme).await,
        login: Some((email.to_owned(), SCOPED_PASSWORD.to_owned())),
        home: Tn::Acme,
        member: Some(Member {
            role: Role::ReadOnly,
            all: true,
            tenants: vec![Tn::Acme],
            operator: true,
        }),
    });
    let both = vec![Tn::Acme, Tn::Globex];
    for (tenant, home, role, all) in [
        (&acme, Tn::Acme, Role::Full, false),
        (&globex, Tn::Globex, Role::Limited, true),
    ] {
        callers.push(Caller {
            label: format!("guest tech@service.test in {home:?} ({role:?})"),
            client: login(&world.server, "tech@service.test", PASSWORD, tenant).await,
            login: Some(("tech@service.test".to_owned(), PASSWORD.to_owned())),
            home,
            member: Some(Member {
                role,
                all,
                tenants: both.clone(),
                operator: false,
            }),
        });
    }
    callers.push(Caller {
        label: "admin@globex.test (Admin of the other tenant)".to_owned(),
        client: login(&world.server, "admin@globex.test", PASSWORD, &globex).await,
        login: Some(("admin@globex.test".to_owned(), PASSWORD.to_owned())),
        home: Tn::Globex,
        member: Some(Member {
            role: Role::Admin,
            all: true,
            tenants: vec![Tn::Globex],
            operator: false,
        }),
    });
    for (label, token) in bad_tokens(world).await {
        let mut client = world.server.client();
        client.token = token;
        callers.push(Caller {
            label,
            client,
            login: None,
            home: Tn::Acme,
            member: None,
        });
    }
    callers
}

/// No token, a forged one, one signed with another key, an acme admin's
/// claims under a read-only user's signature, and an expired one.
async fn bad_tokens(world: &World) -> Vec<(String, Option<String>)> {
    use hearth_domain::ports::TokenService as _;
    let admin = world.admin(Tn::Acme);
    let me = admin
        .data("{ me { user { id } } }", json!({}))
        .await
        .expect("me");
    let user: hearth_domain::UserId = str_at(&me, &["me", "user", "id"])
        .parse()
        .expect("a user id");
    let tenant: hearth_domain::TenantId = world.tenant_ids[0].parse().expect("a tenant id");
    let other_key =
        hearth_auth::JwtTokens::new(&[7u8; 64], chrono::Duration::minutes(15)).expect("tokens");
    let (wrong_key, _) = other_key.issue(user, tenant, None).expect("a token");
    let readonly = world
        .server
        .login("readonly@acme.test")
        .await
        .expect("readonly");
    let readonly_token = readonly.token.clone().unwrap_or_default();
    let admin_token = admin.token.clone().unwrap_or_default();
    let parts = |t: &str| t.split('.').map(str::to_owned).collect::<Vec<_>>();
    let (r, a) = (parts(&readonly_token), parts(&admin_token));
    let tampered = format!("{}.{}.{}", r[0], a[1], r[2]);
    let secret =
        hearth_auth::load_or_create_secret(world.server.data_dir.path()).expect("the secret");
    let short = hearth_auth::JwtTokens::new(&secret, chrono::Duration::seconds(1)).expect("tokens");
    let (expired, claims) = short.issue(user, tenant, None).expect("a token");
    // Wait the token out (no leeway on our own tokens).
    let left = (claims.expires_at - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(left + Duration::from_millis(1100)).await;
    vec![
        ("no token".to_owned(), None),
        (
            "forged token".to_owned(),
            Some("forged.token.here".to_owned()),
        ),
        ("token signed with another key".to_owned(), Some(wrong_key)),
        (
            "tampered token (admin claims, read-only signature)".to_owned(),
            Some(tampered),
        ),
        ("expired token".to_owned(), Some(expired)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_caller_gets_exactly_what_the_design_allows_and_nothing_of_another_tenant() {
    // Given the demo, with users of every role scoped to all devices and to
    // one area, the guest, the other tenant's admin and bad tokens
    let world = World::start().await;
    let callers = callers(&world).await;
    let mut tally = Tally::default();
    // When each calls every query (reads first: later changes add objects)
    for t in join_all(callers.iter().map(|c| run_http(&world, c, "Query."))).await {
        tally.merge(t);
    }
    // And subscribes to every subscription
    for t in join_all(callers.iter().map(|c| run_ws(&world, c))).await {
        tally.merge(t);
    }
    // And calls every mutation (one caller at a time: writes reach the field)
    for caller in &callers {
        tally.merge(run_http(&world, caller, "Mutation.").await);
    }
    println!(
        "access matrix: {} callers, {} requests: {} allowed, {} denied, {} unauthenticated, {} failures",
        callers.len(), tally.requests, tally.allowed, tally.denied, tally.unauthenticated, tally.failures.len()
    );
    // Then every answer is what DESIGN.md's table says, with no leak
    assert!(
        tally.failures.is_empty(),
        "{} of {} answers are wrong:\n{}",
        tally.failures.len(),
        tally.requests,
        tally
            .failures
            .iter()
            .take(60)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        tally.allowed > 100 && tally.denied > 100 && tally.unauthenticated > 30,
        "too few cases ran"
    );
}
