//! `profiles` and `putProfile`: device profiles as documents. The domain
//! knows a point's key, name, unit, write rules and plausible range; where
//! it lives on the device is the field adapter's section of the point
//! (today Modbus: register, address, data type, word order, scale, offset),
//! converted here through the adapter's own type and checked again by the
//! gateway before anything is stored.

use async_graphql::{Context, Enum, InputObject, Object, SimpleObject};
use hearth_domain::model::{self, PointOption as DomainOption};
use hearth_domain::{PointKey, ProfileId};
use hearth_modbus::point as modbus;

use super::error::{bad_input, from_domain};
use super::points::{PointOption, WriteLevel};
use super::{principal, services};

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "modbus::RegisterKind")]
pub enum RegisterKind {
    /// FC03 read, FC06/FC16 write.
    Holding,
    /// FC04 read, read-only.
    Input,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "modbus::DataType")]
pub enum DataType {
    U16,
    I16,
    U32,
    I32,
    F32,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "modbus::WordOrder")]
pub enum WordOrder {
    HighFirst,
    LowFirst,
}

/// Where a point lives on the device and how to read and write it.
#[derive(SimpleObject)]
pub struct PointDefinition {
    pub key: String,
    pub name: String,
    pub register: RegisterKind,
    pub address: i32,
    pub data_type: DataType,
    pub word_order: WordOrder,
    pub scale: f64,
    pub offset: f64,
    pub unit: String,
    pub writable: bool,
    pub write_level: WriteLevel,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub options: Vec<PointOption>,
    pub plausible_min: Option<f64>,
    pub plausible_max: Option<f64>,
}

#[derive(SimpleObject)]
pub struct DeviceProfile {
    pub id: String,
    pub name: String,
    /// Built into Hearth (shared by every tenant) rather than the tenant's own.
    pub built_in: bool,
    pub poll_interval_ms: i32,
    /// How often a device is polled while somebody watches its live values
    /// (a `liveValues` subscription naming it); null: always `pollIntervalMs`.
    pub live_poll_interval_ms: Option<i32>,
    pub points: Vec<PointDefinition>,
}

#[derive(InputObject)]
pub struct PointDefinitionInput {
    pub key: String,
    pub name: String,
    pub register: RegisterKind,
    pub address: i32,
    pub data_type: DataType,
    #[graphql(default_with = "WordOrder::HighFirst")]
    pub word_order: WordOrder,
    #[graphql(default = 1.0)]
    pub scale: f64,
    #[graphql(default)]
    pub offset: f64,
    #[graphql(default)]
    pub unit: String,
    #[graphql(default)]
    pub writable: bool,
    #[graphql(default_with = "WriteLevel::Full")]
    pub write_level: WriteLevel,
    pub min: Option<f64>,
    pub max: Option<f64>,
    #[graphql(default)]
    pub options: Vec<PointOption>,
    pub plausible_min: Option<f64>,
    pub plausible_max: Option<f64>,
}

#[derive(InputObject)]
pub struct DeviceProfileInput {
    /// Must start with your tenant's slug and a dot, e.g. `acme.ahu-2000`.
    pub id: String,
    pub name: String,
    #[graphql(default = 1000)]
    pub poll_interval_ms: i32,
    /// Faster polling while somebody watches the device's live values: 50 ms
    /// up to `pollIntervalMs`. Omit to always poll at `pollIntervalMs`.
    pub live_poll_interval_ms: Option<i32>,
    pub points: Vec<PointDefinitionInput>,
}

