//! The alarm evaluation engine: pure state machines, one per (rule, device),
//! fed readings, device status and the passing of time, answering which
//! alarms rise and which clear. No I/O and no clock: time comes from the
//! readings' timestamps and from explicit [`AlarmEngine::tick`] calls, so the
//! runner decides when "now" is and tests replay any history exactly.
//!
//! Semantics decided here (the rule documents leave them open):
//! - Only `Good` readings count. `Bad` ones (an open sensor) neither raise nor
//!   clear; `Stale` ones (re-published when a device goes offline, with their
//!   old timestamps) are not updates.
//! - A schedule gates raising only. Outside it nothing new is raised, but an
//!   open alarm stays open until its condition clears, because clearing it
//!   when the window ends would record that the fault went away when it did
//!   not. A condition that is still present when the window opens raises at
//!   the next reading or tick (its on-delay counts from when it began).
//! - Offline: raised when no good reading (nor an "online" status) arrived
//!   for `after`; the clock starts at the first tick for a device never seen.
//! - Consumption: rises of the counter add up within the daily window; a
//!   fall is a meter reset (the new value is the new base, nothing negative
//!   is added). The alarm clears when the next window starts.
//! - Rate of change: the spread (max − min) of the good readings within the
//!   last `over`; it clears once the spread is back within `max_change`, and
//!   after a restart only once a whole `over` has been observed.
//! - A rule that is deleted or disabled, a changed condition, and a device
//!   that left the rule's target (deleted, moved) clear their open alarms.
//!   Changing a rule's name, severity, schedule or notifications keeps them.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

use crate::ids::{AlarmRuleId, AreaId, DeviceId, PointKey, TenantId};
use crate::model::{
    Alarm, AlarmCondition, AlarmRule, AlarmTarget, Area, AreaTree, Device, Quality, Reading,
    ThresholdDirection,
};
use crate::ports::DeviceStatus;

/// What the engine knows of a device: its tenant, the areas it sits in
/// (its own, then every ancestor) and its name.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceInfo {
    pub tenant_id: TenantId,
    pub areas: Vec<AreaId>,
    pub name: String,
}

/// Every device the engine evaluates, by id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceIndex {
    devices: HashMap<DeviceId, DeviceInfo>,
}

impl DeviceIndex {
    /// `areas` may hold the areas of several tenants; a device's path only
    /// follows areas of its own tenant.
    pub fn new(devices: &[Device], areas: &[Area]) -> Self {
        let mut by_tenant: HashMap<TenantId, Vec<Area>> = HashMap::new();
        for area in areas {
            by_tenant
                .entry(area.tenant_id)
                .or_default()
                .push(area.clone());
        }
        let trees: HashMap<TenantId, AreaTree> = by_tenant
            .into_iter()
            .map(|(tenant, areas)| (tenant, AreaTree::new(&areas)))
            .collect();
        let devices = devices
            .iter()
            .map(|d| {
                let areas = match (d.area_id, trees.get(&d.tenant_id)) {
                    (Some(area), Some(tree)) => tree.path(area),
                    _ => Vec::new(),
                };
                (
                    d.id,
                    DeviceInfo {
                        tenant_id: d.tenant_id,
                        areas,
                        name: d.name.clone(),
                    },
                )
            })
            .collect();
        Self { devices }
    }

    pub fn get(&self, device: DeviceId) -> Option<&DeviceInfo> {
        self.devices.get(&device)
    }

    pub fn len(&self) -> usize {
        self.devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    pub fn ids(&self) -> impl Iterator<Item = DeviceId> + '_ {
        self.devices.keys().copied()
    }

    pub fn entries(&self) -> impl Iterator<Item = (DeviceId, &DeviceInfo)> + '_ {
        self.devices.iter().map(|(id, info)| (*id, info))
    }

    /// Every tenant with at least one device.
    pub fn tenants(&self) -> impl Iterator<Item = TenantId> + '_ {
        self.devices.values().map(|info| info.tenant_id)
    }

    fn targets(&self, rule: &AlarmRule, device: DeviceId) -> bool {
        self.get(device)
            .is_some_and(|info| target_covers(rule, device, info))
    }
}

