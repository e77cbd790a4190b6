//! The query API's answers as terminal tables: a funnel with per-step conversion and the
//! experiment's variants compared, a retention table, a lifecycle, paths, and a trend with
//! bars.

use jiff::tz::TimeZone;
use serde_json::Value;

fn percent(v: &Value) -> String {
    v.as_f64().map(|f| format!("{:.1}%", f * 100.0)).unwrap_or_else(|| "-".into())
}

fn count(v: &Value) -> String {
    v.as_i64().map(|n| n.to_string()).unwrap_or_else(|| "-".into())
}

fn duration(ms: &Value) -> String {
    let Some(ms) = ms.as_i64() else { return "-".into() };
    let minutes = ms / 60_000;
    if minutes < 120 { format!("{minutes} min") } else { format!("{:.1} h", minutes as f64 / 60.0) }
}

/// A period start (epoch ms) as a day in the pipeline's time zone.
pub fn day(ms: &Value, tz: &TimeZone) -> String {
    ms.as_i64()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map(|t| t.to_zoned_datetime(tz.clone()).strftime("%a %b %d").to_string())
        .unwrap_or_else(|| "?".into())
}

/// The steps of a funnel report and, when it has a breakdown, one row per value with its
/// conversion compared to the first (largest) row.
pub fn funnel(title: &str, report: &Value, breakdown: &str) -> String {
    let mut out = format!("{title}\n");
    out += &format!(
        "  {:<22} {:>7} {:>14} {:>11} {:>9} {:>16}\n",
        "step", "users", "from previous", "from first", "dropped", "median to step"
    );
    for step in report["steps"].as_array().into_iter().flatten() {
        out += &format!(
            "  {:<22} {:>7} {:>14} {:>11} {:>9} {:>16}\n",
            step["name"].as_str().unwrap_or("?"),
            count(&step["users"]),
            percent(&step["conversionFromPrevious"]),
            percent(&step["conversionFromFirst"]),
            count(&step["droppedOff"]),
            duration(&step["timeToConvert"]["medianMs"]),
        );
    }
    let rows = report["breakdown"].as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        return out;
    }
    out += &format!("\n  by {breakdown}:\n");
    out += &format!(
        "  {:<12} {:>8} {:>10} {:>11}   {:<34} {:>8}\n",
        "variant", "entered", "converted", "conversion", "vs. baseline (95% CI)", "p-value"
    );
    for row in &rows {
        let steps: Vec<u64> =
            row["steps"].as_array().into_iter().flatten().filter_map(Value::as_u64).collect();
        let c = &row["comparison"];
        let comparison = match c["difference"].as_f64() {
            Some(d) => format!(
                "{:+.1} pts [{:+.1}, {:+.1}]",
                d * 100.0,
                c["ciLow"].as_f64().unwrap_or(f64::NAN) * 100.0,
                c["ciHigh"].as_f64().unwrap_or(f64::NAN) * 100.0
            ),
            None => "baseline".into(),
        };
        let p = c["pValue"].as_f64().map(|p| format!("{p:.4}")).unwrap_or_else(|| "-".into());
        out += &format!(
            "  {:<12} {:>8} {:>10} {:>11}   {:<34} {:>8}\n",
            row["value"].as_str().unwrap_or("(none)"),
            steps.first().copied().unwrap_or(0),
            steps.last().copied().unwrap_or(0),
            percent(&row["conversion"]),
            comparison,
            p
        );
    }
    out
}

/// One row per cohort day: its users, then the share that came back k days later.
pub fn retention(title: &str, report: &Value, tz: &TimeZone) -> String {
    let cohorts = report["cohorts"].as_array().cloned().unwrap_or_default();
    let periods = cohorts.iter().filter_map(|c| c["retained"].as_array().map(Vec::len)).max().unwrap_or(0);
    let mut out = format!("{title}\n  {:<12} {:>6}", "cohort", "users");
    for k in 0..periods {
        out += &format!(" {:>6}", format!("day {k}"));
    }
    out += "\n";
    for c in &cohorts {
        let users = c["users"].as_u64().unwrap_or(0);
        out += &format!("  {:<12} {:>6}", day(&c["periodStart"], tz), users);
        let progress = c["progress"].as_array().cloned().unwrap_or_default();
        for (k, r) in c["retained"].as_array().into_iter().flatten().enumerate() {
            let cell = match (progress.get(k).and_then(Value::as_str), r.as_u64(), users) {
                // Not happened yet: blank, not a 0% that reads as "nobody came back".
                (Some("pending"), ..) => String::new(),
                (mark, Some(n), u) if u > 0 => {
                    let partial = if mark == Some("partial") { "*" } else { "" };
                    format!("{:.0}%{partial}", n as f64 * 100.0 / u as f64)
                }
                _ => "-".into(),
            };
            out += &format!(" {cell:>6}");
        }
        out += "\n";
    }
    out += "  * the period is under way (so far); blank: it has not begun\n";
    out
}

