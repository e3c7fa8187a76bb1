//! What the dispatcher has in flight, per endpoint, per agent and in all,
//! and from that the room of its next claim. How slots are shared is
//! decided by [`Slots`]: each agent has a fair share, and an endpoint that
//! does not answer is held to fewer slots.

use std::collections::HashMap;

use endusers_core::AgentId;
use endusers_core::webhook::Slots;
use endusers_store::{Claim, Delivery};

/// Deliveries taken per claim at most.
const CLAIM_BATCH: usize = 1024;

pub(super) struct InFlight {
    slots: Slots,
    per_endpoint: HashMap<String, usize>,
    per_agent: HashMap<AgentId, usize>,
    /// Endpoints held to fewer than `slots.per_endpoint`
    /// ([`Slots::endpoint_pace`]); one not listed may hold all.
    paces: HashMap<String, usize>,
    total: usize,
    /// The endpoint the last claim served last, where the next one resumes.
    served_last: Option<String>,
    /// A claim was worked out from these counts and has not come back:
    /// a delivery that finishes meanwhile frees a slot the claim did not
    /// see, whatever the counts say once it is back.
    claiming: bool,
}

impl InFlight {
    pub(super) fn new(slots: Slots) -> Self {
        Self {
            slots,
            per_endpoint: HashMap::new(),
            per_agent: HashMap::new(),
            paces: HashMap::new(),
            total: 0,
            served_last: None,
            claiming: false,
        }
    }

    pub(super) fn total(&self) -> usize {
        self.total
    }

    fn pace(&self, endpoint: &str) -> usize {
        self.paces
            .get(endpoint)
            .copied()
            .unwrap_or(self.slots.per_endpoint)
    }

    fn agent_share(&self) -> usize {
        self.slots.agent_share(self.per_agent.len())
    }

    /// The claim these counts allow, under way from now until
    /// [`Self::start`] counts what it brought back (a claim with no room
    /// is not made, so it is not under way).
    pub(super) fn begin_claim(&mut self) -> Claim {
        let share = self.agent_share();
        let mut free_slots: HashMap<String, usize> = self
            .per_endpoint
            .iter()
            .map(|(id, n)| (id.clone(), self.pace(id).saturating_sub(*n)))
            .collect();
        for (id, pace) in &self.paces {
            if !free_slots.contains_key(id) {
                free_slots.insert(id.clone(), *pace);
            }
        }
        let claim = Claim {
            limit: self.slots.total.saturating_sub(self.total).min(CLAIM_BATCH),
            default_slots: self.slots.per_endpoint,
            free_slots,
            default_agent_slots: share,
            agent_slots: self
                .per_agent
                .iter()
                .map(|(agent, n)| (*agent, share.saturating_sub(*n)))
                .collect(),
            after: self.served_last.clone(),
        };
        self.claiming = claim.limit > 0;
        claim
    }

    /// Counts a claim's deliveries in flight (under one lock, not one per
    /// delivery) and remembers where the next claim resumes; a claim that
    /// failed starts nothing.
    pub(super) fn start(&mut self, claimed: &[Delivery]) {
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
            *self.per_agent.entry(delivery.agent_id).or_default() += 1;
        }
        self.total += claimed.len();
        if let Some(last) = claimed.last() {
            self.served_last = Some(last.endpoint_id.clone());
        }
    }

    /// Counts a delivery out, and its endpoint's pace after an attempt that
    /// was `answered` or not. `true` when it freed a slot that a claim
    /// could not use: its endpoint's, its agent's share, or the last of
    /// all was taken, or a claim was under way. Only then may deliveries
    /// wait that no commit will wake the dispatcher for.
    pub(super) fn finish(&mut self, agent: AgentId, endpoint: &str, answered: bool) -> bool {
        let pace = self.pace(endpoint);
        let endpoint_was_full = match self.per_endpoint.get_mut(endpoint) {
            Some(n) => {
                let was_full = *n >= pace;
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_endpoint.remove(endpoint);
                }
                was_full
            }
            None => false,
        };
        let next_pace = self.slots.endpoint_pace(pace, answered);
        if next_pace != pace {
            if next_pace >= self.slots.per_endpoint {
                self.paces.remove(endpoint);
            } else {
                self.paces.insert(endpoint.to_owned(), next_pace);
            }
        }
        let share = self.agent_share();
        let agent_was_at_share = match self.per_agent.get_mut(&agent) {
            Some(n) => {
                let was_at_share = *n >= share;
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_agent.remove(&agent);
                }
                was_at_share
            }
            None => false,
        };
        let all_were_taken = self.total >= self.slots.total;
        self.total = self.total.saturating_sub(1);
        endpoint_was_full || agent_was_at_share || all_were_taken || self.claiming
    }
}