fn target_covers(rule: &AlarmRule, device: DeviceId, info: &DeviceInfo) -> bool {
    info.tenant_id == rule.tenant_id
        && match &rule.target {
            AlarmTarget::Device(d) => *d == device,
            AlarmTarget::Area(a) => info.areas.contains(a),
            AlarmTarget::Tenant => true,
        }
}

/// An alarm to raise or clear. At most one alarm is open per
/// (rule, device, point); `point` is the rule's point (`None` for offline).
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    Raise {
        rule: AlarmRuleId,
        tenant: TenantId,
        device: DeviceId,
        point: Option<PointKey>,
        value: Option<f64>,
        at: DateTime<Utc>,
        message: String,
    },
    Clear {
        rule: AlarmRuleId,
        tenant: TenantId,
        device: DeviceId,
        point: Option<PointKey>,
        value: Option<f64>,
        at: DateTime<Utc>,
    },
}

impl Transition {
    pub fn rule(&self) -> AlarmRuleId {
        match self {
            Transition::Raise { rule, .. } | Transition::Clear { rule, .. } => *rule,
        }
    }
    pub fn device(&self) -> DeviceId {
        match self {
            Transition::Raise { device, .. } | Transition::Clear { device, .. } => *device,
        }
    }
    pub fn is_raise(&self) -> bool {
        matches!(self, Transition::Raise { .. })
    }
}

/// Where a rule is looked up from a reading: the device itself, one of its
/// areas, or its whole tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Scope {
    Device(DeviceId),
    Area(AreaId),
    Tenant(TenantId),
}

fn scope_of(rule: &AlarmRule) -> Scope {
    match &rule.target {
        AlarmTarget::Device(d) => Scope::Device(*d),
        AlarmTarget::Area(a) => Scope::Area(*a),
        AlarmTarget::Tenant => Scope::Tenant(rule.tenant_id),
    }
}

struct RuleEntry {
    rule: AlarmRule,
    states: HashMap<DeviceId, CondState>,
}

/// The evaluation state of every enabled rule on every device it targets.
pub struct AlarmEngine {
    devices: DeviceIndex,
    rules: Vec<RuleEntry>,
    by_id: HashMap<AlarmRuleId, usize>,
    /// Rules reading a point, by point and then by scope: a reading touches
    /// only the rules of its point whose target can contain its device.
    point_rules: HashMap<PointKey, HashMap<Scope, Vec<usize>>>,
    /// Device-level rules (offline), by scope.
    device_rules: HashMap<Scope, Vec<usize>>,
    checks: u64,
    tick_checks: u64,
}

impl AlarmEngine {
    /// Disabled rules are left out (as if deleted).
    pub fn new(rules: Vec<AlarmRule>, devices: DeviceIndex) -> Self {
        let mut engine = Self {
            devices,
            rules: Vec::new(),
            by_id: HashMap::new(),
            point_rules: HashMap::new(),
            device_rules: HashMap::new(),
            checks: 0,
            tick_checks: 0,
        };
        engine.install(rules, HashMap::new());
        engine
    }

    /// How many (rule, reading) evaluations (and device-level sign-of-life
    /// checks) were made so far.
    pub fn checks(&self) -> u64 {
        self.checks
    }

    /// How many (rule, device) states [`Self::tick`] looked at so far.
    pub fn tick_checks(&self) -> u64 {
        self.tick_checks
    }

    /// The enabled rule with this id.
    pub fn rule(&self, id: AlarmRuleId) -> Option<&AlarmRule> {
        self.by_id.get(&id).map(|&i| &self.rules[i].rule)
    }

