//! How the dispatcher's delivery slots are shared: fairly between agents,
//! and away from endpoints that do not answer. A slot is one delivery in
//! flight; a dispatcher has `total` of them, and one endpoint may hold at
//! most `per_endpoint`.

use super::NextStep;

/// A dispatcher's slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slots {
    pub total: usize,
    pub per_endpoint: usize,
}

impl Slots {
    /// The most slots one agent may hold while `agents_holding` agents
    /// hold some: an equal part for each of them and one part more, kept
    /// for an agent that holds none yet. So one agent's backlog, however
    /// slow its endpoints, never takes every slot, and an agent with
    /// something to send always finds room within one delivery's time.
    pub fn agent_share(&self, agents_holding: usize) -> usize {
        (self.total / agents_holding.saturating_add(1)).max(1)
    }

    /// How many slots an endpoint may hold after an attempt: all of
    /// `per_endpoint` while it answers; half as many as before (at least
    /// one) after an attempt that got no answer at all (it timed out, or
    /// the connection failed), so that an endpoint that keeps hanging
    /// backs off instead of holding slots for a timeout each; twice as
    /// many after any answer, back up to all.
    pub fn endpoint_pace(&self, current: usize, answered: bool) -> usize {
        let next = if answered {
            current.saturating_mul(2)
        } else {
            current / 2
        };
        next.clamp(1, self.per_endpoint.max(1))
    }
}

/// Whether an attempt got an answer (any status) from its endpoint, as
/// [`Slots::endpoint_pace`] counts it.
pub fn answered(status: Option<u16>, next: &NextStep) -> bool {
    status.is_some() || matches!(next, NextStep::Delivered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SLOTS: Slots = Slots {
        total: 512,
        per_endpoint: 128,
    };

    #[test]
    fn every_agent_holding_slots_leaves_a_part_for_one_more() {
        assert_eq!(SLOTS.agent_share(0), 512);
        assert_eq!(SLOTS.agent_share(1), 256);
        assert_eq!(SLOTS.agent_share(3), 128);
        assert_eq!(SLOTS.agent_share(10_000), 1);
    }

    #[test]
    fn an_endpoint_that_does_not_answer_backs_off_and_one_that_answers_comes_back() {
        let mut pace = SLOTS.per_endpoint;
        let mut timeouts = 0;
        while pace > 1 {
            pace = SLOTS.endpoint_pace(pace, false);
            timeouts += 1;
        }
        assert_eq!(timeouts, 7, "128 → 1 in seven timeouts");
        assert_eq!(SLOTS.endpoint_pace(1, false), 1, "never below one");
        let mut answers = 0;
        while pace < SLOTS.per_endpoint {
            pace = SLOTS.endpoint_pace(pace, true);
            answers += 1;
        }
        assert_eq!((pace, answers), (128, 7));
        assert!(answered(Some(500), &NextStep::GiveUp));
        assert!(!answered(None, &NextStep::GiveUp));
    }

    proptest! {
        /// Whatever number of agents hold slots, their shares together
        /// leave room for one more agent, and every agent may hold one.
        #[test]
        fn shares_leave_room_for_a_newcomer(total in 1usize..5000, holding in 0usize..5000) {
            let slots = Slots { total, per_endpoint: 1 };
            let share = slots.agent_share(holding);
            prop_assert!(share >= 1);
            if share * (holding + 1) > total {
                prop_assert_eq!(share, 1);
            }
        }

        #[test]
        fn a_pace_stays_within_one_and_the_endpoints_slots(
            per_endpoint in 1usize..1000, current in 0usize..2000, answered in any::<bool>()
        ) {
            let slots = Slots { total: 1, per_endpoint };
            let pace = slots.endpoint_pace(current, answered);
            prop_assert!((1..=per_endpoint).contains(&pace));
        }
    }
}
