//! The notifier against a real SMTP server on loopback (aiosmtpd, started by
//! `.ci/extra.d/50-aiosmtpd.sh`: `HEARTH_TEST_SMTP_ADDR`, mails read back from
//! `HEARTH_TEST_SMTP_MAILDIR`) and a real HTTP receiver for webhooks. Delays
//! run on a manual clock; nothing here compares wall-clock durations.

// Test code: a panic with its message is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use chrono::{TimeZone, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::Mutex;

use hearth_domain::ids::{AlarmId, AlarmRuleId, DeviceId, PointKey, TenantId};
use hearth_domain::model::{
    AlarmNotice, AlarmTransition, EmailAddress, Language, NotificationChannel,
    NotificationSettings, Recipient, Severity, Webhook, WebhookSecret,
};
use hearth_domain::ports::{AlarmNotifier, NotificationFailureLog};
use hearth_notify::{
    EmailSender, ManualClock, MemoryFailureLog, Notifier, NotifierConfig, NotifierStats,
    SmtpConfig, SmtpTls, WebhookPayload, WebhookSender, SIGNATURE_HEADER, TIMESTAMP_HEADER,
};

const VAR: &str = "HEARTH_TEST_SMTP_ADDR";

/// The SMTP server and its Maildir, or `None` to skip outside CI.
/// Under `CI=true` a missing server is a failure, never a silent pass.
fn smtp_server() -> Option<(String, u16, PathBuf)> {
    let Ok(addr) = std::env::var(VAR) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but {VAR} is not set: .ci/run must start aiosmtpd (.ci/extra.d/50-aiosmtpd.sh)"
        );
        eprintln!("skipped: {VAR} is not set (source .ci/extra.d/50-aiosmtpd.sh)");
        return None;
    };
    let maildir = std::env::var("HEARTH_TEST_SMTP_MAILDIR")
        .expect("HEARTH_TEST_SMTP_MAILDIR is set with HEARTH_TEST_SMTP_ADDR");
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    Some((host.to_owned(), port.parse().expect("port"), maildir.into()))
}

fn smtp(host: &str, port: u16) -> SmtpConfig {
    SmtpConfig {
        host: host.to_owned(),
        port,
        tls: SmtpTls::None,
        username: None,
        password: None,
        timeout: Duration::from_secs(10),
    }
}

fn config() -> NotifierConfig {
    NotifierConfig {
        from: "Hearth Alarms <alarms@hearth.test>".into(),
        queue_size: 1_000,
        max_pending: 1_000,
        retries: 2,
        backoff: Duration::from_millis(10),
        concurrency: 8,
        tick: Duration::from_millis(5),
        webhook_timeout: Duration::from_secs(5),
    }
}

struct Harness {
    notifier: Notifier,
    clock: Arc<ManualClock>,
    log: Arc<MemoryFailureLog>,
}

fn start(config: NotifierConfig, smtp: &SmtpConfig) -> Harness {
    let clock = Arc::new(ManualClock::new());
    let log = Arc::new(MemoryFailureLog::default());
    let email = EmailSender::new(smtp, &config.from).unwrap();
    let webhook = WebhookSender::new(config.webhook_timeout).unwrap();
    let (notifier, _task) = Notifier::start(config, email, webhook, log.clone(), clock.clone());
    Harness {
        notifier,
        clock,
        log,
    }
}

fn notice(tenant: TenantId, alarm: AlarmId, transition: AlarmTransition) -> AlarmNotice {
    AlarmNotice {
        tenant_id: tenant,
        alarm_id: alarm,
        rule_id: AlarmRuleId::new(),
        rule_name: "Vorlauf zu heiß".into(),
        severity: Severity::Critical,
        device_id: DeviceId::new(),
        device_name: "Substation Nørrebro 7".into(),
        point: Some(PointKey::new("flow_temp").unwrap()),
        transition,
        at: Utc.with_ymd_and_hms(2026, 12, 3, 14, 5, 6).unwrap(),
        value: Some(91.5),
        message: "flow_temp above 90 for 60 s".into(),
    }
}

