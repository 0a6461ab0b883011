//! Order statistics of a figure's samples: median and p99 by nearest rank, so every
//! number reported is one that was measured (or, for an even count, the mean of the
//! two middle ones), never an interpolation between runs.

use serde::Serialize;

/// What the table and the JSON summary say about one handler's samples of one figure.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Summary {
    pub n: usize,
    pub median: f64,
    pub p99: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
}

impl Summary {
    /// The summary of `samples`; `None` when there are none.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        let sorted = sorted(samples);
        let n = sorted.len();
        Some(Summary {
            n,
            median: median_of_sorted(&sorted)?,
            p99: percentile_of_sorted(&sorted, 99.0)?,
            min: *sorted.first()?,
            max: *sorted.last()?,
            mean: sorted.iter().sum::<f64>() / n as f64,
        })
    }
}

/// The median: the middle sample, or the mean of the two middle ones.
pub fn median(samples: &[f64]) -> Option<f64> {
    median_of_sorted(&sorted(samples))
}

/// The `p`-th percentile by nearest rank: the smallest sample with at least `p`% of
/// the samples at or below it. With fewer than 100 samples p99 is the maximum.
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    percentile_of_sorted(&sorted(samples), p)
}

fn sorted(samples: &[f64]) -> Vec<f64> {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

fn median_of_sorted(v: &[f64]) -> Option<f64> {
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

fn percentile_of_sorted(v: &[f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[7.0]), Some(7.0));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn p99_with_few_samples_is_the_maximum() {
        assert_eq!(percentile(&[], 99.0), None);
        assert_eq!(percentile(&[5.0], 99.0), Some(5.0));
        assert_eq!(percentile(&[2.0, 9.0, 4.0], 99.0), Some(9.0));
        let thirty: Vec<f64> = (1..=30).map(f64::from).collect();
        assert_eq!(percentile(&thirty, 99.0), Some(30.0));
    }

    #[test]
    fn p99_by_nearest_rank_with_many_samples() {
        let hundred: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentile(&hundred, 99.0), Some(99.0));
        let two_hundred: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(percentile(&two_hundred, 99.0), Some(198.0));
        assert_eq!(percentile(&two_hundred, 50.0), Some(100.0));
        assert_eq!(percentile(&two_hundred, 0.0), Some(1.0));
    }

    #[test]
    fn summary_of_samples() {
        let s = Summary::of(&[10.0, 30.0, 20.0, 40.0]).unwrap();
        assert_eq!(s.n, 4);
        assert_eq!(
            (s.median, s.p99, s.min, s.max, s.mean),
            (25.0, 40.0, 10.0, 40.0, 25.0)
        );
        assert_eq!(Summary::of(&[]), None);
    }
}
