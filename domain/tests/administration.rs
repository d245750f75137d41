//! Use-case tier: what the admin use cases do beyond who may call them
//! (that is `authorization.rs`): the area tree's rules, the last Admin,
//! changes holding on the next request, the audit trail, and the role
//! table read from the policy.

// Integration-test helpers: a panic with its message is how a broken fixture fails a test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use hearth_domain::model::{DeviceScope, Endpoint, Role};
use hearth_domain::services::{AuditQuery, DeviceInput, DeviceQuery, NewUser};
use hearth_domain::{AreaId, DomainError};
use support::{world, PASSWORD};

fn device_input(name: &str, area: Option<AreaId>) -> DeviceInput {
    DeviceInput {
        name: name.into(),
        area_id: area,
        profile_id: support::profile_id(),
        endpoint: Endpoint::new("127.0.0.1", 1502, 1).unwrap(),
    }
}

#[tokio::test]
async fn the_area_tree_refuses_cycles_depth_beyond_six_and_deleting_what_is_not_empty() {
    // Given acme's admin and a chain of five areas below `north` (six levels)
    let w = world().await;
    let admin = w.acme.member(Role::Admin);
    let a = &w.services.admin;
    let mut chain = vec![w.acme.north.id];
    for level in 2..=6 {
        let area = a
            .create_area(&admin, &format!("level {level}"), chain.last().copied())
            .await
            .unwrap();
        chain.push(area.id);
    }

    // When a seventh level is asked for, Then it is refused as bad input
    let seventh = a.create_area(&admin, "level 7", Some(chain[5])).await;
    assert!(
        matches!(seventh, Err(DomainError::InvalidInput(_))),
        "{seventh:?}"
    );

    // When `north` is moved below its own descendant, Then it is refused
    let cycle = a.move_area(&admin, chain[0], Some(chain[3])).await;
    assert!(
        matches!(cycle, Err(DomainError::InvalidInput(_))),
        "{cycle:?}"
    );
    let onto_itself = a.move_area(&admin, chain[2], Some(chain[2])).await;
    assert!(matches!(onto_itself, Err(DomainError::InvalidInput(_))));

    // When the six-level chain is moved below `south`, Then it would be
    // seven deep and is refused; moving its lower half there is fine
    let too_deep = a.move_area(&admin, chain[0], Some(w.acme.south.id)).await;
    assert!(
        matches!(too_deep, Err(DomainError::InvalidInput(_))),
        "{too_deep:?}"
    );
    let moved = a
        .move_area(&admin, chain[3], Some(w.acme.south.id))
        .await
        .unwrap();
    assert_eq!(moved.parent_id, Some(w.acme.south.id));
    let areas = a.areas(&admin).await.unwrap();
    let stored = areas.iter().find(|x| x.id == chain[3]).unwrap();
    assert_eq!(stored.parent_id, Some(w.acme.south.id));

    // When an area with children or with devices is deleted, Then CONFLICT
    let with_children = a.delete_area(&admin, w.acme.south.id).await;
    assert!(
        matches!(with_children, Err(DomainError::Conflict(_))),
        "{with_children:?}"
    );
    let with_device = a.delete_area(&admin, w.acme.north_sub.id).await;
    assert!(
        matches!(with_device, Err(DomainError::Conflict(_))),
        "{with_device:?}"
    );

    // And an empty leaf goes, and is gone
    assert!(a.delete_area(&admin, chain[5]).await.unwrap());
    let after = a.areas(&admin).await.unwrap();
    assert!(after.iter().all(|x| x.id != chain[5]));
    let again = a.delete_area(&admin, chain[5]).await;
    assert!(matches!(again, Err(DomainError::NotFound(_))));
}