    pub fn devices(&self) -> &DeviceIndex {
        &self.devices
    }

    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Whether the engine holds an open alarm of (rule, device).
    pub fn is_raised(&self, rule: AlarmRuleId, device: DeviceId) -> bool {
        self.by_id
            .get(&rule)
            .and_then(|&i| self.rules[i].states.get(&device))
            .is_some_and(CondState::active)
    }

    fn install(&mut self, rules: Vec<AlarmRule>, mut old: HashMap<AlarmRuleId, RuleEntry>) {
        self.rules.clear();
        self.by_id.clear();
        self.point_rules.clear();
        self.device_rules.clear();
        for rule in rules.into_iter().filter(|r| r.enabled) {
            if self.by_id.contains_key(&rule.id) {
                continue;
            }
            let slot = self.rules.len();
            let states = old.remove(&rule.id).map(|e| e.states).unwrap_or_default();
            let scope = scope_of(&rule);
            match rule.condition.point() {
                Some(point) => self
                    .point_rules
                    .entry(point.clone())
                    .or_default()
                    .entry(scope)
                    .or_default()
                    .push(slot),
                None => self.device_rules.entry(scope).or_default().push(slot),
            }
            self.by_id.insert(rule.id, slot);
            self.rules.push(RuleEntry { rule, states });
        }
    }

    /// Replaces the rules. States of rules whose condition did not change
    /// are kept (an open alarm stays open, not raised again); open alarms of
    /// deleted, disabled or changed rules, and of devices no longer in a
    /// rule's target, are cleared at `now`.
    pub fn set_rules(&mut self, rules: Vec<AlarmRule>, now: DateTime<Utc>) -> Vec<Transition> {
        let mut out = Vec::new();
        let mut old: HashMap<AlarmRuleId, RuleEntry> = self
            .rules
            .drain(..)
            .map(|entry| (entry.rule.id, entry))
            .collect();
        for rule in rules.iter().filter(|r| r.enabled) {
            let keep = old.get(&rule.id).is_some_and(|e| {
                e.rule.condition == rule.condition && e.rule.tenant_id == rule.tenant_id
            });
            if !keep {
                if let Some(entry) = old.remove(&rule.id) {
                    clear_all(&entry, now, &mut out);
                }
            }
        }
        // Whatever is left of `old` and not in `rules` was deleted or disabled.
        let wanted: std::collections::HashSet<AlarmRuleId> =
            rules.iter().filter(|r| r.enabled).map(|r| r.id).collect();
        let gone: Vec<AlarmRuleId> = old
            .keys()
            .filter(|id| !wanted.contains(id))
            .copied()
            .collect();
        for id in gone {
            if let Some(entry) = old.remove(&id) {
                clear_all(&entry, now, &mut out);
            }
        }
        self.install(rules, old);
        self.drop_untargeted(now, &mut out);
        out
    }

    /// Replaces the device index; open alarms of devices that are gone or
    /// left a rule's target are cleared at `now`.
    pub fn set_devices(&mut self, devices: DeviceIndex, now: DateTime<Utc>) -> Vec<Transition> {
        self.devices = devices;
        let mut out = Vec::new();
        self.drop_untargeted(now, &mut out);
        out
    }

    fn drop_untargeted(&mut self, now: DateTime<Utc>, out: &mut Vec<Transition>) {
        for entry in &mut self.rules {
            let rule = &entry.rule;
            let devices = &self.devices;
            entry.states.retain(|device, state| {
                let keep = devices.targets(rule, *device);
                if !keep && state.active() {
                    out.push(clear(rule, *device, now, None));
                }
                keep
            });
        }
    }

