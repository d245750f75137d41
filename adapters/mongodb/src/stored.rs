//! The stored shape of a device profile: a versioned DTO of its own, so that
//! renaming or reshaping a domain field never breaks documents already in
//! the database. Every field name below is part of the on-disk format.
//!
//! Reading goes through the `schema_version` a document carries: each
//! version ever written keeps a reader here; a version this build does not
//! know is refused (a newer Hearth wrote it), never guessed at.

use anyhow::{anyhow, bail, Context as _};
use hearth_domain::ids::{PointKey, ProfileId, TenantId};
use hearth_domain::model::{DeviceProfile, FieldAddress, PointDefinition, PointOption, WriteLevel};
use mongodb::bson::{self, Bson, Document};
use serde::{Deserialize, Serialize};

/// The shape this build writes.
pub const SCHEMA_VERSION: i32 = 1;

/// Field names the store queries on; kept beside the DTO they name.
pub const ID: &str = "_id";
pub const PROFILE_ID: &str = "profile_id";
pub const TENANT: &str = "tenant_id";
pub const VERSION: &str = "version";
pub const SCHEMA: &str = "schema_version";

/// The owner part of every key: the tenant's id, or `shared` for a built-in.
pub fn owner_key(owner: Option<TenantId>) -> String {
    match owner {
        Some(tenant) => tenant.to_string(),
        None => SHARED.to_owned(),
    }
}

/// The owner part of a built-in's keys (no tenant id is ever this word).
pub const SHARED: &str = "shared";

/// The `_id` of the head record of profile `id` of `owner`: `<owner>/<id>`.
pub fn profile_head_id(owner: Option<TenantId>, id: &str) -> String {
    crate::chain::head_id(&owner_key(owner), id)
}

/// The `_id` of write number `version` of profile `id` of `owner`:
/// `<owner>/<id>#<version>`. `#` and `/` cannot occur in a profile id, so the
/// key is unambiguous; the unique `_id` index then lets exactly one writer
/// create each version.
pub fn version_id(owner: Option<TenantId>, id: &str, version: i64) -> String {
    crate::chain::version_id(&profile_head_id(owner, id), version)
}

/// One write of a profile as stored, schema version 1.
///
/// `tenant_id` is always present, `null` for a built-in, so a filter on it
/// is exact. `version` counts successful writes for optimistic concurrency.
/// Optional fields are written as `null` rather than left out, so a reader
/// sees one shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredProfileV1 {
    /// [`version_id`] of the owner, `profile_id` and `version`.
    #[serde(rename = "_id")]
    pub key: String,
    #[serde(rename = "profile_id")]
    pub id: String,
    pub tenant_id: Option<String>,
    pub schema_version: i32,
    pub version: i64,
    pub name: String,
    /// BSON has no unsigned integers; i64 holds every u32.
    pub poll_interval_ms: i64,
    #[serde(default)]
    pub live_poll_interval_ms: Option<i64>,
    pub points: Vec<StoredPointV1>,
}

/// One point as stored. The field address is a nested document of its own
/// (the domain flattens it into the point): its keys can then never collide
/// with a point field, whatever either side adds later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredPointV1 {
    pub key: String,
    pub name: String,
    #[serde(default)]
    pub address: Document,
    #[serde(default)]
    pub unit: String,
    #[serde(default)]
    pub writable: bool,
    /// "basic", "limited" or "full"; spelled here, not by the domain's serde.
    #[serde(default = "full")]
    pub write_level: String,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    #[serde(default)]
    pub options: Vec<StoredOptionV1>,
    #[serde(default)]
    pub plausible_min: Option<f64>,
    #[serde(default)]
    pub plausible_max: Option<f64>,
}

/// One named value of an enumerated point, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredOptionV1 {
    pub value: f64,
    pub label: String,
}

fn full() -> String {
    "full".to_owned()
}

impl StoredProfileV1 {
    /// The document to store for `profile` at write number `version`.
    pub fn from_domain(profile: &DeviceProfile, version: i64) -> anyhow::Result<Self> {
        Ok(Self {
            key: version_id(profile.tenant_id, profile.id.as_str(), version),
            id: profile.id.as_str().to_owned(),
            tenant_id: profile.tenant_id.map(|t| t.to_string()),
            schema_version: SCHEMA_VERSION,
            version,
            name: profile.name.clone(),
            poll_interval_ms: i64::from(profile.poll_interval_ms),
            live_poll_interval_ms: profile.live_poll_interval_ms.map(i64::from),
            points: profile
                .points
                .iter()
                .map(StoredPointV1::from_domain)
                .collect::<anyhow::Result<_>>()?,
        })
    }

