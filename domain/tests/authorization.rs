//! Use-case tier: the authorization of every public service method, run
//! against the in-memory adapters and the real policy (no server). For each
//! method that acts for a user: every role (allowed or the service's denial
//! error), a principal of another tenant (denied or sees nothing), and a
//! principal whose device scope leaves the device out. System-principal
//! methods get exactly what `hearth.polar` grants their role. A guard at the
//! end fails when a public method appears in `domain/src/services` that
//! no table here covers.

// Integration-test helpers: a panic with its message is how a broken fixture fails a test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;

use chrono::{Duration, Utc};
use futures::{FutureExt, StreamExt};
use hearth_domain::model::{
    Aggregate, Area, Device, DeviceScope, Membership, Quality, Reading, Role, Tenant, TenantSlug,
    User, WriteLevel,
};
use hearth_domain::services::{AuditQuery, DeviceQuery, LiveUpdate, LoginError};
use hearth_domain::{
    AreaId, DeviceId, DomainError, Principal, ProfileId, SystemPrincipal, TenantId, UserId,
};
use support::{point_of, profile, read_only_point, valid_value, world, World, PASSWORD};

// ------------------------------------------------------- user-facing methods

/// One call of a public method that acts for a user. A method with a
/// variant per case (writes per level) appears once per case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    ListDevices,
    Device,
    WriteBasic,
    WriteLimited,
    WriteFull,
    AuditLog,
    SubscribeLive,
    SubscribeLiveFollowing,
    History,
    HistorySeries,
    Profiles,
    PutProfile,
}

impl Op {
    const ALL: [Op; 12] = [
        Op::ListDevices,
        Op::Device,
        Op::WriteBasic,
        Op::WriteLimited,
        Op::WriteFull,
        Op::AuditLog,
        Op::SubscribeLive,
        Op::SubscribeLiveFollowing,
        Op::History,
        Op::HistorySeries,
        Op::Profiles,
        Op::PutProfile,
    ];

    /// The service method this exercises, as the guard finds it in the source.
    fn method(self) -> &'static str {
        match self {
            Op::ListDevices => "DeviceService::list_devices",
            Op::Device => "DeviceService::device",
            Op::WriteBasic | Op::WriteLimited | Op::WriteFull => "ControlService::write_parameter",
            Op::AuditLog => "ControlService::audit_log",
            Op::SubscribeLive => "LiveService::subscribe_live",
            Op::SubscribeLiveFollowing => "LiveService::subscribe_live_following",
            Op::History => "HistoryService::history",
            Op::HistorySeries => "HistoryService::history_series",
            Op::Profiles => "ProfileService::profiles",
            Op::PutProfile => "ProfileService::put_profile",
        }
    }

    /// Whether `role` (covering every device) may do this: the access table
    /// of DESIGN.md, written out here independently of the policy file.
    fn allowed(self, role: Role) -> bool {
        use Role::*;
        match self {
            Op::ListDevices
            | Op::Device
            | Op::SubscribeLive
            | Op::SubscribeLiveFollowing
            | Op::History
            | Op::HistorySeries
            | Op::Profiles => true,
            Op::WriteBasic => matches!(role, Admin | Full | Limited | Basic),
            Op::WriteLimited => matches!(role, Admin | Full | Limited),
            Op::WriteFull | Op::AuditLog | Op::PutProfile => matches!(role, Admin | Full),
        }
    }

    /// Whether the method takes one device (and must hide it when unseen).
    fn takes_device(self) -> bool {
        matches!(
            self,
            Op::Device
                | Op::WriteBasic
                | Op::WriteLimited
                | Op::WriteFull
                | Op::SubscribeLive
                | Op::SubscribeLiveFollowing
                | Op::History
                | Op::HistorySeries
        )
    }
}

/// What a successful call let the caller see.
#[derive(Debug)]
enum Seen {
    Nothing,
    Devices(Vec<DeviceId>),
    Audit(Vec<(TenantId, Option<DeviceId>)>),
    Profiles(Vec<ProfileId>),
}

/// Calls `op` as `principal` on `device` (device-less methods ignore it;
/// `put_profile` stores a profile in the namespace of the device's tenant).
async fn run(
    w: &World,
    op: Op,
    principal: &Principal,
    device: &Device,
) -> Result<Seen, DomainError> {
    let s = &w.services;
    let write = |level: WriteLevel| {
        s.control
            .write_parameter(principal, device.id, point_of(level), valid_value(level))
    };
    Ok(match op {
        Op::ListDevices => {
            let query = DeviceQuery {
                limit: 200,
                ..DeviceQuery::default()
            };
            let page = s.devices.list_devices(principal, query).await?;
            Seen::Devices(page.items.into_iter().map(|v| v.device.id).collect())
        }
        Op::Device => Seen::Devices(vec![
            s.devices.device(principal, device.id).await?.device.id,
        ]),
        Op::WriteBasic => write(WriteLevel::Basic).await.map(|_| Seen::Nothing)?,
        Op::WriteLimited => write(WriteLevel::Limited).await.map(|_| Seen::Nothing)?,
        Op::WriteFull => write(WriteLevel::Full).await.map(|_| Seen::Nothing)?,
        Op::AuditLog => {
            let query = AuditQuery {
                first: 1000,
                ..AuditQuery::default()
            };
            let page = s.control.audit_log(principal, query).await?;
            Seen::Audit(
                page.entries
                    .into_iter()
                    .map(|r| (r.entry.tenant_id, r.entry.device_id))
                    .collect(),
            )
        }
        Op::SubscribeLive => s
            .live
            .subscribe_live(principal, &[device.id])
            .await
            .map(|_| Seen::Nothing)?,
        Op::SubscribeLiveFollowing => s
            .live
            .subscribe_live_following(principal, &[device.id], futures::stream::pending().boxed())
            .await
            .map(|_| Seen::Nothing)?,
        Op::History => {
            let to = Utc::now();
            s.history
                .history(
                    principal,
                    device.id,
                    read_only_point(),
                    to - Duration::hours(1),
                    to,
                    60,
                    Aggregate::Mean,
                )
                .await
                .map(|_| Seen::Nothing)?
        }
        Op::HistorySeries => {
            let to = Utc::now();
            s.history
                .history_series(
                    principal,
                    device.id,
                    vec![read_only_point()],
                    to - Duration::hours(1),
                    to,
                    None,
                    Aggregate::Mean,
                )
                .await
                .map(|_| Seen::Nothing)?
        }
        Op::Profiles => Seen::Profiles(
            s.profiles
                .profiles(principal)
                .await?
                .into_iter()
                .map(|p| p.id)
                .collect(),
        ),
        Op::PutProfile => {
            let slug = w.tenant(device.tenant_id).tenant.slug.as_str();
            let id = ProfileId::new(format!("{slug}.own")).expect("a valid id");
            let stored = s.profiles.put_profile(principal, profile(id, None)).await?;
            Seen::Profiles(vec![stored.id])
        }
    })
}

fn is_forbidden(result: &Result<Seen, DomainError>) -> bool {
    matches!(result, Err(DomainError::Forbidden(_)))
}

fn is_not_found(result: &Result<Seen, DomainError>) -> bool {
    matches!(result, Err(DomainError::NotFound(_)))
}

#[tokio::test]
async fn every_role_gets_what_the_access_table_says_and_forbidden_otherwise() {
    // Given both tenants seeded, a member per role covering every device
    let w = world().await;

    for op in Op::ALL {
        for role in Role::ALL {
            let principal = w.acme.member(role);
            let writes_before = w.field.writes();

            // When the member calls the method on a device of their tenant
            let result = run(&w, op, &principal, &w.acme.north_device).await;

            // Then it succeeds exactly when the table allows, else Forbidden
            if op.allowed(role) {
                assert!(result.is_ok(), "{op:?} as {role}: {result:?}");
            } else {
                assert!(
                    is_forbidden(&result),
                    "{op:?} as {role} must be Forbidden: {result:?}"
                );
                // And a refused write never reaches the field
                assert_eq!(w.field.writes(), writes_before, "{op:?} as {role}");
            }
        }
    }
}

