//! Which events an endpoint is sent.

/// Whether an endpoint with these `event_filters` is sent events of
/// `event_type`: every type when it names none, else only those it names.
pub fn subscribes(filters: &[String], event_type: &str) -> bool {
    filters.is_empty() || filters.iter().any(|f| f == event_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_filters_means_every_type() {
        let none: Vec<String> = Vec::new();
        let some = vec!["v1.end_user.created".to_owned()];
        assert!(subscribes(&none, "v1.end_user.updated"));
        assert!(subscribes(&some, "v1.end_user.created"));
        assert!(!subscribes(&some, "v1.end_user.updated"));
    }
}
