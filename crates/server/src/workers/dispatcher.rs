//! Drains the outbox: leases due deliveries, sends each signed, and records
//! every attempt with what follows from it (done, retry at, give up,
//! disable the endpoint).
//!
//! Isolation: each endpoint has its own number of slots, and a delivery is
//! only leased when a slot is free, so an endpoint that hangs fills its own
//! slots and nobody else's. The store announces each commit that queues
//! deliveries, which wakes the dispatcher at once; a poll catches retries
//! that come due and anything a crashed process left leased.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use endusers_core::Clock;
use endusers_core::webhook::{Answer, NextStep, next_step};
use endusers_store::{AttemptRecord, Claim, Delivery, OutboxStore};
use http::{HeaderMap, HeaderName, HeaderValue};
use rand::Rng;
use tokio::sync::{Notify, mpsc, watch};

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

/// Deliveries taken per lease at most.
const CLAIM_BATCH: usize = 1024;
/// Attempts recorded per transaction at most.
const RECORD_BATCH: usize = 2048;

/// Deliveries in flight, per endpoint and in all.
#[derive(Default)]
struct InFlight {
    per_endpoint: HashMap<String, usize>,
    total: usize,
    /// The endpoint the last claim served last, where the next one resumes.
    served_last: Option<String>,
    /// A claim was worked out from these counts and has not come back:
    /// a delivery that finishes meanwhile frees a slot the claim did not
    /// see, whatever the counts say once it is back.
    claiming: bool,
}

impl InFlight {
    /// The claim these counts allow, under way from now until
    /// [`Self::start`] counts what it brought back (a claim with no room
    /// is not made, so it is not under way).
    fn begin_claim(&mut self, settings: &WebhookSettings) -> Claim {
        let claim = Claim {
            limit: settings
                .concurrency
                .saturating_sub(self.total)
                .min(CLAIM_BATCH),
            default_slots: settings.per_endpoint_concurrency,
            free_slots: self
                .per_endpoint
                .iter()
                .map(|(id, n)| {
                    (
                        id.clone(),
                        settings.per_endpoint_concurrency.saturating_sub(*n),
                    )
                })
                .collect(),
            after: self.served_last.clone(),
        };
        self.claiming = claim.limit > 0;
        claim
    }

    /// Counts a claim's deliveries in flight (under one lock, not one per
    /// delivery) and remembers where the next claim resumes; a claim that
    /// failed starts nothing.
    fn start(&mut self, claimed: &[Delivery]) {
        self.claiming = false;
        for delivery in claimed {
            // The id is copied only for an endpoint not yet counted, not
            // once per delivery as `entry` would.
            match self.per_endpoint.get_mut(&delivery.endpoint_id) {
                Some(n) => *n += 1,
                None => {
                    self.per_endpoint.insert(delivery.endpoint_id.clone(), 1);
                }
            }
        }
        self.total += claimed.len();
        if let Some(last) = claimed.last() {
            self.served_last = Some(last.endpoint_id.clone());
        }
    }

    /// Counts a delivery out; `true` when it freed a slot that a claim
    /// could not use: its endpoint's, or the last of all, was taken, or a
    /// claim was under way. Only then may deliveries wait that no write
    /// will wake the dispatcher for.
    fn finish(&mut self, endpoint: &str, settings: &WebhookSettings) -> bool {
        let endpoint_was_full = match self.per_endpoint.get_mut(endpoint) {
            Some(n) => {
                let was_full = *n >= settings.per_endpoint_concurrency;
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_endpoint.remove(endpoint);
                }
                was_full
            }
            None => false,
        };
        let all_were_taken = self.total >= settings.concurrency;
        self.total = self.total.saturating_sub(1);
        endpoint_was_full || all_were_taken || self.claiming
    }
}

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
    let in_flight = Arc::new(Mutex::new(InFlight::default()));
    let (records, recorded) = mpsc::unbounded_channel();
    let recorder = tokio::spawn(record_attempts(state.clone(), recorded));
    // Leases outlast the longest attempt (twice over, for the recording
    // that follows it), so a delivery in flight is never handed out twice;
    // after a crash it is taken again once they lapse.
    let lease = settings.timeout * 2;
    let mut targets = client::Targets::new(settings.allow_insecure);

    loop {
        let claim = lock(&in_flight).begin_claim(&settings);
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
    while lock(&in_flight).total > 0 && Instant::now() < deadline {
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
        let wake = lock(&self.in_flight).finish(&delivery.endpoint_id, settings);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_delivery_asks_for_a_claim_only_where_slots_ran_out() {
        let settings = WebhookSettings {
            per_endpoint_concurrency: 2,
            concurrency: 3,
            ..WebhookSettings::default()
        };
        let in_flight = |endpoints: &[(&str, usize)]| InFlight {
            per_endpoint: endpoints
                .iter()
                .map(|&(id, n)| (id.to_owned(), n))
                .collect(),
            total: endpoints.iter().map(|&(_, n)| n).sum(),
            served_last: None,
            claiming: false,
        };
        // The endpoint had both its slots taken: the first to finish frees
        // one a claim could not use, the second does not.
        let mut full_endpoint = in_flight(&[("a", 2)]);
        assert!(full_endpoint.finish("a", &settings));
        assert!(!full_endpoint.finish("a", &settings));
        assert_eq!(full_endpoint.total, 0);
        assert!(full_endpoint.per_endpoint.is_empty());
        // Every slot of all was taken, though no endpoint's own were.
        let mut all_taken = in_flight(&[("a", 1), ("b", 1), ("c", 1)]);
        assert!(all_taken.finish("b", &settings));
        assert!(!all_taken.finish("c", &settings));
        // Room everywhere: nothing waits on this one.
        assert!(!in_flight(&[("a", 1)]).finish("a", &settings));
        // Room, but a claim was worked out before this one finished: the
        // claim may have found the endpoint full, so the dispatcher looks
        // again; once the claim is back, it need not.
        let mut racing = in_flight(&[("a", 2)]);
        let _ = racing.begin_claim(&settings);
        assert!(racing.finish("a", &settings));
        assert!(racing.finish("a", &settings));
        racing.start(&[]);
        racing.per_endpoint.insert("a".to_owned(), 1);
        racing.total = 1;
        assert!(!racing.finish("a", &settings));
        // A claim with no room is not made, so it is not under way.
        let mut no_room = in_flight(&[("a", 2), ("b", 1)]);
        assert_eq!(no_room.begin_claim(&settings).limit, 0);
        assert!(!no_room.claiming);
    }
}