/// A recipient address no other test (or earlier run) uses.
fn unique(tag: &str) -> String {
    format!("{tag}-{}@example.com", uuid::Uuid::new_v4().simple())
}

fn recipient(email: &str, language: Language) -> Recipient {
    Recipient {
        email: EmailAddress::new(email).unwrap(),
        language,
    }
}

fn settings(recipients: Vec<Recipient>, delay: Duration, on_clear: bool) -> NotificationSettings {
    NotificationSettings {
        recipients,
        delay,
        notify_on_clear: on_clear,
        webhook: None,
    }
}

struct Mail {
    subject: String,
    body: String,
}

/// The mails the server stored for `to`, decoded.
fn mails_to(maildir: &Path, to: &str) -> Vec<Mail> {
    let mut found = Vec::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(maildir.join(sub)) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(bytes) = std::fs::read(entry.path()) else {
                continue;
            };
            let parsed = mailparse::parse_mail(&bytes).unwrap();
            let addressed = parsed
                .headers
                .iter()
                .any(|h| h.get_key().eq_ignore_ascii_case("to") && h.get_value().contains(to));
            if addressed {
                found.push(Mail {
                    subject: parsed
                        .headers
                        .iter()
                        .find(|h| h.get_key().eq_ignore_ascii_case("subject"))
                        .map(|h| h.get_value())
                        .unwrap_or_default(),
                    body: parsed.get_body().unwrap(),
                });
            }
        }
    }
    found
}

/// Waits (bounded, generously) until `done` holds; panics with `what` otherwise.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn wait_mails(maildir: &Path, to: &str, n: usize) -> Vec<Mail> {
    eventually(&format!("{n} mail(s) to {to}"), || {
        mails_to(maildir, to).len() >= n
    })
    .await;
    mails_to(maildir, to)
}

fn stats(h: &Harness) -> NotifierStats {
    h.notifier.stats()
}

#[tokio::test]
async fn a_raise_past_its_delay_mails_every_recipient_in_their_language() {
    let Some((host, port, maildir)) = smtp_server() else {
        return;
    };
    // Given a rule with a 60 s delay and recipients in English, German and Danish
    let h = start(config(), &smtp(&host, port));
    let (en, de, da) = (unique("en"), unique("de"), unique("da"));
    let rule = settings(
        vec![
            recipient(&en, Language::En),
            recipient(&de, Language::De),
            recipient(&da, Language::Da),
        ],
        Duration::from_secs(60),
        false,
    );
    // When the alarm is raised
    h.notifier.submit(
        notice(TenantId::new(), AlarmId::new(), AlarmTransition::Raised),
        &rule,
    );
    eventually("the raise to be held", || stats(&h).held == 1).await;
    // Then nothing is sent before the delay has passed
    h.clock.advance(Duration::from_secs(59));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(stats(&h).announced, 0, "announced before its delay");
    assert!(mails_to(&maildir, &en).is_empty());
    // And once it has, each recipient gets exactly one mail in their language
    h.clock.advance(Duration::from_secs(1));
    let expect = [
        (
            &en,
            "Alarm raised (Critical)",
            "Value: 91.5",
            "Device: Substation Nørrebro 7",
        ),
        (
            &de,
            "Alarm ausgelöst (Kritisch)",
            "Wert: 91,5",
            "Gerät: Substation Nørrebro 7",
        ),
        (
            &da,
            "Alarm udløst (Kritisk)",
            "Værdi: 91,5",
            "Enhed: Substation Nørrebro 7",
        ),
    ];
    for (to, subject, value, device) in expect {
        let mails = wait_mails(&maildir, to, 1).await;
        assert_eq!(mails.len(), 1, "one mail to {to}");
        let m = &mails[0];
        assert!(m.subject.contains(subject), "{to}: {}", m.subject);
        assert!(m.subject.contains("Vorlauf zu heiß"), "{}", m.subject);
        assert!(m.body.contains(value), "{to}: {}", m.body);
        assert!(m.body.contains(device), "{to}: {}", m.body);
        assert!(m.body.contains("flow_temp"), "{}", m.body);
        assert!(m.body.contains("2026-12-03 14:05:06 UTC"), "{}", m.body);
    }
    eventually("three mails counted", || stats(&h).mails_sent == 3).await;
    assert_eq!(stats(&h).dead_letters, 0);
}

