//! History through Flux (`/api/v2/query`): the query text and a parser for
//! the CSV it answers with.
//!
//! The CSV is parsed here rather than by the `influxdb2` crate, whose 0.5.2
//! panics on an empty value; an empty or odd cell here is an error or a
//! skipped bucket, never a panic. Windows are made with `createEmpty: false`
//! so empty buckets are omitted by the server, as the port requires.

use chrono::{DateTime, SecondsFormat, Utc};
use hearth_domain::model::{Aggregate, HistoryBucket, HistoryQuery, Quality};

use crate::error::InfluxError;
use crate::line_protocol::MEASUREMENT;

/// `value` as a Flux string literal: quoted, with `\`, `"` and the
/// interpolation opener `${` escaped, so no input can end the literal.
pub(crate) fn string_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '$' if chars.peek() == Some(&'{') => out.push_str("\\$"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn time_literal(ts: DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Nanoseconds from the epoch, wide enough for any `DateTime`.
pub(crate) fn epoch_nanos(ts: DateTime<Utc>) -> i128 {
    i128::from(ts.timestamp()) * 1_000_000_000 + i128::from(ts.timestamp_subsec_nanos())
}

/// Where windows start relative to the epoch so that one starts exactly at
/// `from`: servers align windows on the epoch plus an offset, the port on `from`.
pub(crate) fn window_offset_nanos(query: &HistoryQuery) -> i128 {
    let every = i128::from(query.bucket_seconds) * 1_000_000_000;
    epoch_nanos(query.from).rem_euclid(every)
}

/// The Flux program for one history query. The extra `_time < stop`
/// filter is there because InfluxDB 1.8 reads `range`'s stop inclusively (a
/// reading at exactly `to` came back); the port's `to` is exclusive. `Bad` readings are dropped
/// before windowing (they are fault codes, not values), which needs the
/// `quality` field beside `value` in one row: hence the pivot.
pub(crate) fn history_query(bucket: &str, query: &HistoryQuery) -> String {
    let function = match query.aggregate {
        Aggregate::Mean => "mean",
        Aggregate::Min => "min",
        Aggregate::Max => "max",
        Aggregate::Last => "last",
        Aggregate::Count => "count",
    };
    format!(
        "from(bucket: {bucket})\n\
         |> range(start: {start}, stop: {stop})\n\
         |> filter(fn: (r) => r._time < {stop})\n\
         |> filter(fn: (r) => r._measurement == {measurement} and r.tenant == {tenant} \
         and r.device == {device} and r.point == {point})\n\
         |> filter(fn: (r) => r._field == \"value\" or r._field == \"quality\")\n\
         |> pivot(rowKey: [\"_time\"], columnKey: [\"_field\"], valueColumn: \"_value\")\n\
         |> filter(fn: (r) => r.quality != {bad})\n\
         |> window(every: {every}s, offset: {offset}ns, createEmpty: false)\n\
         |> {function}(column: \"value\")\n\
         |> keep(columns: [\"_start\", \"value\"])\n",
        bucket = string_literal(bucket),
        start = time_literal(query.from),
        stop = time_literal(query.to),
        measurement = string_literal(MEASUREMENT),
        tenant = string_literal(&query.tenant_id.to_string()),
        device = string_literal(&query.device_id.to_string()),
        point = string_literal(query.point.as_str()),
        bad = Quality::Bad.as_u8(),
        every = query.bucket_seconds,
        offset = window_offset_nanos(query),
    )
}

/// Splits one CSV record (RFC 4180 quoting; no line breaks inside cells,
/// which this query's columns never hold).
fn split_record(line: &str) -> Result<Vec<String>, InfluxError> {
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (false, ',') => cells.push(std::mem::take(&mut cell)),
            (false, '"') if cell.is_empty() => quoted = true,
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => quoted = false,
            (_, c) => cell.push(c),
        }
    }
    if quoted {
        return Err(InfluxError::Malformed(format!(
            "unterminated quote in CSV record {line:?}"
        )));
    }
    cells.push(cell);
    Ok(cells)
}

