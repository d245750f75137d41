//! Contract suite for the `readings` port: series isolation, bucket
//! aggregation, replace-on-same-key and all-or-nothing batches.

use std::cell::Cell;

use chrono::{DateTime, Duration, TimeZone, Utc};

use crate::ids::{DeviceId, PointKey, TenantId};
use crate::model::{Aggregate, HistoryBucket, HistoryQuery, Quality, Reading};
use crate::ports::ReadingStore;

fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("a valid fixed date")
}

fn key(value: &str) -> PointKey {
    PointKey::new(value).expect("contract point keys are valid")
}

#[derive(Clone)]
struct Series {
    tenant: TenantId,
    device: DeviceId,
    point: PointKey,
}

impl Series {
    fn at(&self, seconds: i64, value: f64) -> Reading {
        Reading {
            tenant_id: self.tenant,
            device_id: self.device,
            point: self.point.clone(),
            timestamp: base() + Duration::seconds(seconds),
            value,
            quality: Quality::Good,
        }
    }

    fn query(
        &self,
        from_s: i64,
        to_s: i64,
        bucket_seconds: i64,
        aggregate: Aggregate,
    ) -> HistoryQuery {
        HistoryQuery::new(
            self.tenant,
            self.device,
            self.point.clone(),
            base() + Duration::seconds(from_s),
            base() + Duration::seconds(to_s),
            bucket_seconds,
            aggregate,
        )
        .expect("contract queries are valid")
    }
}

async fn history(store: &dyn ReadingStore, query: &HistoryQuery) -> Vec<(i64, f64)> {
    store
        .history(query)
        .await
        .unwrap_or_else(|err| panic!("history({query:?}) failed: {err}"))
        .into_iter()
        .map(|HistoryBucket { timestamp, value }| ((timestamp - base()).num_seconds(), value))
        .collect()
}