#[tokio::test]
async fn an_alarm_cleared_within_its_delay_sends_nothing() {
    let Some((host, port, maildir)) = smtp_server() else {
        return;
    };
    // Given two alarms raised under a 60 s delay, the first with notify-on-clear
    let h = start(config(), &smtp(&host, port));
    let tenant = TenantId::new();
    let (brief, lasting) = (AlarmId::new(), AlarmId::new());
    let (to_brief, to_lasting) = (unique("brief"), unique("lasting"));
    let delay = Duration::from_secs(60);
    let brief_rule = settings(vec![recipient(&to_brief, Language::En)], delay, true);
    let lasting_rule = settings(vec![recipient(&to_lasting, Language::En)], delay, true);
    h.notifier
        .submit(notice(tenant, brief, AlarmTransition::Raised), &brief_rule);
    h.notifier.submit(
        notice(tenant, lasting, AlarmTransition::Raised),
        &lasting_rule,
    );
    eventually("both raises held", || stats(&h).held == 2).await;
    // When the first clears 30 s later, and the delay then passes
    h.clock.advance(Duration::from_secs(30));
    h.notifier
        .submit(notice(tenant, brief, AlarmTransition::Cleared), &brief_rule);
    eventually("the raise cancelled", || stats(&h).cancelled == 1).await;
    h.clock.advance(Duration::from_secs(31));
    // Then the lasting alarm is announced (it was due after the brief one)
    wait_mails(&maildir, &to_lasting, 1).await;
    eventually("the lasting raise sent", || stats(&h).mails_sent == 1).await;
    // And the brief one sent neither its raise nor its clear
    assert!(mails_to(&maildir, &to_brief).is_empty());
    assert_eq!(stats(&h).announced, 1);
    assert_eq!(stats(&h).held, 0);
}

