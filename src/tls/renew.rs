//! When a node certificate should be renewed: at a random point between 50%
//! and 80% of its life, as Swarm does. The randomness spreads renewals out,
//! so a cluster whose nodes all joined at once does not hit the CA at once,
//! and the 20% left at the end leaves room for retries while a manager is
//! unreachable. A pure function; the loop that sleeps until then is the
//! daemon's.

use std::time::SystemTime;

use rand::Rng;

/// The share of a certificate's life after which renewal may start.
const EARLIEST: f64 = 0.5;
/// The share of its life by which renewal should have started.
const LATEST: f64 = 0.8;

/// A random instant in `[not_before + 50% of life, not_before + 80% of life)`.
/// A certificate with no life at all (not_after ≤ not_before) is due at
/// once: `not_before` is returned.
pub fn renew_at<R: Rng + ?Sized>(
    not_before: SystemTime,
    not_after: SystemTime,
    rng: &mut R,
) -> SystemTime {
    let Ok(life) = not_after.duration_since(not_before) else {
        return not_before;
    };
    if life.is_zero() {
        return not_before;
    }
    let share = rng.random_range(EARLIEST..LATEST);
    not_before + life.mul_f64(share)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn always_between_half_and_four_fifths_of_the_life() {
        let mut rng = StdRng::seed_from_u64(7);
        let nb = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let life = Duration::from_secs(90 * 24 * 3600);
        let (lo, hi) = (nb + life / 2, nb + life.mul_f64(0.8));
        let mut min = hi;
        let mut max = lo;
        for _ in 0..10_000 {
            let at = renew_at(nb, nb + life, &mut rng);
            assert!(at >= lo && at < hi, "{at:?}");
            min = min.min(at);
            max = max.max(at);
        }
        // Spread over the window, not stuck at one point: with 10,000 draws
        // both ends come within 1% of the life.
        assert!(min < lo + life / 100, "min {min:?}");
        assert!(max > hi - life / 100, "max {max:?}");
    }

    #[test]
    fn a_one_minute_cert_renews_between_30_and_48_seconds() {
        let mut rng = StdRng::seed_from_u64(1);
        let nb = SystemTime::now();
        for _ in 0..100 {
            let at = renew_at(nb, nb + Duration::from_secs(60), &mut rng);
            let after = at.duration_since(nb).unwrap();
            assert!(after >= Duration::from_secs(30) && after < Duration::from_secs(48));
        }
    }

    #[test]
    fn a_cert_with_no_life_is_due_at_once() {
        let mut rng = StdRng::seed_from_u64(3);
        let t = UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(renew_at(t, t, &mut rng), t);
        assert_eq!(renew_at(t, t - Duration::from_secs(5), &mut rng), t);
    }

    #[test]
    fn same_seed_same_instant() {
        let nb = UNIX_EPOCH;
        let na = nb + Duration::from_secs(3600);
        let a = renew_at(nb, na, &mut StdRng::seed_from_u64(42));
        let b = renew_at(nb, na, &mut StdRng::seed_from_u64(42));
        assert_eq!(a, b);
    }
}
