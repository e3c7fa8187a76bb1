//! The store's roles as the SQLite backend answers them: each call runs
//! the SQL of its concern's module on the writer (in its next
//! transaction) or on a reader, and announces commits that dispatchers may
//! want.

use std::sync::Arc;

use async_trait::async_trait;
use endusers_core::{
    AgentHandle, AgentId, Channel, Conversation, EndUser, EndUserId, ExternalId, OutboxEvent,
    Timestamp,
};
use endusers_store::{
    Agent, AgentLimits, ApiKeyRecord, Attempt, AttemptRecord, Changes, Claim, ConversationMutation,
    ConversationStore, Created, Delivery, EndUserStore, EndpointMutation, EndpointStore, KeyStore,
    Maintenance, Mutation, NewApiKey, NewConversation, OutboxStore, OwnedSealedValue, SealedValue,
    SensitiveChange, SensitiveStore, StartedConversation, StoreError, Updated, WebhookEndpoint,
    WriteStats,
};

use crate::writer::Message;
use crate::{
    ReadMessage, SqliteStore, conversations, end_users, endpoints, keys, lock, outbox, sensitive,
};

#[async_trait]
impl KeyStore for SqliteStore {
    async fn create_agent(&self, handle: AgentHandle, now: Timestamp) -> Result<Agent, StoreError> {
        self.write_key_change(move |conn| keys::create_agent(conn, &handle, now))
            .await
    }

    async fn find_agent(&self, handle: &AgentHandle) -> Result<Option<Agent>, StoreError> {
        self.read_now(|conn| keys::find_agent(conn, handle))
    }

    async fn list_agents(&self) -> Result<Vec<Agent>, StoreError> {
        self.read(keys::list_agents).await
    }

    async fn set_agent_limits(
        &self,
        handle: &AgentHandle,
        limits: AgentLimits,
    ) -> Result<bool, StoreError> {
        let handle = handle.clone();
        self.write_key_change(move |conn| keys::set_agent_limits(conn, &handle, &limits))
            .await
    }

    async fn agent_limits(&self, handle: &AgentHandle) -> Result<Option<AgentLimits>, StoreError> {
        self.read_now(|conn| keys::agent_limits(conn, handle))
    }

    async fn insert_api_key(&self, key: NewApiKey) -> Result<(), StoreError> {
        self.write_key_change(move |conn| keys::insert_api_key(conn, &key))
            .await
    }

    async fn find_api_key(&self, key_id: &str) -> Result<Option<Arc<ApiKeyRecord>>, StoreError> {
        Ok(self.key_cache.find(key_id, || {
            self.inline.read(|conn| keys::find_api_key(conn, key_id))
        })?)
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.read(keys::list_api_keys).await
    }

    async fn revoke_api_key(&self, key_id: &str, now: Timestamp) -> Result<bool, StoreError> {
        let key_id = key_id.to_owned();
        self.write_key_change(move |conn| keys::revoke_api_key(conn, &key_id, now))
            .await
    }
}

#[async_trait]
impl EndUserStore for SqliteStore {
    async fn create_end_user(
        &self,
        user: EndUser,
        sensitive: Vec<SensitiveChange>,
        events: Vec<OutboxEvent>,
    ) -> Result<Created, StoreError> {
        let with_events = !events.is_empty();
        // Refusals (a taken external id answers the user who has it) come
        // before the first change.
        let created = self
            .write_unguarded(move |conn| {
                let created = end_users::create(conn, user)?;
                if let Created::New(user) = &created {
                    sensitive::apply(conn, user.agent_id, user.end_user_id, &sensitive)?;
                    outbox::record_events(conn, user.agent_id, &events)?;
                }
                Ok(created)
            })
            .await?;
        if with_events && matches!(created, Created::New(_)) {
            self.changes.announce();
        }
        Ok(created)
    }

    async fn get_end_user(
        &self,
        agent: AgentId,
        id: EndUserId,
    ) -> Result<Option<EndUser>, StoreError> {
        self.read_now(|conn| end_users::get(conn, agent, id))
    }

    async fn get_end_user_json(
        &self,
        agent: AgentId,
        id: EndUserId,
    ) -> Result<Option<String>, StoreError> {
        self.read_now(|conn| end_users::get_json(conn, agent, id))
    }