    /// Marks the alarms that were open before a restart as open again, so
    /// they are neither raised twice nor forgotten. Alarms whose rule is gone,
    /// disabled, changed point or no longer targets the device are cleared
    /// at `now`.
    pub fn seed_active(&mut self, alarms: &[Alarm], now: DateTime<Utc>) -> Vec<Transition> {
        let mut out = Vec::new();
        for alarm in alarms.iter().filter(|a| a.state.is_active()) {
            let slot = self.by_id.get(&alarm.rule_id).copied();
            let fits = slot.filter(|&i| {
                let rule = &self.rules[i].rule;
                rule.tenant_id == alarm.tenant_id
                    && rule.condition.point() == alarm.point.as_ref()
                    && self.devices.targets(rule, alarm.device_id)
            });
            match fits {
                Some(i) => {
                    let entry = &mut self.rules[i];
                    let state = entry
                        .states
                        .entry(alarm.device_id)
                        .or_insert_with(|| CondState::new(&entry.rule.condition));
                    state.seed(&entry.rule, alarm.raised_at);
                }
                None => out.push(Transition::Clear {
                    rule: alarm.rule_id,
                    tenant: alarm.tenant_id,
                    device: alarm.device_id,
                    point: alarm.point.clone(),
                    value: None,
                    at: now,
                }),
            }
        }
        out
    }

    /// One poll of one device. Readings of a device the index does not place
    /// in `tenant` are ignored.
    pub fn on_readings(
        &mut self,
        tenant: TenantId,
        device: DeviceId,
        readings: &[Reading],
    ) -> Vec<Transition> {
        let mut out = Vec::new();
        let Some(info) = self.devices.get(device) else {
            return out;
        };
        if info.tenant_id != tenant {
            return out;
        }
        let mut scopes = Vec::with_capacity(info.areas.len() + 2);
        scopes.push(Scope::Device(device));
        scopes.extend(info.areas.iter().map(|a| Scope::Area(*a)));
        scopes.push(Scope::Tenant(tenant));
        let mut latest_good: Option<DateTime<Utc>> = None;
        for reading in readings {
            if reading.tenant_id != tenant
                || reading.device_id != device
                || reading.quality != Quality::Good
            {
                continue;
            }
            latest_good = latest_good.max(Some(reading.timestamp));
            let Some(by_scope) = self.point_rules.get(&reading.point) else {
                continue;
            };
            for scope in &scopes {
                let Some(slots) = by_scope.get(scope) else {
                    continue;
                };
                for &slot in slots {
                    self.checks += 1;
                    let entry = &mut self.rules[slot];
                    let state = entry
                        .states
                        .entry(device)
                        .or_insert_with(|| CondState::new(&entry.rule.condition));
                    if let Some(t) = state.on_value(&entry.rule, reading.timestamp, reading.value) {
                        out.push(t.into_transition(&entry.rule, device));
                    }
                }
            }
        }
        if let Some(at) = latest_good {
            self.device_alive(&scopes, device, at, &mut out);
        }
        out
    }

    /// A device went on- or offline. Going online counts as a sign of life;
    /// going offline changes nothing until the offline period has passed.
    pub fn on_status(&mut self, status: &DeviceStatus) -> Vec<Transition> {
        let mut out = Vec::new();
        let Some(info) = self.devices.get(status.device_id) else {
            return out;
        };
        if info.tenant_id != status.tenant_id || !status.online {
            return out;
        }
        let mut scopes = vec![Scope::Device(status.device_id)];
        scopes.extend(info.areas.iter().map(|a| Scope::Area(*a)));
        scopes.push(Scope::Tenant(status.tenant_id));
        self.device_alive(&scopes, status.device_id, status.at, &mut out);
        out
    }

    fn device_alive(
        &mut self,
        scopes: &[Scope],
        device: DeviceId,
        at: DateTime<Utc>,
        out: &mut Vec<Transition>,
    ) {
        for scope in scopes {
            let Some(slots) = self.device_rules.get(scope) else {
                continue;
            };
            for &slot in slots {
                self.checks += 1;
                let entry = &mut self.rules[slot];
                let state = entry
                    .states
                    .entry(device)
                    .or_insert_with(|| CondState::new(&entry.rule.condition));
                if let Some(t) = state.on_alive(at) {
                    out.push(t.into_transition(&entry.rule, device));
                }
            }
        }
    }

