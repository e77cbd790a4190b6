//! Reference answers written in the simplest way: enumerate every choice of events and
//! check each rule of docs/semantics.md literally. Exponential, for small inputs only;
//! shares nothing with the engines but the property filters.

use pulse_core::analytics::AnalyticsEvent;
use pulse_core::funnel::{FunnelDefinition, FunnelOrder};
use pulse_core::property::PropertyFilter;
use serde_json::Value;

fn is(name: &str, filters: &[PropertyFilter], e: &AnalyticsEvent) -> bool {
    e.event == name && filters.iter().all(|f| f.matches(&e.properties))
}

/// One user's reference result: level, times to each step reached, breakdown value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUser {
    pub level: usize,
    pub step_times: Vec<i64>,
    pub breakdown: Option<String>,
}

/// `events`: one user's events, each id once, any order.
pub fn funnel_user(def: &FunnelDefinition, events: &[&AnalyticsEvent], from: i64, to: i64) -> RefUser {
    let w = def.window.as_secs() as i64 * 1000;
    let n = def.steps.len();
    // best[k-1] = (earliest completion, latest start among those) over valid k-chains.
    let mut best: Vec<Option<(i64, i64)>> = vec![None; n];
    let mut chain = Vec::new();
    search(def, events, from, to, w, &mut chain, &mut best);
    let level = best.iter().rposition(Option::is_some).map_or(0, |i| i + 1);
    let step_times = if def.order == FunnelOrder::Unordered {
        Vec::new()
    } else {
        best.iter().take(level).map(|b| b.map_or(-1, |(end, start)| end - start)).collect()
    };
    let breakdown = if level == 0 {
        None
    } else {
        def.breakdown.as_ref().and_then(|path| {
            let mut firsts: Vec<&&AnalyticsEvent> = events
                .iter()
                .filter(|e| e.timestamp >= from && is(&def.steps[0].event, &def.steps[0].filters, e))
                .collect();
            firsts.sort_by(|a, b| (a.timestamp, &a.event_id).cmp(&(b.timestamp, &b.event_id)));
            firsts.first().and_then(|e| path.lookup(&e.properties)).map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        })
    };
    RefUser { level, step_times, breakdown }
}

fn search(
    def: &FunnelDefinition,
    events: &[&AnalyticsEvent],
    from: i64,
    to: i64,
    w: i64,
    chain: &mut Vec<usize>,
    best: &mut Vec<Option<(i64, i64)>>,
) {
    let k = chain.len();
    if k > 0 && valid(def, events, from, to, w, chain) {
        let times: Vec<i64> = chain.iter().map(|&i| events[i].timestamp).collect();
        let (start, end) = if def.order == FunnelOrder::Unordered {
            (*times.iter().min().unwrap_or(&0), *times.iter().max().unwrap_or(&0))
        } else {
            (times[0], times[k - 1])
        };
        let better = match best[k - 1] {
            None => true,
            Some((e, s)) => end < e || (end == e && start > s),
        };
        if better {
            best[k - 1] = Some((end, start));
        }
    }
    if k == def.steps.len() {
        return;
    }
    for i in 0..events.len() {
        if !chain.contains(&i) && is(&def.steps[k].event, &def.steps[k].filters, events[i]) {
            chain.push(i);
            search(def, events, from, to, w, chain, best);
            chain.pop();
        }
    }
}

fn hold(def: &FunnelDefinition, e: &AnalyticsEvent) -> Vec<Option<Value>> {
    def.hold_constant.iter().map(|p| p.lookup(&e.properties).cloned()).collect()
}

fn any_step(def: &FunnelDefinition, e: &AnalyticsEvent) -> bool {
    def.steps.iter().any(|s| is(&s.event, &s.filters, e))
}

fn valid(
    def: &FunnelDefinition,
    events: &[&AnalyticsEvent],
    from: i64,
    to: i64,
    w: i64,
    chain: &[usize],
) -> bool {
    let t = |i: usize| events[chain[i]].timestamp;
    let k = chain.len();
    let h = hold(def, events[chain[0]]);
    if chain.iter().any(|&i| hold(def, events[i]) != h) {
        return false;
    }
    if def.order == FunnelOrder::Unordered {
        let min = (0..k).map(t).min().unwrap_or(0);
        let max = (0..k).map(t).max().unwrap_or(0);
        return (from..to).contains(&min) && max - min <= w;
    }
    if !(from..to).contains(&t(0)) || t(k - 1) - t(0) > w {
        return false;
    }
    if (1..k).any(|i| t(i) < t(i - 1)) {
        return false;
    }
    if def.order == FunnelOrder::Strict {
        for i in 1..k {
            let between = events.iter().enumerate().any(|(j, e)| {
                !chain.contains(&j)
                    && any_step(def, e)
                    && hold(def, e) == h
                    && e.timestamp > t(i - 1)
                    && e.timestamp < t(i)
            });
            if between {
                return false;
            }
        }
    }
    for x in &def.exclusions {
        let (f, to_step) = (x.from_step as usize, x.to_step as usize);
        if to_step <= k {
            let (lo, hi) = (t(f - 1), t(to_step - 1));
            if events.iter().any(|e| is(&x.event, &x.filters, e) && e.timestamp > lo && e.timestamp < hi) {
                return false;
            }
        }
    }
    true
}
