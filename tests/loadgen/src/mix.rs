//! The weighted mix of event names, as given by `--events signup:1,page_viewed:8,purchase:1`.

use std::fmt;
use std::str::FromStr;

use rand::Rng;
use rand::distr::Distribution;
use rand::distr::weighted::WeightedIndex;

/// The mix used when `--events` is not given: mostly page views, a few conversions.
pub const DEFAULT_MIX: &str = "page_viewed:60,button_clicked:20,login:10,signup:5,purchase:5";

/// Event names with relative weights.
#[derive(Debug, Clone)]
pub struct EventMix {
    names: Vec<String>,
    weights: Vec<u32>,
    index: WeightedIndex<u32>,
}

/// Why an `--events` value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidEventMix(String);

impl fmt::Display for InvalidEventMix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (expected name:weight,... such as signup:1,page_viewed:8)", self.0)
    }
}

impl std::error::Error for InvalidEventMix {}

impl EventMix {
    /// The names and weights, in the order given.
    pub fn entries(&self) -> impl Iterator<Item = (&str, u32)> {
        self.names.iter().map(String::as_str).zip(self.weights.iter().copied())
    }

    /// One name, drawn by weight.
    pub fn pick<R: Rng + ?Sized>(&self, rng: &mut R) -> &str {
        &self.names[self.index.sample(rng)]
    }
}

impl FromStr for EventMix {
    type Err = InvalidEventMix;

    /// Parses `name[:weight],...`; a missing weight is 1, a weight of 0 drops the name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut names: Vec<String> = Vec::new();
        let mut weights = Vec::new();
        for item in s.split(',').map(str::trim).filter(|item| !item.is_empty()) {
            let (name, weight) = match item.rsplit_once(':') {
                Some((name, weight)) => {
                    let weight = weight.trim().parse::<u32>().map_err(|_| {
                        InvalidEventMix(format!("weight {weight:?} of {name:?} is not a whole number"))
                    })?;
                    (name.trim(), weight)
                }
                None => (item, 1),
            };
            if name.is_empty() {
                return Err(InvalidEventMix(format!("{item:?} has no event name")));
            }
            if names.iter().any(|known| known == name) {
                return Err(InvalidEventMix(format!("event {name:?} is listed twice")));
            }
            names.push(name.to_string());
            weights.push(weight);
        }
        if weights.iter().all(|w| *w == 0) {
            return Err(InvalidEventMix(format!("{s:?} names no event with a weight above 0")));
        }
        let index =
            WeightedIndex::new(&weights).map_err(|e| InvalidEventMix(format!("weights of {s:?}: {e}")))?;
        Ok(EventMix { names, weights, index })
    }
}

impl fmt::Display for EventMix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.entries().map(|(name, weight)| format!("{name}:{weight}")).collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn parse(s: &str) -> Result<EventMix, InvalidEventMix> {
        s.parse()
    }

    #[test]
    fn parses_names_and_weights_in_order() {
        let mix = parse("signup:1, page_viewed:8 ,purchase:1").expect("valid mix");
        let entries: Vec<_> = mix.entries().collect();
        assert_eq!(entries, [("signup", 1), ("page_viewed", 8), ("purchase", 1)]);
        assert_eq!(mix.to_string(), "signup:1,page_viewed:8,purchase:1");
    }

    #[test]
    fn a_missing_weight_is_one() {
        let mix = parse("a,b:3").expect("valid mix");
        assert_eq!(mix.entries().collect::<Vec<_>>(), [("a", 1), ("b", 3)]);
    }

    #[test]
    fn the_default_mix_parses() {
        assert!(parse(DEFAULT_MIX).expect("valid mix").entries().count() >= 3);
    }

    #[test]
    fn refuses_bad_mixes_with_the_reason() {
        let cases = [
            ("", "no event with a weight above 0"),
            ("a:0,b:0", "no event with a weight above 0"),
            ("a:x", "not a whole number"),
            ("a:-1", "not a whole number"),
            (":3", "has no event name"),
            ("a:1,a:2", "listed twice"),
        ];
        for (input, reason) in cases {
            let err = parse(input).expect_err(input).to_string();
            assert!(err.contains(reason), "{input:?}: {err}");
        }
    }

    #[test]
    fn picks_follow_the_weights() {
        let mix = parse("rare:1,common:9,never:0").expect("valid mix");
        let mut rng = StdRng::seed_from_u64(7);
        let n = 20_000;
        let common = (0..n).filter(|_| mix.pick(&mut rng) == "common").count();
        let never = (0..n).filter(|_| mix.pick(&mut rng) == "never").count();
        assert_eq!(never, 0);
        let share = common as f64 / n as f64;
        assert!((0.87..0.93).contains(&share), "common share {share}");
    }
}