/// Leaves an audit trail in both tenants: a confirmed write about the north
/// device, a refused one about the south device, a tenant-level entry (a
/// stored profile), and one confirmed write in globex.
async fn audit_trail(w: &World) {
    let acme_admin = w.acme.member(Role::Admin);
    let globex_admin = w.globex.member(Role::Admin);
    let readonly = w.acme.member(Role::ReadOnly);
    for (principal, device) in [
        (&acme_admin, &w.acme.north_device),
        (&readonly, &w.acme.south_device),
        (&globex_admin, &w.globex.north_device),
    ] {
        let _ = run(w, Op::WriteBasic, principal, device).await;
    }
    run(w, Op::PutProfile, &acme_admin, &w.acme.north_device)
        .await
        .expect("an admin stores a profile");
}

#[tokio::test]
async fn a_principal_of_another_tenant_is_denied_or_sees_nothing_of_it() {
    // Given acme with devices, audit entries and a profile of its own
    let w = world().await;
    audit_trail(&w).await;
    let acme_ids: BTreeSet<DeviceId> = w.acme.devices().iter().map(|d| d.id).collect();

    for op in Op::ALL {
        // When globex's admin, allowed everything in globex, aims at acme
        let result = run(&w, op, &w.globex.member(Role::Admin), &w.acme.north_device).await;

        // Then a method on an acme device answers as for a missing one
        if op.takes_device() {
            assert!(is_not_found(&result), "{op:?}: {result:?}");
            continue;
        }
        // And a listing shows globex's own things only
        match (op, result) {
            (Op::ListDevices, Ok(Seen::Devices(ids))) => {
                assert!(!ids.is_empty(), "globex's own devices are listed");
                assert!(ids.iter().all(|id| !acme_ids.contains(id)), "{ids:?}");
            }
            (Op::AuditLog, Ok(Seen::Audit(entries))) => {
                assert!(!entries.is_empty(), "globex's own entries are listed");
                assert!(entries.iter().all(|(t, _)| *t == w.globex.tenant.id));
            }
            (Op::Profiles, Ok(Seen::Profiles(ids))) => {
                assert!(!ids.is_empty(), "the built-in profile is listed");
                assert!(ids.iter().all(|id| !id.as_str().starts_with("acme.")));
            }
            // And acme's profile namespace is not globex's to write
            (Op::PutProfile, result) => assert!(
                matches!(result, Err(DomainError::InvalidInput(_))),
                "{result:?}"
            ),
            (op, result) => panic!("{op:?}: unexpected {result:?}"),
        }
    }
}

#[tokio::test]
async fn a_device_outside_the_callers_scope_is_hidden_or_filtered_out() {
    // Given a Full member scoped to the area `north`, and an audit trail
    // about devices in and out of that scope
    let w = world().await;
    audit_trail(&w).await;
    let scoped = &w.acme_north_full;

    for op in Op::ALL {
        // When they call the method on the device in `south`
        let result = run(&w, op, scoped, &w.acme.south_device).await;

        // Then a method on that device answers as for a missing one
        if op.takes_device() {
            assert!(is_not_found(&result), "{op:?}: {result:?}");
            continue;
        }
        match (op, result) {
            // And listings hold the area's subtree and nothing else
            (Op::ListDevices, Ok(Seen::Devices(ids))) => {
                let ids: BTreeSet<_> = ids.into_iter().collect();
                let north: BTreeSet<_> = [w.acme.north_device.id, w.acme.north_sub_device.id]
                    .into_iter()
                    .collect();
                assert_eq!(ids, north);
            }
            (Op::AuditLog, Ok(Seen::Audit(entries))) => {
                assert!(!entries.is_empty(), "entries about `north` are listed");
                assert!(
                    entries
                        .iter()
                        .all(|(_, d)| *d == Some(w.acme.north_device.id)),
                    "no entry about `south` and no tenant-level entry: {entries:?}"
                );
            }
            (Op::Profiles, Ok(Seen::Profiles(ids))) => assert!(!ids.is_empty()),
            // And what applies to the whole tenant is beyond a scoped member
            (Op::PutProfile, result) => assert!(is_forbidden(&result), "{result:?}"),
            (op, result) => panic!("{op:?}: unexpected {result:?}"),
        }
    }
}

#[tokio::test]
async fn an_area_grant_covers_its_subtree_and_a_device_grant_that_device_alone() {
    // Given the member scoped to `north`, and one granted the south device only
    let w = world().await;
    let mut single = w.acme.member(Role::Full);
    single.scope = DeviceScope::Restricted {
        areas: Vec::new(),
        devices: vec![w.acme.south_device.id],
    };

    // When each writes a comfort setpoint on the devices of their grant
    for (principal, device) in [
        (&w.acme_north_full, &w.acme.north_device),
        (&w.acme_north_full, &w.acme.north_sub_device),
        (&single, &w.acme.south_device),
    ] {
        // Then it is allowed
        let result = run(&w, Op::WriteBasic, principal, device).await;
        assert!(result.is_ok(), "{}: {result:?}", device.name);
    }
    // And the single-device grant reaches nothing else
    let result = run(&w, Op::Device, &single, &w.acme.north_device).await;
    assert!(is_not_found(&result), "{result:?}");
}

#[tokio::test]
async fn live_values_carry_only_the_devices_the_subscriber_may_see() {
    // Given a scoped member and globex's admin subscribed to everything
    // they may see
    let w = world().await;
    let mut scoped = w
        .services
        .live
        .subscribe_live(&w.acme_north_full, &[])
        .await
        .expect("a member may watch their scope");
    let mut other_tenant = w
        .services
        .live
        .subscribe_live(&w.globex.member(Role::Admin), &[])
        .await
        .expect("an admin may watch their tenant");

    // When acme's south device, then its north device, then globex's report
    // (recorded for targets the poller was given, as the poller does)
    let targets = w
        .services
        .ingest
        .poll_targets(&SystemPrincipal::poller())
        .await
        .expect("the poller gets its targets");
    for device in [
        &w.acme.south_device,
        &w.acme.north_device,
        &w.globex.north_device,
    ] {
        let reading = Reading {
            tenant_id: device.tenant_id,
            device_id: device.id,
            point: read_only_point(),
            timestamp: Utc::now(),
            value: 1.0,
            quality: Quality::Good,
        };
        let target = targets
            .iter()
            .find(|t| t.device().id == device.id)
            .expect("every device is a poll target");
        w.services
            .ingest
            .record_readings(target, vec![reading])
            .await;
    }

    // Then (skipping status changes) the scoped member's first reading is
    // from north, and globex's admin's is from globex
    let first_reading = |stream: &mut futures::stream::BoxStream<'static, LiveUpdate>| loop {
        match stream.next().now_or_never() {
            Some(Some(LiveUpdate::Readings(batch))) => return batch.first().map(|r| r.device_id),
            Some(Some(_)) => continue,
            _ => return None,
        }
    };
    assert_eq!(first_reading(&mut scoped), Some(w.acme.north_device.id));
    assert_eq!(
        first_reading(&mut other_tenant),
        Some(w.globex.north_device.id)
    );
}