    async fn find_end_user_by_external_id(
        &self,
        agent: AgentId,
        external_id: &ExternalId,
    ) -> Result<Option<EndUser>, StoreError> {
        self.read_now(|conn| end_users::find_by_external_id(conn, agent, external_id))
    }

    async fn list_end_users(
        &self,
        agent: AgentId,
        from: Option<EndUserId>,
        limit: usize,
    ) -> Result<Vec<EndUser>, StoreError> {
        self.read_now(|conn| end_users::list(conn, agent, from, limit))
    }

    async fn update_end_user(
        &self,
        agent: AgentId,
        id: EndUserId,
        mutation: Mutation,
        sensitive: Vec<SensitiveChange>,
    ) -> Result<Option<Updated>, StoreError> {
        // Refusals (not found, the mutation's own, a taken external id in
        // the row's one UPDATE) come before the first change.
        let updated = self
            .write_unguarded(move |conn| {
                let Some((user, applied)) = end_users::update(conn, agent, id, mutation)? else {
                    return Ok(None);
                };
                sensitive::apply(conn, agent, id, &sensitive)?;
                outbox::record_events(conn, agent, &applied.events)?;
                let updated = Updated {
                    user,
                    change: applied.change,
                };
                Ok(Some((updated, !applied.events.is_empty())))
            })
            .await?;
        Ok(updated.map(|(updated, with_events)| {
            if with_events {
                self.changes.announce();
            }
            updated
        }))
    }

    async fn delete_end_user(&self, agent: AgentId, id: EndUserId) -> Result<bool, StoreError> {
        self.write(move |conn| end_users::erase(conn, agent, id.text().as_str()))
            .await
    }
}

#[async_trait]
impl SensitiveStore for SqliteStore {
    async fn live_sensitive_values(
        &self,
        agent: AgentId,
        id: EndUserId,
        now: Timestamp,
    ) -> Result<Vec<SealedValue>, StoreError> {
        self.read_now(|conn| sensitive::live(conn, agent, id, now))
    }

    async fn delete_expired_sensitive_values(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<usize, StoreError> {
        self.write(move |conn| sensitive::delete_expired(conn, now, limit))
            .await
    }

    async fn sensitive_values_under_other_keys(
        &self,
        active_key_id: &str,
        limit: usize,
    ) -> Result<Vec<OwnedSealedValue>, StoreError> {
        let active_key_id = active_key_id.to_owned();
        self.read(move |conn| sensitive::sealed_under_other_keys(conn, &active_key_id, limit))
            .await
    }

    async fn replace_sealed_values(
        &self,
        replacements: Vec<(OwnedSealedValue, SealedValue)>,
    ) -> Result<usize, StoreError> {
        self.write(move |conn| sensitive::replace_sealed(conn, &replacements))
            .await
    }

    async fn count_sensitive_values_by_key(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.read(sensitive::count_by_key_id).await
    }
}

#[async_trait]
impl ConversationStore for SqliteStore {
    async fn create_channel(&self, channel: Channel) -> Result<(), StoreError> {
        self.write(move |conn| conversations::create_channel(conn, &channel))
            .await
    }

    async fn get_channel(
        &self,
        agent: AgentId,
        id: EndUserId,
    ) -> Result<Option<Channel>, StoreError> {
        self.read_now(|conn| conversations::get_channel(conn, agent, id))
    }

    async fn list_channels(
        &self,
        agent: AgentId,
        from: Option<EndUserId>,
        limit: usize,
    ) -> Result<Vec<Channel>, StoreError> {
        self.read_now(|conn| conversations::list_channels(conn, agent, from, limit))
    }

    async fn start_conversation(
        &self,
        new: NewConversation,
    ) -> Result<StartedConversation, StoreError> {
        self.announced(
            self.write(move |conn| conversations::start(conn, new))
                .await,
        )
    }

    async fn get_conversation(
        &self,
        agent: AgentId,
        id: EndUserId,
    ) -> Result<Option<Conversation>, StoreError> {
        self.read_now(|conn| conversations::get_conversation(conn, agent, id))
    }