    /// The passing of time: offline and stale periods ending, on- and
    /// off-delays ending without a new reading, consumption windows rolling
    /// over, rate-of-change windows emptying, schedules opening.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<Transition> {
        let mut out = Vec::new();
        for entry in &mut self.rules {
            // Offline and stale rules watch every device they target, also
            // those that never sent anything.
            if matches!(
                entry.rule.condition,
                AlarmCondition::Offline { .. } | AlarmCondition::Stale { .. }
            ) {
                for (device, info) in &self.devices.devices {
                    if target_covers(&entry.rule, *device, info)
                        && !entry.states.contains_key(device)
                    {
                        entry
                            .states
                            .insert(*device, CondState::new(&entry.rule.condition));
                    }
                }
            }
            for (device, state) in &mut entry.states {
                self.tick_checks += 1;
                if let Some(t) = state.on_tick(&entry.rule, now) {
                    out.push(t.into_transition(&entry.rule, *device));
                }
            }
        }
        out
    }
}

fn clear_all(entry: &RuleEntry, now: DateTime<Utc>, out: &mut Vec<Transition>) {
    for (device, state) in &entry.states {
        if state.active() {
            out.push(clear(&entry.rule, *device, now, None));
        }
    }
}

fn clear(rule: &AlarmRule, device: DeviceId, at: DateTime<Utc>, value: Option<f64>) -> Transition {
    Transition::Clear {
        rule: rule.id,
        tenant: rule.tenant_id,
        device,
        point: rule.condition.point().cloned(),
        value,
        at,
    }
}

/// What one state machine decided.
enum Step {
    Raise {
        at: DateTime<Utc>,
        value: Option<f64>,
        message: String,
    },
    Clear {
        at: DateTime<Utc>,
        value: Option<f64>,
    },
}

impl Step {
    fn into_transition(self, rule: &AlarmRule, device: DeviceId) -> Transition {
        match self {
            Step::Raise { at, value, message } => Transition::Raise {
                rule: rule.id,
                tenant: rule.tenant_id,
                device,
                point: rule.condition.point().cloned(),
                value,
                at,
                message,
            },
            Step::Clear { at, value } => clear(rule, device, at, value),
        }
    }
}

fn secs(d: Duration) -> String {
    format!("{} s", d.as_secs())
}

fn elapsed(from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
    (to - from).to_std().unwrap_or(Duration::ZERO)
}

