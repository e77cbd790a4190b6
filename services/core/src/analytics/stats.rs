//! The statistics the reports use, written out so their method is known: nearest-rank
//! percentiles, and the two-proportion comparison of breakdown variants.

use serde::{Deserialize, Serialize};

/// The nearest-rank percentile of sorted values: the smallest value with at least `p`
/// percent of the values at or below it (p = 0 gives the minimum). None when empty.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The complementary error function, by the Chebyshev fit of Numerical Recipes
/// (`erfcc`): fractional error below 1.2e-7 everywhere.
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// The standard normal CDF.
pub fn normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

/// The z value of a two-sided 95% interval.
pub const Z_95: f64 = 1.959_963_984_540_054;

/// A variant's conversion compared with the baseline's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProportionComparison {
    /// The variant's conversion rate minus the baseline's (e.g. 0.03 = 3 points better).
    pub difference: f64,
    /// The 95% confidence interval of the difference (Wald, unpooled standard error).
    pub ci_low: f64,
    pub ci_high: f64,
    /// The z statistic of the pooled two-proportion test.
    pub z: f64,
    /// The two-sided p-value of that test (normal approximation).
    pub p_value: f64,
}

/// Compares `x2` successes of `n2` (the variant) with `x1` of `n1` (the baseline) by the
/// normal approximation: the difference p2 - p1 with a 95% Wald interval, and the two-sided
/// pooled z-test. None when either group is empty. When both rates are 0 or both are 1 the
/// pooled variance is 0: z is 0 and the p-value 1 (no evidence of a difference).
pub fn compare_proportions(x1: u64, n1: u64, x2: u64, n2: u64) -> Option<ProportionComparison> {
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let (p1, p2) = (x1 as f64 / n1f, x2 as f64 / n2f);
    let difference = p2 - p1;
    let se = (p1 * (1.0 - p1) / n1f + p2 * (1.0 - p2) / n2f).sqrt();
    let pooled = (x1 + x2) as f64 / (n1f + n2f);
    let se_pooled = (pooled * (1.0 - pooled) * (1.0 / n1f + 1.0 / n2f)).sqrt();
    let (z, p_value) = if se_pooled > 0.0 {
        let z = difference / se_pooled;
        (z, erfc(z.abs() / std::f64::consts::SQRT_2).min(1.0))
    } else {
        (0.0, 1.0)
    };
    Some(ProportionComparison {
        difference,
        ci_low: difference - Z_95 * se,
        ci_high: difference + Z_95 * se,
        z,
        p_value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v = [15.0, 20.0, 35.0, 40.0, 50.0];
        assert_eq!(percentile(&v, 5.0), Some(15.0));
        assert_eq!(percentile(&v, 30.0), Some(20.0));
        assert_eq!(percentile(&v, 40.0), Some(20.0));
        assert_eq!(percentile(&v, 50.0), Some(35.0));
        assert_eq!(percentile(&v, 100.0), Some(50.0));
        assert_eq!(percentile(&v, 0.0), Some(15.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn normal_cdf_matches_tables() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(1.959_964) - 0.975).abs() < 1e-6);
        assert!((normal_cdf(-1.0) - 0.158_655_25).abs() < 1e-6);
        assert!((normal_cdf(3.0) - 0.998_650_10).abs() < 1e-6);
    }

    #[test]
    fn two_proportions_as_computed_by_hand() {
        // 200/1000 vs 250/1000: pooled p = 0.225, se = sqrt(0.225*0.775*0.002) = 0.018675,
        // z = 0.05/0.018675 = 2.6774, p = 0.00742; Wald se = sqrt(0.16/1000+0.1875/1000).
        let c = compare_proportions(200, 1000, 250, 1000).expect("both non-empty");
        assert!((c.difference - 0.05).abs() < 1e-12);
        assert!((c.z - 2.677_4).abs() < 1e-3, "z {}", c.z);
        assert!((c.p_value - 0.007_42).abs() < 1e-4, "p {}", c.p_value);
        let se = (0.16f64 / 1000.0 + 0.1875 / 1000.0).sqrt();
        assert!((c.ci_low - (0.05 - Z_95 * se)).abs() < 1e-12);
        assert!(c.ci_low > 0.0, "the interval excludes 0 at p < 0.05");
    }

    #[test]
    fn degenerate_groups() {
        assert_eq!(compare_proportions(0, 0, 1, 2), None);
        let same = compare_proportions(0, 10, 0, 20).expect("non-empty");
        assert_eq!((same.z, same.p_value, same.difference), (0.0, 1.0, 0.0));
    }
}