#[tokio::test]
async fn devices_are_created_moved_and_deleted_with_their_inputs_checked() {
    // Given acme's admin
    let w = world().await;
    let admin = w.acme.member(Role::Admin);
    let a = &w.services.admin;

    // When a device is created in `south`, Then it is listed there
    let device = a
        .create_device(&admin, device_input("new boiler", Some(w.acme.south.id)))
        .await
        .unwrap();
    let view = w.services.devices.device(&admin, device.id).await.unwrap();
    assert_eq!(view.area.map(|x| x.id), Some(w.acme.south.id));

    // When it is moved to `north` and renamed, Then it reads back so
    let moved = a
        .update_device(
            &admin,
            device.id,
            device_input("boiler 2", Some(w.acme.north.id)),
        )
        .await
        .unwrap();
    assert_eq!(
        (moved.name.as_str(), moved.area_id),
        ("boiler 2", Some(w.acme.north.id))
    );

    // And a taken name, another tenant's area, an unknown profile, and a
    // blank name are refused with typed errors
    let taken = a
        .update_device(&admin, device.id, device_input("acme south", None))
        .await;
    assert!(matches!(taken, Err(DomainError::Conflict(_))), "{taken:?}");
    let foreign_area = a
        .create_device(&admin, device_input("x", Some(w.globex.north.id)))
        .await;
    assert!(matches!(foreign_area, Err(DomainError::InvalidInput(_))));
    let mut unknown_profile = device_input("y", None);
    unknown_profile.profile_id = hearth_domain::ProfileId::new("no-such-profile").unwrap();
    let unknown_profile = a.create_device(&admin, unknown_profile).await;
    assert!(matches!(unknown_profile, Err(DomainError::InvalidInput(_))));
    let blank = a.create_device(&admin, device_input("  ", None)).await;
    assert!(matches!(blank, Err(DomainError::InvalidInput(_))));

    // When it is deleted, Then it is gone from listings
    assert!(a.delete_device(&admin, device.id).await.unwrap());
    let gone = w.services.devices.device(&admin, device.id).await;
    assert!(matches!(gone, Err(DomainError::NotFound(_))));
}

