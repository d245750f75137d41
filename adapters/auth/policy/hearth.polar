# Hearth access policy: the one place that decides who may do what
# (DESIGN.md, "Access model"). Loaded by `hearth-auth` with include_str!.
#
# Vocabulary (the Rust side passes these as strings):
#   roles:        admin, full, limited, basic, read_only
#   capabilities: view, acknowledge, write_basic, write_limited, write_full,
#                 manage_devices, manage_users   (granted by the role table)
#   derived:      manage_tenant                  (a rule below, never granted)
#   Principal { tenant_id, role, scope_all, scoped_areas, scoped_devices }
#   Tenant    { tenant_id }
#   Device    { tenant_id, device_id, area_path }   (area_path: nearest area first)
#   System    { role }      an internal job: poller, provisioner
#   Builtins  {}            the built-in profiles, owned by no tenant
#   system capabilities: read_endpoints, provision   (system rules only)
#
# Anything not allowed below is denied: Polar has no implicit allow, and this
# file has no catch-all rule.

# ------------------------------------------------------------------ role table
# One fact per "yes" cell of the table in DESIGN.md. The "compare roles" view
# and a unit test read the table back from these facts, so keep it as data:
# never express a grant as a rule with conditions here.

grants("admin", "view");
grants("admin", "acknowledge");
grants("admin", "write_basic");
grants("admin", "write_limited");
grants("admin", "write_full");
grants("admin", "manage_devices");
grants("admin", "manage_users");

grants("full", "view");
grants("full", "acknowledge");
grants("full", "write_basic");
grants("full", "write_limited");
grants("full", "write_full");
grants("full", "manage_devices");

grants("limited", "view");
grants("limited", "acknowledge");
grants("limited", "write_basic");
grants("limited", "write_limited");

grants("basic", "view");
grants("basic", "acknowledge");
grants("basic", "write_basic");

grants("read_only", "view");

# --------------------------------------------------------------------- allow
# Tenant isolation comes first in both rules: the actor's active tenant (the
# one its token is bound to) must be the resource's tenant, whatever the role.

# The tenant as a whole: listings and tenant-wide administration. Device
# scope does not apply here; listings are filtered by scope in the store.
allow(actor: Principal, action: String, tenant: Tenant) if
    actor.tenant_id = tenant.tenant_id and
    grants(actor.role, action);

# One device: the role must grant the capability and the device must be in
# the membership's scope.
allow(actor: Principal, action: String, device: Device) if
    actor.tenant_id = device.tenant_id and
    grants(actor.role, action) and
    in_scope(actor, device);

# Tenant-wide management (profiles now, alarm rules later) changes what every
# device of the tenant does, so a device scope must not be a way around it:
# the role must manage devices AND the membership must cover the whole
# tenant. The same rule decides who sees tenant-level audit entries.
# `manage_tenant` is deliberately not in the role table: a
# grants(_, "manage_tenant") fact would let scoped members through the
# generic tenant rule above, so start-up refuses one.
allow(actor: Principal, "manage_tenant", tenant: Tenant) if
    actor.tenant_id = tenant.tenant_id and
    grants(actor.role, "manage_devices") and
    unscoped(actor);

# Admins always cover the whole tenant, whatever scope is stored.
unscoped(actor: Principal) if
    actor.role = "admin";

unscoped(actor: Principal) if
    actor.scope_all = true;

# ------------------------------------------------------------- internal jobs
# Internal jobs act as a System principal, never as a user: these rules are
# everything they may do. No user rule above matches a System, and no rule
# here matches a Principal.

# The poller reads every device's endpoint and profile, in every tenant, to
# poll it; nothing else (it cannot list users, write points or provision).
allow(actor: System, "read_endpoints", _device: Device) if
    actor.role = "poller";

# Provisioning (demo seeding, `hearth tenant create`) creates a tenant's
# users, memberships, areas and devices, and stores the built-in profiles.
allow(actor: System, "provision", _tenant: Tenant) if
    actor.role = "provisioner";

allow(actor: System, "provision", _builtins: Builtins) if
    actor.role = "provisioner";

# ---------------------------------------------------------------- device scope

# Admins and memberships scoped to all devices see every device.
in_scope(actor: Principal, _device: Device) if
    unscoped(actor);

# A single-device grant.
in_scope(actor: Principal, device: Device) if
    device.device_id in actor.scoped_devices;

# An area grant covers its whole subtree: the device's area or any ancestor
# of it may be the granted one.
in_scope(actor: Principal, device: Device) if
    area in device.area_path and
    area in actor.scoped_areas;
