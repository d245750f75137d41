//! End to end against the demo server: `historySeries` and
//! `GET /export/history.csv` return the same numbers for the same range, raw
//! (1 s buckets) and bucketed, and the export refuses what history refuses,
//! with a status and a typed body.

// Integration-test helpers: a panic with its message is how a broken fixture fails a test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use hearth_tests::{eventually, Client, DemoServer};
use serde_json::{json, Value};

const POINTS: [&str; 2] = ["outdoor_temp", "flow_temp"];

/// Query parameters of an export request.
type Params = Vec<(&'static str, String)>;

/// `(timestamp, point, value)` rows, as both sides are compared.
type Rows = Vec<(DateTime<Utc>, String, f64)>;

async fn series(
    client: &Client,
    device: &str,
    from: &str,
    to: &str,
    bucket: Option<i64>,
    aggregate: &str,
) -> Rows {
    let data = client
        .data(
            "query($d: ID!, $p: [String!]!, $f: DateTime!, $t: DateTime!, $b: Int, $a: Aggregate!) {
                historySeries(deviceId: $d, points: $p, from: $f, to: $t, bucketSeconds: $b, aggregate: $a) {
                    point buckets { timestamp value } } }",
            json!({ "d": device, "p": POINTS, "f": from, "t": to, "b": bucket, "a": aggregate }),
        )
        .await
        .expect("historySeries");
    let mut rows = Rows::new();
    for s in data["historySeries"].as_array().expect("a list") {
        for b in s["buckets"].as_array().expect("buckets") {
            rows.push((
                b["timestamp"]
                    .as_str()
                    .expect("time")
                    .parse()
                    .expect("RFC 3339"),
                s["point"].as_str().expect("point").to_owned(),
                b["value"].as_f64().expect("value"),
            ));
        }
    }
    rows.sort_by(|a, b| {
        (a.0, POINTS.iter().position(|p| *p == a.1))
            .cmp(&(b.0, POINTS.iter().position(|p| *p == b.1)))
    });
    rows
}

fn export_url(client: &Client, params: &[(&str, String)]) -> reqwest::Url {
    reqwest::Url::parse_with_params(
        &format!("http://{}/export/history.csv", client.addr),
        params,
    )
    .expect("a valid url")
}

async fn export(client: &Client, params: &[(&str, String)]) -> reqwest::Response {
    let mut req = client.http.get(export_url(client, params));
    if let Some(token) = &client.token {
        req = req.bearer_auth(token);
    }
    req.send().await.expect("export request")
}

fn parse_csv(text: &str) -> Rows {
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("timestamp,point,value"));
    lines
        .map(|line| {
            let mut cells = line.split(',');
            let t = cells.next().expect("time").parse().expect("RFC 3339");
            let p = cells.next().expect("point").to_owned();
            let v = cells.next().expect("value").parse().expect("a number");
            (t, p, v)
        })
        .collect()
}

fn params(
    device: &str,
    from: &str,
    to: &str,
    bucket: Option<i64>,
    aggregate: &str,
) -> Vec<(&'static str, String)> {
    let mut p = vec![
        ("deviceId", device.to_owned()),
        ("points", POINTS.join(",")),
        ("from", from.to_owned()),
        ("to", to.to_owned()),
        ("aggregate", aggregate.to_owned()),
    ];
    if let Some(b) = bucket {
        p.push(("bucketSeconds", b.to_string()));
    }
    p
}

