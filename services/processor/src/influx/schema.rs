//! What the sink writes: the measurements, tags and fields (docs/influxdb.md), pure.
//!
//! - `pulse_events`: tags `tenant`, `event`, `interval` (`minute`, `hour`, `day`); fields
//!   `count` (integer, events) and, for hour and day, `users` (integer, unique users).
//! - `pulse_event_numeric`: tags `tenant`, `event`, `interval`, `property` (a configured
//!   numeric property); fields `sum`, `min`, `max` (float), `count` (integer).
//!
//! Every point's time is its period's start, so writing a period again overwrites it
//! (same measurement, tags and time): the sink can repeat itself and never double counts.
//! Tag values are bounded: the tenant, the pipeline's event names and configured numeric
//! properties; never user ids or other per-event values.

use pulse_core::rollup::{BucketKey, decode_key, interval_name};
use pulse_store::recount::BucketTotals;

use super::line::{FieldValue, Point};

pub const EVENTS: &str = "pulse_events";
pub const EVENT_NUMERIC: &str = "pulse_event_numeric";

/// The points of one rollup bucket.
pub fn points_of(tenant: &str, key: &BucketKey, totals: &BucketTotals) -> Vec<Point> {
    let tags = |extra: Option<(&'static str, String)>| {
        let mut tags = vec![
            ("tenant", tenant.to_string()),
            ("event", key.event.clone()),
            ("interval", interval_name(key.interval).to_string()),
        ];
        tags.extend(extra);
        tags
    };
    let mut fields = vec![("count", FieldValue::Int(totals.events as i64))];
    if let Some(users) = totals.users {
        fields.push(("users", FieldValue::Int(users as i64)));
    }
    let mut points = vec![Point { measurement: EVENTS, tags: tags(None), fields, time_ms: key.start }];
    for (path, stat) in &totals.numeric {
        points.push(Point {
            measurement: EVENT_NUMERIC,
            tags: tags(Some(("property", decode_key(path)))),
            fields: vec![
                ("sum", FieldValue::Float(stat.sum)),
                ("min", FieldValue::Float(stat.min)),
                ("max", FieldValue::Float(stat.max)),
                ("count", FieldValue::Int(stat.count as i64)),
            ],
            time_ms: key.start,
        });
    }
    points
}

#[cfg(test)]
mod tests {
    use pulse_core::config::RollupInterval;
    use pulse_core::rollup::NumericStat;

    use super::*;

    #[test]
    fn a_bucket_becomes_its_count_users_and_numeric_points() {
        let key =
            BucketKey { event: "order placed".into(), interval: RollupInterval::Hour, start: 3_600_000 };
        let mut totals = BucketTotals { events: 4, users: Some(3), ..Default::default() };
        totals.numeric.insert("price".into(), NumericStat { sum: 10.5, min: 1.0, max: 6.0, count: 3 });
        let lines: Vec<String> = points_of("acme", &key, &totals).iter().filter_map(Point::encode).collect();
        assert_eq!(
            lines,
            [
                r"pulse_events,event=order\ placed,interval=hour,tenant=acme count=4i,users=3i 3600000",
                r"pulse_event_numeric,event=order\ placed,interval=hour,property=price,tenant=acme sum=10.5,min=1.0,max=6.0,count=3i 3600000",
            ]
        );
    }

    #[test]
    fn minute_buckets_have_no_users_field() {
        let key = BucketKey { event: "x".into(), interval: RollupInterval::Minute, start: 60_000 };
        let totals = BucketTotals { events: 2, users: None, ..Default::default() };
        let points = points_of("acme", &key, &totals);
        assert_eq!(points.len(), 1);
        assert_eq!(points[0].fields, vec![("count", FieldValue::Int(2))]);
    }
}
