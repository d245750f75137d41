//! The notifier: a bounded queue in front of one task that holds raises for
//! their rule's delay, cancels them when the alarm clears in time, and hands
//! what is due to delivery tasks (SMTP per recipient, webhook) that retry and
//! then write a dead letter. `submit` never waits.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

use hearth_domain::ids::{AlarmId, TenantId};
use hearth_domain::model::{
    AlarmNotice, AlarmTransition, NotificationChannel, NotificationFailure, NotificationSettings,
};
use hearth_domain::ports::{AlarmNotifier, NotificationFailureLog};

use crate::catalogue::render;
use crate::clock::Clock;
use crate::config::NotifierConfig;
use crate::email::EmailSender;
use crate::webhook::WebhookSender;

/// Dead letters waiting to be written; beyond it they are only counted.
const FAILURE_QUEUE: usize = 4_096;
/// The longest wait between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

type AlarmKey = (TenantId, AlarmId);

struct Job {
    notice: AlarmNotice,
    settings: NotificationSettings,
}

#[derive(Debug, Default)]
struct Counters {
    submitted: AtomicU64,
    dropped: AtomicU64,
    held: AtomicU64,
    cancelled: AtomicU64,
    announced: AtomicU64,
    mails_sent: AtomicU64,
    webhooks_sent: AtomicU64,
    retries: AtomicU64,
    dead_letters: AtomicU64,
    dead_letters_lost: AtomicU64,
}

/// What the notifier has done since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NotifierStats {
    /// Calls of `submit`.
    pub submitted: u64,
    /// Notices dropped because the queue or the pending set was full.
    pub dropped: u64,
    /// Raises now held for their delay.
    pub held: u64,
    /// Raises whose alarm cleared within the delay (nothing was sent).
    pub cancelled: u64,
    /// Transitions released to the channels (a raise past its delay, a clear).
    pub announced: u64,
    pub mails_sent: u64,
    pub webhooks_sent: u64,
    /// Attempts after a failed one.
    pub retries: u64,
    /// Dead letters written.
    pub dead_letters: u64,
    /// Dead letters that could not be written (log full or failing).
    pub dead_letters_lost: u64,
}

/// The [`AlarmNotifier`] that mails and calls webhooks.
pub struct Notifier {
    jobs: mpsc::Sender<Job>,
    failures: mpsc::Sender<NotificationFailure>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// Starts the notifier's tasks on the current tokio runtime. They stop
    /// when the `Notifier` is dropped (raises still held are then lost).
    pub fn start(
        config: NotifierConfig,
        email: EmailSender,
        webhook: WebhookSender,
        log: Arc<dyn NotificationFailureLog>,
        clock: Arc<dyn Clock>,
    ) -> (Self, JoinHandle<()>) {
        let counters = Arc::new(Counters::default());
        let (jobs_tx, jobs_rx) = mpsc::channel(config.queue_size.max(1));
        let (fail_tx, fail_rx) = mpsc::channel(FAILURE_QUEUE);
        tokio::spawn(write_failures(fail_rx, log, counters.clone()));
        let worker = Worker {
            config: config.clone(),
            clock,
            delivery: Arc::new(Delivery {
                email,
                webhook,
                retries: config.retries,
                backoff: config.backoff,
                failures: fail_tx.clone(),
                counters: counters.clone(),
            }),
            slots: Arc::new(Semaphore::new(config.concurrency.max(1))),
            pending: HashMap::new(),
            due: BTreeMap::new(),
            seq: 0,
            announced: HashSet::new(),
            announced_order: VecDeque::new(),
            counters: counters.clone(),
        };
        let handle = tokio::spawn(worker.run(jobs_rx));
        (
            Self {
                jobs: jobs_tx,
                failures: fail_tx,
                counters,
            },
            handle,
        )
    }

    pub fn stats(&self) -> NotifierStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        NotifierStats {
            submitted: get(&c.submitted),
            dropped: get(&c.dropped),
            held: get(&c.held),
            cancelled: get(&c.cancelled),
            announced: get(&c.announced),
            mails_sent: get(&c.mails_sent),
            webhooks_sent: get(&c.webhooks_sent),
            retries: get(&c.retries),
            dead_letters: get(&c.dead_letters),
            dead_letters_lost: get(&c.dead_letters_lost),
        }
    }
}

