//! Drains the outbox: leases due deliveries, sends each signed, and records
//! every attempt with what follows from it (done, retry at, give up,
//! disable the endpoint).
//!
//! Isolation: each endpoint has its own number of slots, and a delivery is
//! only leased when a slot is free, so an endpoint that hangs fills its own
//! slots and nobody else's. The store announces each commit that queues
//! deliveries, which wakes the dispatcher at once; a poll catches retries
//! that come due and anything a crashed process left leased.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use endusers_core::Clock;
use endusers_core::webhook::{Answer, NextStep, Slots, answered, next_step};
use endusers_store::{AttemptRecord, Delivery, OutboxStore};
use http::{HeaderMap, HeaderName, HeaderValue};
use rand::Rng;
use tokio::sync::{Notify, mpsc, watch};

use super::in_flight::InFlight;
use crate::metrics::WebhookMetrics;
use crate::webhooks::WebhookSettings;
use crate::webhooks::client::{self, Target, WebhookClient};
use crate::webhooks::signature::{self, EndpointSecret};

/// What the dispatcher works with, and nothing more.
#[derive(Clone)]
pub struct Dispatcher {
    pub outbox: Arc<dyn OutboxStore>,
    pub clock: Arc<dyn Clock>,
    pub settings: Arc<WebhookSettings>,
    pub metrics: Arc<WebhookMetrics>,
}

// Header names made once: given as text, each would be parsed and copied
// again for every delivery.
const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");
const SVIX_ID: HeaderName = HeaderName::from_static("svix-id");
const SVIX_TIMESTAMP: HeaderName = HeaderName::from_static("svix-timestamp");
const SVIX_SIGNATURE: HeaderName = HeaderName::from_static("svix-signature");

/// Attempts recorded per transaction at most.
const RECORD_BATCH: usize = 2048;

fn lock(in_flight: &Mutex<InFlight>) -> std::sync::MutexGuard<'_, InFlight> {
    in_flight
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs until `stop` turns true, then lets in-flight deliveries finish
/// (each is bounded by the webhook timeout) and records them.
pub async fn run(state: Dispatcher, mut stop: watch::Receiver<bool>) {
    let settings = Arc::clone(&state.settings);
    let changes = state.outbox.changes();
    // A finished delivery that freed a slot a claim could not use.
    let slot_freed = Arc::new(Notify::new());
    let client = match WebhookClient::build(&settings) {
        Ok(client) => Arc::new(client),
        Err(err) => {
            tracing::error!(error = %err, "cannot build the webhook HTTP client; webhooks will not be delivered");
            return;
        }
    };
    let in_flight = Arc::new(Mutex::new(InFlight::new(Slots {
        total: settings.concurrency,
        per_endpoint: settings.per_endpoint_concurrency,
    })));
    let (records, recorded) = mpsc::unbounded_channel();
    let recorder = tokio::spawn(record_attempts(state.clone(), recorded));
    // Leases outlast the longest attempt (twice over, for the recording
    // that follows it), so a delivery in flight is never handed out twice;
    // after a crash it is taken again once they lapse.
    let lease = settings.timeout * 2;
    let mut targets = client::Targets::new(settings.allow_insecure);

    loop {
        let claim = lock(&in_flight).begin_claim();
        let wanted = claim.limit;
        let mut took = 0;
        if wanted > 0 {
            let now = state.clock.now();
            match state
                .outbox
                .claim_deliveries(now, now.saturating_add(lease), claim)
                .await
            {
                Ok(deliveries) => {
                    took = deliveries.len();
                    lock(&in_flight).start(&deliveries);
                    for delivery in deliveries {
                        let target = targets.get(&delivery.url);
                        state.metrics.sent();
                        let task = Attempt {
                            state: state.clone(),
                            client: Arc::clone(&client),
                            in_flight: Arc::clone(&in_flight),
                            records: records.clone(),
                            slot_freed: Arc::clone(&slot_freed),
                        };
                        tokio::spawn(task.deliver(delivery, target));
                    }
                }
                Err(err) => {
                    lock(&in_flight).start(&[]);
                    tracing::error!(error = %err, "claiming webhook deliveries failed");
                }
            }
        }
        // A full batch means more may be waiting: go again at once.
        if took > 0 && took == wanted {
            continue;
        }
        tokio::select! {
            () = changes.changed() => {}
            () = slot_freed.notified() => {}
            () = tokio::time::sleep(settings.poll_interval) => {}
            _ = stop.changed() => break,
        }
    }

    let deadline = Instant::now() + settings.timeout + Duration::from_secs(1);
    while lock(&in_flight).total() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(records);
    let _ = recorder.await;
}