/// Records one reading of each device, as the poller would.
async fn report(w: &World, devices: &[&Device]) {
    let targets = w
        .services
        .ingest
        .poll_targets(&SystemPrincipal::poller())
        .await
        .expect("the poller gets its targets");
    for device in devices {
        let reading = Reading {
            tenant_id: device.tenant_id,
            device_id: device.id,
            point: read_only_point(),
            timestamp: Utc::now(),
            value: 1.0,
            quality: Quality::Good,
        };
        let target = targets
            .iter()
            .find(|t| t.device().id == device.id)
            .expect("every device is a poll target");
        w.services
            .ingest
            .record_readings(target, vec![reading])
            .await;
    }
}

/// The devices of the readings ready on `stream` now (status changes skipped).
fn ready_reading_devices(
    stream: &mut futures::stream::BoxStream<'static, LiveUpdate>,
) -> std::collections::HashSet<DeviceId> {
    let mut devices = std::collections::HashSet::new();
    while let Some(Some(update)) = stream.next().now_or_never() {
        match update {
            LiveUpdate::Readings(batch) => devices.extend(batch.iter().map(|r| r.device_id)),
            LiveUpdate::Reading(r) => {
                devices.insert(r.device_id);
            }
            _ => {}
        }
    }
    devices
}

#[tokio::test]
async fn a_narrowed_scope_narrows_a_running_subscription_without_ending_it() {
    // Given a member scoped to the north area, subscribed to their scope and
    // following their access
    let w = world().await;
    let member = w.acme_north_full.clone();
    let (changes, changed) = futures::channel::mpsc::unbounded();
    let mut live = w
        .services
        .live
        .subscribe_live_following(&member, &[], changed.boxed())
        .await
        .expect("a member may watch their scope");
    report(&w, &[&w.acme.north_device, &w.acme.north_sub_device]).await;
    assert_eq!(
        ready_reading_devices(&mut live),
        std::collections::HashSet::from([w.acme.north_device.id, w.acme.north_sub_device.id])
    );

    // When their scope narrows to the sub-area's device alone, and both
    // devices report again
    let narrowed = Principal {
        scope: DeviceScope::Restricted {
            areas: Vec::new(),
            devices: vec![w.acme.north_sub_device.id],
        },
        ..member.clone()
    };
    changes
        .unbounded_send(narrowed)
        .expect("the stream listens");
    report(&w, &[&w.acme.north_device, &w.acme.north_sub_device]).await;

    // Then the same stream carries the kept device only
    assert_eq!(
        ready_reading_devices(&mut live),
        std::collections::HashSet::from([w.acme.north_sub_device.id])
    );

    // When a change claims to be another user's (a wiring mistake) and
    // would widen the scope again
    let other = Principal {
        user_id: w.guest.user_id,
        ..member.clone()
    };
    changes.unbounded_send(other).expect("the stream listens");
    // And a change back to the full north scope comes for the member
    changes.unbounded_send(member).expect("the stream listens");
    report(&w, &[&w.acme.north_device, &w.acme.north_sub_device]).await;

    // Then neither widens the running subscription
    assert_eq!(
        ready_reading_devices(&mut live),
        std::collections::HashSet::from([w.acme.north_sub_device.id])
    );
}

#[tokio::test]
async fn writes_refused_before_the_field_leave_it_alone_and_an_allowed_one_is_confirmed() {
    // Given an acme admin, allowed every write level
    let w = world().await;
    let admin = w.acme.member(Role::Admin);
    let device = &w.acme.north_device;
    let control = &w.services.control;

    // When they write a read-only point, and a value out of range
    let read_only = control
        .write_parameter(&admin, device.id, read_only_point(), 1.0)
        .await;
    let out_of_range = control
        .write_parameter(&admin, device.id, point_of(WriteLevel::Basic), 1e6)
        .await;

    // Then both are bad input, and nothing reached the field
    assert!(
        matches!(read_only, Err(DomainError::InvalidInput(_))),
        "{read_only:?}"
    );
    assert!(
        matches!(out_of_range, Err(DomainError::InvalidInput(_))),
        "{out_of_range:?}"
    );
    assert_eq!(w.field.writes(), 0);

    // When they write a valid comfort setpoint
    let outcome = control
        .write_parameter(&admin, device.id, point_of(WriteLevel::Basic), 21.5)
        .await
        .expect("an admin may write");

    // Then it reached the field once and was read back
    assert_eq!(w.field.writes(), 1);
    assert_eq!(outcome.value, Some(21.5));
    assert!(outcome.confirmed_at.is_some());
}

// ------------------------------------------------------------------- auth

/// The auth use cases, whose "who" is credentials and memberships rather
/// than roles.
#[derive(Debug, Clone, Copy)]
enum AuthOp {
    Login,
    SwitchTenant,
    Authenticate,
    Me,
    Logout,
    Refresh,
}

impl AuthOp {
    /// (`Refresh` last: it disables a member and removes the guest.)
    const ALL: [AuthOp; 6] = [
        AuthOp::Logout,
        AuthOp::Login,
        AuthOp::SwitchTenant,
        AuthOp::Authenticate,
        AuthOp::Me,
        AuthOp::Refresh,
    ];

    fn method(self) -> &'static str {
        match self {
            AuthOp::Login => "AuthService::login",
            AuthOp::SwitchTenant => "AuthService::switch_tenant",
            AuthOp::Authenticate => "AuthService::authenticate",
            AuthOp::Me => "AuthService::me",
            AuthOp::Logout => "AuthService::logout",
            AuthOp::Refresh => "AuthService::refresh",
        }
    }
}

