//! The ceiling and GET by id run in alternating rounds, and their ratio is
//! taken round by round.
//!
//! The machine is a shared virtual machine whose speed moves by tens of
//! percent from one second to the next: one ceiling round once answered
//! 228,719/s at 3.9 µs of CPU a request, between rounds of 136,000–147,000/s
//! at 6.2–6.3 µs, with the same binary and load. Pooled over all rounds,
//! that one round alone moved GET's ratio from 0.65 to 0.57. Each GET round
//! is therefore set against the ceiling round run just before it (seconds
//! apart, on the machine in the same state), and the median of those ratios
//! is GET's figure; the other scenarios, which have no round of the ceiling
//! beside them, are set against the ceiling's median round. Every round is
//! kept in the results, with the pooled ratio beside the paired one.

use serde_json::{Value, json};

use crate::report::ratio;

/// Requests/s of each round, in the order run: GET's round `i` ran right
/// after the ceiling's round `i`.
#[derive(Debug, Clone, Default)]
pub struct Rounds {
    pub ceiling: Vec<f64>,
    pub get: Vec<f64>,
}

impl Rounds {
    /// The ceiling's requests/s: its median round.
    pub fn ceiling_rate(&self) -> Option<f64> {
        median(self.ceiling.clone())
    }

    /// GET's ratio to the ceiling: the median over rounds of GET's
    /// requests/s over the ceiling's in the round before it.
    pub fn get_ratio(&self) -> Option<f64> {
        median(self.pair_ratios().collect())
    }

    fn pair_ratios(&self) -> impl Iterator<Item = f64> + '_ {
        self.get
            .iter()
            .zip(&self.ceiling)
            .map(|(&get, &ceiling)| ratio(get, ceiling))
    }

    /// GET's requests over the ceiling's, all rounds pooled: the figure
    /// the report gave before it paired rounds, kept beside it.
    pub fn pooled_get_ratio(&self) -> Option<f64> {
        let paired = self.get.len().min(self.ceiling.len());
        (paired > 0).then(|| {
            ratio(
                self.get[..paired].iter().sum(),
                self.ceiling[..paired].iter().sum(),
            )
        })
    }

    /// One line for the Markdown report: each round's pair and ratio, and
    /// the pooled ratio.
    pub fn text(&self) -> String {
        let pairs = self
            .get
            .iter()
            .zip(&self.ceiling)
            .zip(self.pair_ratios())
            .map(|((get, ceiling), ratio)| format!("{ceiling:.0} / {get:.0} ({ratio:.2})"))
            .collect::<Vec<_>>()
            .join("; ");
        match self.pooled_get_ratio() {
            Some(pooled) => format!("{pairs}; pooled {pooled:.2}"),
            None => pairs,
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "ceiling_per_s": self.ceiling,
            "get_per_s": self.get,
            "get_ratio": self.pair_ratios().collect::<Vec<_>>(),
            "get_ratio_pooled": self.pooled_get_ratio(),
        })
    }
}

/// The middle value (the mean of the middle two for an even count), or
/// `None` for no values.
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_the_middle_value_or_the_mean_of_the_middle_two() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![7.0]), Some(7.0));
        assert_eq!(median(vec![9.0, 1.0, 5.0]), Some(5.0));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn one_fast_round_of_the_ceiling_moves_neither_figure() {
        // The run that motivated pairing, round by round.
        let rounds = Rounds {
            ceiling: vec![147_565.0, 136_376.0, 139_478.0, 228_719.0],
            get: vec![95_133.0, 88_191.0, 91_901.0, 93_737.0],
        };
        let ceiling = rounds.ceiling_rate().unwrap();
        assert!((ceiling - 143_521.5).abs() < 1e-6, "{ceiling}");
        // 0.645, 0.647, 0.659 and 0.410: the middle two are 0.645 and 0.647.
        let get = rounds.get_ratio().unwrap();
        assert!((get - 0.6460).abs() < 0.0005, "{get}");
        // Pooled, the same rounds give 0.57.
        let pooled = rounds.pooled_get_ratio().unwrap();
        assert!((pooled - 0.566).abs() < 0.001, "{pooled}");
    }

    #[test]
    fn a_ceiling_without_get_rounds_has_a_rate_and_no_ratio() {
        let rounds = Rounds {
            ceiling: vec![1_000.0],
            get: vec![],
        };
        assert_eq!(rounds.ceiling_rate(), Some(1_000.0));
        assert_eq!(rounds.get_ratio(), None);
        assert_eq!(rounds.pooled_get_ratio(), None);
        assert_eq!(rounds.text(), "");
    }

    #[test]
    fn the_text_gives_each_pair_and_its_ratio() {
        let rounds = Rounds {
            ceiling: vec![100_000.0, 120_000.0],
            get: vec![60_000.0, 66_000.0],
        };
        assert_eq!(
            rounds.text(),
            "100000 / 60000 (0.60); 120000 / 66000 (0.55); pooled 0.57"
        );
    }
}
