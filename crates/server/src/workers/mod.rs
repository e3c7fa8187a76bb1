//! What runs beside the HTTP handlers, each on the inputs it uses: the
//! webhook dispatcher and the upkeep passes.

pub mod dispatcher;
mod in_flight;
pub mod maintenance;