#[tokio::test]
async fn auth_serves_members_in_their_own_tenants_only() {
    // Given both tenants, and a guest who is Basic in acme and Admin in globex
    let w = world().await;
    let auth = &w.services.auth;
    let acme_admin = w.acme.member(Role::Admin);

    for op in AuthOp::ALL {
        match op {
            AuthOp::Login => {
                // When each role logs in, Then its session carries its role
                for role in Role::ALL {
                    let email = w.acme.member(role).email;
                    let session = auth
                        .login(email.as_str(), PASSWORD, None, None)
                        .await
                        .expect("a member logs in");
                    assert_eq!((session.role, session.tenant.id), (role, w.acme.tenant.id));
                }
                // And a wrong password or a tenant without membership is refused alike
                let email = acme_admin.email.as_str();
                let wrong = auth.login(email, "wrong-password", None, None).await;
                let foreign = auth.login(email, PASSWORD, Some("globex"), None).await;
                assert!(matches!(wrong, Err(LoginError::InvalidCredentials)));
                assert!(matches!(foreign, Err(LoginError::InvalidCredentials)));
                // And the guest gets the tenant asked for, with that role
                let guest = auth
                    .login(w.guest.email.as_str(), PASSWORD, Some("globex"), None)
                    .await
                    .expect("the guest logs in to globex");
                assert_eq!(
                    (guest.role, guest.tenant.id),
                    (Role::Admin, w.globex.tenant.id)
                );
            }
            AuthOp::SwitchTenant => {
                // When the guest switches, Then they get globex
                let session = auth
                    .switch_tenant(&w.guest, "globex")
                    .await
                    .expect("the guest may switch");
                assert_eq!(session.tenant.id, w.globex.tenant.id);
                // And a member of acme alone may switch to neither an
                // existing nor a missing tenant, and cannot tell them apart
                for tenant in ["globex", "initech"] {
                    let result = auth.switch_tenant(&acme_admin, tenant).await;
                    assert!(
                        matches!(result, Err(DomainError::Forbidden(_))),
                        "{result:?}"
                    );
                }
            }
            AuthOp::Authenticate => {
                // When a member's token is presented, Then it stands for them
                let session = auth
                    .login(acme_admin.email.as_str(), PASSWORD, None, None)
                    .await
                    .expect("logs in");
                let principal = auth.authenticate(&session.token).await.expect("valid");
                assert_eq!(principal, acme_admin);
                // And a validly signed token for a tenant they do not belong
                // to, or garbage, stands for nobody
                use hearth_domain::ports::TokenService;
                let (foreign, _) = w
                    .tokens
                    .issue(acme_admin.user_id, w.globex.tenant.id, None)
                    .expect("issued");
                for token in [foreign.as_str(), "not-a-token"] {
                    let result = auth.authenticate(token).await;
                    assert!(
                        matches!(result, Err(DomainError::Unauthenticated)),
                        "{result:?}"
                    );
                }
            }
            AuthOp::Logout => {
                // Given two sessions of acme's Full member and one of its admin
                let full = w.acme.member(Role::Full);
                let login = |email: String| async move {
                    auth.login(&email, PASSWORD, None, None)
                        .await
                        .expect("logs in")
                };
                let first = login(full.email.to_string()).await;
                let second = login(full.email.to_string()).await;
                let other = login(acme_admin.email.to_string()).await;
                let principal = auth.authenticate(&first.token).await.expect("valid");
                // When the member logs out of the first session
                auth.logout(&principal, &first.token, false)
                    .await
                    .expect("logs out");
                // Then that session's access and refresh tokens are refused,
                // and the second session goes on
                let result = auth.authenticate(&first.token).await;
                assert!(
                    matches!(result, Err(DomainError::Unauthenticated)),
                    "{result:?}"
                );
                let result = auth.refresh(&first.refresh_token).await;
                assert!(
                    matches!(result, Err(DomainError::Unauthenticated)),
                    "{result:?}"
                );
                assert!(auth.authenticate(&second.token).await.is_ok());
                // And a token of another user cannot log this one out
                let result = auth.logout(&principal, &other.token, false).await;
                assert!(
                    matches!(result, Err(DomainError::Unauthenticated)),
                    "{result:?}"
                );
                assert!(auth.authenticate(&other.token).await.is_ok());
                // When the member logs out of all sessions
                auth.logout(&principal, &second.token, true)
                    .await
                    .expect("logs out everywhere");
                // Then both of their sessions are refused, refresh included,
                // the admin's is not, and a new login works
                let result = auth.refresh(&second.refresh_token).await;
                assert!(
                    matches!(result, Err(DomainError::Unauthenticated)),
                    "{result:?}"
                );
                for token in [&first.token, &second.token] {
                    let result = auth.authenticate(token).await;
                    assert!(
                        matches!(result, Err(DomainError::Unauthenticated)),
                        "{result:?}"
                    );
                }
                assert!(auth.authenticate(&other.token).await.is_ok());
                // (a login in the very millisecond of the logout is refused
                // by design; the next one is not)
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                let fresh = login(full.email.to_string()).await;
                assert!(auth.authenticate(&fresh.token).await.is_ok());
            }
            AuthOp::Refresh => {
                // Given a member logged in
                let member = w.acme.member(Role::Limited);
                let login = auth
                    .login(member.email.as_str(), PASSWORD, None, None)
                    .await
                    .expect("logs in");
                // When they refresh
                let renewed = auth.refresh(&login.refresh_token).await.expect("refreshes");
                // Then they get a new pair that works, for the same tenant and role
                assert_ne!(renewed.refresh_token, login.refresh_token);
                assert_eq!(
                    (renewed.tenant.id, renewed.role),
                    (w.acme.tenant.id, Role::Limited)
                );
                assert_eq!(
                    auth.authenticate(&renewed.token).await.ok(),
                    Some(member.clone())
                );
                // And the old refresh token is spent; presenting it again
                // (a copy) ends the whole session, the new pair included
                let reused = auth.refresh(&login.refresh_token).await;
                assert!(
                    matches!(reused, Err(DomainError::Unauthenticated)),
                    "{reused:?}"
                );
                let after = auth.refresh(&renewed.refresh_token).await;
                assert!(
                    matches!(after, Err(DomainError::Unauthenticated)),
                    "{after:?}"
                );
                let result = auth.authenticate(&renewed.token).await;
                assert!(
                    matches!(result, Err(DomainError::Unauthenticated)),
                    "{result:?}"
                );
                // When one refresh token is used twice at once
                let login = auth
                    .login(member.email.as_str(), PASSWORD, None, None)
                    .await
                    .expect("logs in");
                let (one, two) = tokio::join!(
                    auth.refresh(&login.refresh_token),
                    auth.refresh(&login.refresh_token)
                );
                // Then at most one gets a pair, and that pair is revoked too
                let winners: Vec<_> = [one, two].into_iter().filter_map(Result::ok).collect();
                assert!(winners.len() <= 1, "{} winners", winners.len());
                for winner in winners {
                    let result = auth.refresh(&winner.refresh_token).await;
                    assert!(
                        matches!(result, Err(DomainError::Unauthenticated)),
                        "{result:?}"
                    );
                }
                // And garbage, an empty or a huge token are refused alike
                for token in ["", "not-a-token", &"x".repeat(10_000)] {
                    let result = auth.refresh(token).await;
                    assert!(
                        matches!(result, Err(DomainError::Unauthenticated)),
                        "{result:?}"
                    );
                }

                // Given the guest logged in to acme and globex
                let guest_acme = auth
                    .login(w.guest.email.as_str(), PASSWORD, Some("acme"), None)
                    .await
                    .expect("the guest logs in to acme");
                let guest_globex = auth
                    .login(w.guest.email.as_str(), PASSWORD, Some("globex"), None)
                    .await
                    .expect("the guest logs in to globex");
                // When acme's admin removes the guest from acme
                w.services
                    .admin
                    .remove_membership(&acme_admin, w.guest.user_id)
                    .await
                    .expect("an admin removes a guest");
                // Then the acme refresh token is refused, the globex one is not
                let result = auth.refresh(&guest_acme.refresh_token).await;
                assert!(
                    matches!(result, Err(DomainError::Unauthenticated)),
                    "{result:?}"
                );
                let globex = auth
                    .refresh(&guest_globex.refresh_token)
                    .await
                    .expect("globex still has them");
                assert_eq!(globex.tenant.id, w.globex.tenant.id);

                // Given another member logged in, When an admin disables them
                let basic = w.acme.member(Role::Basic);
                let session = auth
                    .login(basic.email.as_str(), PASSWORD, None, None)
                    .await
                    .expect("logs in");
                w.services
                    .admin
                    .set_user_disabled(&acme_admin, basic.user_id, true)
                    .await
                    .expect("an admin disables a member");
                // Then their refresh token is refused
                let result = auth.refresh(&session.refresh_token).await;
                assert!(
                    matches!(result, Err(DomainError::Unauthenticated)),
                    "{result:?}"
                );
            }
            AuthOp::Me => {
                // When members ask who they are, Then they see their own memberships
                let me = auth.me(&acme_admin).await.expect("a member");
                let tenants: Vec<_> = me.memberships.iter().map(|m| m.tenant.id).collect();
                assert_eq!(tenants, vec![w.acme.tenant.id]);
                let guest = auth.me(&w.guest).await.expect("the guest");
                assert_eq!(guest.memberships.len(), 2);
                // And a principal claiming a tenant without membership is nobody
                let forged = Principal {
                    tenant_id: w.globex.tenant.id,
                    ..acme_admin.clone()
                };
                let result = auth.me(&forged).await;
                assert!(
                    matches!(result, Err(DomainError::Unauthenticated)),
                    "{result:?}"
                );
            }
        }
    }
}

// ---------------------------------------------------------- internal jobs

/// The provisioning use cases, each allowed to the provisioner only.
#[derive(Debug, Clone, Copy)]
enum ProvisionOp {
    TenantBySlug,
    CreateTenant,
    CreateArea,
    CreateDevice,
    CreateUser,
    SetMembership,
    RemoveMembership,
    PutBuiltinProfile,
    LinkIdentity,
}