    pub fn into_domain(self) -> anyhow::Result<DeviceProfile> {
        let id = ProfileId::new(self.id).context("stored profile id")?;
        let tenant_id = self
            .tenant_id
            .map(|t| t.parse::<TenantId>())
            .transpose()
            .with_context(|| format!("tenant_id of stored profile {id}"))?;
        let points = self
            .points
            .into_iter()
            .map(StoredPointV1::into_domain)
            .collect::<anyhow::Result<_>>()
            .with_context(|| format!("points of stored profile {id}"))?;
        Ok(DeviceProfile {
            tenant_id,
            name: self.name,
            poll_interval_ms: u32::try_from(self.poll_interval_ms)
                .with_context(|| format!("poll_interval_ms of stored profile {id}"))?,
            live_poll_interval_ms: self
                .live_poll_interval_ms
                .map(u32::try_from)
                .transpose()
                .with_context(|| format!("live_poll_interval_ms of stored profile {id}"))?,
            points,
            id,
        })
    }
}

impl StoredPointV1 {
    fn from_domain(point: &PointDefinition) -> anyhow::Result<Self> {
        Ok(Self {
            key: point.key.as_str().to_owned(),
            name: point.name.clone(),
            address: address_to_bson(&point.address)
                .with_context(|| format!("address of point {}", point.key.as_str()))?,
            unit: point.unit.clone(),
            writable: point.writable,
            write_level: match point.write_level {
                WriteLevel::Basic => "basic",
                WriteLevel::Limited => "limited",
                WriteLevel::Full => "full",
            }
            .to_owned(),
            min: point.min,
            max: point.max,
            options: point
                .options
                .iter()
                .map(|o| StoredOptionV1 {
                    value: o.value,
                    label: o.label.clone(),
                })
                .collect(),
            plausible_min: point.plausible_min,
            plausible_max: point.plausible_max,
        })
    }

    fn into_domain(self) -> anyhow::Result<PointDefinition> {
        let key = PointKey::new(self.key).context("stored point key")?;
        let write_level = match self.write_level.as_str() {
            "basic" => WriteLevel::Basic,
            "limited" => WriteLevel::Limited,
            "full" => WriteLevel::Full,
            other => bail!("point {key}: unknown write_level {other:?}"),
        };
        Ok(PointDefinition {
            address: address_from_bson(self.address)
                .with_context(|| format!("address of point {key}"))?,
            key,
            name: self.name,
            unit: self.unit,
            writable: self.writable,
            write_level,
            min: self.min,
            max: self.max,
            options: self
                .options
                .into_iter()
                .map(|o| PointOption {
                    value: o.value,
                    label: o.label,
                })
                .collect(),
            plausible_min: self.plausible_min,
            plausible_max: self.plausible_max,
        })
    }
}

/// A stored document, whatever version wrote it, as a domain profile.
pub fn read_profile(document: Document) -> anyhow::Result<DeviceProfile> {
    let id = document.get_str(ID).unwrap_or("?").to_owned();
    let schema = match document.get(SCHEMA) {
        Some(Bson::Int32(v)) => i64::from(*v),
        Some(Bson::Int64(v)) => *v,
        other => bail!("stored profile {id}: schema_version is {other:?}, not an integer"),
    };
    match schema {
        1 => bson::from_document::<StoredProfileV1>(document)
            .with_context(|| format!("stored profile {id} (schema 1)"))?
            .into_domain(),
        newer => Err(anyhow!(
            "stored profile {id} has schema_version {newer}, which this build cannot read \
             (it reads up to {SCHEMA_VERSION}); was it written by a newer Hearth?"
        )),
    }
}

/// The document to store for `profile` at write number `version`.
pub fn write_profile(profile: &DeviceProfile, version: i64) -> anyhow::Result<Document> {
    let stored = StoredProfileV1::from_domain(profile, version)?;
    bson::to_document(&stored).context("profile as a BSON document")
}

