//! Round-trip time estimation and the retransmission timeout, after RFC 6298.

use std::time::Duration;

/// Smoothed RTT and its variance, fed with samples from fragments that were sent once.
#[derive(Debug, Clone, Default)]
pub struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
}

/// Clock granularity term of RFC 6298 (G): keeps the RTO above the RTT on a very steady link.
const GRANULARITY: Duration = Duration::from_millis(1);

impl RttEstimator {
    /// Folds in one measurement (RFC 6298 section 2).
    pub fn sample(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
    }

    /// The smoothed RTT, once there is a sample.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// The retransmission timeout before backoff, clamped to `[min, max]`.
    pub fn rto(&self, initial: Duration, min: Duration, max: Duration) -> Duration {
        match self.srtt {
            None => initial,
            Some(srtt) => (srtt + (self.rttvar * 4).max(GRANULARITY)).clamp(min, max),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn follows_rfc6298() {
        let mut rtt = RttEstimator::default();
        assert_eq!(rtt.rto(300 * MS, MS, 60_000 * MS), 300 * MS);
        rtt.sample(100 * MS);
        // First sample: SRTT = R, RTTVAR = R/2, RTO = SRTT + 4 RTTVAR.
        assert_eq!(rtt.rto(300 * MS, MS, 60_000 * MS), 300 * MS);
        rtt.sample(100 * MS);
        assert_eq!(rtt.srtt(), Some(100 * MS));
        // RTTVAR = 3/4 * 50 + 1/4 * 0 = 37.5 ms.
        assert_eq!(rtt.rto(300 * MS, MS, 60_000 * MS), 250 * MS);
        assert_eq!(rtt.rto(300 * MS, 400 * MS, 60_000 * MS), 400 * MS);
    }
}
