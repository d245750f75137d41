//! The same readings written to the embedded store and to InfluxDB give the
//! same buckets for every aggregate, through Flux and through InfluxQL: the
//! server's windows, bounds, `Bad` filter and replace-on-same-key must match
//! `aggregate_sorted` exactly, not only on the contract's round numbers.

// Test code: a panic with its message is how a broken fixture fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use chrono::{DateTime, Duration, TimeZone, Utc};
use hearth_domain::model::{Aggregate, HistoryBucket, HistoryQuery, Quality, Reading};
use hearth_domain::ports::ReadingStore;
use hearth_domain::{DeviceId, PointKey, TenantId};
use hearth_embedded::EmbeddedReadings;
use hearth_influxdb::{InfluxReadings, QueryLanguage};

/// A fixed pseudo-random sequence, so a failure can be reproduced.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0)
        .single()
        .expect("valid")
}

struct Series {
    tenant: TenantId,
    device: DeviceId,
    point: PointKey,
}

/// ~2 hours of readings per series at irregular, sub-second-jittered
/// intervals with awkward values, 5 % `Bad` and 5 % `Stale`; then a second
/// pass rewrites 200 of the same timestamps with other values and qualities.
fn readings(series: &[Series]) -> (Vec<Reading>, Vec<Reading>) {
    let mut rng = Lcg(42);
    let mut first = Vec::new();
    for s in series {
        let mut t = base() - Duration::seconds(120);
        for _ in 0..3_000 {
            t += Duration::microseconds(
                (1 + rng.next() % 4) as i64 * 1_000_000 + (rng.next() % 999_999) as i64,
            );
            let quality = match rng.next() % 20 {
                0 => Quality::Bad,
                1 => Quality::Stale,
                _ => Quality::Good,
            };
            first.push(Reading {
                tenant_id: s.tenant,
                device_id: s.device,
                point: s.point.clone(),
                timestamp: t,
                value: (rng.next() % 1_000_000) as f64 / 7.0 - 50_000.0,
                quality,
            });
        }
    }
    let replacements = (0..200)
        .map(|_| {
            let mut r = first[(rng.next() as usize) % first.len()].clone();
            r.value = -((rng.next() % 10_000) as f64) / 3.0;
            r.quality = if r.quality == Quality::Bad {
                Quality::Good
            } else {
                Quality::Bad
            };
            r
        })
        .collect();
    (first, replacements)
}

async fn write_both(embedded: &EmbeddedReadings, influx: &InfluxReadings, batch: &[Reading]) {
    for chunk in batch.chunks(1_000) {
        embedded.append(chunk).await.expect("embedded append");
        influx.append(chunk).await.expect("InfluxDB append");
    }
}

fn same(expected: &[HistoryBucket], got: &[HistoryBucket], aggregate: Aggregate) -> bool {
    expected.len() == got.len()
        && expected.iter().zip(got).all(|(e, g)| {
            e.timestamp == g.timestamp
                && match aggregate {
                    // Both sum in time order, but a server may sum in
                    // another order; the last bits may differ.
                    Aggregate::Mean => (e.value - g.value).abs() <= 1e-9 * e.value.abs().max(1.0),
                    _ => e.value == g.value,
                }
        })
}

#[tokio::test]
async fn influxdb_aggregates_equal_the_embedded_stores() {
    let Some(url) = support::server("influxdb_aggregates_equal_the_embedded_stores") else {
        return;
    };
    support::with_database(&url, QueryLanguage::Flux, |flux| async move {
        // Given the same readings, with replacements, in both stores
        let dir = tempfile::tempdir().expect("a temporary data directory");
        let embedded = EmbeddedReadings::open(dir.path()).expect("open readings.redb");
        let mut influxql_config = flux.config().clone();
        influxql_config.query_language = QueryLanguage::InfluxQl;
        let influxql = InfluxReadings::new(influxql_config).expect("valid config");
        let (tenant, device) = (TenantId::new(), DeviceId::new());
        let series = [
            Series {
                tenant,
                device,
                point: PointKey::new("flow").expect("valid"),
            },
            Series {
                tenant,
                device,
                point: PointKey::new("return").expect("valid"),
            },
            Series {
                tenant: TenantId::new(),
                device,
                point: PointKey::new("flow").expect("valid"),
            },
        ];
        let (first, replacements) = readings(&series);
        write_both(&embedded, &flux, &first).await;
        write_both(&embedded, &flux, &replacements).await;

        // When each store is asked the same questions: aligned and unaligned
        // ranges (down to nanoseconds), 1 s to 1 h buckets, all aggregates
        let ranges = [
            (Duration::zero(), Duration::seconds(7_200), 60),
            (
                Duration::milliseconds(3_250),
                Duration::milliseconds(7_000_500),
                7,
            ),
            (Duration::seconds(-100), Duration::seconds(8_000), 3_600),
            (
                Duration::nanoseconds(1_234_000_000_250),
                Duration::seconds(1_300),
                1,
            ),
        ];
        let mut compared = 0;
        for s in &series {
            for (from, to, bucket) in ranges {
                for aggregate in [
                    Aggregate::Mean,
                    Aggregate::Min,
                    Aggregate::Max,
                    Aggregate::Last,
                    Aggregate::Count,
                ] {
                    let query = HistoryQuery::new(
                        s.tenant,
                        s.device,
                        s.point.clone(),
                        base() + from,
                        base() + to,
                        bucket,
                        aggregate,
                    )
                    .expect("valid query");
                    let expected = embedded.history(&query).await.expect("embedded history");
                    // Then every bucket matches, through both languages
                    assert!(!expected.is_empty(), "the data must fill {query:?}");
                    for (language, store) in [("Flux", &flux), ("InfluxQL", &influxql)] {
                        let got = store.history(&query).await.expect("InfluxDB history");
                        assert!(
                            same(&expected, &got, aggregate),
                            "{language} differs from the embedded store for {query:?}:\n\
                             embedded {} buckets, InfluxDB {}; first difference {:?}",
                            expected.len(),
                            got.len(),
                            expected.iter().zip(&got).find(|(e, g)| !same(
                                std::slice::from_ref(e),
                                std::slice::from_ref(g),
                                aggregate
                            ))
                        );
                        compared += expected.len();
                    }
                }
            }
        }
        assert!(compared > 10_000, "only {compared} buckets compared");
    })
    .await;
}