// The address is opaque JSON owned by the field adapter. It is converted by
// hand, not through serde, so the mapping is fixed here: integers become
// Int64 and come back as integers, floats stay doubles (1.0 stays a float),
// and what BSON cannot hold exactly (an integer above i64::MAX) is refused
// rather than rounded.

fn address_to_bson(address: &FieldAddress) -> anyhow::Result<Document> {
    address
        .entries()
        .iter()
        .map(|(k, v)| Ok((k.clone(), json_to_bson(v)?)))
        .collect()
}

fn json_to_bson(value: &serde_json::Value) -> anyhow::Result<Bson> {
    use serde_json::Value;
    Ok(match value {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Bson::Int64(i)
            } else if n.is_u64() {
                bail!("integer {n} does not fit in a stored (signed 64-bit) integer")
            } else {
                Bson::Double(
                    n.as_f64()
                        .ok_or_else(|| anyhow!("number {n} is not representable"))?,
                )
            }
        }
        Value::String(s) => Bson::String(s.clone()),
        Value::Array(items) => Bson::Array(
            items
                .iter()
                .map(json_to_bson)
                .collect::<anyhow::Result<_>>()?,
        ),
        Value::Object(map) => Bson::Document(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), json_to_bson(v)?)))
                .collect::<anyhow::Result<_>>()?,
        ),
    })
}

fn address_from_bson(document: Document) -> anyhow::Result<FieldAddress> {
    Ok(FieldAddress(
        document
            .into_iter()
            .map(|(k, v)| Ok((k, bson_to_json(v)?)))
            .collect::<anyhow::Result<_>>()?,
    ))
}