impl AlarmNotifier for Notifier {
    fn submit(&self, notice: AlarmNotice, settings: &NotificationSettings) {
        self.counters.submitted.fetch_add(1, Ordering::Relaxed);
        // Nobody to tell: not worth a queue slot.
        if settings.recipients.is_empty() && settings.webhook.is_none() {
            return;
        }
        let job = Job {
            notice,
            settings: settings.clone(),
        };
        if let Err(e) = self.jobs.try_send(job) {
            let job = match e {
                mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job) => {
                    job
                }
            };
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                tenant = %job.notice.tenant_id,
                alarm = %job.notice.alarm_id,
                "Notification queue full; notice dropped"
            );
            let failure = queue_failure(&job.notice, "notification queue full");
            if self.failures.try_send(failure).is_err() {
                self.counters
                    .dead_letters_lost
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn queue_failure(notice: &AlarmNotice, why: &str) -> NotificationFailure {
    failure(notice, NotificationChannel::Queue, String::new(), 0, why)
}

fn failure(
    notice: &AlarmNotice,
    channel: NotificationChannel,
    target: String,
    attempts: u32,
    error: &str,
) -> NotificationFailure {
    NotificationFailure {
        tenant_id: notice.tenant_id,
        alarm_id: notice.alarm_id,
        rule_id: notice.rule_id,
        rule_name: notice.rule_name.clone(),
        transition: notice.transition,
        channel,
        target,
        attempts,
        error: NotificationFailure::truncated_error(error),
        failed_at: Utc::now(),
    }
}

async fn write_failures(
    mut rx: mpsc::Receiver<NotificationFailure>,
    log: Arc<dyn NotificationFailureLog>,
    counters: Arc<Counters>,
) {
    while let Some(failure) = rx.recv().await {
        match log.record(failure).await {
            Ok(()) => {
                counters.dead_letters.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                counters.dead_letters_lost.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "Dead letter not recorded");
            }
        }
    }
}

struct Pending {
    job: Job,
    due: (Duration, u64),
}

struct Worker {
    config: NotifierConfig,
    clock: Arc<dyn Clock>,
    delivery: Arc<Delivery>,
    slots: Arc<Semaphore>,
    pending: HashMap<AlarmKey, Pending>,
    /// Held raises by due time (then arrival), to release them in order.
    due: BTreeMap<(Duration, u64), AlarmKey>,
    seq: u64,
    /// Alarms whose raise was announced, so their clear may be too; the
    /// oldest are forgotten beyond `max_pending`.
    announced: HashSet<AlarmKey>,
    announced_order: VecDeque<AlarmKey>,
    counters: Arc<Counters>,
}

impl Worker {
    async fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        let mut tick = tokio::time::interval(self.config.tick.max(Duration::from_millis(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                job = jobs.recv() => match job {
                    Some(job) => self.accept(job).await,
                    None => break,
                },
                _ = tick.tick() => {}
            }
            self.release_due().await;
        }
    }

    async fn accept(&mut self, job: Job) {
        let key = (job.notice.tenant_id, job.notice.alarm_id);
        match job.notice.transition {
            AlarmTransition::Raised => {
                if self.pending.contains_key(&key) {
                    return; // already held: the first raise keeps its due time
                }
                if self.pending.len() >= self.config.max_pending {
                    self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    let f = queue_failure(&job.notice, "too many notices held for their delay");
                    self.delivery.dead_letter(f).await;
                    return;
                }
                self.seq += 1;
                let due = (self.clock.now() + job.settings.delay, self.seq);
                self.due.insert(due, key);
                self.pending.insert(key, Pending { job, due });
                self.counters.held.fetch_add(1, Ordering::Relaxed);
            }
            AlarmTransition::Cleared => {
                if let Some(p) = self.pending.remove(&key) {
                    // Cleared within the delay: neither the raise nor the clear is told.
                    self.due.remove(&p.due);
                    self.counters.held.fetch_sub(1, Ordering::Relaxed);
                    self.counters.cancelled.fetch_add(1, Ordering::Relaxed);
                } else if self.announced.remove(&key) {
                    self.announced_order.retain(|k| *k != key);
                    if job.settings.notify_on_clear {
                        self.dispatch(job).await;
                    }
                }
            }
            // Acknowledging is done by a person who already knows.
            AlarmTransition::Acknowledged => {}
        }
    }