#[tokio::test]
async fn clears_are_announced_only_when_the_rule_asks() {
    let Some((host, port, maildir)) = smtp_server() else {
        return;
    };
    let h = start(config(), &smtp(&host, port));
    let tenant = TenantId::new();
    let (quiet, told) = (AlarmId::new(), AlarmId::new());
    let (to_quiet, to_told) = (unique("quiet"), unique("told"));
    let quiet_rule = settings(
        vec![recipient(&to_quiet, Language::De)],
        Duration::ZERO,
        false,
    );
    let told_rule = settings(
        vec![recipient(&to_told, Language::Da)],
        Duration::ZERO,
        true,
    );
    // Given two announced raises
    h.notifier
        .submit(notice(tenant, quiet, AlarmTransition::Raised), &quiet_rule);
    h.notifier
        .submit(notice(tenant, told, AlarmTransition::Raised), &told_rule);
    wait_mails(&maildir, &to_quiet, 1).await;
    wait_mails(&maildir, &to_told, 1).await;
    // When both clear
    h.notifier
        .submit(notice(tenant, quiet, AlarmTransition::Cleared), &quiet_rule);
    h.notifier
        .submit(notice(tenant, told, AlarmTransition::Cleared), &told_rule);
    // Then only the rule with notify-on-clear announces it, in Danish
    let mails = wait_mails(&maildir, &to_told, 2).await;
    assert_eq!(mails.len(), 2);
    assert!(
        mails
            .iter()
            .any(|m| m.subject.contains("Alarm ophørt (Kritisk)")),
        "{:?}",
        mails.iter().map(|m| &m.subject).collect::<Vec<_>>()
    );
    eventually("three mails sent", || stats(&h).mails_sent == 3).await;
    assert_eq!(stats(&h).announced, 3, "two raises and one clear");
    assert_eq!(mails_to(&maildir, &to_quiet).len(), 1);
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn an_unreachable_server_is_retried_then_dead_lettered() {
    // Runs without the SMTP server: it is about the one that is not there.
    let h = start(config(), &smtp("127.0.0.1", closed_port()));
    let (tenant, other) = (TenantId::new(), TenantId::new());
    let to = unique("down");
    let rule = NotificationSettings {
        webhook: Some(
            Webhook::new(
                &format!("http://127.0.0.1:{}/hook?token=abc", closed_port()),
                WebhookSecret::new("0123456789abcdef").unwrap(),
            )
            .unwrap(),
        ),
        ..settings(vec![recipient(&to, Language::En)], Duration::ZERO, false)
    };
    // When an alarm is raised
    h.notifier.submit(
        notice(tenant, AlarmId::new(), AlarmTransition::Raised),
        &rule,
    );
    // Then mail and webhook are each tried 1 + 2 times, then dead-lettered
    eventually("two dead letters", || stats(&h).dead_letters == 2).await;
    let s = stats(&h);
    assert_eq!(s.retries, 4, "{s:?}");
    assert_eq!((s.mails_sent, s.webhooks_sent), (0, 0));
    let page = h.log.list_failures(tenant, 10, None).await.unwrap();
    assert_eq!(page.total, 2);
    let mail = page
        .items
        .iter()
        .find(|r| r.failure.channel == NotificationChannel::Email)
        .expect("a mail dead letter");
    assert_eq!(mail.failure.target, to);
    assert_eq!(mail.failure.attempts, 3);
    assert_eq!(mail.failure.transition, AlarmTransition::Raised);
    assert!(!mail.failure.error.is_empty());
    let hook = page
        .items
        .iter()
        .find(|r| r.failure.channel == NotificationChannel::Webhook)
        .expect("a webhook dead letter");
    assert_eq!(hook.failure.attempts, 3);
    assert!(
        !hook.failure.target.contains("token"),
        "no query secrets: {}",
        hook.failure.target
    );
    // And another tenant sees none of it
    assert_eq!(h.log.list_failures(other, 10, None).await.unwrap().total, 0);
}

#[tokio::test]
async fn submit_never_waits_for_a_stuck_server() {
    // Given an SMTP server that accepts connections but never greets, one
    // delivery at a time and a queue of four
    let stuck = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = stuck.local_addr().unwrap().port();
    let mut cfg = config();
    cfg.queue_size = 4;
    cfg.concurrency = 1;
    let mut server = smtp("127.0.0.1", port);
    server.timeout = Duration::from_secs(60);
    let h = start(cfg, &server);
    let tenant = TenantId::new();
    let rule = settings(
        vec![recipient(&unique("stuck"), Language::En)],
        Duration::ZERO,
        false,
    );
    // When 10,000 raises are submitted
    let started = Instant::now();
    for _ in 0..10_000 {
        h.notifier.submit(
            notice(tenant, AlarmId::new(), AlarmTransition::Raised),
            &rule,
        );
    }
    let took = started.elapsed();
    // Then every call returned, the overflow was counted and dead-lettered
    let s = stats(&h);
    eprintln!("10,000 submits against a stuck server took {took:?}; {s:?}");
    assert_eq!(s.submitted, 10_000);
    assert!(s.dropped >= 10_000 - 4 - 2, "{s:?}");
    eventually("queue dead letters written", || {
        let s = stats(&h);
        s.dead_letters + s.dead_letters_lost >= s.dropped
    })
    .await;
    let page = h.log.list_failures(tenant, 1, None).await.unwrap();
    assert!(page.total >= 4_000, "{}", page.total);
    assert_eq!(page.items[0].failure.channel, NotificationChannel::Queue);
    drop(stuck);
}

#[derive(Default)]
struct Received {
    calls: Vec<(HeaderMap, Vec<u8>)>,
}

#[tokio::test]
async fn webhooks_are_signed_and_retried() {
    // Given a receiver that fails its first call, then accepts
    let received = Arc::new(Mutex::new(Received::default()));
    let state = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let state = state.clone();
            async move {
                let mut r = state.lock().await;
                r.calls.push((headers, body.to_vec()));
                if r.calls.len() == 1 {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let secret = "integrator-secret-0123456789";
    let h = start(config(), &smtp("127.0.0.1", closed_port()));
    let rule = NotificationSettings {
        webhook: Some(
            Webhook::new(
                &format!("http://{addr}/hook"),
                WebhookSecret::new(secret).unwrap(),
            )
            .unwrap(),
        ),
        ..settings(vec![], Duration::ZERO, false)
    };
    let (tenant, alarm) = (TenantId::new(), AlarmId::new());
    // When an alarm is raised
    h.notifier
        .submit(notice(tenant, alarm, AlarmTransition::Raised), &rule);
    // Then the hook is called twice, each call signed over timestamp and body
    eventually("the webhook delivered", || stats(&h).webhooks_sent == 1).await;
    let r = received.lock().await;
    assert_eq!(r.calls.len(), 2);
    for (headers, body) in &r.calls {
        let ts = headers[TIMESTAMP_HEADER].to_str().unwrap();
        let sig = headers[SIGNATURE_HEADER].to_str().unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{ts}.").as_bytes());
        mac.update(body);
        let hex = sig.strip_prefix("sha256=").expect("sha256= prefix");
        mac.verify_slice(&hex::decode(hex).unwrap())
            .expect("signature verifies with the shared secret");
        let mut wrong = Hmac::<Sha256>::new_from_slice(b"another-secret-0123456").unwrap();
        wrong.update(format!("{ts}.").as_bytes());
        wrong.update(body);
        assert!(wrong.verify_slice(&hex::decode(hex).unwrap()).is_err());
        let payload: WebhookPayload = serde_json::from_slice(body).unwrap();
        assert_eq!(payload.alarm_id, alarm.to_string());
        assert_eq!(payload.tenant_id, tenant.to_string());
        assert_eq!(payload.transition, AlarmTransition::Raised);
        assert_eq!(payload.point.as_deref(), Some("flow_temp"));
        assert_eq!(payload.value, Some(91.5));
    }
    assert_eq!(stats(&h).retries, 1);
    assert_eq!(stats(&h).dead_letters, 0);
}

/// Mails per second through the notifier and through a bare lettre
/// transport on the same server, side by side (`--ignored --nocapture`).
#[tokio::test]
#[ignore = "throughput figures, run by hand"]
async fn throughput_through_the_notifier_and_bare_lettre() {
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let Some((host, port, _)) = smtp_server() else {
        return;
    };
    const N: u64 = 500;
    let bare = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host)
        .port(port)
        .build();
    let started = Instant::now();
    let mut sends = Vec::new();
    for i in 0..N {
        let bare = bare.clone();
        sends.push(tokio::spawn(async move {
            let m = Message::builder()
                .from("alarms@hearth.test".parse().unwrap())
                .to(unique("bare").parse().unwrap())
                .subject(format!("bare {i}"))
                .body(String::from("x"))
                .unwrap();
            bare.send(m).await.unwrap();
        }));
    }
    for s in sends {
        s.await.unwrap();
    }
    let bare_rate = N as f64 / started.elapsed().as_secs_f64();

    let h = start(config(), &smtp(&host, port));
    let rule = settings(
        vec![recipient(&unique("rate"), Language::De)],
        Duration::ZERO,
        false,
    );
    let started = Instant::now();
    for _ in 0..N {
        h.notifier.submit(
            notice(TenantId::new(), AlarmId::new(), AlarmTransition::Raised),
            &rule,
        );
    }
    eventually("every mail sent", || stats(&h).mails_sent == N).await;
    let rate = N as f64 / started.elapsed().as_secs_f64();
    eprintln!(
        "{N} mails: notifier {rate:.0}/s, bare lettre (unbounded concurrency) {bare_rate:.0}/s, ratio {:.2}",
        rate / bare_rate
    );
}
