//! Simulated time. The fleet lives on a clock that starts in the past and runs `accel`
//! times faster than real time until it reaches the present, then follows real time: a
//! school week can be replayed in minutes, and no device ever reports a time in the
//! future (the server would refuse it).
//!
//! School hours are judged in metropolitan France's winter time (UTC+1, fixed): the
//! simulator needs plausible days, not a time-zone database. This module must never
//! sleep or read anything but the system clock.

use std::time::Duration;

use chrono::{DateTime, Datelike as _, FixedOffset, NaiveTime, TimeDelta, Utc};

/// Local time of the simulated schools.
pub fn local_offset() -> FixedOffset {
    FixedOffset::east_opt(3600).expect("UTC+1 is a valid offset")
}

#[derive(Debug, Clone)]
pub struct SimClock {
    sim_start: DateTime<Utc>,
    real_start: tokio::time::Instant,
    accel: f64,
}

impl SimClock {
    /// A clock showing `sim_start` now and running `accel` times faster than real time.
    pub fn new(sim_start: DateTime<Utc>, accel: f64) -> Self {
        Self {
            sim_start,
            real_start: tokio::time::Instant::now(),
            accel: accel.max(1.0),
        }
    }

    /// Starts at local midnight of the Monday at least `days` days before `now`.
    pub fn monday_before(now: DateTime<Utc>, days: i64) -> DateTime<Utc> {
        let local = (now - TimeDelta::days(days)).with_timezone(&local_offset());
        let back = i64::from(local.weekday().num_days_from_monday());
        let monday = local.date_naive() - TimeDelta::days(back);
        monday
            .and_time(NaiveTime::MIN)
            .and_local_timezone(local_offset())
            .single()
            .expect("a fixed offset has no gaps")
            .with_timezone(&Utc)
    }

    pub fn accel(&self) -> f64 {
        self.accel
    }

    pub fn sim_start(&self) -> DateTime<Utc> {
        self.sim_start
    }

    /// Simulated time after `elapsed` real time, before capping at the present.
    pub fn at(&self, elapsed: Duration) -> DateTime<Utc> {
        let ms = (elapsed.as_secs_f64() * 1000.0 * self.accel).min(1e15) as i64;
        self.sim_start + TimeDelta::milliseconds(ms)
    }

    /// The simulated present: never later than the real present.
    pub fn now(&self) -> DateTime<Utc> {
        self.at(self.real_start.elapsed()).min(Utc::now())
    }

    /// Real time to wait until the clock shows `target`.
    pub fn real_delay_until(&self, target: DateTime<Utc>) -> Duration {
        let sim_now = self.now();
        if target <= sim_now {
            return Duration::ZERO;
        }
        let real_now = Utc::now();
        let accelerated = (target.min(real_now) - sim_now).max(TimeDelta::zero());
        let real = (target - real_now).max(TimeDelta::zero());
        let secs = accelerated.as_seconds_f64() / self.accel + real.as_seconds_f64();
        Duration::from_secs_f64(secs.max(0.0))
    }

    /// Sleeps until the clock shows `target`.
    pub async fn sleep_until(&self, target: DateTime<Utc>) {
        // Re-check after waking: the acceleration ends when the clock reaches the present.
        loop {
            let d = self.real_delay_until(target);
            if d.is_zero() {
                return;
            }
            tokio::time::sleep(d.min(Duration::from_secs(60))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Weekday;

    #[test]
    fn the_simulated_week_starts_on_a_local_monday_midnight_in_the_past() {
        let now: DateTime<Utc> = "2026-11-25T16:30:00Z".parse().unwrap();
        let start = SimClock::monday_before(now, 7);
        let local = start.with_timezone(&local_offset());
        assert_eq!(local.weekday(), Weekday::Mon);
        assert_eq!(local.time(), NaiveTime::MIN);
        assert_eq!(start.to_rfc3339(), "2026-11-15T23:00:00+00:00");
    }

    #[tokio::test]
    async fn accelerated_time_runs_faster_and_never_passes_the_present() {
        let start = Utc::now() - TimeDelta::hours(1);
        let c = SimClock::new(start, 3600.0);
        assert_eq!(c.at(Duration::from_secs(1)), start + TimeDelta::hours(1));
        let d = c.real_delay_until(start + TimeDelta::minutes(30));
        assert!(d <= Duration::from_millis(510), "{d:?}");
        let later = c.real_delay_until(Utc::now() + TimeDelta::seconds(10));
        assert!(
            later >= Duration::from_secs(9),
            "past the present time is real: {later:?}"
        );
        assert!(c.now() <= Utc::now());
    }
}
