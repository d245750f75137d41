//! `devices` (Relay connection) and `device`.

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{Context, Enum, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use hearth_domain::services::{DeviceQuery, DeviceService, DeviceView, PointView};
use hearth_domain::{AreaId, DeviceId};

use super::error::{bad_input, from_domain};
use super::points::{PointOption, WriteLevel};
use super::{parse_id, principal, services};

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "hearth_domain::model::Quality")]
pub enum Quality {
    Good,
    Stale,
    Bad,
}

#[derive(SimpleObject)]
pub struct Area {
    pub id: ID,
    pub name: String,
    pub parent_id: Option<ID>,
}

/// One value of a device with its latest reading.
#[derive(SimpleObject)]
pub struct Point {
    pub key: String,
    pub name: String,
    /// Latest value in engineering units; null until first read.
    pub value: Option<f64>,
    pub unit: String,
    pub quality: Option<Quality>,
    /// When `value` was read from the device (kept when it turns stale).
    pub updated_at: Option<DateTime<Utc>>,
    pub writable: bool,
    /// Role level needed to write (meaningful when `writable`).
    pub write_level: WriteLevel,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Named values of an enumerated point (a mode); writes must pick one.
    pub options: Vec<PointOption>,
    /// The option label of the current value, for enumerated points.
    pub value_label: Option<String>,
}

impl From<PointView> for Point {
    fn from(p: PointView) -> Self {
        let d = p.definition;
        let value_label = p
            .latest
            .as_ref()
            .and_then(|r| d.label_of(r.value))
            .map(str::to_string);
        Point {
            value_label,
            options: d
                .options
                .iter()
                .map(|o| PointOption {
                    value: o.value,
                    label: o.label.clone(),
                })
                .collect(),
            key: d.key.to_string(),
            name: d.name,
            value: p.latest.as_ref().map(|r| r.value),
            unit: d.unit,
            quality: p.latest.as_ref().map(|r| r.quality.into()),
            updated_at: p.latest.as_ref().map(|r| r.timestamp),
            writable: d.writable,
            write_level: d.write_level.into(),
            min: d.min,
            max: d.max,
        }
    }
}

#[derive(SimpleObject)]
pub struct Device {
    pub id: ID,
    pub name: String,
    /// False while the device does not answer, and before its first poll.
    pub online: bool,
    pub area: Option<Area>,
    pub profile_id: String,
    pub points: Vec<Point>,
}

impl From<DeviceView> for Device {
    fn from(v: DeviceView) -> Self {
        Device {
            id: ID(v.device.id.to_string()),
            name: v.device.name,
            online: v.online.unwrap_or(false),
            area: v.area.map(|a| Area {
                id: ID(a.id.to_string()),
                name: a.name,
                parent_id: a.parent_id.map(|p| ID(p.to_string())),
            }),
            profile_id: v.device.profile_id.to_string(),
            points: v.points.into_iter().map(Point::from).collect(),
        }
    }
}

#[derive(SimpleObject)]
pub struct DeviceConnectionFields {
    /// All devices matching the filter, across pages.
    pub total_count: u64,
}

#[derive(Default)]
pub struct DeviceQueries;

#[Object]
impl DeviceQueries {
    /// Devices of the active tenant within the caller's scope, by name.
    async fn devices(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 200 (50 when omitted).")] first: Option<i32>,
        #[graphql(desc = "Cursor of the last edge of the previous page.")] after: Option<String>,
        #[graphql(desc = "Only devices in this area or below it.")] area_id: Option<ID>,
        #[graphql(desc = "Case-insensitive part of the device name.")] search: Option<String>,
    ) -> async_graphql::Result<Connection<String, Device, DeviceConnectionFields, EmptyFields>>
    {
        let principal = principal(ctx)?;
        let first = first.unwrap_or(50);
        if first < 1 || i64::from(first) > DeviceService::MAX_PAGE as i64 {
            return Err(bad_input(format!(
                "`first` must be 1 to {}",
                DeviceService::MAX_PAGE
            )));
        }
        let offset = match after {
            None => 0,
            Some(cursor) => cursor
                .parse::<u64>()
                .map(|c| c + 1)
                .map_err(|_| bad_input("`after` is not a cursor from this connection"))?,
        };
        let area = area_id
            .as_ref()
            .map(|a| parse_id::<AreaId>(a, "area"))
            .transpose()?;
        let page = services(ctx)
            .devices
            .list_devices(
                principal,
                DeviceQuery {
                    area,
                    search,
                    offset,
                    limit: first as u64,
                },
            )
            .await
            .map_err(from_domain)?;
        let end = page.offset + page.items.len() as u64;
        let mut connection = Connection::with_additional_fields(
            page.offset > 0,
            end < page.total,
            DeviceConnectionFields {
                total_count: page.total,
            },
        );
        connection.edges.extend(
            page.items.into_iter().enumerate().map(|(i, view)| {
                Edge::new((page.offset + i as u64).to_string(), Device::from(view))
            }),
        );
        Ok(connection)
    }

    /// One device; `NOT_FOUND` if it is not in the caller's tenant and scope.
    async fn device(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Device> {
        let principal = principal(ctx)?;
        let id = parse_id::<DeviceId>(&id, "device")?;
        services(ctx)
            .devices
            .device(principal, id)
            .await
            .map(Device::from)
            .map_err(from_domain)
    }
}