impl DeviceProfileInput {
    /// Converts at the edge; every field the domain constrains is checked
    /// again by `DeviceProfile::validate`.
    fn try_into_domain(self) -> async_graphql::Result<model::DeviceProfile> {
        let invalid = |e: hearth_domain::error::InvalidValue| bad_input(e.to_string());
        if self.points.len() > 500 {
            return Err(bad_input("a profile has at most 500 points"));
        }
        let points = self
            .points
            .into_iter()
            .map(|p| {
                let address = u16::try_from(p.address).map_err(|_| {
                    bad_input(format!("point `{}`: address must be 0 to 65535", p.key))
                })?;
                let section = modbus::ModbusPoint {
                    register: p.register.into(),
                    address,
                    data_type: p.data_type.into(),
                    word_order: p.word_order.into(),
                    scale: modbus::Scale::new(p.scale).map_err(invalid)?,
                    offset: p.offset,
                };
                Ok(model::PointDefinition {
                    key: PointKey::new(p.key).map_err(invalid)?,
                    name: p.name,
                    address: section.to_address(),
                    unit: p.unit,
                    writable: p.writable,
                    write_level: p.write_level.into(),
                    min: p.min,
                    max: p.max,
                    options: p
                        .options
                        .into_iter()
                        .map(|o| DomainOption {
                            value: o.value,
                            label: o.label,
                        })
                        .collect(),
                    plausible_min: p.plausible_min,
                    plausible_max: p.plausible_max,
                })
            })
            .collect::<async_graphql::Result<Vec<_>>>()?;
        Ok(model::DeviceProfile {
            id: ProfileId::new(self.id).map_err(invalid)?,
            tenant_id: None,
            name: self.name,
            poll_interval_ms: u32::try_from(self.poll_interval_ms)
                .map_err(|_| bad_input("pollIntervalMs must be positive"))?,
            live_poll_interval_ms: self
                .live_poll_interval_ms
                .map(|ms| {
                    u32::try_from(ms).map_err(|_| bad_input("livePollIntervalMs must be positive"))
                })
                .transpose()?,
            points,
        })
    }
}

impl TryFrom<model::DeviceProfile> for DeviceProfile {
    type Error = async_graphql::Error;
    /// Fails only for a stored point without a Modbus section, which the
    /// gateway refuses to store: a damaged document, reported as INTERNAL.
    fn try_from(p: model::DeviceProfile) -> async_graphql::Result<Self> {
        Ok(DeviceProfile {
            id: p.id.to_string(),
            name: p.name,
            built_in: p.tenant_id.is_none(),
            poll_interval_ms: i32::try_from(p.poll_interval_ms).unwrap_or(i32::MAX),
            live_poll_interval_ms: p
                .live_poll_interval_ms
                .map(|ms| i32::try_from(ms).unwrap_or(i32::MAX)),
            points: p
                .points
                .into_iter()
                .map(PointDefinition::try_from)
                .collect::<async_graphql::Result<_>>()?,
        })
    }
}

impl TryFrom<model::PointDefinition> for PointDefinition {
    type Error = async_graphql::Error;
    fn try_from(p: model::PointDefinition) -> async_graphql::Result<Self> {
        let section = modbus::ModbusPoint::of(&p).map_err(|err| {
            tracing::error!(point = %p.key, error = %err, "A stored point has no Modbus section.");
            super::error::internal(anyhow::anyhow!("a stored point has no Modbus section"))
        })?;
        Ok(PointDefinition {
            key: p.key.to_string(),
            name: p.name,
            register: section.register.into(),
            address: i32::from(section.address),
            data_type: section.data_type.into(),
            word_order: section.word_order.into(),
            scale: section.scale.get(),
            offset: section.offset,
            unit: p.unit,
            writable: p.writable,
            write_level: p.write_level.into(),
            min: p.min,
            max: p.max,
            options: p
                .options
                .into_iter()
                .map(|o| PointOption {
                    value: o.value,
                    label: o.label,
                })
                .collect(),
            plausible_min: p.plausible_min,
            plausible_max: p.plausible_max,
        })
    }
}

#[derive(Default)]
pub struct ProfileQueries;

#[Object]
impl ProfileQueries {
    /// Built-in profiles and the active tenant's own, by id.
    async fn profiles(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<DeviceProfile>> {
        let principal = principal(ctx)?;
        let profiles = services(ctx)
            .profiles
            .profiles(principal)
            .await
            .map_err(from_domain)?;
        profiles.into_iter().map(DeviceProfile::try_from).collect()
    }
}

#[derive(Default)]
pub struct ProfileMutation;

#[Object]
impl ProfileMutation {
    /// Adds or replaces one of the active tenant's profiles (Admin and Full).
    async fn put_profile(
        &self,
        ctx: &Context<'_>,
        input: DeviceProfileInput,
    ) -> async_graphql::Result<DeviceProfile> {
        let principal = principal(ctx)?;
        let profile = input.try_into_domain()?;
        services(ctx)
            .profiles
            .put_profile(principal, profile)
            .await
            .map_err(from_domain)
            .and_then(DeviceProfile::try_from)
    }
}
