//! Adding users up into a funnel report: step counts, drop-off, time to convert, the
//! breakdown with its statistics, and the conversion trend.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::UserFunnel;
use crate::analytics::error::{AnalyticsError, Limits};
use crate::analytics::stats::{ProportionComparison, compare_proportions, percentile};
use crate::funnel::FunnelDefinition;

/// Counts of users so far; add users one by one, or merge tallies of disjoint users.
/// Serializable, so a pre-aggregate can store it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FunnelTally {
    /// Users reaching at least step k+1, at index k.
    reached: Vec<u64>,
    /// Times to convert of the users reaching step k+1, at index k.
    times: Vec<Vec<i64>>,
    /// Per breakdown value, users reaching at least each step.
    #[serde(with = "pairs")]
    by_value: BTreeMap<Option<String>, Vec<u64>>,
    /// Per trend period start: users entering, users converting.
    periods: BTreeMap<i64, (u64, u64)>,
}

impl FunnelTally {
    /// An empty tally of a funnel with `steps` steps.
    pub fn new(steps: usize) -> Self {
        FunnelTally { reached: vec![0; steps], times: vec![Vec::new(); steps], ..Default::default() }
    }

    /// A tally from counts kept elsewhere (the pre-aggregates of `analytics::materialized`),
    /// laid out as the fields are.
    pub(crate) fn from_parts(
        reached: Vec<u64>,
        times: Vec<Vec<i64>>,
        by_value: BTreeMap<Option<String>, Vec<u64>>,
        periods: BTreeMap<i64, (u64, u64)>,
    ) -> Self {
        FunnelTally { reached, times, by_value, periods }
    }

    /// Adds one user.
    pub fn add(&mut self, user: &UserFunnel) {
        let n = self.reached.len();
        for k in 0..user.level.min(n) {
            self.reached[k] += 1;
        }
        for (k, t) in user.step_times.iter().enumerate().take(n) {
            self.times[k].push(*t);
        }
        if user.level > 0 {
            let row = self.by_value.entry(user.breakdown.clone()).or_insert_with(|| vec![0; n]);
            for count in row.iter_mut().take(user.level) {
                *count += 1;
            }
        }
    }

    /// Adds one user's level in the trend period starting at `period_start`.
    pub fn add_to_period(&mut self, period_start: i64, level: usize) {
        let point = self.periods.entry(period_start).or_default();
        if level > 0 {
            point.0 += 1;
        }
        if level == self.reached.len() {
            point.1 += 1;
        }
    }

    /// Adds another tally of other users.
    pub fn merge(&mut self, other: FunnelTally) {
        for (a, b) in self.reached.iter_mut().zip(other.reached) {
            *a += b;
        }
        for (a, b) in self.times.iter_mut().zip(other.times) {
            a.extend(b);
        }
        for (value, counts) in other.by_value {
            let row = self.by_value.entry(value).or_insert_with(|| vec![0; counts.len()]);
            row.iter_mut().zip(counts).for_each(|(a, b)| *a += b);
        }
        for (start, (entered, converted)) in other.periods {
            let point = self.periods.entry(start).or_default();
            point.0 += entered;
            point.1 += converted;
        }
    }

    /// The report. `periods` are the trend's period starts (empty without a trend).
    pub fn report(
        &self,
        def: &FunnelDefinition,
        periods: &[i64],
        limits: &Limits,
    ) -> Result<FunnelReport, AnalyticsError> {
        let n = self.reached.len();
        let steps = (0..n)
            .map(|k| {
                let users = self.reached[k];
                let previous = if k == 0 { users } else { self.reached[k - 1] };
                let step = &def.steps[k];
                StepReport {
                    name: step.name.clone().unwrap_or_else(|| step.event.clone()),
                    users,
                    conversion_from_previous: ratio(users, previous),
                    conversion_from_first: ratio(users, self.reached[0]),
                    dropped_off: if k + 1 < n { users - self.reached[k + 1] } else { 0 },
                    time_to_convert: if k == 0 { None } else { TimeToConvert::of(&self.times[k]) },
                }
            })
            .collect();
        if def.breakdown.is_some() && self.by_value.len() > limits.max_breakdown_values {
            return Err(AnalyticsError::TooManyBreakdownValues {
                count: self.by_value.len(),
                limit: limits.max_breakdown_values,
            });
        }
        let breakdown = if def.breakdown.is_some() { self.breakdown_rows(n) } else { Vec::new() };
        let trend = periods
            .iter()
            .map(|&start| {
                let (entered, converted) = self.periods.get(&start).copied().unwrap_or_default();
                ConversionPoint {
                    period_start: start,
                    entered,
                    converted,
                    conversion: ratio(converted, entered),
                }
            })
            .collect();
        Ok(FunnelReport { steps, breakdown, trend })
    }

    /// Rows by users entering (most first, then by value); the first is the baseline the
    /// others are compared with.
    fn breakdown_rows(&self, n: usize) -> Vec<BreakdownRow> {
        let mut rows: Vec<(&Option<String>, &Vec<u64>)> = self.by_value.iter().collect();
        rows.sort_by(|a, b| b.1[0].cmp(&a.1[0]).then_with(|| a.0.cmp(b.0)));
        let baseline = rows.first().map(|(_, c)| (c[n - 1], c[0]));
        rows.iter()
            .enumerate()
            .map(|(i, (value, counts))| BreakdownRow {
                value: (*value).clone(),
                steps: counts.to_vec(),
                conversion: ratio(counts[n - 1], counts[0]),
                comparison: match baseline {
                    Some((x1, n1)) if i > 0 => compare_proportions(x1, n1, counts[n - 1], counts[0]),
                    _ => None,
                },
            })
            .collect()
    }
}