/// Reads the `_start` and `value` columns of every table of a Flux CSV
/// answer (header row on, annotations off), oldest bucket first. Tables are
/// separated by blank lines, each with its own header; a table with an
/// `error` column is the server reporting a failure mid-stream.
pub(crate) fn parse_buckets(csv: &str) -> Result<Vec<HistoryBucket>, InfluxError> {
    let mut buckets = Vec::new();
    // (index of `_start`, index of `value`) of the current table.
    let mut columns: Option<(usize, usize)> = None;
    let mut lines = csv.lines().map(|line| line.trim_end_matches('\r'));
    while let Some(line) = lines.next() {
        if line.is_empty() {
            columns = None;
            continue;
        }
        let cells = split_record(line)?;
        let Some((start_at, value_at)) = columns else {
            if let Some(error_at) = cells.iter().position(|c| c == "error") {
                let message = match lines.next().map(split_record).transpose()? {
                    Some(row) => row.get(error_at).cloned().unwrap_or_default(),
                    None => String::new(),
                };
                return Err(InfluxError::Query(message));
            }
            let find = |name: &str| {
                cells.iter().position(|c| c == name).ok_or_else(|| {
                    InfluxError::Malformed(format!(
                        "Flux table without a `{name}` column: {line:?}"
                    ))
                })
            };
            columns = Some((find("_start")?, find("value")?));
            continue;
        };
        let cell = |at: usize| {
            cells.get(at).map(String::as_str).ok_or_else(|| {
                InfluxError::Malformed(format!("Flux row shorter than its header: {line:?}"))
            })
        };
        let value = cell(value_at)?;
        // A null aggregate (no sample in the window) is an empty bucket:
        // omitted, as the port says, never a parse failure.
        if value.is_empty() {
            continue;
        }
        let start = cell(start_at)?;
        let timestamp = DateTime::parse_from_rfc3339(start)
            .map_err(|err| InfluxError::Malformed(format!("`_start` {start:?}: {err}")))?
            .with_timezone(&Utc);
        let value = value
            .parse::<f64>()
            .map_err(|err| InfluxError::Malformed(format!("`value` {value:?}: {err}")))?;
        buckets.push(HistoryBucket { timestamp, value });
    }
    // Tables come in group-key order, which need not be time order.
    buckets.sort_by_key(|bucket| bucket.timestamp);
    Ok(buckets)
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};
    use hearth_domain::{DeviceId, PointKey, TenantId};

    use super::*;

    fn query(from: DateTime<Utc>, bucket: i64) -> HistoryQuery {
        HistoryQuery::new(
            TenantId::new(),
            DeviceId::new(),
            PointKey::new("flow").expect("valid key"),
            from,
            from + Duration::seconds(600),
            bucket,
            Aggregate::Mean,
        )
        .expect("valid query")
    }

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(s, 0).single().expect("valid time")
    }

    #[test]
    fn string_literals_cannot_be_escaped_from() {
        // Given inputs that try to end the literal or interpolate
        let hostile = r#"x") |> drop() // ${secret} \"#;
        // When quoted
        let literal = string_literal(hostile);
        // Then every quote and backslash is escaped and `${` is inert
        assert_eq!(literal, r#""x\") |> drop() // \${secret} \\""#);
        // And a lone `$` is left alone (it opens nothing)
        assert_eq!(string_literal("a$b"), r#""a$b""#);
    }

    #[test]
    fn windows_are_offset_to_start_at_from() {
        // Given a `from` 7.5 s past a 30 s epoch boundary
        let from = at(1_767_225_607) + Duration::milliseconds(500);
        // Then windows are shifted by exactly that much
        assert_eq!(window_offset_nanos(&query(from, 30)), 7_500_000_000);
        // And an aligned `from` needs no shift, even before 1970
        assert_eq!(window_offset_nanos(&query(at(1_767_225_600), 30)), 0);
        assert_eq!(window_offset_nanos(&query(at(-45), 30)), 15_000_000_000);
    }

    #[test]
    fn the_query_names_the_whole_series_and_the_aggregate() {
        // Given a query
        let q = query(at(1_767_225_600), 30);
        // When rendered
        let flux = history_query("hearth/autogen", &q);
        // Then the tenant, device and point are all filtered on
        assert!(flux.contains(&format!("r.tenant == \"{}\"", q.tenant_id)));
        assert!(flux.contains(&format!("r.device == \"{}\"", q.device_id)));
        assert!(flux.contains("r.point == \"flow\""));
        assert!(flux.contains("from(bucket: \"hearth/autogen\")"));
        assert!(flux.contains("range(start: 2026-01-01T00:00:00Z, stop: 2026-01-01T00:10:00Z)"));
        assert!(flux.contains("|> mean(column: \"value\")"));
        assert!(flux.contains("r.quality != 2"));
    }

    #[test]
    fn tables_are_read_in_time_order_and_empty_values_skipped() {
        // Given two tables out of time order, one with a null value, CRLF ends
        let csv = ",result,table,_start,value\r\n\
                   ,_result,1,2026-01-01T00:00:30Z,6\r\n\
                   ,_result,2,2026-01-01T00:01:00Z,\r\n\
                   \r\n\
                   ,result,table,value,_start\r\n\
                   ,_result,0,\"2.5\",2026-01-01T00:00:00.5Z\r\n\r\n";
        // When parsed
        let buckets = parse_buckets(csv).expect("parses");
        // Then buckets come oldest first, the empty one left out
        let base = at(1_767_225_600);
        assert_eq!(
            buckets,
            vec![
                HistoryBucket {
                    timestamp: base + Duration::milliseconds(500),
                    value: 2.5
                },
                HistoryBucket {
                    timestamp: base + Duration::seconds(30),
                    value: 6.0
                },
            ]
        );
        // And an empty answer is no buckets
        assert!(parse_buckets("\r\n").expect("parses").is_empty());
    }

    #[test]
    fn odd_answers_are_errors_not_panics() {
        // Given answers a server or proxy might send
        let cases = [
            ",error,reference\r\n,\"type error: bad\",\r\n",
            ",result,table,_time,_value\r\n,_result,0,2026-01-01T00:00:00Z,1\r\n",
            ",result,table,_start,value\r\n,_result,0,yesterday,1\r\n",
            ",result,table,_start,value\r\n,_result,0,2026-01-01T00:00:00Z,one\r\n",
            ",result,table,_start,value\r\n,_result,0\r\n",
            ",result,table,_start,value\r\n,\"_result,0,2026-01-01T00:00:00Z,1\r\n",
            "<html>502 Bad Gateway</html>",
        ];
        for csv in cases {
            // Then each is an error
            assert!(parse_buckets(csv).is_err(), "{csv:?} must be refused");
        }
        assert!(matches!(
            parse_buckets(cases[0]),
            Err(InfluxError::Query(message)) if message == "type error: bad"
        ));
    }
}