impl ProvisionOp {
    const ALL: [ProvisionOp; 9] = [
        ProvisionOp::TenantBySlug,
        ProvisionOp::CreateTenant,
        ProvisionOp::CreateArea,
        ProvisionOp::CreateDevice,
        ProvisionOp::CreateUser,
        ProvisionOp::SetMembership,
        ProvisionOp::RemoveMembership,
        ProvisionOp::PutBuiltinProfile,
        ProvisionOp::LinkIdentity,
    ];

    fn method(self) -> &'static str {
        match self {
            ProvisionOp::TenantBySlug => "ProvisioningService::tenant_by_slug",
            ProvisionOp::CreateTenant => "ProvisioningService::create_tenant",
            ProvisionOp::CreateArea => "ProvisioningService::create_area",
            ProvisionOp::CreateDevice => "ProvisioningService::create_device",
            ProvisionOp::CreateUser => "ProvisioningService::create_user",
            ProvisionOp::SetMembership => "ProvisioningService::set_membership",
            ProvisionOp::RemoveMembership => "ProvisioningService::remove_membership",
            ProvisionOp::PutBuiltinProfile => "ProvisioningService::put_builtin_profile",
            ProvisionOp::LinkIdentity => "ProvisioningService::link_identity",
        }
    }
}

/// Calls `op` as `system` with fresh data in acme (or a new tenant).
async fn provision(
    w: &World,
    op: ProvisionOp,
    system: &SystemPrincipal,
) -> Result<(), DomainError> {
    let p = &w.services.provisioning;
    let acme = w.acme.tenant.id;
    let readonly = w.acme.member(Role::ReadOnly);
    let membership = Membership {
        user_id: readonly.user_id,
        tenant_id: acme,
        role: Role::Basic,
        scope: DeviceScope::All,
    };
    match op {
        ProvisionOp::TenantBySlug => p.tenant_by_slug(system, "acme").await.map(|_| ()),
        ProvisionOp::CreateTenant => {
            let tenant = Tenant {
                id: TenantId::new(),
                slug: TenantSlug::new("initech").expect("a valid slug"),
                name: "Initech".into(),
            };
            p.create_tenant(system, &tenant).await
        }
        ProvisionOp::CreateArea => {
            let area = Area {
                id: AreaId::new(),
                tenant_id: acme,
                parent_id: None,
                name: "east".into(),
            };
            p.create_area(system, &area).await
        }
        ProvisionOp::CreateDevice => {
            let device = Device {
                id: DeviceId::new(),
                name: "acme east".into(),
                ..w.acme.north_device.clone()
            };
            p.create_device(system, &device).await
        }
        ProvisionOp::CreateUser => {
            let user = User {
                id: UserId::new(),
                email: hearth_domain::model::EmailAddress::new("new@acme.test")
                    .expect("a valid email"),
                display_name: "New".into(),
                password_hash: None,
                disabled: false,
                tokens_valid_from: None,
            };
            let membership = Membership {
                user_id: user.id,
                ..membership
            };
            p.create_user(system, &user, PASSWORD, &[membership]).await
        }
        ProvisionOp::SetMembership => p.set_membership(system, &membership).await,
        ProvisionOp::RemoveMembership => p
            .remove_membership(system, readonly.user_id, acme)
            .await
            .map(|_| ()),
        ProvisionOp::PutBuiltinProfile => {
            let id = ProfileId::new("another-plant").expect("a valid id");
            p.put_builtin_profile(system, &profile(id, None)).await
        }
        ProvisionOp::LinkIdentity => {
            p.link_identity(
                system,
                acme,
                "https://idp.acme.test",
                "admin-subject",
                // Not `readonly`: RemoveMembership took that one away.
                w.acme.member(Role::Admin).user_id,
            )
            .await
        }
    }
}

#[tokio::test]
async fn only_the_provisioner_provisions() {
    // Given the seeded world
    let w = world().await;

    for op in ProvisionOp::ALL {
        // When the poller tries, Then it is Forbidden
        let result = provision(&w, op, &SystemPrincipal::poller()).await;
        assert!(
            matches!(result, Err(DomainError::Forbidden(_))),
            "{op:?}: {result:?}"
        );
        // When the provisioner does the same, Then it succeeds
        let result = provision(&w, op, &SystemPrincipal::provisioner()).await;
        assert!(result.is_ok(), "{op:?}: {result:?}");
    }

    // And a user in no tenant, which no per-tenant rule could allow, is
    // refused to every system principal
    for system in [SystemPrincipal::provisioner(), SystemPrincipal::poller()] {
        let result = w
            .services
            .provisioning
            .create_user(
                &system,
                &support::user("nobody@nowhere.test"),
                PASSWORD,
                &[],
            )
            .await;
        assert!(
            matches!(result, Err(DomainError::InvalidInput(_))),
            "{result:?}"
        );
    }
}

#[tokio::test]
async fn only_the_poller_reads_every_tenants_endpoints() {
    // Given devices in two tenants
    let w = world().await;
    let all: BTreeSet<DeviceId> = w
        .acme
        .devices()
        .into_iter()
        .chain(w.globex.devices())
        .map(|d| d.id)
        .collect();

    // When the poller and the provisioner ask for poll targets
    let ingest = &w.services.ingest;
    let poller = ingest
        .poll_targets(&SystemPrincipal::poller())
        .await
        .expect("the poller may ask");
    let provisioner = ingest
        .poll_targets(&SystemPrincipal::provisioner())
        .await
        .expect("a refused device is left out, not an error");

    // Then the poller gets every device with its profile, the provisioner none
    let polled: BTreeSet<DeviceId> = poller.iter().map(|t| t.device().id).collect();
    assert_eq!(polled, all);
    assert!(poller.iter().all(|t| t.profile().is_some()));
    assert!(provisioner.is_empty(), "{provisioner:?}");
}

// ------------------------------------------------------------ administration

/// The admin use cases: users, guests and scopes (Admin only), areas and
/// devices (Admin and Full covering the whole tenant), and two readings
/// every member may do (the role table, the areas in scope).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AdminOp {
    Roles,
    Users,
    CreateUser,
    SetMembership,
    RemoveMembership,
    AddGuest,
    DisableUser,
    ResetPassword,
    DeleteUser,
    Areas,
    CreateArea,
    RenameArea,
    MoveArea,
    DeleteArea,
    CreateDevice,
    UpdateDevice,
    DeleteDevice,
    SetTwoFactorRequired,
    ResetTwoFactor,
}

impl AdminOp {
    const ALL: [AdminOp; 19] = [
        AdminOp::Roles,
        AdminOp::Users,
        AdminOp::CreateUser,
        AdminOp::SetMembership,
        AdminOp::RemoveMembership,
        AdminOp::AddGuest,
        AdminOp::DisableUser,
        AdminOp::ResetPassword,
        AdminOp::DeleteUser,
        AdminOp::Areas,
        AdminOp::CreateArea,
        AdminOp::RenameArea,
        AdminOp::MoveArea,
        AdminOp::DeleteArea,
        AdminOp::CreateDevice,
        AdminOp::UpdateDevice,
        AdminOp::DeleteDevice,
        AdminOp::SetTwoFactorRequired,
        AdminOp::ResetTwoFactor,
    ];

