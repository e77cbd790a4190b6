//! The engines' limits and errors: a query that would exceed a limit is refused with the
//! limit named, never answered from a truncated input.

use crate::validation::FieldError;

/// The bounds one query must stay within. The query service sets them from the pipeline
/// config; [`Limits::default`] suits tests and a single-tenant demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most events one query reads.
    pub max_events: usize,
    /// The most periods (intervals, retention offsets or cohort periods) in one answer.
    pub max_periods: usize,
    /// The most distinct breakdown values a funnel reports (a trend keeps a top N instead).
    pub max_breakdown_values: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_events: 20_000_000, max_periods: 1_000, max_breakdown_values: 100 }
    }
}

/// Why an engine refused a query.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnalyticsError {
    /// The query itself is wrong: each problem with its field.
    #[error("invalid query: {}", join(.0))]
    Invalid(Vec<FieldError>),
    /// More events than [`Limits::max_events`].
    #[error("the query reads {count} events; the limit is {limit}: narrow the range or add filters")]
    TooManyEvents { count: usize, limit: usize },
    /// More periods than [`Limits::max_periods`].
    #[error(
        "the query spans {count} periods; the limit is {limit}: narrow the range or use a longer interval"
    )]
    TooManyPeriods { count: usize, limit: usize },
    /// More breakdown values than [`Limits::max_breakdown_values`].
    #[error(
        "the breakdown has {count} values; the limit is {limit}: filter the first step or break down by another property"
    )]
    TooManyBreakdownValues { count: usize, limit: usize },
    /// A well-formed query naming a cell its report does not have (a funnel's step 5 of 3).
    #[error("{field}: {reason}")]
    NotInReport { field: String, reason: String },
}

impl AnalyticsError {
    /// A cell the report does not have, at `field`.
    pub fn not_in_report(field: impl Into<String>, reason: impl Into<String>) -> Self {
        AnalyticsError::NotInReport { field: field.into(), reason: reason.into() }
    }

    /// One invalid field.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        AnalyticsError::Invalid(vec![FieldError::new(field, reason)])
    }

    /// The same refusal with its fields under `prefix` (`from` becomes `query.from`).
    pub fn under(self, prefix: &str) -> Self {
        match self {
            AnalyticsError::Invalid(fields) => AnalyticsError::Invalid(
                fields
                    .into_iter()
                    .map(|f| FieldError::new(format!("{prefix}.{}", f.field), f.reason))
                    .collect(),
            ),
            other => other,
        }
    }

    /// A stable code for responses and metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            AnalyticsError::Invalid(_) => "invalid_query",
            AnalyticsError::TooManyEvents { .. } => "too_many_events",
            AnalyticsError::TooManyPeriods { .. } => "too_many_periods",
            AnalyticsError::TooManyBreakdownValues { .. } => "too_many_breakdown_values",
            AnalyticsError::NotInReport { .. } => "not_in_report",
        }
    }
}

fn join(errors: &[FieldError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Refuses an empty or reversed range `[from, to)`.
pub(crate) fn check_range(from: i64, to: i64) -> Result<(), AnalyticsError> {
    if from < to {
        Ok(())
    } else {
        Err(AnalyticsError::invalid(
            "to",
            format!("the range [from, to) is empty: to ({to}) must be after from ({from})"),
        ))
    }
}

/// Refuses more events than the limit.
pub(crate) fn check_events(count: usize, limits: &Limits) -> Result<(), AnalyticsError> {
    if count > limits.max_events {
        Err(AnalyticsError::TooManyEvents { count, limit: limits.max_events })
    } else {
        Ok(())
    }
}

/// Refuses more periods than the limit.
pub(crate) fn check_periods(count: usize, limits: &Limits) -> Result<(), AnalyticsError> {
    if count > limits.max_periods {
        Err(AnalyticsError::TooManyPeriods { count, limit: limits.max_periods })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_or_reversed_range_is_refused_naming_to() {
        assert!(check_range(5, 6).is_ok());
        for (from, to) in [(5, 5), (6, 5)] {
            let refused = check_range(from, to).expect_err("refused");
            assert!(refused.to_string().contains("must be after from"), "{refused}");
        }
    }
}