    async fn release_due(&mut self) {
        let now = self.clock.now();
        while let Some((&due, &key)) = self.due.first_key_value() {
            if due.0 > now {
                break;
            }
            self.due.remove(&due);
            let Some(p) = self.pending.remove(&key) else {
                continue;
            };
            self.counters.held.fetch_sub(1, Ordering::Relaxed);
            if self.announced.insert(key) {
                self.announced_order.push_back(key);
                while self.announced_order.len() > self.config.max_pending {
                    if let Some(old) = self.announced_order.pop_front() {
                        self.announced.remove(&old);
                    }
                }
            }
            self.dispatch(p.job).await;
        }
    }

    /// Hands a transition to the channels: one task per mail and per
    /// webhook, at most `concurrency` in flight (this waits for a slot).
    async fn dispatch(&mut self, job: Job) {
        self.counters.announced.fetch_add(1, Ordering::Relaxed);
        let notice = Arc::new(job.notice);
        for recipient in job.settings.recipients {
            let Ok(permit) = self.slots.clone().acquire_owned().await else {
                return;
            };
            let delivery = self.delivery.clone();
            let notice = notice.clone();
            tokio::spawn(async move {
                delivery
                    .mail(&notice, recipient.email.as_str(), recipient.language)
                    .await;
                drop(permit);
            });
        }
        if let Some(hook) = job.settings.webhook {
            let Ok(permit) = self.slots.clone().acquire_owned().await else {
                return;
            };
            let delivery = self.delivery.clone();
            tokio::spawn(async move {
                delivery.webhook(&notice, &hook).await;
                drop(permit);
            });
        }
    }
}

struct Delivery {
    email: EmailSender,
    webhook: WebhookSender,
    retries: u32,
    backoff: Duration,
    failures: mpsc::Sender<NotificationFailure>,
    counters: Arc<Counters>,
}

impl Delivery {
    async fn dead_letter(&self, failure: NotificationFailure) {
        if self.failures.send(failure).await.is_err() {
            self.counters
                .dead_letters_lost
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn mail(&self, notice: &AlarmNotice, to: &str, language: hearth_domain::model::Language) {
        let mail = render(notice, language);
        let mut wait = self.backoff;
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.email.send(to, &mail).await {
                Ok(()) => {
                    self.counters.mails_sent.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(e) if e.is_permanent() || attempts > self.retries => {
                    tracing::warn!(
                        tenant = %notice.tenant_id, alarm = %notice.alarm_id, attempts,
                        error = %e, "Alarm mail not delivered; dead letter recorded"
                    );
                    let f = failure(
                        notice,
                        NotificationChannel::Email,
                        to.to_owned(),
                        attempts,
                        &e.to_string(),
                    );
                    self.dead_letter(f).await;
                    return;
                }
                Err(e) => {
                    tracing::debug!(attempts, error = %e, "Alarm mail failed; retrying");
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn webhook(&self, notice: &AlarmNotice, hook: &hearth_domain::model::Webhook) {
        let mut wait = self.backoff;
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.webhook.post(hook, notice).await {
                Ok(()) => {
                    self.counters.webhooks_sent.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(e) if attempts > self.retries => {
                    tracing::warn!(
                        tenant = %notice.tenant_id, alarm = %notice.alarm_id, attempts,
                        error = %e, "Alarm webhook not delivered; dead letter recorded"
                    );
                    let f = failure(
                        notice,
                        NotificationChannel::Webhook,
                        // A query string may carry the integrator's token.
                        hook.url
                            .split(['?', '#'])
                            .next()
                            .unwrap_or_default()
                            .to_owned(),
                        attempts,
                        &e,
                    );
                    self.dead_letter(f).await;
                    return;
                }
                Err(e) => {
                    tracing::debug!(attempts, error = %e, "Alarm webhook failed; retrying");
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}