    fn method(self) -> &'static str {
        match self {
            AdminOp::Roles => "AdminService::roles",
            AdminOp::Users => "AdminService::users",
            AdminOp::CreateUser => "AdminService::create_user",
            AdminOp::SetMembership => "AdminService::set_membership",
            AdminOp::RemoveMembership => "AdminService::remove_membership",
            AdminOp::AddGuest => "AdminService::add_guest",
            AdminOp::DisableUser => "AdminService::set_user_disabled",
            AdminOp::ResetPassword => "AdminService::reset_password",
            AdminOp::DeleteUser => "AdminService::delete_user",
            AdminOp::Areas => "AdminService::areas",
            AdminOp::CreateArea => "AdminService::create_area",
            AdminOp::RenameArea => "AdminService::rename_area",
            AdminOp::MoveArea => "AdminService::move_area",
            AdminOp::DeleteArea => "AdminService::delete_area",
            AdminOp::CreateDevice => "AdminService::create_device",
            AdminOp::UpdateDevice => "AdminService::update_device",
            AdminOp::DeleteDevice => "AdminService::delete_device",
            AdminOp::SetTwoFactorRequired => "AdminService::set_two_factor_required",
            AdminOp::ResetTwoFactor => "AdminService::reset_two_factor",
        }
    }

    /// DESIGN.md's table, written out independently of the policy.
    fn allowed(self, role: Role) -> bool {
        use AdminOp::*;
        match self {
            Roles | Areas => true,
            Users | CreateUser | SetMembership | RemoveMembership | AddGuest | DisableUser
            | ResetPassword | DeleteUser | SetTwoFactorRequired | ResetTwoFactor => {
                role == Role::Admin
            }
            CreateArea | RenameArea | MoveArea | DeleteArea | CreateDevice | UpdateDevice
            | DeleteDevice => matches!(role, Role::Admin | Role::Full),
        }
    }

    /// Whether the op names an existing user, area or device of the tenant.
    fn targets_something(self) -> bool {
        !matches!(
            self,
            AdminOp::Roles
                | AdminOp::Users
                | AdminOp::Areas
                | AdminOp::CreateUser
                | AdminOp::AddGuest
                | AdminOp::CreateArea
                | AdminOp::CreateDevice
                | AdminOp::SetTwoFactorRequired
        )
    }
}

/// Fresh things of one tenant for one admin call: a Basic member, an empty
/// area under `north`, a device in its own area, and a user of the other
/// tenant who may become a guest. Made by the tenant's own Admin.
struct AdminTargets {
    user: UserId,
    area: AreaId,
    device: DeviceId,
    device_area: AreaId,
    outsider_email: String,
}

async fn admin_targets(w: &World, tenant: &support::TenantWorld, n: usize) -> AdminTargets {
    use hearth_domain::model::Endpoint;
    use hearth_domain::services::{DeviceInput, NewUser};
    let admin = tenant.member(Role::Admin);
    let a = &w.services.admin;
    let slug = tenant.tenant.slug.as_str();
    let user = a
        .create_user(
            &admin,
            NewUser {
                email: format!("target{n}@{slug}.test"),
                display_name: format!("Target {n}"),
                password: Some(PASSWORD.into()),
                role: Role::Basic,
                scope: DeviceScope::All,
            },
        )
        .await
        .expect("the admin creates a user")
        .user
        .user
        .id;
    let area = a
        .create_area(&admin, &format!("area {n}"), Some(tenant.north.id))
        .await
        .expect("the admin creates an area")
        .id;
    let device_area = a
        .create_area(&admin, &format!("device area {n}"), None)
        .await
        .expect("the admin creates an area")
        .id;
    let device = a
        .create_device(
            &admin,
            DeviceInput {
                name: format!("target device {n}"),
                area_id: Some(device_area),
                profile_id: support::profile_id(),
                endpoint: Endpoint::new("127.0.0.1", 1502, 1).expect("valid"),
            },
        )
        .await
        .expect("the admin creates a device")
        .id;
    let other = if tenant.tenant.id == w.acme.tenant.id {
        &w.globex
    } else {
        &w.acme
    };
    let outsider_email = format!("outsider{n}@{slug}.test");
    let outsider = support::user(&outsider_email);
    w.services
        .provisioning
        .create_user(
            &SystemPrincipal::provisioner(),
            &outsider,
            PASSWORD,
            &[Membership {
                user_id: outsider.id,
                tenant_id: other.tenant.id,
                role: Role::Basic,
                scope: DeviceScope::All,
            }],
        )
        .await
        .expect("the outsider is created");
    AdminTargets {
        user,
        area,
        device,
        device_area,
        outsider_email,
    }
}

/// What an admin call let the caller see: ids of users, areas or devices.
#[derive(Debug)]
enum AdminSeen {
    Nothing,
    Users(Vec<UserId>),
    Areas(Vec<AreaId>),
}

/// Calls `op` as `principal` on `t` (things of some tenant; scopes and
/// parents named in the input come from `t` too).
async fn run_admin(
    w: &World,
    op: AdminOp,
    principal: &Principal,
    t: &AdminTargets,
    n: usize,
) -> Result<AdminSeen, DomainError> {
    use hearth_domain::model::Endpoint;
    use hearth_domain::services::{DeviceInput, NewUser};
    let a = &w.services.admin;
    let scope = DeviceScope::Restricted {
        areas: vec![t.area],
        devices: vec![t.device],
    };
    let input = |name: String| DeviceInput {
        name,
        area_id: Some(t.device_area),
        profile_id: support::profile_id(),
        endpoint: Endpoint::new("127.0.0.1", 1503, 2).expect("valid"),
    };
    Ok(match op {
        AdminOp::Roles => a.roles(principal).await.map(|_| AdminSeen::Nothing)?,
        AdminOp::Users => AdminSeen::Users(
            a.users(principal, 0, 200)
                .await?
                .items
                .into_iter()
                .map(|u| u.user.id)
                .collect(),
        ),
        AdminOp::CreateUser => a
            .create_user(
                principal,
                NewUser {
                    email: format!("new{n}@anywhere.test"),
                    display_name: "New".into(),
                    password: None,
                    role: Role::ReadOnly,
                    scope,
                },
            )
            .await
            .map(|c| AdminSeen::Users(vec![c.user.user.id]))?,
        AdminOp::SetMembership => a
            .set_membership(principal, t.user, Role::ReadOnly, scope)
            .await
            .map(|_| AdminSeen::Nothing)?,
        AdminOp::RemoveMembership => a
            .remove_membership(principal, t.user)
            .await
            .map(|_| AdminSeen::Nothing)?,
        AdminOp::AddGuest => a
            .add_guest(principal, &t.outsider_email, Role::Basic, scope)
            .await
            .map(|_| AdminSeen::Nothing)?,
        AdminOp::DisableUser => a
            .set_user_disabled(principal, t.user, true)
            .await
            .map(|_| AdminSeen::Nothing)?,
        AdminOp::ResetPassword => a
            .reset_password(principal, t.user, None)
            .await
            .map(|_| AdminSeen::Nothing)?,
        AdminOp::DeleteUser => a
            .delete_user(principal, t.user)
            .await
            .map(|_| AdminSeen::Nothing)?,
        AdminOp::Areas => AdminSeen::Areas(
            a.areas(principal)
                .await?
                .into_iter()
                .map(|a| a.id)
                .collect(),
        ),
        AdminOp::CreateArea => a
            .create_area(principal, "new area", Some(t.area))
            .await
            .map(|_| AdminSeen::Nothing)?,
        AdminOp::RenameArea => a
            .rename_area(principal, t.area, "renamed")
            .await
            .map(|_| AdminSeen::Nothing)?,
        AdminOp::MoveArea => a
            .move_area(principal, t.area, None)
            .await
            .map(|_| AdminSeen::Nothing)?,
        AdminOp::DeleteArea => a
            .delete_area(principal, t.area)
            .await
            .map(|_| AdminSeen::Nothing)?,
        AdminOp::CreateDevice => a
            .create_device(principal, input(format!("new device {n}")))
            .await
            .map(|_| AdminSeen::Nothing)?,
        AdminOp::UpdateDevice => a
            .update_device(principal, t.device, input(format!("renamed device {n}")))
            .await
            .map(|_| AdminSeen::Nothing)?,
        AdminOp::DeleteDevice => a
            .delete_device(principal, t.device)
            .await
            .map(|_| AdminSeen::Nothing)?,
        // `false`: the other tests of this world log in without a code.
        AdminOp::SetTwoFactorRequired => a
            .set_two_factor_required(principal, false)
            .await
            .map(|_| AdminSeen::Nothing)?,
        AdminOp::ResetTwoFactor => a
            .reset_two_factor(principal, t.user)
            .await
            .map(|_| AdminSeen::Nothing)?,
    })
}