/// The ids of the devices `p` may list, sorted.
async fn listed(w: &support::World, p: hearth_domain::Principal) -> Vec<hearth_domain::DeviceId> {
    let query = DeviceQuery {
        limit: 200,
        ..DeviceQuery::default()
    };
    let page = w.services.devices.list_devices(&p, query).await.unwrap();
    let mut ids: Vec<_> = page.items.into_iter().map(|v| v.device.id).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_narrowed_scope_or_a_disabled_user_holds_on_the_next_request() {
    // Given a user created by acme's admin, logged in, covering every device
    let w = world().await;
    let admin = w.acme.member(Role::Admin);
    let a = &w.services.admin;
    let created = a
        .create_user(
            &admin,
            NewUser {
                email: "operator@acme.test".into(),
                display_name: "Operator".into(),
                password: Some(PASSWORD.into()),
                role: Role::Basic,
                scope: DeviceScope::All,
            },
        )
        .await
        .unwrap();
    let user = created.user.user.id;
    assert!(created.one_time_password.is_none());
    let session = w
        .services
        .auth
        .login("operator@acme.test", PASSWORD, None, None)
        .await
        .unwrap();
    let before = w.services.auth.authenticate(&session.token).await.unwrap();
    assert_eq!(listed(&w, before).await.len(), 3);

    // When the admin narrows the scope to `south`
    let south = DeviceScope::Restricted {
        areas: vec![w.acme.south.id],
        devices: Vec::new(),
    };
    a.set_membership(&admin, user, Role::Basic, south)
        .await
        .unwrap();

    // Then the same token's very next request sees `south` only
    let after = w.services.auth.authenticate(&session.token).await.unwrap();
    assert_eq!(listed(&w, after).await, vec![w.acme.south_device.id]);

    // When the admin disables the user
    let view = a.set_user_disabled(&admin, user, true).await.unwrap();
    assert!(view.user.disabled);

    // Then the token stops working at once, and logging in is refused
    let refused = w.services.auth.authenticate(&session.token).await;
    assert!(
        matches!(refused, Err(DomainError::Unauthenticated)),
        "{refused:?}"
    );
    let login = w
        .services
        .auth
        .login("operator@acme.test", PASSWORD, None, None)
        .await;
    assert!(login.is_err(), "a disabled user must not log in");

    // And once re-enabled the user works again
    a.set_user_disabled(&admin, user, false).await.unwrap();
    assert!(w.services.auth.authenticate(&session.token).await.is_ok());

    // When the membership is removed, Then the token is refused
    assert!(a.remove_membership(&admin, user).await.unwrap());
    let removed = w.services.auth.authenticate(&session.token).await;
    assert!(matches!(removed, Err(DomainError::Unauthenticated)));
}

#[tokio::test]
async fn the_last_admin_stays_and_guests_accounts_are_not_the_tenants_to_change() {
    // Given acme with one Admin, and the guest (Basic in acme, Admin in globex)
    let w = world().await;
    let admin = w.acme.member(Role::Admin);
    let a = &w.services.admin;

    // When the only Admin demotes or removes themself, Then CONFLICT
    let demote = a
        .set_membership(&admin, admin.user_id, Role::Full, DeviceScope::All)
        .await;
    assert!(
        matches!(demote, Err(DomainError::Conflict(_))),
        "{demote:?}"
    );
    let remove = a.remove_membership(&admin, admin.user_id).await;
    assert!(
        matches!(remove, Err(DomainError::Conflict(_))),
        "{remove:?}"
    );

    // When acme's admin tries to disable, reset or delete the guest's
    // account, Then it is forbidden (it belongs to globex too)
    let guest = w.guest.user_id;
    let disable = a.set_user_disabled(&admin, guest, true).await;
    assert!(
        matches!(disable, Err(DomainError::Forbidden(_))),
        "{disable:?}"
    );
    let reset = a.reset_password(&admin, guest, None).await;
    assert!(matches!(reset, Err(DomainError::Forbidden(_))));
    let delete = a.delete_user(&admin, guest).await;
    assert!(matches!(delete, Err(DomainError::Forbidden(_))));

    // But removing the guest's membership in acme is the admin's call, and
    // leaves their globex membership
    assert!(a.remove_membership(&admin, guest).await.unwrap());
    let login = w
        .services
        .auth
        .login(w.guest.email.as_str(), PASSWORD, Some("globex"), None)
        .await
        .unwrap();
    assert_eq!(login.tenant.id, w.globex.tenant.id);

    // And a guest can be added back by email, with a scope
    let scope = DeviceScope::Restricted {
        areas: vec![w.acme.north.id],
        devices: vec![w.acme.south_device.id],
    };
    let view = a
        .add_guest(&admin, w.guest.email.as_str(), Role::Limited, scope.clone())
        .await
        .unwrap();
    assert_eq!(
        (view.role, view.scope, view.has_other_tenants),
        (Role::Limited, scope, true)
    );
    let twice = a
        .add_guest(
            &admin,
            w.guest.email.as_str(),
            Role::Limited,
            DeviceScope::All,
        )
        .await;
    assert!(matches!(twice, Err(DomainError::Conflict(_))));
}

#[tokio::test]
async fn a_generated_one_time_password_logs_in_and_every_change_is_audited() {
    // Given acme's admin
    let w = world().await;
    let admin = w.acme.member(Role::Admin);
    let a = &w.services.admin;

    // When a user is created without a password
    let created = a
        .create_user(
            &admin,
            NewUser {
                email: "new@acme.test".into(),
                display_name: "New".into(),
                password: None,
                role: Role::ReadOnly,
                scope: DeviceScope::All,
            },
        )
        .await
        .unwrap();

    // Then the one-time password it returns logs them in
    let otp = created.one_time_password.expect("a generated password");
    assert!(otp.len() >= 16);
    w.services
        .auth
        .login("new@acme.test", &otp, None, None)
        .await
        .expect("the one-time password works");

    // When their role is changed
    a.set_membership(&admin, created.user.user.id, Role::Basic, DeviceScope::All)
        .await
        .unwrap();

    // Then the audit log holds both changes with who, and before and after
    let query = AuditQuery {
        first: 100,
        ..AuditQuery::default()
    };
    let log = w.services.control.audit_log(&admin, query).await.unwrap();
    let entries: Vec<_> = log.entries.iter().map(|r| &r.entry).collect();
    let create = entries.iter().find(|e| e.action == "create_user").unwrap();
    assert_eq!(create.actor, admin.user_id);
    assert!(
        create.detail.contains("role read_only"),
        "{}",
        create.detail
    );
    let change = entries
        .iter()
        .find(|e| e.action == "set_membership")
        .unwrap();
    assert!(
        change.detail.contains("before: role read_only")
            && change.detail.contains("after: role basic"),
        "{}",
        change.detail
    );
}

#[tokio::test]
async fn roles_are_the_design_table_read_from_the_policy() {
    // Given any member
    let w = world().await;
    let member = w.acme.member(Role::ReadOnly);

    // When they ask for the roles
    let table = w.services.admin.roles(&member).await.unwrap();

    // Then each role has exactly the capabilities of DESIGN.md's table
    let design: [(Role, &[&str]); 5] = [
        (
            Role::Admin,
            &[
                "view",
                "acknowledge",
                "write_basic",
                "write_limited",
                "write_full",
                "manage_devices",
                "manage_users",
            ],
        ),
        (
            Role::Full,
            &[
                "view",
                "acknowledge",
                "write_basic",
                "write_limited",
                "write_full",
                "manage_devices",
            ],
        ),
        (
            Role::Limited,
            &["view", "acknowledge", "write_basic", "write_limited"],
        ),
        (Role::Basic, &["view", "acknowledge", "write_basic"]),
        (Role::ReadOnly, &["view"]),
    ];
    let got: Vec<(Role, Vec<String>)> = table
        .into_iter()
        .map(|r| (r.role, r.capabilities))
        .collect();
    let want: Vec<(Role, Vec<String>)> = design
        .iter()
        .map(|(r, caps)| (*r, caps.iter().map(|c| c.to_string()).collect()))
        .collect();
    assert_eq!(got, want);
}