/// A number as people write it: no trailing `.0` noise beyond 3 decimals.
fn num(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

enum CondState {
    Threshold(ThresholdState),
    Offline(OfflineState),
    Stale(StaleState),
    Consumption(ConsumptionState),
    Rate(RateState),
}

#[derive(Default)]
struct ThresholdState {
    /// The newest reading evaluated.
    seen: Option<DateTime<Utc>>,
    active: bool,
    last: Option<f64>,
    /// When the value went beyond the limit (on-delay running).
    beyond_since: Option<DateTime<Utc>>,
    /// When the value came back within limit ∓ hysteresis (off-delay running).
    within_since: Option<DateTime<Utc>>,
}

#[derive(Default)]
struct OfflineState {
    active: bool,
    last_seen: Option<DateTime<Utc>>,
}

#[derive(Default)]
struct StaleState {
    /// The newest reading evaluated.
    seen: Option<DateTime<Utc>>,
    active: bool,
    last_update: Option<DateTime<Utc>>,
}

#[derive(Default)]
struct ConsumptionState {
    /// The newest reading evaluated.
    seen: Option<DateTime<Utc>>,
    active: bool,
    window: Option<NaiveDate>,
    last: Option<f64>,
    used: f64,
}

#[derive(Default)]
struct RateState {
    /// The newest reading evaluated.
    seen: Option<DateTime<Utc>>,
    active: bool,
    /// Decreasing values (front is the window's maximum).
    maxima: VecDeque<(DateTime<Utc>, f64)>,
    /// Increasing values (front is the window's minimum).
    minima: VecDeque<(DateTime<Utc>, f64)>,
    observing_since: Option<DateTime<Utc>>,
}

impl CondState {
    fn new(condition: &AlarmCondition) -> Self {
        match condition {
            AlarmCondition::Threshold { .. } => CondState::Threshold(ThresholdState::default()),
            AlarmCondition::Offline { .. } => CondState::Offline(OfflineState::default()),
            AlarmCondition::Stale { .. } => CondState::Stale(StaleState::default()),
            AlarmCondition::Consumption { .. } => {
                CondState::Consumption(ConsumptionState::default())
            }
            AlarmCondition::RateOfChange { .. } => CondState::Rate(RateState::default()),
        }
    }

    fn seen(&mut self) -> &mut Option<DateTime<Utc>> {
        match self {
            CondState::Threshold(s) => &mut s.seen,
            CondState::Offline(s) => &mut s.last_seen,
            CondState::Stale(s) => &mut s.seen,
            CondState::Consumption(s) => &mut s.seen,
            CondState::Rate(s) => &mut s.seen,
        }
    }

    fn active(&self) -> bool {
        match self {
            CondState::Threshold(s) => s.active,
            CondState::Offline(s) => s.active,
            CondState::Stale(s) => s.active,
            CondState::Consumption(s) => s.active,
            CondState::Rate(s) => s.active,
        }
    }

    /// An alarm open before a restart, raised at `raised_at`.
    fn seed(&mut self, rule: &AlarmRule, raised_at: DateTime<Utc>) {
        match self {
            CondState::Threshold(s) => s.active = true,
            CondState::Offline(s) => s.active = true,
            CondState::Stale(s) => s.active = true,
            CondState::Consumption(s) => {
                s.active = true;
                // It belongs to the window it was raised in; it clears when
                // a later window starts.
                if let AlarmCondition::Consumption {
                    window_start_minute,
                    ..
                } = rule.condition
                {
                    s.window
                        .get_or_insert(window_of(rule, window_start_minute, raised_at));
                }
            }
            CondState::Rate(s) => {
                s.active = true;
                s.observing_since = None;
                s.maxima.clear();
                s.minima.clear();
            }
        }
    }

    fn on_value(&mut self, rule: &AlarmRule, at: DateTime<Utc>, value: f64) -> Option<Step> {
        if !value.is_finite() {
            return None;
        }
        // A reading no newer than the last one evaluated is a replay (the
        // latest values fed again after falling behind, then the old events
        // still buffered): evaluating it would undo what is current.
        let seen = self.seen();
        if seen.is_some_and(|seen| at <= seen) {
            return None;
        }
        *seen = Some(at);
        match (self, &rule.condition) {
            (
                CondState::Threshold(s),
                AlarmCondition::Threshold {
                    point,
                    direction,
                    limit,
                    hysteresis,
                    on_delay,
                    off_delay,
                },
            ) => {
                s.last = Some(value);
                let (beyond, within) = match direction {
                    ThresholdDirection::Above => (value > *limit, value <= limit - hysteresis),
                    ThresholdDirection::Below => (value < *limit, value >= limit + hysteresis),
                };
                if !s.active {
                    s.within_since = None;
                    if !beyond {
                        s.beyond_since = None;
                        return None;
                    }
                    let since = *s.beyond_since.get_or_insert(at);
                    (elapsed(since, at) >= *on_delay && rule.is_active(at)).then(|| {
                        s.active = true;
                        s.beyond_since = None;
                        Step::Raise {
                            at,
                            value: Some(value),
                            message: threshold_message(point, *direction, *limit, *on_delay),
                        }
                    })
                } else {
                    s.beyond_since = None;
                    if !within {
                        s.within_since = None;
                        return None;
                    }
                    let since = *s.within_since.get_or_insert(at);
                    (elapsed(since, at) >= *off_delay).then(|| {
                        s.active = false;
                        s.within_since = None;
                        Step::Clear {
                            at,
                            value: Some(value),
                        }
                    })
                }
            }
            (CondState::Stale(s), AlarmCondition::Stale { .. }) => {
                s.last_update = s.last_update.max(Some(at));
                s.active.then(|| {
                    s.active = false;
                    Step::Clear {
                        at,
                        value: Some(value),
                    }
                })
            }
            (
                CondState::Consumption(s),
                AlarmCondition::Consumption {
                    point,
                    max_increase,
                    window_start_minute,
                },
            ) => {
                let window = window_of(rule, *window_start_minute, at);
                let mut cleared = None;
                if s.window != Some(window) {
                    // A new day's window: start counting again from here.
                    if s.window.is_some_and(|w| w > window) {
                        // A reading from an earlier window (out of order): ignore.
                        return None;
                    }
                    s.window = Some(window);
                    s.used = 0.0;
                    if s.active {
                        s.active = false;
                        cleared = Some(Step::Clear {
                            at,
                            value: Some(value),
                        });
                    }
                } else if let Some(last) = s.last {
                    if value >= last {
                        s.used += value - last;
                    }
                    // A fall is a meter reset: `value` is the new base.
                }
                s.last = Some(value);
                if cleared.is_some() {
                    return cleared;
                }
                (!s.active && s.used > *max_increase && rule.is_active(at)).then(|| {
                    s.active = true;
                    Step::Raise {
                        at,
                        value: Some(s.used),
                        message: format!(
                            "{point} rose by {} within the daily window (more than {})",
                            num(s.used),
                            num(*max_increase)
                        ),
                    }
                })
            }
            (
                CondState::Rate(s),
                AlarmCondition::RateOfChange {
                    point,
                    max_change,
                    over,
                },
            ) => {
                s.observing_since.get_or_insert(at);
                while s.maxima.back().is_some_and(|&(_, v)| v <= value) {
                    s.maxima.pop_back();
                }
                s.maxima.push_back((at, value));
                while s.minima.back().is_some_and(|&(_, v)| v >= value) {
                    s.minima.pop_back();
                }
                s.minima.push_back((at, value));
                s.evaluate(rule, point, *max_change, *over, at, Some(value))
            }
            // Offline rules read no point; a mismatch cannot happen (the
            // state is made from the same condition).
            _ => None,
        }
    }

    fn on_alive(&mut self, at: DateTime<Utc>) -> Option<Step> {
        let CondState::Offline(s) = self else {
            return None;
        };
        s.last_seen = s.last_seen.max(Some(at));
        s.active.then(|| {
            s.active = false;
            Step::Clear { at, value: None }
        })
    }

    fn on_tick(&mut self, rule: &AlarmRule, now: DateTime<Utc>) -> Option<Step> {
        match (self, &rule.condition) {
            (
                CondState::Threshold(s),
                AlarmCondition::Threshold {
                    point,
                    direction,
                    limit,
                    on_delay,
                    off_delay,
                    ..
                },
            ) => {
                if let (false, Some(since)) = (s.active, s.beyond_since) {
                    if elapsed(since, now) >= *on_delay && rule.is_active(now) {
                        s.active = true;
                        s.beyond_since = None;
                        return Some(Step::Raise {
                            at: now,
                            value: s.last,
                            message: threshold_message(point, *direction, *limit, *on_delay),
                        });
                    }
                }
                if let (true, Some(since)) = (s.active, s.within_since) {
                    if elapsed(since, now) >= *off_delay {
                        s.active = false;
                        s.within_since = None;
                        return Some(Step::Clear {
                            at: now,
                            value: s.last,
                        });
                    }
                }
                None
            }
            (CondState::Offline(s), AlarmCondition::Offline { after }) => {
                let seen = *s.last_seen.get_or_insert(now);
                (!s.active && elapsed(seen, now) >= *after && rule.is_active(now)).then(|| {
                    s.active = true;
                    Step::Raise {
                        at: now,
                        value: None,
                        message: format!("device silent or offline for more than {}", secs(*after)),
                    }
                })
            }
            (CondState::Stale(s), AlarmCondition::Stale { point, after }) => {
                let updated = *s.last_update.get_or_insert(now);
                (!s.active && elapsed(updated, now) >= *after && rule.is_active(now)).then(|| {
                    s.active = true;
                    Step::Raise {
                        at: now,
                        value: None,
                        message: format!("{point} not updated for more than {}", secs(*after)),
                    }
                })
            }
            (
                CondState::Consumption(s),
                AlarmCondition::Consumption {
                    window_start_minute,
                    ..
                },
            ) => {
                let window = window_of(rule, *window_start_minute, now);
                if s.window.is_some_and(|w| w < window) {
                    s.window = Some(window);
                    s.used = 0.0;
                    if s.active {
                        s.active = false;
                        return Some(Step::Clear {
                            at: now,
                            value: None,
                        });
                    }
                }
                None
            }
            (
                CondState::Rate(s),
                AlarmCondition::RateOfChange {
                    point,
                    max_change,
                    over,
                },
            ) => s.evaluate(rule, point, *max_change, *over, now, None),
            _ => None,
        }
    }
}

impl RateState {
    fn evaluate(
        &mut self,
        rule: &AlarmRule,
        point: &PointKey,
        max_change: f64,
        over: Duration,
        now: DateTime<Utc>,
        value: Option<f64>,
    ) -> Option<Step> {
        let horizon = now - chrono::Duration::from_std(over).unwrap_or(chrono::Duration::zero());
        while self.maxima.front().is_some_and(|&(t, _)| t < horizon) {
            self.maxima.pop_front();
        }
        while self.minima.front().is_some_and(|&(t, _)| t < horizon) {
            self.minima.pop_front();
        }
        let spread = match (self.maxima.front(), self.minima.front()) {
            (Some(&(_, hi)), Some(&(_, lo))) => hi - lo,
            _ => 0.0,
        };
        if !self.active {
            (spread > max_change && rule.is_active(now)).then(|| {
                self.active = true;
                Step::Raise {
                    at: now,
                    value: value.or(Some(spread)),
                    message: format!(
                        "{point} changed by {} within {} (more than {})",
                        num(spread),
                        secs(over),
                        num(max_change)
                    ),
                }
            })
        } else {
            let observed = self
                .observing_since
                .is_some_and(|since| elapsed(since, now) >= over);
            (spread <= max_change && observed).then(|| {
                self.active = false;
                Step::Clear { at: now, value }
            })
        }
    }
}

fn threshold_message(
    point: &PointKey,
    direction: ThresholdDirection,
    limit: f64,
    on_delay: Duration,
) -> String {
    let side = match direction {
        ThresholdDirection::Above => "above",
        ThresholdDirection::Below => "below",
    };
    if on_delay.is_zero() {
        format!("{point} {side} {}", num(limit))
    } else {
        format!("{point} {side} {} for {}", num(limit), secs(on_delay))
    }
}

/// The local date on which the consumption window holding `at` began: in
/// the schedule's time zone, or UTC without a schedule.
fn window_of(rule: &AlarmRule, start_minute: u16, at: DateTime<Utc>) -> NaiveDate {
    let shift = chrono::Duration::minutes(i64::from(start_minute));
    match &rule.schedule {
        Some(s) => local_date(s.time_zone, at, shift),
        None => (at - shift).date_naive(),
    }
}

fn local_date(tz: Tz, at: DateTime<Utc>, shift: chrono::Duration) -> NaiveDate {
    (at.with_timezone(&tz).naive_local() - shift).date()
}

#[cfg(test)]
mod tests;
