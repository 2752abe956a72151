//! When the auditor writes a snapshot, and what a change means for enforcement history.

use super::seats::SeatCount;

/// At most one snapshot write per server per this long, except a limit crossing.
pub const DEBOUNCE_MS: i64 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub count: SeatCount,
    pub seat_limit: u64,
    pub at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteDecision {
    /// Write now (first count, a limit crossing, or the debounce window has passed).
    Now,
    /// Changed, but written less than a second ago: write at this time.
    At(i64),
    /// Nothing a reader could see changed.
    Nothing,
}

pub fn is_over(count: &SeatCount, limit: u64) -> bool {
    count.seats_used > limit
}

pub fn write_decision(
    last: Option<&Written>,
    count: &SeatCount,
    seat_limit: u64,
    now_ms: i64,
) -> WriteDecision {
    let Some(last) = last else {
        return WriteDecision::Now;
    };
    if last.count == *count && last.seat_limit == seat_limit {
        return WriteDecision::Nothing;
    }
    if is_over(&last.count, last.seat_limit) != is_over(count, seat_limit) {
        return WriteDecision::Now;
    }
    let due = last.at_ms + DEBOUNCE_MS;
    if now_ms >= due {
        WriteDecision::Now
    } else {
        WriteDecision::At(due)
    }
}

/// Enforcement state for the pause/resume history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitState {
    Unknown,
    Under,
    Over,
}

impl LimitState {
    pub fn of(count: &SeatCount, limit: u64) -> Self {
        if is_over(count, limit) {
            LimitState::Over
        } else {
            LimitState::Under
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LimitState::Unknown => "unknown",
            LimitState::Under => "under",
            LimitState::Over => "over",
        }
    }
}

/// Next time the server should be looked at: 60 s, or 30 s while over the limit.
pub fn next_check_after(now_ms: i64, over: bool, recheck_ms: i64, recheck_over_ms: i64) -> i64 {
    now_ms + if over { recheck_over_ms } else { recheck_ms }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(n: u64) -> SeatCount {
        SeatCount {
            seats_used: n,
            ..Default::default()
        }
    }

    #[test]
    fn first_count_is_written_at_once() {
        assert_eq!(write_decision(None, &c(3), 5, 0), WriteDecision::Now);
    }

    #[test]
    fn changes_within_a_second_are_debounced_but_a_crossing_is_not() {
        let last = Written {
            count: c(3),
            seat_limit: 5,
            at_ms: 10_000,
        };
        assert_eq!(
            write_decision(Some(&last), &c(4), 5, 10_200),
            WriteDecision::At(11_000)
        );
        assert_eq!(
            write_decision(Some(&last), &c(6), 5, 10_200),
            WriteDecision::Now
        );
        assert_eq!(
            write_decision(Some(&last), &c(4), 5, 11_000),
            WriteDecision::Now
        );
        assert_eq!(
            write_decision(Some(&last), &c(3), 5, 10_200),
            WriteDecision::Nothing
        );
        // A lowered limit is a crossing too.
        assert_eq!(
            write_decision(Some(&last), &c(3), 2, 10_200),
            WriteDecision::Now
        );
    }

    #[test]
    fn over_limit_servers_are_rechecked_sooner() {
        assert_eq!(next_check_after(0, false, 60_000, 30_000), 60_000);
        assert_eq!(next_check_after(0, true, 60_000, 30_000), 30_000);
    }

    #[test]
    fn at_the_limit_is_under() {
        assert_eq!(LimitState::of(&c(5), 5), LimitState::Under);
        assert_eq!(LimitState::of(&c(6), 5), LimitState::Over);
    }
}
