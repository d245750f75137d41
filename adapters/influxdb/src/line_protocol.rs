//! Readings as InfluxDB line protocol: one point per reading in measurement
//! [`MEASUREMENT`], tagged `device`, `point`, `tenant` (the series key, so the
//! same reading written twice overwrites), fields `quality` (integer) and
//! `value` (float), timestamp in microseconds (the embedded store's precision).

use std::fmt::Write as _;

use hearth_domain::model::Reading;

use crate::error::InfluxError;

/// The measurement every reading is written to.
pub const MEASUREMENT: &str = "readings";

/// Appends `value` with line protocol's tag escapes (`,` `=` and space).
/// A backslash is refused: 1.x keeps it literally except before those three,
/// so a value ending in one would swallow the next separator. A line break
/// would start a new point.
fn push_tag_value(out: &mut String, value: &str) -> Result<(), InfluxError> {
    if value.contains(['\n', '\r', '\\']) {
        return Err(InfluxError::Unwritable(format!("{value:?}")));
    }
    for c in value.chars() {
        if matches!(c, ',' | '=' | ' ') {
            out.push('\\');
        }
        out.push(c);
    }
    Ok(())
}

/// One request body for the whole batch, one line per reading, tags in key
/// order (the order InfluxDB stores them in, so it need not sort).
///
/// Refuses the whole batch when one reading cannot be written (a NaN or an
/// infinity), so the caller never sends half of it.
pub fn encode_batch(batch: &[Reading]) -> Result<String, InfluxError> {
    // ~150 bytes a line: two UUIDs, a short key, two fields, a timestamp.
    let mut out = String::with_capacity(batch.len() * 160);
    for reading in batch {
        if !reading.value.is_finite() {
            return Err(InfluxError::NonFinite {
                point: reading.point.to_string(),
                timestamp: reading.timestamp.to_rfc3339(),
                value: reading.value,
            });
        }
        out.push_str(MEASUREMENT);
        // Writing into a String cannot fail; the results are ignored on purpose.
        let _ = write!(out, ",device={},point=", reading.device_id);
        push_tag_value(&mut out, reading.point.as_str())?;
        let _ = writeln!(
            out,
            ",tenant={} quality={}i,value={} {}",
            reading.tenant_id,
            reading.quality.as_u8(),
            reading.value,
            reading.timestamp.timestamp_micros()
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use hearth_domain::model::Quality;
    use hearth_domain::{DeviceId, PointKey, TenantId};

    use super::*;

    fn reading(value: f64) -> Reading {
        Reading {
            tenant_id: TenantId::new(),
            device_id: DeviceId::new(),
            point: PointKey::new("flow_temp").expect("valid key"),
            timestamp: Utc
                .timestamp_opt(1_767_225_600, 123_456_789)
                .single()
                .expect("valid time"),
            value,
            quality: Quality::Stale,
        }
    }

    #[test]
    fn a_reading_is_one_line_with_tags_fields_and_microseconds() {
        // Given a reading with sub-microsecond precision
        let r = reading(21.5);
        // When it is encoded
        let body = encode_batch(std::slice::from_ref(&r)).expect("encodes");
        // Then it is one line, tags sorted, quality an integer, value a
        // float, the timestamp cut to whole microseconds
        assert_eq!(
            body,
            format!(
                "readings,device={},point=flow_temp,tenant={} quality=1i,value=21.5 1767225600123456\n",
                r.device_id, r.tenant_id
            )
        );
    }

    #[test]
    fn whole_numbers_stay_floats_and_extremes_round_trip() {
        // Given values a float field must take without an `i` suffix
        for value in [1.0, -0.0, 1e300, 5e-324, f64::MAX] {
            let body = encode_batch(&[reading(value)]).expect("encodes");
            // Then the value field parses back to the same f64
            let field = body
                .split("value=")
                .nth(1)
                .and_then(|rest| rest.split(' ').next())
                .expect("a value field");
            assert!(!field.ends_with('i'), "{field} would be an integer");
            assert_eq!(field.parse::<f64>().expect("a float"), value);
        }
    }

    #[test]
    fn a_non_finite_value_refuses_the_whole_batch() {
        // Given a batch with one NaN among good readings
        let batch = [reading(1.0), reading(f64::NAN), reading(2.0)];
        // Then nothing is encoded
        assert!(matches!(
            encode_batch(&batch),
            Err(InfluxError::NonFinite { .. })
        ));
        assert!(encode_batch(&[reading(f64::INFINITY)]).is_err());
    }

    #[test]
    fn tag_separators_are_escaped_and_line_breaks_refused() {
        // Given tag values that would end the tag or the tag set
        let mut out = String::new();
        push_tag_value(&mut out, "a,b=c d").expect("escapable");
        // Then each separator is escaped and nothing else changes
        assert_eq!(out, "a\\,b\\=c\\ d");
        // And a line break (a new point) or a trailing backslash (escaping
        // the next separator) is refused
        assert!(push_tag_value(&mut String::new(), "x\nreadings,tenant=y v=1").is_err());
        assert!(push_tag_value(&mut String::new(), "x\\").is_err());
    }
}