/// A lifecycle report: one row per period with its users by kind (dormant negative), the
/// period under way marked.
pub fn lifecycle(title: &str, report: &Value, tz: &TimeZone) -> String {
    let mut out = format!(
        "{title}\n  {:<12} {:>6} {:>10} {:>13} {:>8}\n",
        "day", "new", "returning", "resurrecting", "dormant"
    );
    for p in report["periods"].as_array().into_iter().flatten() {
        let mark = if p["progress"] == "partial" { "*" } else { "" };
        out += &format!(
            "  {:<12} {:>6} {:>10} {:>13} {:>8}\n",
            format!("{}{mark}", day(&p["periodStart"], tz)),
            count(&p["new"]),
            count(&p["returning"]),
            count(&p["resurrecting"]),
            count(&p["dormant"]),
        );
    }
    out += "  * the day is under way (so far)\n";
    out
}

/// A paths report: its most frequent whole paths with their share of the users.
pub fn paths(title: &str, report: &Value) -> String {
    let users = report["users"].as_u64().unwrap_or(0);
    let mut out = format!("{title}\n");
    for p in report["paths"].as_array().into_iter().flatten() {
        let names: Vec<&str> =
            p["events"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let n = p["users"].as_u64().unwrap_or(0);
        let share = if users > 0 { n as f64 * 100.0 / users as f64 } else { 0.0 };
        out += &format!("  {n:>6} {share:>5.1}%  {}\n", names.join(" → "));
    }
    out += &format!("  ({users} users, {} distinct paths)\n", count(&report["distinctPaths"]));
    out
}

/// A page of the people behind a number, each with the request that shows their events.
pub fn dropped_off(title: &str, page: &Value, query_url: &str) -> String {
    let mut out = format!("{title} {}\n", count(&page["total"]));
    for user in page["users"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        out += &format!(
            "  {user:<14} curl -s \"{query_url}/v1/persons/{user}/events?limit=20\" -H \"Authorization: Bearer $READ_KEY\"\n"
        );
    }
    out
}

/// A trend report: one row per interval, a column per series and a stacked bar.
pub fn trend(title: &str, report: &Value, tz: &TimeZone) -> String {
    let series = report["series"].as_array().cloned().unwrap_or_default();
    let label = |s: &Value| match s["label"]["kind"].as_str() {
        Some("value") => s["label"]["value"].as_str().unwrap_or("(none)").to_string(),
        Some(kind) => kind.to_string(),
        None => "?".into(),
    };
    const MARKS: [&str; 4] = ["█", "▒", "░", "▓"];
    let mut out = format!("{title}\n  {:<12}", "day");
    for (i, s) in series.iter().enumerate() {
        out += &format!(" {:>9}", format!("{} {}", MARKS[i % MARKS.len()], label(s)));
    }
    out += "\n";
    let values = |i: usize| -> Vec<f64> {
        series.iter().map(|s| s["points"][i]["value"].as_f64().unwrap_or(0.0)).collect()
    };
    let starts: Vec<Value> = series
        .first()
        .and_then(|s| s["points"].as_array())
        .map(|points| points.iter().map(|p| p["start"].clone()).collect())
        .unwrap_or_default();
    let max = (0..starts.len()).map(|i| values(i).iter().sum::<f64>()).fold(0.0, f64::max);
    for (i, start) in starts.iter().enumerate() {
        out += &format!("  {:<12}", day(start, tz));
        let row = values(i);
        for v in &row {
            out += &format!(" {v:>9}");
        }
        out += " ";
        for (k, v) in row.iter().enumerate() {
            let width = if max > 0.0 { (v / max * 40.0).round() as usize } else { 0 };
            out += &MARKS[k % MARKS.len()].repeat(width);
        }
        out += "\n";
    }
    out
}

/// A progress bar: `label [#####.....] 50% done/total unit`.
pub fn progress(label: &str, done: usize, total: usize, unit: &str) -> String {
    const WIDTH: usize = 30;
    let filled = (done.min(total) * WIDTH).checked_div(total).unwrap_or(WIDTH);
    let pct = (done.min(total) * 100).checked_div(total).unwrap_or(100);
    format!(
        "\r  {label:<10} [{}{}] {pct:>3}% {done}/{total} {unit}",
        "█".repeat(filled),
        "░".repeat(WIDTH - filled)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_funnel_table_shows_steps_and_the_variants_compared() {
        let report = json!({
            "steps": [
                { "name": "cart_viewed", "users": 100, "conversionFromPrevious": 1.0, "conversionFromFirst": 1.0, "droppedOff": 40 },
                { "name": "order_paid", "users": 60, "conversionFromPrevious": 0.6, "conversionFromFirst": 0.6, "droppedOff": 0,
                  "timeToConvert": { "medianMs": 1_800_000 } }
            ],
            "breakdown": [
                { "value": "control", "steps": [50, 25], "conversion": 0.5, "comparison": null },
                { "value": "new_flow", "steps": [50, 35], "conversion": 0.7,
                  "comparison": { "difference": 0.2, "ciLow": 0.01, "ciHigh": 0.39, "z": 2.0, "pValue": 0.0412 } }
            ]
        });
        let table = funnel("checkout", &report, "experiments.checkout_v2");
        assert!(table.contains("order_paid"), "{table}");
        assert!(table.contains("60.0%") && table.contains("30 min"), "{table}");
        assert!(table.contains("baseline") && table.contains("+20.0 pts [+1.0, +39.0]"), "{table}");
        assert!(table.contains("0.0412"), "{table}");
    }

    #[test]
    fn retention_cells_are_shares_of_the_cohort() {
        let report = json!({ "cohorts": [{ "periodStart": 0, "users": 8, "retained": [8, 4, 0] }] });
        let table = retention("r", &report, &TimeZone::UTC);
        assert!(table.contains("Thu Jan 01") && table.contains("100%") && table.contains("50%"), "{table}");
        assert!(table.contains("day 2"), "{table}");
    }

    #[test]
    fn retention_cells_not_begun_are_blank_and_the_current_one_marked() {
        let report = json!({ "cohorts": [{ "periodStart": 0, "users": 8, "retained": [8, 4, 0],
            "progress": ["complete", "partial", "pending"] }] });
        let table = retention("r", &report, &TimeZone::UTC);
        let row = table.lines().find(|l| l.contains("Thu Jan 01")).unwrap_or_default();
        assert!(row.contains("100%") && row.contains("50%*"), "{table}");
        assert_eq!(row.split_whitespace().last(), Some("50%*"), "no 0% for a day to come: {table}");
    }

    #[test]
    fn a_lifecycle_row_per_day_with_dormant_users_negative() {
        let report = json!({ "periods": [
            { "periodStart": 0, "new": 3, "returning": 0, "resurrecting": 0, "dormant": 0, "progress": "complete" },
            { "periodStart": 86_400_000, "new": 1, "returning": 2, "resurrecting": 0, "dormant": -1, "progress": "partial" },
        ]});
        let table = lifecycle("l", &report, &TimeZone::UTC);
        let rows: Vec<&str> = table.lines().skip(2).take(2).collect();
        assert!(rows[0].contains("Thu Jan 01 ") && rows[0].trim_end().ends_with('0'), "{table}");
        assert!(rows[1].contains("Fri Jan 02*") && rows[1].trim_end().ends_with("-1"), "{table}");
    }

    #[test]
    fn paths_are_listed_with_their_share_of_users() {
        let report = json!({ "users": 4, "distinctPaths": 2, "paths": [
            { "events": ["signed_up", "session_started"], "users": 3 },
            { "events": ["signed_up"], "users": 1 },
        ]});
        let table = paths("p", &report);
        assert!(table.contains("3  75.0%  signed_up → session_started"), "{table}");
        assert!(table.contains("(4 users, 2 distinct paths)"), "{table}");
    }

    #[test]
    fn the_people_dropped_off_come_with_their_timeline_request() {
        let page = json!({ "total": 42, "users": ["u1", "u2"] });
        let text = dropped_off("Dropped off, 2 of", &page, "http://q");
        assert!(text.starts_with("Dropped off, 2 of 42\n"), "{text}");
        assert!(text.contains("u2") && text.contains("http://q/v1/persons/u2/events?limit=20"), "{text}");
    }

    #[test]
    fn a_trend_has_a_column_per_series_and_a_stacked_bar() {
        let report = json!({ "series": [
            { "label": { "kind": "value", "value": "web" }, "points": [{ "start": 0, "value": 30.0 }, { "start": 86_400_000, "value": 10.0 }] },
            { "label": { "kind": "value", "value": "ios" }, "points": [{ "start": 0, "value": 10.0 }, { "start": 86_400_000, "value": 0.0 }] }
        ]});
        let table = trend("t", &report, &TimeZone::UTC);
        assert!(table.contains("█ web") && table.contains("▒ ios"), "{table}");
        let first = table.lines().nth(2).unwrap_or_default();
        assert_eq!(first.matches('█').count(), 30, "{table}");
        assert_eq!(first.matches('▒').count(), 10, "{table}");
    }

    #[test]
    fn a_progress_bar_is_full_at_the_total() {
        assert!(progress("sent", 10, 10, "events").contains("100% 10/10"));
        assert!(progress("sent", 0, 10, "events").contains("  0% 0/10"));
    }
}