#[tokio::test]
async fn admin_operations_follow_the_access_table() {
    // Given acme, and fresh targets for every call
    let w = world().await;
    let mut n = 0;
    for op in AdminOp::ALL {
        for role in Role::ALL {
            n += 1;
            let t = admin_targets(&w, &w.acme, n).await;
            // When a member covering every device calls the op
            let result = run_admin(&w, op, &w.acme.member(role), &t, n).await;
            // Then it succeeds exactly where the table says, else Forbidden
            if op.allowed(role) {
                assert!(result.is_ok(), "{op:?} as {role}: {result:?}");
            } else {
                assert!(
                    matches!(result, Err(DomainError::Forbidden(_))),
                    "{op:?} as {role} must be Forbidden: {result:?}"
                );
            }
        }
    }
}

#[tokio::test]
async fn an_admin_of_another_tenant_reaches_nothing_of_it() {
    // Given acme's targets, and globex's admin
    let w = world().await;
    let globex_admin = w.globex.member(Role::Admin);
    let acme_users: BTreeSet<UserId> = Role::ALL
        .iter()
        .map(|r| w.acme.member(*r).user_id)
        .collect();
    for (n, op) in AdminOp::ALL.into_iter().enumerate() {
        let t = admin_targets(&w, &w.acme, 1000 + n).await;
        // When globex's admin aims the op at acme's things
        let result = run_admin(&w, op, &globex_admin, &t, 1000 + n).await;
        // Then acme's things are as unknown as missing ones
        match (op, result) {
            (op, Err(DomainError::NotFound(_))) if op.targets_something() => {}
            // And ids of acme named in an input are refused as unknown
            (
                AdminOp::CreateUser
                | AdminOp::AddGuest
                | AdminOp::CreateArea
                | AdminOp::CreateDevice,
                Err(DomainError::InvalidInput(_)),
            ) => {}
            (AdminOp::Roles, Ok(_)) => {}
            // A tenant setting: it can only ever be the caller's own tenant's
            (AdminOp::SetTwoFactorRequired, Ok(_)) => {}
            // And listings show globex's own things only
            (AdminOp::Users, Ok(AdminSeen::Users(ids))) => {
                assert!(!ids.is_empty());
                assert!(ids
                    .iter()
                    .all(|id| !acme_users.contains(id) && *id != t.user));
            }
            (AdminOp::Areas, Ok(AdminSeen::Areas(ids))) => {
                assert!(ids.contains(&w.globex.north.id));
                assert!(!ids.contains(&t.area) && !ids.contains(&w.acme.north.id));
            }
            (op, result) => panic!("{op:?}: unexpected {result:?}"),
        }
    }
    // And acme's target user, area and device are untouched
    let acme_admin = w.acme.member(Role::Admin);
    let users = w.services.admin.users(&acme_admin, 0, 200).await.unwrap();
    assert!(users.items.iter().all(|u| !u.user.disabled));
}

#[tokio::test]
async fn a_member_scoped_to_an_area_administers_nothing() {
    // Given the Full member scoped to `north` (Full may manage devices and
    // areas, but only with a membership covering the whole tenant)
    let w = world().await;
    for (n, op) in AdminOp::ALL.into_iter().enumerate() {
        let t = admin_targets(&w, &w.acme, 2000 + n).await;
        // When they call the op on things inside their own area
        let result = run_admin(&w, op, &w.acme_north_full, &t, 2000 + n).await;
        // Then reading works, and sees the area's subtree only
        match (op, result) {
            (AdminOp::Roles, Ok(_)) => {}
            (AdminOp::Areas, Ok(AdminSeen::Areas(ids))) => {
                assert!(ids.contains(&w.acme.north.id) && ids.contains(&t.area));
                assert!(!ids.contains(&w.acme.south.id) && !ids.contains(&t.device_area));
            }
            // And every change is Forbidden
            (_, Err(DomainError::Forbidden(_))) => {}
            (op, result) => panic!("{op:?}: unexpected {result:?}"),
        }
    }
}

// ------------------------------------------------------------------ guard