#[cfg(test)]
mod tests {
    use endusers_core::Timestamp;
    use endusers_store::{Lease, SigningSecret};

    use super::*;

    fn delivery(agent: i64, endpoint: &str) -> Delivery {
        Delivery {
            agent_id: AgentId(agent),
            endpoint_id: endpoint.to_owned(),
            message_id: "msg_1".to_owned(),
            event_type: "v1.end_user.created".to_owned(),
            payload: String::new(),
            url: String::new(),
            secret: SigningSecret::new(String::new()),
            previous_secret: None,
            attempts: 0,
            message_created_at: Timestamp::from_micros(0),
            lease: Lease::from_backend(0),
        }
    }

    fn in_flight(total: usize, per_endpoint: usize, out: &[(i64, &str)]) -> InFlight {
        let mut counts = InFlight::new(Slots {
            total,
            per_endpoint,
        });
        let claimed: Vec<Delivery> = out.iter().map(|&(a, e)| delivery(a, e)).collect();
        counts.start(&claimed);
        counts
    }

    #[test]
    fn a_finished_delivery_asks_for_a_claim_only_where_slots_ran_out() {
        // The endpoint had both its slots taken: the first to finish frees
        // one a claim could not use, the second does not.
        let mut full_endpoint = in_flight(30, 2, &[(1, "a"), (1, "a")]);
        assert!(full_endpoint.finish(AgentId(1), "a", true));
        assert!(!full_endpoint.finish(AgentId(1), "a", true));
        assert_eq!(full_endpoint.total, 0);
        assert!(full_endpoint.per_endpoint.is_empty() && full_endpoint.per_agent.is_empty());
        // Every slot of all was taken, though no endpoint's own were.
        let mut all_taken = in_flight(3, 2, &[(1, "a"), (2, "b"), (3, "c")]);
        assert!(all_taken.finish(AgentId(2), "b", true));
        // Room everywhere: nothing waits on this one.
        assert!(!in_flight(30, 2, &[(1, "a")]).finish(AgentId(1), "a", true));
        // Room, but a claim was worked out before this one finished: the
        // claim may have found the endpoint full, so the dispatcher looks
        // again; once the claim is back, it need not.
        let mut racing = in_flight(30, 2, &[(1, "a"), (1, "a")]);
        let _ = racing.begin_claim();
        assert!(racing.finish(AgentId(1), "a", true));
        assert!(racing.finish(AgentId(1), "a", true));
        racing.start(&[delivery(1, "a")]);
        assert!(!racing.finish(AgentId(1), "a", true));
        // A claim with no room is not made, so it is not under way.
        let mut no_room = in_flight(3, 2, &[(1, "a"), (1, "a"), (1, "b")]);
        assert_eq!(no_room.begin_claim().limit, 0);
        assert!(!no_room.claiming);
    }

    #[test]
    fn an_agent_takes_its_share_and_leaves_the_rest_to_others() {
        // One agent alone holds 4 of 8: its share leaves half for another.
        let mut counts = in_flight(8, 8, &[(1, "a"), (1, "a"), (1, "b"), (1, "b")]);
        let claim = counts.begin_claim();
        assert_eq!(claim.limit, 4);
        assert_eq!(claim.agent_slots.get(&AgentId(1)), Some(&0));
        assert_eq!(claim.default_agent_slots, 4, "a newcomer's share");
        counts.start(&[delivery(2, "c")]);
        // Two agents hold slots: each may hold 8 / 3; the first is over it,
        // so a delivery of its that finishes frees a slot for the others.
        let claim = counts.begin_claim();
        assert_eq!(claim.agent_slots.get(&AgentId(2)), Some(&1));
        assert_eq!(claim.default_agent_slots, 2);
        counts.start(&[]);
        assert!(counts.finish(AgentId(1), "a", true));
    }

    #[test]
    fn an_endpoint_that_does_not_answer_is_held_to_fewer_slots() {
        let mut counts = in_flight(100, 8, &[(1, "a"), (1, "a"), (1, "a")]);
        for _ in 0..3 {
            counts.finish(AgentId(1), "a", false);
        }
        let claim = counts.begin_claim();
        assert_eq!(claim.free_slots.get("a"), Some(&1), "8 → 4 → 2 → 1");
        counts.start(&[delivery(1, "a")]);
        // One slot, and it is taken: its answer frees it and widens it.
        assert!(counts.finish(AgentId(1), "a", true));
        assert_eq!(counts.begin_claim().free_slots.get("a"), Some(&2));
        counts.start(&[]);
        for _ in 0..2 {
            counts.start(&[delivery(1, "a")]);
            counts.finish(AgentId(1), "a", true);
        }
        assert!(
            !counts.begin_claim().free_slots.contains_key("a"),
            "back to all its slots"
        );
    }
}