/// A map whose keys JSON cannot hold (null) as a list of [key, value] pairs.
mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(
        map: &BTreeMap<Option<String>, Vec<u64>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        map.iter().collect::<Vec<_>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<Option<String>, Vec<u64>>, D::Error> {
        Ok(Vec::<(Option<String>, Vec<u64>)>::deserialize(d)?.into_iter().collect())
    }
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// A funnel's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunnelReport {
    /// One entry per step, in order.
    pub steps: Vec<StepReport>,
    /// Per value of the breakdown property (empty without a breakdown).
    pub breakdown: Vec<BreakdownRow>,
    /// Per period of the first step's event (empty unless asked for).
    pub trend: Vec<ConversionPoint>,
}

/// One step of a funnel report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepReport {
    /// The step's name, or its event name.
    pub name: String,
    /// Users who reached this step (and so every step before it).
    pub users: u64,
    /// users / users of the previous step (1 for the first step); null when that is 0.
    pub conversion_from_previous: Option<f64>,
    /// users / users of the first step; null when that is 0.
    pub conversion_from_first: Option<f64>,
    /// Users who reached this step and not the next (0 for the last step).
    pub dropped_off: u64,
    /// From the first step's event to this step's (null for the first step and for
    /// unordered funnels).
    pub time_to_convert: Option<TimeToConvert>,
}

/// The distribution of the time from the first step to one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimeToConvert {
    /// Users measured.
    pub users: u64,
    pub average_ms: f64,
    /// Nearest-rank percentiles.
    pub median_ms: i64,
    pub p90_ms: i64,
    pub max_ms: i64,
}

impl TimeToConvert {
    fn of(times: &[i64]) -> Option<Self> {
        if times.is_empty() {
            return None;
        }
        // Exact integers below 2^53 whose sum is too: every partial sum is exact in f64
        // whatever the order, so selecting the ranks (linear) gives the same figures as
        // sorting; a pre-aggregated answer over many users then stays within its budget.
        const EXACT: i64 = 1 << 53;
        if times.iter().all(|&t| (0..EXACT).contains(&t))
            && times.iter().map(|&t| i128::from(t)).sum::<i128>() < i128::from(EXACT)
        {
            let mut values = times.to_vec();
            let sum: i64 = values.iter().sum();
            let len = values.len();
            let mut at = |p: f64| {
                let rank = ((p / 100.0) * len as f64).ceil() as usize;
                *values.select_nth_unstable(rank.clamp(1, len) - 1).1
            };
            let (median_ms, p90_ms, max_ms) = (at(50.0), at(90.0), at(100.0));
            return Some(TimeToConvert {
                users: len as u64,
                average_ms: sum as f64 / len as f64,
                median_ms,
                p90_ms,
                max_ms,
            });
        }
        let mut sorted: Vec<f64> = times.iter().map(|&t| t as f64).collect();
        sorted.sort_by(f64::total_cmp);
        let at = |p| percentile(&sorted, p).map_or(0, |v| v as i64);
        Some(TimeToConvert {
            users: times.len() as u64,
            average_ms: sorted.iter().sum::<f64>() / sorted.len() as f64,
            median_ms: at(50.0),
            p90_ms: at(90.0),
            max_ms: at(100.0),
        })
    }
}

/// The funnel of the users of one breakdown value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BreakdownRow {
    /// The value (null: the property was absent).
    pub value: Option<String>,
    /// Users reaching at least each step.
    pub steps: Vec<u64>,
    /// Users reaching the last step / users entering.
    pub conversion: Option<f64>,
    /// Against the first row (the value with the most users entering); null for it.
    pub comparison: Option<ProportionComparison>,
}

/// The conversion of the users whose first step fell in one period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversionPoint {
    /// The period's start (epoch ms).
    pub period_start: i64,
    /// Users entering in the period.
    pub entered: u64,
    /// Of those, users reaching the last step (within the window, even after the period).
    pub converted: u64,
    pub conversion: Option<f64>,
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::TimeToConvert;
    use crate::analytics::stats::percentile;

    /// The figures by sorting and summing in order, as the definition reads.
    fn by_sorting(times: &[i64]) -> TimeToConvert {
        let mut sorted: Vec<f64> = times.iter().map(|&t| t as f64).collect();
        sorted.sort_by(f64::total_cmp);
        let at = |p| percentile(&sorted, p).map_or(0, |v| v as i64);
        TimeToConvert {
            users: times.len() as u64,
            average_ms: sorted.iter().sum::<f64>() / sorted.len() as f64,
            median_ms: at(50.0),
            p90_ms: at(90.0),
            max_ms: at(100.0),
        }
    }

    proptest! {
        #[test]
        fn selecting_ranks_equals_sorting(
            times in prop::collection::vec(prop_oneof![0i64..1_000, 0i64..31_622_400_000], 1..200),
        ) {
            prop_assert_eq!(TimeToConvert::of(&times), Some(by_sorting(&times)));
        }
    }

    #[test]
    fn sums_too_large_for_exact_floats_are_summed_in_order() {
        let times = [1i64 << 52, 1 << 52, 3, 1];
        assert_eq!(TimeToConvert::of(&times), Some(by_sorting(&times)));
    }
}