/// Public methods with no authorization of their own, and why. Adding a
/// method here is a decision a reviewer sees; forgetting it fails the guard.
const WITHOUT_AUTHORIZATION: &[(&str, &str)] = &[
    (
        "AlarmEngine::checks",
        "the pure alarm engine: no I/O, fed by the evaluator job only",
    ),
    (
        "AlarmEngine::devices",
        "the pure alarm engine: no I/O, fed by the evaluator job only",
    ),
    (
        "AlarmEngine::is_raised",
        "the pure alarm engine: no I/O, fed by the evaluator job only",
    ),
    (
        "AlarmEngine::new",
        "the pure alarm engine: no I/O, fed by the evaluator job only",
    ),
    (
        "AlarmEngine::on_readings",
        "the pure alarm engine: no I/O, fed by the evaluator job only",
    ),
    (
        "AlarmEngine::on_status",
        "the pure alarm engine: no I/O, fed by the evaluator job only",
    ),
    (
        "AlarmEngine::rule",
        "the pure alarm engine: no I/O, fed by the evaluator job only",
    ),
    (
        "AlarmEngine::rule_count",
        "the pure alarm engine: no I/O, fed by the evaluator job only",
    ),
    (
        "AlarmEngine::seed_active",
        "the pure alarm engine: no I/O, fed by the evaluator job only",
    ),
    (
        "AlarmEngine::set_devices",
        "the pure alarm engine: no I/O, fed by the evaluator job only",
    ),
    (
        "AlarmEngine::set_rules",
        "the pure alarm engine: no I/O, fed by the evaluator job only",
    ),
    (
        "AlarmEngine::tick",
        "the pure alarm engine: no I/O, fed by the evaluator job only",
    ),
    (
        "AlarmEngine::tick_checks",
        "the pure alarm engine: no I/O, fed by the evaluator job only",
    ),
    (
        "DeviceIndex::entries",
        "the alarm engine's in-memory device index: no I/O",
    ),
    (
        "DeviceIndex::get",
        "the alarm engine's in-memory device index: no I/O",
    ),
    (
        "DeviceIndex::ids",
        "the alarm engine's in-memory device index: no I/O",
    ),
    (
        "DeviceIndex::is_empty",
        "the alarm engine's in-memory device index: no I/O",
    ),
    (
        "DeviceIndex::len",
        "the alarm engine's in-memory device index: no I/O",
    ),
    (
        "DeviceIndex::new",
        "the alarm engine's in-memory device index: no I/O",
    ),
    (
        "DeviceIndex::tenants",
        "the alarm engine's in-memory device index: no I/O",
    ),
    (
        "Transition::device",
        "an accessor of an engine result: no I/O",
    ),
    (
        "Transition::is_raise",
        "an accessor of an engine result: no I/O",
    ),
    (
        "Transition::rule",
        "an accessor of an engine result: no I/O",
    ),
    (
        "AlarmEvaluator::spawn",
        "an internal job started by the composition root over the AlarmService",
    ),
    (
        "AlarmEvaluatorHandle::is_ready",
        "the evaluator job's own state",
    ),
    (
        "AlarmEvaluatorHandle::stats",
        "the evaluator job's own counters",
    ),
    (
        "AlarmEvaluatorHandle::stop",
        "stops the evaluator job",
    ),
    (
        "AlarmService::acknowledge_alarm",
        "AcknowledgeAlarms on the device, scope applies (domain/tests/alarms.rs, tests/access_matrix.rs)",
    ),
    (
        "AlarmService::alarms",
        "View, filtered to the caller's scope (domain/tests/alarms.rs, tests/access_matrix.rs)",
    ),
    (
        "AlarmService::alarm_rules",
        "ManageTenant: Admin or unscoped Full (domain/tests/alarms.rs, tests/access_matrix.rs)",
    ),
    (
        "AlarmService::put_alarm_rule",
        "ManageTenant: Admin or unscoped Full (domain/tests/alarms.rs, tests/access_matrix.rs)",
    ),
    (
        "AlarmService::delete_alarm_rule",
        "ManageTenant: Admin or unscoped Full (domain/tests/alarms.rs, tests/access_matrix.rs)",
    ),
    (
        "AlarmService::raise",
        "the evaluator job's outlet, no caller principal (internal; see the issue 11 note)",
    ),
    (
        "AlarmService::clear",
        "the evaluator job's outlet, no caller principal (internal; see the issue 11 note)",
    ),
    (
        "AlarmService::all_rules",
        "loaded by the evaluator job at start (internal)",
    ),
    (
        "AlarmService::active_alarms",
        "loaded by the evaluator job at start (internal)",
    ),
    (
        "AlarmService::rule_changes",
        "a change counter for the evaluator job: no data",
    ),
    (
        "NotificationService::notification_failures",
        "Admin only (ManageUsers), own tenant (tests/notifications.rs, tests/access_matrix.rs)",
    ),
    (
        "Services::alarm_service",
        "the composition root builds the alarm service",
    ),
    (
        "Services::alarms",
        "the alarm service the composition root installed",
    ),
    (
        "Services::spawn_alarm_evaluator",
        "the composition root starts the evaluator job",
    ),
    (
        "Services::with_alarms",
        "the composition root adds the alarm stores",
    ),
    (
        "Services::with_notifications",
        "the composition root adds the notifier and the dead-letter log",
    ),
    ("::covers_tenant", "a pure rule over a membership, no data"),
    (
        "::device_in_scope",
        "a pure rule over a membership, no data",
    ),
    ("::scope_filter", "a pure rule over a membership, no data"),
    ("::area_in_scope", "a pure rule over a membership, no data"),
    ("Services::new", "the composition root builds the services"),
    (
        "PlatformService::create_tenant",
        "platform operators only: a directory grant, no tenant role (tests/platform.rs)",
    ),
    (
        "PlatformService::create",
        "writes through ProvisioningService as the given system principal, checked there",
    ),
    (
        "PlatformService::set_operator",
        "asks the policy for the system principal's provision on what no tenant owns",
    ),
    (
        "Services::with_secret_sealer",
        "the composition root adds the key that seals two-factor secrets",
    ),
    (
        "AuthService::begin_login",
        "login (AuthOp::Login) is this plus refusing second-factor accounts",
    ),
    (
        "TwoFactorService::status",
        "any member, about their own account only (tests/two_factor.rs)",
    ),
    (
        "TwoFactorService::enrol",
        "any member or an enrolment challenge, for their own account only (tests/two_factor.rs)",
    ),
    (
        "TwoFactorService::confirm",
        "any member or an enrolment challenge, for their own account only (tests/two_factor.rs)",
    ),
    (
        "TwoFactorService::disable",
        "any member, about their own account only (tests/two_factor.rs)",
    ),
    (
        "TwoFactorService::verify",
        "public: the second step of a login, by its challenge (tests/two_factor.rs)",
    ),
    (
        "Services::with_external_tokens",
        "the composition root adds a token verifier; tokens still map to members only",
    ),
    (
        "AuthService::hash_password",
        "hashes a password the caller supplies; reads and writes nothing",
    ),
    (
        "IngestService::reading_writer",
        "the field layer's batch writer handle; internal",
    ),
    (
        "IngestService::is_watched",
        "takes a PollTarget, which only the authorized poll_targets makes",
    ),
    (
        "IngestService::record_readings",
        "takes a PollTarget, which only the authorized poll_targets makes",
    ),
    (
        "IngestService::record_status",
        "takes a PollTarget, which only the authorized poll_targets makes",
    ),
    ("PollTarget::device", "a getter of an authorized target"),
    ("PollTarget::profile", "a getter of an authorized target"),
    (
        "DevicePoller::new",
        "takes a PollTarget, which only the authorized poll_targets makes",
    ),
    ("DevicePoller::device", "a getter"),
    (
        "DevicePoller::poll_once",
        "records through record_readings with its authorized target",
    ),
    (
        "DevicePoller::read_once",
        "reads the field only; records nothing",
    ),
    (
        "Poller::spawn",
        "polls only what poll_targets gives the poller principal (reload)",
    ),
    (
        "Poller::spawn_with",
        "polls only what poll_targets gives the poller principal (reload)",
    ),
    ("PollerHandle::polled_devices", "a counter"),
    (
        "PollerHandle::reload",
        "asks poll_targets as the poller principal again",
    ),
    ("PollerHandle::stop", "stops tasks; touches no data"),
    ("ReadingWriter::spawn", "internal to ingest"),
    ("ReadingWriter::shutdown", "internal to ingest"),
    ("ReadingWriter::stats", "internal to ingest"),
    ("ReadingWriter::write", "internal to ingest"),
];

/// `Type::method` of every `pub fn` / `pub async fn` in the service
/// sources (free functions as `::name`), outside test modules.
fn public_methods() -> BTreeSet<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/services");
    let mut found = BTreeSet::new();
    let entries = std::fs::read_dir(dir).expect("the services folder is readable");
    for entry in entries {
        let path = entry.expect("a folder entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let source = std::fs::read_to_string(&path).expect("a readable source file");
        let mut owner = String::new();
        for line in source.lines() {
            if line.starts_with("#[cfg(test)]") {
                break;
            }
            if let Some(header) = line.strip_prefix("impl") {
                // `impl Type {` or `impl<..> Trait for Type {`: the last word
                owner = header
                    .trim_end_matches('{')
                    .split_whitespace()
                    .last()
                    .unwrap_or_default()
                    .to_string();
            } else if line == "}" {
                // The end of a top-level item, the impl included.
                owner.clear();
            }
            let item = line.trim_start();
            let name = ["pub fn ", "pub async fn ", "pub const fn "]
                .iter()
                .find_map(|p| item.strip_prefix(p));
            if let Some(rest) = name {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                found.insert(format!("{owner}::{name}"));
            }
        }
    }
    found
}

#[test]
fn every_public_service_method_has_an_authorization_test() {
    // Given the public methods in the service sources
    let found = public_methods();
    assert!(
        found.contains("DeviceService::list_devices"),
        "the parser finds methods: {found:?}"
    );

    // When they are compared with the methods the tables above cover
    let covered: BTreeSet<String> = Op::ALL
        .iter()
        .map(|o| o.method())
        .chain(AuthOp::ALL.iter().map(|o| o.method()))
        .chain(ProvisionOp::ALL.iter().map(|o| o.method()))
        .chain(AdminOp::ALL.iter().map(|o| o.method()))
        .chain(["IngestService::poll_targets"])
        .chain(WITHOUT_AUTHORIZATION.iter().map(|(m, _)| *m))
        .map(str::to_string)
        .collect();

    // Then none is missing from the tables, and no table names a method
    // that is gone
    let missing: Vec<_> = found.difference(&covered).collect();
    let stale: Vec<_> = covered.difference(&found).collect();
    assert!(
        missing.is_empty(),
        "public service methods without an authorization test \
         (add a case above, or an entry with a reason to WITHOUT_AUTHORIZATION): {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "tables name methods that no longer exist: {stale:?}"
    );
}
