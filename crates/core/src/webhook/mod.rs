//! The webhook delivery rules: what an answer leads to, when an endpoint is
//! disabled, what disabling and enabling do to its queue, and how delivery
//! slots are shared between agents and endpoints.
//!
//! Every backend applies these functions; none writes its own version of
//! them. A backend's part is to make each decision atomic and durable.

mod filters;
mod next_step;
mod queue;
mod slots;
mod standing;

pub use filters::subscribes;
pub use next_step::{Answer, NextStep, next_step};
pub use queue::{DeliveryState, QueueTransition};
pub use slots::{Slots, answered};
pub use standing::{Standing, disabled_for_failing_since};