/// Writes attempts in batches: whatever has finished since the last write.
async fn record_attempts(state: Dispatcher, mut recorded: mpsc::UnboundedReceiver<AttemptRecord>) {
    let disable_after = state.settings.disable_after;
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    while recorded.recv_many(&mut batch, RECORD_BATCH).await > 0 {
        let disable_if_failing_since = state.clock.now().saturating_sub(disable_after);
        let records = std::mem::take(&mut batch);
        // A retry due at once is announced by the store once committed.
        if let Err(err) = state
            .outbox
            .record_attempts(records, disable_if_failing_since)
            .await
        {
            // The leases lapse and the deliveries are sent again: at least
            // once, never lost.
            tracing::error!(error = %err, "recording webhook attempts failed");
        }
    }
}

struct Attempt {
    state: Dispatcher,
    client: Arc<WebhookClient>,
    in_flight: Arc<Mutex<InFlight>>,
    records: mpsc::UnboundedSender<AttemptRecord>,
    slot_freed: Arc<Notify>,
}

/// What one HTTP exchange came to.
struct Outcome {
    answer: Answer,
    error: Option<String>,
}

impl Outcome {
    /// No answer: the request was not made, or got none.
    fn failed(error: String) -> Self {
        Self {
            answer: Answer::default(),
            error: Some(error),
        }
    }
}

impl Attempt {
    async fn deliver(self, mut delivery: Delivery, target: Result<Target, String>) {
        let settings = &self.state.settings;
        let started = Instant::now();
        // The body moves into the request; nothing after the send needs it.
        let payload = std::mem::take(&mut delivery.payload);
        let outcome = match target {
            Ok(target) => self.send(target, &delivery, payload).await,
            Err(refused) => Outcome::failed(refused),
        };
        let at = self.state.clock.now();
        let attempt = delivery.attempts + 1;
        let next = next_step(
            outcome.answer,
            attempt,
            at,
            &settings.retry_schedule,
            rand::rng().random::<f64>(),
        );
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        if !matches!(next, NextStep::Delivered) {
            tracing::debug!(
                endpoint = %delivery.endpoint_id, message = %delivery.message_id, attempt,
                status = ?outcome.answer.status, error = ?outcome.error, "webhook delivery failed"
            );
        }
        // A claim takes every due delivery its slots allow, so a finished
        // one only leaves work behind where the slots ran out; elsewhere a
        // wake-up would only make the dispatcher claim again for nothing
        // (a job for the store's writer each time). Counted out before the
        // record is sent, so that the record can take the endpoint's id;
        // the lease keeps the delivery from being handed out meanwhile.
        let wake = lock(&self.in_flight).finish(
            delivery.agent_id,
            &delivery.endpoint_id,
            answered(outcome.answer.status, &next),
        );
        let record = AttemptRecord {
            agent_id: delivery.agent_id,
            endpoint_id: delivery.endpoint_id,
            message_id: delivery.message_id,
            event_type: delivery.event_type,
            attempt,
            status_code: outcome.answer.status,
            error: outcome.error,
            duration_ms,
            at,
            next,
            lease: delivery.lease,
        };
        self.state.metrics.finished(&record.next);
        let _ = self.records.send(record);
        if wake {
            self.slot_freed.notify_one();
        }
    }

    async fn send(&self, target: Target, delivery: &Delivery, payload: String) -> Outcome {
        let mut secrets = Vec::with_capacity(2);
        for text in std::iter::once(&delivery.secret).chain(delivery.previous_secret.as_ref()) {
            match EndpointSecret::parse(text.expose()) {
                Ok(secret) => secrets.push(secret),
                Err(err) => {
                    return Outcome::failed(format!(
                        "the endpoint's signing secret is unusable: {err}"
                    ));
                }
            }
        }
        let timestamp = self.state.clock.now().as_micros().div_euclid(1_000_000);
        let signature = signature::signature_header(
            &secrets,
            &delivery.message_id,
            timestamp,
            payload.as_bytes(),
        );
        let (Ok(id), Ok(signature)) = (
            HeaderValue::from_str(&delivery.message_id),
            HeaderValue::try_from(signature),
        ) else {
            return Outcome::failed("the message id cannot be sent as a header".to_owned());
        };
        let timestamp = HeaderValue::from(timestamp);
        // These six, and the client's Host, Content-Type and User-Agent.
        let mut headers = HeaderMap::with_capacity(9);
        headers.insert(WEBHOOK_ID, id.clone());
        headers.insert(WEBHOOK_TIMESTAMP, timestamp.clone());
        headers.insert(WEBHOOK_SIGNATURE, signature.clone());
        headers.insert(SVIX_ID, id);
        headers.insert(SVIX_TIMESTAMP, timestamp);
        headers.insert(SVIX_SIGNATURE, signature);
        match self.client.post(target, headers, payload).await {
            Ok(answer) => Outcome {
                answer: Answer {
                    status: Some(answer.status.as_u16()),
                    retry_after: answer.retry_after,
                },
                error: (!answer.status.is_success())
                    .then(|| format!("the endpoint answered {}", answer.status)),
            },
            Err(error) => Outcome::failed(error),
        }
    }
}
