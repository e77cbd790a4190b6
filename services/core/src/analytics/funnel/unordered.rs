//! Unordered funnels for one user: steps 1..k all done, in any order, by distinct events
//! within one window that starts at the earliest of them, which lies in the range.
//!
//! For each possible earliest time `a` (a time of a step event in the range) the events in
//! `[a, a + window]` are counted by the set of steps they match; a matching decides how
//! many steps they can take, with at least one event at `a` among them. Events enter and
//! leave the window as `a` advances, so a user costs about one pass.

use std::collections::HashMap;

use super::compiled::{Compiled, Marked, matchable, reach};

/// The user's level in an unordered funnel.
pub(crate) fn level(c: &Compiled<'_>, marked: &[Marked], from: i64, to: i64) -> usize {
    let mut by_hold: HashMap<u32, Vec<&Marked>> = HashMap::new();
    for m in marked.iter().filter(|m| m.steps != 0) {
        by_hold.entry(m.hold).or_default().push(m);
    }
    by_hold.values().map(|events| level_of(c, events, from, to)).max().unwrap_or(0)
}

fn level_of(c: &Compiled<'_>, events: &[&Marked], from: i64, to: i64) -> usize {
    let n = c.n;
    let mut counts: HashMap<u32, usize> = HashMap::new();
    let (mut left, mut right, mut best) = (0, 0, 0);
    let mut i = 0;
    while i < events.len() && best < n {
        let a = events[i].ts;
        let mut at_a = i;
        while at_a < events.len() && events[at_a].ts == a {
            at_a += 1;
        }
        if (from..to).contains(&a) {
            if right <= i {
                // Nothing counted is still in the window (earlier times were out of range).
                counts.clear();
                (left, right) = (i, i);
            }
            while left < i {
                decrement(&mut counts, events[left].steps);
                left += 1;
            }
            while right < events.len() && events[right].ts - a <= c.window_ms {
                *counts.entry(events[right].steps).or_default() += 1;
                right += 1;
            }
            let slots: Vec<u32> =
                counts.iter().flat_map(|(&m, &k)| std::iter::repeat_n(m, k.min(n))).collect();
            let mut forced: Vec<u32> = events[i..at_a].iter().map(|e| e.steps).collect();
            forced.sort_unstable();
            forced.dedup();
            best = best.max(forced_level(&slots, &forced, n, best));
        }
        i = at_a;
    }
    best
}

fn decrement(counts: &mut HashMap<u32, usize>, mask: u32) {
    if let Some(k) = counts.get_mut(&mask) {
        *k -= 1;
        if *k == 0 {
            counts.remove(&mask);
        }
    }
}

/// The most steps 1..k the slots can take with one of them an event of the earliest time
/// (one of the `forced` masks); only levels above `floor` are worth checking.
fn forced_level(slots: &[u32], forced: &[u32], n: usize, floor: usize) -> usize {
    let unforced = reach(slots, 0, n);
    for k in (floor + 1..=unforced).rev() {
        for &f in forced {
            let Some(pos) = slots.iter().position(|&m| m == f) else { continue };
            let mut rest = slots.to_vec();
            rest.swap_remove(pos);
            for s in (0..k).filter(|s| f & (1 << s) != 0) {
                if matchable(&rest, (0..k).filter(|&x| x != s)) {
                    return k;
                }
            }
        }
    }
    floor
}