fn bson_to_json(value: Bson) -> anyhow::Result<serde_json::Value> {
    use serde_json::Value;
    Ok(match value {
        Bson::Null => Value::Null,
        Bson::Boolean(b) => Value::Bool(b),
        Bson::Int32(i) => Value::from(i),
        Bson::Int64(i) => Value::from(i),
        Bson::Double(f) => serde_json::Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| anyhow!("stored number {f} has no JSON form"))?,
        Bson::String(s) => Value::String(s),
        Bson::Array(items) => Value::Array(
            items
                .into_iter()
                .map(bson_to_json)
                .collect::<anyhow::Result<_>>()?,
        ),
        Bson::Document(doc) => Value::Object(
            doc.into_iter()
                .map(|(k, v)| Ok((k, bson_to_json(v)?)))
                .collect::<anyhow::Result<_>>()?,
        ),
        other => bail!(
            "stored address holds a {:?}, which is no JSON value",
            other.element_type()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::doc;

    fn profile(address: serde_json::Value) -> DeviceProfile {
        let serde_json::Value::Object(address) = address else {
            panic!("test addresses are objects");
        };
        DeviceProfile {
            id: ProfileId::new("ecl-310").expect("valid id"),
            tenant_id: Some(TenantId::from_uuid(uuid_of(7))),
            name: "ECL 310".into(),
            poll_interval_ms: 2_000,
            live_poll_interval_ms: Some(250),
            points: vec![PointDefinition {
                key: PointKey::new("room").expect("valid key"),
                name: "Room".into(),
                address: FieldAddress(address),
                unit: "°C".into(),
                writable: true,
                write_level: WriteLevel::Limited,
                min: Some(5.0),
                max: None,
                options: vec![PointOption {
                    value: 1.0,
                    label: "comfort".into(),
                }],
                plausible_min: None,
                plausible_max: Some(120.0),
            }],
        }
    }

    fn uuid_of(n: u8) -> uuid::Uuid {
        uuid::Uuid::from_bytes([n; 16])
    }

    #[test]
    fn the_stored_shape_is_pinned() {
        // Given a profile with every field set
        let p = profile(serde_json::json!({ "table": "holding", "address": 11_178, "scale": 0.1 }));
        // When it is turned into its stored document
        let stored = write_profile(&p, 3).expect("converts");
        // Then the document is exactly this: a domain rename must not change it
        let expected = doc! {
            "_id": "07070707-0707-0707-0707-070707070707/ecl-310#3",
            "profile_id": "ecl-310",
            "tenant_id": "07070707-0707-0707-0707-070707070707",
            "schema_version": 1,
            "version": 3_i64,
            "name": "ECL 310",
            "poll_interval_ms": 2_000_i64,
            "live_poll_interval_ms": 250_i64,
            "points": [{
                "key": "room",
                "name": "Room",
                "address": { "address": 11_178_i64, "scale": 0.1, "table": "holding" },
                "unit": "°C",
                "writable": true,
                "write_level": "limited",
                "min": 5.0,
                "max": Bson::Null,
                "options": [{ "value": 1.0, "label": "comfort" }],
                "plausible_min": Bson::Null,
                "plausible_max": 120.0,
            }],
        };
        assert_eq!(stored, expected);
    }

    #[test]
    fn field_addresses_survive_exactly() {
        // Given an address with every kind of JSON value, integers that look
        // like floats and the extremes of i64
        let p = profile(serde_json::json!({
            "int": 7, "negative": -3, "float": 1.0, "fraction": -0.5,
            "big": i64::MAX, "small": i64::MIN, "null": null, "flag": false,
            "text": "analog-input:3",
            "nested": { "priority": [8, 16, { "deep": [] }], "empty": {} },
        }));
        // When it is written and read back
        let read = read_profile(write_profile(&p, 1).expect("writes")).expect("reads");
        // Then it is equal, and integers stayed integers
        assert_eq!(read, p);
        let entries = read.points[0].address.entries();
        assert!(entries["int"].is_i64(), "{entries:?}");
        assert!(entries["float"].is_f64(), "{entries:?}");
    }

    #[test]
    fn an_integer_beyond_i64_is_refused_not_rounded() {
        // Given an address with an integer BSON cannot hold
        let p = profile(serde_json::json!({ "huge": u64::MAX }));
        // When it is converted, Then it is an error naming the point
        let err = write_profile(&p, 1).expect_err("u64::MAX does not fit");
        assert!(format!("{err:#}").contains("room"), "{err:#}");
    }

    #[test]
    fn a_minimal_version_1_document_reads_with_defaults() {
        // Given a schema-1 document holding only the required fields, as a
        // writer that predates the optional ones would have left it
        let stored = doc! {
            "_id": "old#1", "profile_id": "old", "tenant_id": Bson::Null, "schema_version": 1, "version": 1_i64,
            "name": "Old", "poll_interval_ms": 1_000_i32,
            "points": [{ "key": "t", "name": "T" }],
        };
        // When it is read
        let read = read_profile(stored).expect("reads");
        // Then the missing fields take the domain's defaults
        assert_eq!(read.tenant_id, None);
        assert_eq!(read.live_poll_interval_ms, None);
        let point = &read.points[0];
        assert_eq!(point.write_level, WriteLevel::Full);
        assert!(!point.writable);
        assert!(point.address.entries().is_empty());
        assert!(point.options.is_empty());
    }

    #[test]
    fn unreadable_documents_are_errors_not_panics() {
        for (what, stored) in [
            (
                "newer schema",
                doc! { "_id": "x", "schema_version": 2, "name": "X" },
            ),
            ("no schema", doc! { "_id": "x", "name": "X" }),
            (
                "wrong type",
                doc! { "_id": "x#1", "profile_id": "x", "tenant_id": Bson::Null, "schema_version": 1,
                "version": 1_i64, "name": "X", "poll_interval_ms": "soon", "points": [] },
            ),
            (
                "negative interval",
                doc! { "_id": "x#1", "profile_id": "x", "tenant_id": Bson::Null, "schema_version": 1,
                "version": 1_i64, "name": "X", "poll_interval_ms": -1_i64, "points": [] },
            ),
            (
                "bad tenant",
                doc! { "_id": "x#1", "profile_id": "x", "tenant_id": "acme", "schema_version": 1,
                "version": 1_i64, "name": "X", "poll_interval_ms": 1_i64, "points": [] },
            ),
            (
                "bad write level",
                doc! { "_id": "x#1", "profile_id": "x", "tenant_id": Bson::Null, "schema_version": 1,
                "version": 1_i64, "name": "X", "poll_interval_ms": 1_i64,
                "points": [{ "key": "t", "name": "T", "write_level": "root" }] },
            ),
        ] {
            // Given a document this build cannot read; When it is read;
            // Then it is an error, which the store reports as a backend failure
            assert!(read_profile(stored).is_err(), "{what} was read");
        }
    }
}
