//! History through InfluxQL on the v1 `/query` endpoint (the query path of
//! every InfluxDB version, and the only one of InfluxDB 3 and Cloud
//! Serverless): the statement and a parser for its JSON answer.

use chrono::{DateTime, Utc};
use hearth_domain::model::{Aggregate, HistoryBucket, HistoryQuery, Quality};
use serde::Deserialize;

use crate::error::InfluxError;
use crate::flux::{epoch_nanos, window_offset_nanos};
use crate::line_protocol::MEASUREMENT;

/// `value` as an InfluxQL string literal: single-quoted, `\` and `'` escaped.
pub(crate) fn string_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// `name` as a double-quoted InfluxQL identifier.
pub(crate) fn identifier(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The statement for one history query. Time bounds are integer epoch
/// nanoseconds (no date parsing on the server); windows are offset so one
/// starts at `from`; `fill(none)` omits empty buckets; `Bad` readings are
/// dropped by a condition on the `quality` field.
pub(crate) fn history_statement(query: &HistoryQuery) -> String {
    let function = match query.aggregate {
        Aggregate::Mean => "mean",
        Aggregate::Min => "min",
        Aggregate::Max => "max",
        Aggregate::Last => "last",
        Aggregate::Count => "count",
    };
    format!(
        "SELECT {function}(\"value\") FROM {measurement} \
         WHERE \"tenant\" = {tenant} AND \"device\" = {device} AND \"point\" = {point} \
         AND \"quality\" <> {bad} AND time >= {start} AND time < {stop} \
         GROUP BY time({every}s, {offset}ns) fill(none)",
        measurement = identifier(MEASUREMENT),
        tenant = string_literal(&query.tenant_id.to_string()),
        device = string_literal(&query.device_id.to_string()),
        point = string_literal(query.point.as_str()),
        bad = Quality::Bad.as_u8(),
        start = epoch_nanos(query.from),
        stop = epoch_nanos(query.to),
        every = query.bucket_seconds,
        offset = window_offset_nanos(query),
    )
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    results: Vec<StatementResult>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct StatementResult {
    #[serde(default)]
    series: Vec<Series>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    values: Vec<Vec<serde_json::Value>>,
}

/// Reads `[time, value]` rows of an answer asked with `epoch=ns`, oldest
/// first. InfluxQL reports statement errors inside a 200 answer, so those
/// are looked for before any row is trusted.
pub(crate) fn parse_buckets(body: &[u8]) -> Result<Vec<HistoryBucket>, InfluxError> {
    let answer: Answer = serde_json::from_slice(body).map_err(|err| {
        InfluxError::Malformed(format!("InfluxQL answer is not the JSON asked for: {err}"))
    })?;
    if let Some(error) = answer.error {
        return Err(InfluxError::Query(error));
    }
    let mut buckets = Vec::new();
    for result in answer.results {
        if let Some(error) = result.error {
            return Err(InfluxError::Query(error));
        }
        for row in result.series.into_iter().flat_map(|series| series.values) {
            let [time, value] = row.as_slice() else {
                return Err(InfluxError::Malformed(format!(
                    "InfluxQL row of {} columns, expected [time, value]",
                    row.len()
                )));
            };
            // A null aggregate is an empty bucket: omitted, as the port says.
            if value.is_null() {
                continue;
            }
            let nanos = time.as_i64().ok_or_else(|| {
                InfluxError::Malformed(format!("InfluxQL time {time} is not epoch ns"))
            })?;
            let value = value.as_f64().ok_or_else(|| {
                InfluxError::Malformed(format!("InfluxQL value {value} is not a number"))
            })?;
            buckets.push(HistoryBucket {
                timestamp: DateTime::<Utc>::from_timestamp_nanos(nanos),
                value,
            });
        }
    }
    buckets.sort_by_key(|bucket| bucket.timestamp);
    Ok(buckets)
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};
    use hearth_domain::{DeviceId, PointKey, TenantId};

    use super::*;

    #[test]
    fn literals_and_identifiers_cannot_be_escaped_from() {
        // Given inputs that try to close the literal and add a statement
        let hostile = r"x' OR 1=1; DROP DATABASE hearth; \";
        // Then quotes and backslashes are escaped
        assert_eq!(
            string_literal(hostile),
            r"'x\' OR 1=1; DROP DATABASE hearth; \\'"
        );
        assert_eq!(identifier(r#"a"b\"#), r#""a\"b\\""#);
    }

    #[test]
    fn the_statement_names_the_whole_series_and_aligns_on_from() {
        // Given a query from 10 s past a minute in 60 s buckets
        let from = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 10)
            .single()
            .expect("valid");
        let q = HistoryQuery::new(
            TenantId::new(),
            DeviceId::new(),
            PointKey::new("flow").expect("valid key"),
            from,
            from + Duration::seconds(120),
            60,
            Aggregate::Count,
        )
        .expect("valid query");
        // When rendered
        let sql = history_statement(&q);
        // Then it filters tenant, device, point and quality, in exact bounds
        assert!(sql.starts_with("SELECT count(\"value\") FROM \"readings\" WHERE "));
        assert!(sql.contains(&format!("\"tenant\" = '{}'", q.tenant_id)));
        assert!(sql.contains(&format!("\"device\" = '{}'", q.device_id)));
        assert!(sql.contains("\"point\" = 'flow'"));
        assert!(sql.contains("\"quality\" <> 2"));
        assert!(sql.contains("time >= 1767225610000000000 AND time < 1767225730000000000"));
        assert!(sql.ends_with("GROUP BY time(60s, 10000000000ns) fill(none)"));
    }

    #[test]
    fn rows_are_read_and_errors_found() {
        // Given an answer with rows out of order and a null
        let body = br#"{"results":[{"statement_id":0,"series":[{"name":"readings",
            "columns":["time","mean"],"values":[[1767225630000000000,6],
            [1767225600000000000,2.5],[1767225660000000000,null]]}]}]}"#;
        // Then buckets come oldest first without the null
        let buckets = parse_buckets(body).expect("parses");
        assert_eq!(
            buckets
                .iter()
                .map(|b| (b.timestamp.timestamp(), b.value))
                .collect::<Vec<_>>(),
            vec![(1_767_225_600, 2.5), (1_767_225_630, 6.0)]
        );
        // And stored values come back bit for bit (serde_json's default
        // parser is one ulp off on this one)
        let exact =
            parse_buckets(br#"{"results":[{"series":[{"values":[[0,-13058.285714285717]]}]}]}"#)
                .expect("parses");
        assert_eq!(
            exact[0].value.to_bits(),
            (-13058.285714285717_f64).to_bits()
        );
        // And no series is no buckets
        assert!(parse_buckets(br#"{"results":[{"statement_id":0}]}"#)
            .expect("parses")
            .is_empty());
        // And errors in a 200 answer, odd rows and non-JSON are errors
        assert!(matches!(
            parse_buckets(br#"{"results":[{"statement_id":0,"error":"database not found: x"}]}"#),
            Err(InfluxError::Query(m)) if m.contains("database not found")
        ));
        assert!(parse_buckets(br#"{"error":"missing parameter: q"}"#).is_err());
        assert!(parse_buckets(br#"{"results":[{"series":[{"values":[[1]]}]}]}"#).is_err());
        assert!(parse_buckets(br#"{"results":[{"series":[{"values":[["t",1]]}]}]}"#).is_err());
        assert!(parse_buckets(br#"{"results":[{"series":[{"values":[[1,"x"]]}]}]}"#).is_err());
        assert!(parse_buckets(b"<html>502</html>").is_err());
    }
}