/// Checks every promise of [`ReadingStore`] against an empty store.
pub async fn readings_contract(store: &dyn ReadingStore) {
    bad_readings_are_kept_out_of_aggregates(store).await;
    let tenant_a = TenantId::new();
    let tenant_b = TenantId::new();
    let device_1 = DeviceId::new();
    let device_2 = DeviceId::new();
    let flow = Series {
        tenant: tenant_a,
        device: device_1,
        point: key("flow"),
    };
    // Neighbours that share all but one part of the series key with `flow`:
    // none of their readings may ever show up in `flow`'s history.
    let other_point = Series {
        point: key("return"),
        ..flow.clone()
    };
    let other_device = Series {
        device: device_2,
        ..flow.clone()
    };
    let other_tenant = Series {
        tenant: tenant_b,
        ..flow.clone()
    };

    // Given an empty store
    assert!(
        history(store, &flow.query(0, 60, 30, Aggregate::Count))
            .await
            .is_empty(),
        "an empty store must return no buckets"
    );
    store
        .append(&[])
        .await
        .expect("appending an empty batch must succeed");

    // When one batch, deliberately out of time order, mixes the series
    let batch = vec![
        flow.at(59, 7.0),
        other_tenant.at(10, 3_000.0),
        flow.at(0, 1.0),
        other_point.at(10, 1_000.0),
        flow.at(30, 5.0),
        other_device.at(30, 2_000.0),
        flow.at(-1, 100.0),
        flow.at(10, 3.0),
        flow.at(60, 200.0),
        other_tenant.at(59, 3_000.0),
    ];
    store.append(&batch).await.expect("append of a valid batch");

    // Then history aggregates only that series, in buckets aligned on `from`,
    // `from` inclusive and `to` exclusive
    let expect =
        |aggregate: Aggregate, values: [f64; 2]| (aggregate, vec![(0, values[0]), (30, values[1])]);
    for (aggregate, expected) in [
        expect(Aggregate::Mean, [2.0, 6.0]),
        expect(Aggregate::Min, [1.0, 5.0]),
        expect(Aggregate::Max, [3.0, 7.0]),
        expect(Aggregate::Last, [3.0, 7.0]),
        expect(Aggregate::Count, [2.0, 2.0]),
    ] {
        assert_eq!(
            history(store, &flow.query(0, 60, 30, aggregate)).await,
            expected,
            "{aggregate:?} over [0 s, 60 s) in 30 s buckets must see exactly the series' own readings \
             (no other tenant, device or point; `to` exclusive)"
        );
    }

    // And empty buckets are omitted, oldest first
    assert_eq!(
        history(store, &flow.query(-60, 60, 30, Aggregate::Count)).await,
        vec![(-30, 1.0), (0, 2.0), (30, 2.0)],
        "empty buckets must be omitted and buckets returned oldest first"
    );

    // And the neighbours kept their own readings
    assert_eq!(
        history(store, &other_tenant.query(0, 60, 60, Aggregate::Count)).await,
        vec![(0, 2.0)],
        "the same device and point under another tenant is a separate series"
    );
    assert_eq!(
        history(store, &other_point.query(0, 60, 60, Aggregate::Max)).await,
        vec![(0, 1_000.0)],
        "another point of the same device is a separate series"
    );
    assert_eq!(
        history(store, &other_device.query(0, 60, 60, Aggregate::Max)).await,
        vec![(0, 2_000.0)],
        "the same point of another device is a separate series"
    );
    let stranger = Series {
        tenant: TenantId::new(),
        ..flow.clone()
    };
    assert!(
        history(store, &stranger.query(-60, 120, 60, Aggregate::Count))
            .await
            .is_empty(),
        "a tenant that wrote nothing must see no history, even for another tenant's device id"
    );

    // When a later batch repeats a (tenant, device, point, timestamp)
    let mut replacement = flow.at(10, 4.0);
    replacement.quality = Quality::Stale;
    store
        .append(&[replacement])
        .await
        .expect("append of a replacing reading");

    // Then it replaces the stored reading instead of adding one
    assert_eq!(
        history(store, &flow.query(0, 60, 30, Aggregate::Count)).await,
        vec![(0, 2.0), (30, 2.0)],
        "a reading with the same key must replace, not add"
    );
    assert_eq!(
        history(store, &flow.query(0, 60, 30, Aggregate::Mean)).await,
        vec![(0, 2.5), (30, 6.0)],
        "the replacing value must be the one aggregated"
    );

    // When a large batch is written while history is being read
    const BULK: usize = 10_000;
    let bulk = Series {
        point: key("bulk"),
        ..flow.clone()
    };
    let bulk_batch: Vec<Reading> = (0..BULK as i64).map(|s| bulk.at(s, s as f64)).collect();
    let count_query = bulk.query(0, BULK as i64, BULK as i64, Aggregate::Count);
    let done = Cell::new(false);
    let writer = async {
        store
            .append(&bulk_batch)
            .await
            .expect("append of a large batch");
        done.set(true);
    };
    let reader = async {
        while !done.get() {
            let seen: f64 = history(store, &count_query)
                .await
                .iter()
                .map(|(_, count)| count)
                .sum();
            assert!(
                seen == 0.0 || seen == BULK as f64,
                "a batch must become visible all at once, but a reader saw {seen} of {BULK} readings"
            );
            tokio::task::yield_now().await;
        }
    };
    futures::join!(writer, reader);

    // Then all of it is there
    assert_eq!(
        history(store, &count_query).await,
        vec![(0, BULK as f64)],
        "every reading of a large batch must be stored"
    );
    assert_eq!(
        history(
            store,
            &bulk.query(0, BULK as i64, BULK as i64, Aggregate::Last)
        )
        .await,
        vec![(0, (BULK - 1) as f64)],
        "LAST must be the newest reading of the bucket"
    );
}

/// A `Bad` reading (a fault code such as an open sensor's 192 °C) is stored
/// but never counted, averaged or returned as a minimum, maximum or last value.
async fn bad_readings_are_kept_out_of_aggregates(store: &dyn ReadingStore) {
    let s = Series {
        tenant: TenantId::new(),
        device: DeviceId::new(),
        point: key("sensor"),
    };
    let mut open = s.at(5, 192.0);
    open.quality = Quality::Bad;
    store
        .append(&[s.at(0, 20.0), open, s.at(10, 22.0)])
        .await
        .unwrap_or_else(|err| panic!("append failed: {err}"));
    for (aggregate, expected) in [
        (Aggregate::Count, 2.0),
        (Aggregate::Mean, 21.0),
        (Aggregate::Max, 22.0),
        (Aggregate::Min, 20.0),
        (Aggregate::Last, 22.0),
    ] {
        let got = history(store, &s.query(0, 60, 60, aggregate)).await;
        assert_eq!(
            got,
            vec![(0, expected)],
            "{aggregate:?} must leave out Bad readings"
        );
    }
}