#[tokio::test]
async fn csv_export_equals_history_series_raw_and_bucketed() -> anyhow::Result<()> {
    // Given the demo polling its controllers, and a closed range with readings
    let server = DemoServer::start().await?;
    let admin = server.login("admin@acme.test").await?;
    let (device, _) = admin.device_ids().await?.remove(0);
    let from = (Utc::now() - chrono::Duration::minutes(2)).trunc_subsecs(0);
    let from_s = from.to_rfc3339_opts(SecondsFormat::Secs, true);
    let to = eventually(Duration::from_secs(30), || async {
        // A range that ended a few seconds ago: everything in it is stored.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let to = (Utc::now() - chrono::Duration::seconds(3)).trunc_subsecs(0);
        let to_s = to.to_rfc3339_opts(SecondsFormat::Secs, true);
        let rows = series(&admin, &device, &from_s, &to_s, Some(1), "LAST").await;
        Ok((rows.len() >= 6).then_some(to_s))
    })
    .await?;

    for (bucket, aggregate) in [(Some(1), "LAST"), (Some(60), "MEAN"), (None, "MAX")] {
        // When the same range is asked through GraphQL and as CSV
        let want = series(&admin, &device, &from_s, &to, bucket, aggregate).await;
        let res = export(&admin, &params(&device, &from_s, &to, bucket, aggregate)).await;
        assert_eq!(res.status(), 200);
        assert!(res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/csv")));
        let got = parse_csv(&res.text().await?);
        // Then both hold the same buckets with the same values, for both points
        assert!(!want.is_empty());
        assert_eq!(got, want, "bucket {bucket:?} {aggregate}");
        for point in POINTS {
            assert!(got.iter().any(|r| r.1 == point), "{point} is exported");
        }
    }
    Ok(())
}

#[tokio::test]
async fn the_export_refuses_what_history_refuses_with_a_typed_body() -> anyhow::Result<()> {
    // Given acme's device, acme's admin, globex's admin and no one at all
    let server = DemoServer::start().await?;
    let admin = server.login("admin@acme.test").await?;
    let stranger = server.login("admin@globex.test").await?;
    let anonymous = server.client();
    let (device, _) = admin.device_ids().await?.remove(0);
    let from = "2026-01-01T00:00:00Z";
    let to = "2026-01-02T00:00:00Z";
    let good = params(&device, from, to, Some(3_600), "MEAN");
    let with = |key: &str, value: &str| -> Vec<(&'static str, String)> {
        good.iter()
            .map(|(k, v)| {
                (
                    *k,
                    if *k == key {
                        value.to_owned()
                    } else {
                        v.clone()
                    },
                )
            })
            .collect()
    };
    let cases: Vec<(&Client, Params, u16, &str)> = vec![
        (&anonymous, good.clone(), 401, "UNAUTHENTICATED"),
        (&stranger, good.clone(), 404, "NOT_FOUND"),
        (
            &admin,
            with("points", "outdoor_temp,no_such_point"),
            404,
            "NOT_FOUND",
        ),
        (&admin, with("from", "yesterday"), 400, "BAD_USER_INPUT"),
        (
            &admin,
            with("to", "2025-01-01T00:00:00Z"),
            400,
            "BAD_USER_INPUT",
        ),
        (&admin, with("aggregate", "MEDIAN"), 400, "BAD_USER_INPUT"),
        (&admin, with("bucketSeconds", "0"), 400, "BAD_USER_INPUT"),
        (&admin, with("deviceId", "not-an-id"), 400, "BAD_USER_INPUT"),
    ];
    for (client, params, status, code) in cases {
        // When each asks for an export
        let res = export(client, &params).await;
        // Then the status and the body's code say why, and nothing leaks
        assert_eq!(res.status().as_u16(), status, "{params:?}");
        // And the refusal went through the same layers as /graphql: it
        // carries a request id to find its log lines by
        assert!(
            res.headers().contains_key("x-request-id"),
            "{params:?}: no request id"
        );
        let body: Value = serde_json::from_str(&res.text().await?)?;
        assert_eq!(body["code"], code, "{params:?}: {body}");
    }
    // And a query string over the HTTP limit is refused before it is read
    let points = vec!["outdoor_temp"; 3_000].join(",");
    let res = export(&admin, &with("points", &points)).await;
    assert_eq!(res.status().as_u16(), 414);
    let body: Value = serde_json::from_str(&res.text().await?)?;
    assert_eq!(body["code"], "BAD_USER_INPUT", "{body}");
    // And a bad token is refused like none
    let mut forged = admin.clone();
    forged.token = Some("forged".into());
    assert_eq!(export(&forged, &good).await.status().as_u16(), 401);
    Ok(())
}