    async fn update_conversation(
        &self,
        agent: AgentId,
        id: EndUserId,
        mutation: ConversationMutation,
    ) -> Result<Option<Conversation>, StoreError> {
        self.announced(
            self.write(move |conn| conversations::update_conversation(conn, agent, id, mutation))
                .await,
        )
    }

    async fn delete_orphans(&self, now: Timestamp, limit: usize) -> Result<usize, StoreError> {
        self.write(move |conn| conversations::delete_orphans(conn, now, limit))
            .await
    }
}

#[async_trait]
impl EndpointStore for SqliteStore {
    async fn create_webhook(&self, endpoint: WebhookEndpoint) -> Result<(), StoreError> {
        self.write(move |conn| endpoints::create_endpoint(conn, &endpoint))
            .await
    }

    async fn get_webhook(
        &self,
        agent: AgentId,
        id: &str,
    ) -> Result<Option<WebhookEndpoint>, StoreError> {
        self.read_now(|conn| endpoints::get_endpoint(conn, agent, id))
    }

    async fn list_webhooks(
        &self,
        agent: AgentId,
        from: Option<&str>,
        limit: usize,
    ) -> Result<Vec<WebhookEndpoint>, StoreError> {
        self.read_now(|conn| endpoints::list_endpoints(conn, agent, from, limit))
    }

    async fn update_webhook(
        &self,
        agent: AgentId,
        id: &str,
        mutation: EndpointMutation,
    ) -> Result<Option<WebhookEndpoint>, StoreError> {
        let id = id.to_owned();
        self.announced(
            self.write_outbox(move |conn, reader| {
                endpoints::update_endpoint(conn, reader, agent, &id, mutation)
            })
            .await,
        )
    }

    async fn delete_webhook(&self, agent: AgentId, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.write(move |conn| endpoints::delete_endpoint(conn, agent, &id))
            .await
    }

    async fn list_attempts(
        &self,
        agent: AgentId,
        endpoint: &str,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Attempt>, StoreError> {
        self.read_now(|conn| endpoints::list_attempts(conn, agent, endpoint, before, limit))
    }

    async fn recover_deliveries(
        &self,
        agent: AgentId,
        endpoint: &str,
        since: Timestamp,
        now: Timestamp,
    ) -> Result<usize, StoreError> {
        let endpoint = endpoint.to_owned();
        self.announced(
            self.write(move |conn| endpoints::recover(conn, agent, &endpoint, since, now))
                .await,
        )
    }
}

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn claim_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        claim: Claim,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.write_outbox(move |conn, reader| {
            outbox::claim_deliveries(conn, reader, now, lease_until, &claim)
        })
        .await
    }

    async fn record_attempts(
        &self,
        records: Vec<AttemptRecord>,
        disable_if_failing_since: Timestamp,
    ) -> Result<(), StoreError> {
        // A retry may be due at once (the schedule may start at 0 s), and
        // no dispatcher could claim it before this commit released it.
        let retries = records
            .iter()
            .any(|r| matches!(r.next, endusers_store::NextStep::RetryAt(_)));
        let recorded = self
            .write_outbox(move |conn, reader| {
                outbox::record_attempts(conn, reader, &records, disable_if_failing_since)
            })
            .await;
        if retries && recorded.is_ok() {
            self.changes.announce();
        }
        recorded
    }

    fn changes(&self) -> Changes {
        self.changes.clone()
    }

    async fn delivery_counts(&self) -> Result<(u64, u64, u64), StoreError> {
        self.read(outbox::delivery_counts).await
    }
}

#[async_trait]
impl Maintenance for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }

    async fn prune_webhook_history(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<usize, StoreError> {
        self.write(move |conn| outbox::prune_history(conn, before, limit))
            .await
    }

    fn write_stats(&self) -> WriteStats {
        self.write_counters.read()
    }

    async fn close(&self) {
        self.inline.close();
        // Another process may read the outbox on from here.
        lock(&self.outbox).lock.release();
        let _ = self.writes.send(Message::Stop);
        let _ = self.checkpoints.try_send(());
        for _ in 0..self.reader_count {
            let _ = self.reads.send(ReadMessage::Stop);
        }
        let threads = std::mem::take(&mut *lock(&self.threads));
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }
}
