//! Ordered and strict funnels for one user, in one pass over their events in time order.
//!
//! The state is, per level k and per set of exclusions already seen since their from-step,
//! the latest start of any valid chain reaching k: a later start leaves more of the window
//! for the next steps, so it dominates (the last chosen time does not matter, as the next
//! event is never earlier than the present). Events with one timestamp are taken together:
//! among them any assignment to steps is allowed (ties may be taken in step order), found
//! by matching. Linear in the events for a fixed definition; no search over choices.

use super::compiled::{Compiled, Marked, capped, reach};

/// A chain: the exclusions seen since their from-step (bit set = voids at the to-step) and
/// the start time.
type Chain = (u16, i64);

/// Per held-constant value: for each level 1..=n, the chains that dominate.
type Levels = Vec<Vec<Chain>>;

/// What one user did in the funnel.
pub(crate) struct Progress {
    pub level: usize,
    /// For each level 1..=n reached: the time of the first chain to reach it and, among
    /// those, the latest start.
    pub first: Vec<Option<(i64, i64)>>,
}

/// Ordered (`strict = false`) or strict funnel over `marked`, starts in `[from, to)`.
pub(crate) fn progress(c: &Compiled<'_>, marked: &[Marked], from: i64, to: i64, strict: bool) -> Progress {
    let n = c.n;
    let mut holds: Vec<Levels> = Vec::new();
    let mut first: Vec<Option<(i64, i64)>> = vec![None; n];
    let mut level = 0;
    // Buffers reused from one timestamp to the next: most users have many.
    let mut touched: Vec<u32> = Vec::new();
    let mut extended: Vec<Levels> = Vec::new();
    let mut masks: Vec<u32> = Vec::new();
    let mut i = 0;
    while i < marked.len() {
        let t = marked[i].ts;
        let mut j = i;
        let mut x = 0u16;
        while j < marked.len() && marked[j].ts == t {
            x |= marked[j].exclusions;
            j += 1;
        }
        let group = &marked[i..j];
        i = j;
        touched.clear();
        touched.extend(group.iter().filter(|m| m.steps != 0).map(|m| m.hold));
        touched.sort_unstable();
        touched.dedup();
        while extended.len() < touched.len() {
            extended.push(vec![Vec::new(); n]);
        }
        for (slot, &h) in touched.iter().enumerate() {
            masks.clear();
            masks.extend(group.iter().filter(|m| m.steps != 0 && m.hold == h).map(|m| m.steps));
            if masks.len() > n {
                masks = capped(std::mem::take(&mut masks), n);
            }
            let new = &mut extended[slot];
            new.iter_mut().for_each(Vec::clear);
            extend(c, holds.get(h as usize), &masks, t, x, (from..to).contains(&t), new);
        }
        // Chains not extended here: in a strict funnel an event of their value ends them;
        // otherwise they live on, marked with the exclusions that happened.
        // Only the values seen here are visited (a held property such as a session id can
        // have thousands of values per user), except when an exclusion happened.
        if strict {
            for &h in &touched {
                if let Some(levels) = holds.get_mut(h as usize) {
                    levels.iter_mut().for_each(Vec::clear);
                }
            }
        }
        if x != 0 {
            for (h, levels) in holds.iter_mut().enumerate() {
                if !(strict && touched.binary_search(&(h as u32)).is_ok()) {
                    taint(c, levels, x);
                }
            }
        }
        for (slot, &h) in touched.iter().enumerate() {
            let h = h as usize;
            if holds.len() <= h {
                holds.resize_with(h + 1, || vec![Vec::new(); n]);
            }
            for (k, chains) in extended[slot].iter().enumerate() {
                for &(mask, start) in chains {
                    insert(&mut holds[h][k], mask, start);
                }
            }
        }
        // A level is first reached by chains just added, so only the values seen here count.
        while level < n {
            let best = touched.iter().flat_map(|&h| holds[h as usize][level].iter().map(|c| c.1)).max();
            match best {
                Some(start) => {
                    first[level] = Some((t, start));
                    level += 1;
                }
                None => break,
            }
        }
    }
    Progress { level, first }
}

/// The chains that take events of this timestamp: from each level k (0 = a new start, if
/// `t` is in range) as many further steps as the events can take, each step count valid.
fn extend(
    c: &Compiled<'_>,
    old: Option<&Levels>,
    masks: &[u32],
    t: i64,
    x: u16,
    starts: bool,
    new: &mut Levels,
) {
    let n = c.n;
    let from_level = |k: usize, chains: &[Chain], new: &mut Levels| {
        let m = reach(masks, k, n);
        for &(mask, start) in chains {
            if k > 0 && t - start > c.window_ms {
                continue;
            }
            for j in k + 1..=k + m {
                // An exclusion seen since its from-step voids the chain at its to-step.
                if mask & !c.pending[j] != 0 {
                    break;
                }
                let seen_here = x & c.active[k] & c.pending[j];
                insert(&mut new[j - 1], (mask & c.pending[j]) | seen_here, start);
            }
        }
    };
    if starts {
        from_level(0, &[(0, t)], new);
    }
    if let Some(old) = old {
        for (k, chains) in old.iter().enumerate() {
            if !chains.is_empty() {
                from_level(k + 1, chains, new);
            }
        }
    }
}

/// Marks the exclusions `x` (events at a later time than every chain's from-step) on the
/// chains waiting for their to-step.
fn taint(c: &Compiled<'_>, levels: &mut Levels, x: u16) {
    for (k, chains) in levels.iter_mut().enumerate() {
        let add = x & c.active[k + 1] & c.pending[k + 1];
        if add == 0 || chains.is_empty() {
            continue;
        }
        let old = std::mem::take(chains);
        for (mask, start) in old {
            insert(chains, mask | add, start);
        }
    }
}

/// Adds a chain unless one with fewer exclusions seen and a later start exists; drops the
/// chains it dominates.
fn insert(chains: &mut Vec<Chain>, mask: u16, start: i64) {
    if chains.iter().any(|&(m, s)| m & !mask == 0 && s >= start) {
        return;
    }
    chains.retain(|&(m, s)| !(mask & !m == 0 && start >= s));
    chains.push((mask, start));
}
