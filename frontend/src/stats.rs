//! What the lag panel shows for one transport, over a rolling 30-second window: lag
//! percentiles, updates, requests and bytes per second, the shares of empty answers, and what
//! the transport costs on the wire (the server's count of its meter, [`WireReport`]), per
//! second and per delivered tick.
//! Plain Rust over timestamps the caller passes, so it is tested without a browser.

use std::collections::{BTreeMap, VecDeque};

use tickscope_shared::lag::{LagSummary, LagWindow};
use tickscope_shared::wire::WireReport;

/// The window every figure is taken over.
pub const WINDOW_US: i64 = 30_000_000;
/// How far back the lag-over-time plot goes.
pub const PLOT_US: i64 = 60_000_000;

/// A sum over the last [`WINDOW_US`].
#[derive(Debug, Clone, Default)]
pub struct Rolling {
    items: VecDeque<(i64, u64)>,
    sum: u64,
}

impl Rolling {
    pub fn add(&mut self, at_us: i64, amount: u64) {
        self.items.push_back((at_us, amount));
        self.sum += amount;
    }

    pub fn expire(&mut self, now_us: i64) {
        while let Some(&(at, amount)) = self.items.front() {
            if now_us - at <= WINDOW_US {
                break;
            }
            self.items.pop_front();
            self.sum -= amount;
        }
    }

    pub fn sum(&self) -> u64 {
        self.sum
    }
}

/// Where a transport's connection stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ConnState {
    Connecting,
    Live,
    /// Connected, but nothing (data or heartbeat) came for longer than the transport allows.
    Stalled,
    /// Waiting `retry_in_ms` before attempt `attempt`.
    Reconnecting {
        attempt: u32,
        retry_in_ms: u32,
    },
}

impl ConnState {
    pub fn label(&self) -> String {
        match self {
            Self::Connecting => "connecting".into(),
            Self::Live => "live".into(),
            Self::Stalled => "stalled".into(),
            Self::Reconnecting {
                attempt,
                retry_in_ms,
            } => {
                format!(
                    "reconnecting (attempt {attempt}, in {:.1} s)",
                    *retry_in_ms as f64 / 1000.0
                )
            }
        }
    }
}

/// Everything the panel shows, computed at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsView {
    pub lag: Option<LagSummary>,
    pub updates_per_s: f64,
    pub requests_per_s: f64,
    pub bytes_per_s: f64,
    /// Empty answers among polls (polling) or long polls answered at their timeout.
    pub empty_share: Option<f64>,
    pub timeout_share: Option<f64>,
    pub reconnects: u64,
    pub state: ConnState,
    pub ticks: u64,
    /// What the transport put on the wire, once the server has reported it.
    pub wire: Option<WireView>,
}

/// A transport's wire cost over the window: TCP payload bytes both ways (heads, framing,
/// handshakes, clock exchanges), counted by the server, and its HTTP requests.
#[derive(Debug, Clone, PartialEq)]
pub struct WireView {
    pub down_per_s: f64,
    pub up_per_s: f64,
    /// `None` while no tick was delivered in the window.
    pub down_per_tick: Option<f64>,
    pub up_per_tick: Option<f64>,
    pub requests_per_tick: Option<f64>,
    /// The totals since the transport started, summed over the edges that counted them;
    /// `edge` names the one that reported last.
    pub total: WireReport,
    /// Every edge that has counted some of this transport's bytes: behind a balancer each
    /// counts only what crossed its own sockets.
    pub edges: Vec<String>,
}

/// One wire report as the page got it: when, what, and how many ticks had come by then.
#[derive(Debug, Clone)]
struct WireSample {
    at_us: i64,
    report: WireReport,
    ticks: u64,
}

/// The running figures of one transport.
#[derive(Debug, Clone)]
pub struct TransportStats {
    started_us: i64,
    lag: LagWindow,
    ticks: Rolling,
    requests: Rolling,
    bytes: Rolling,
    answers: Rolling,
    empty: Rolling,
    timeouts: Rolling,
    reconnects: u64,
    total_ticks: u64,
    /// Every tick delivered, with or without a lag (none before the clock is measured).
    delivered: u64,
    /// The wire reports of the window, and the last one before it as the baseline, each
    /// summed over the edges.
    wire: VecDeque<WireSample>,
    /// The latest report of each edge (by `edge`; "" for an unnamed one).
    edges: BTreeMap<String, WireReport>,
    state: ConnState,
    last_heard_us: i64,
    /// Silence after which a live connection counts as stalled.
    stall_after_us: i64,
    /// (receive time, mean lag of the batch) for the lag-over-time plot.
    points: VecDeque<(i64, i64)>,
}

impl TransportStats {
    pub fn new(now_us: i64, stall_after_us: i64) -> Self {
        Self {
            started_us: now_us,
            lag: LagWindow::new(WINDOW_US),
            ticks: Rolling::default(),
            requests: Rolling::default(),
            bytes: Rolling::default(),
            answers: Rolling::default(),
            empty: Rolling::default(),
            timeouts: Rolling::default(),
            reconnects: 0,
            total_ticks: 0,
            delivered: 0,
            // Nothing was spent before the transport started.
            wire: VecDeque::from([WireSample {
                at_us: now_us,
                report: WireReport::default(),
                ticks: 0,
            }]),
            edges: BTreeMap::new(),
            state: ConnState::Connecting,
            last_heard_us: now_us,
            stall_after_us,
            points: VecDeque::new(),
        }
    }

    /// How long the transport has been trying to connect for the first time at `now_us`;
    /// zero once it has connected.
    pub fn connecting_for_us(&self, now_us: i64) -> i64 {
        match self.state {
            ConnState::Connecting => now_us - self.started_us,
            _ => 0,
        }
    }

    /// A batch arrived at `at_us` (client clock); `apart_us` has, for each of its ticks, the
    /// receive time minus the tick's server timestamp, on the two clocks as they are. Adding
    /// the clock offset ([`TransportStats::view`]) makes them lags.
    pub fn batch(&mut self, at_us: i64, apart_us: &[i64], bytes: usize) {
        let ticks = apart_us.len();
        self.delivered += ticks as u64;
        for &apart in apart_us {
            self.lag.record(at_us, apart);
        }
        if ticks > 0 {
            let mean = apart_us.iter().sum::<i64>() / ticks as i64;
            self.points.push_back((at_us, mean));
        }
        self.ticks.add(at_us, ticks as u64);
        self.total_ticks += ticks as u64;
        self.bytes.add(at_us, bytes as u64);
        self.heard(at_us);
    }

    /// An edge reported the transport's wire totals (its own share, behind a balancer).
    pub fn wire(&mut self, at_us: i64, report: WireReport) {
        let edge = report.edge.clone().unwrap_or_default();
        if self
            .edges
            .get(&edge)
            .is_some_and(|last| last.at >= report.at && report.at != 0)
        {
            // An older report that came late (answers on several connections).
            return;
        }
        let mut total = WireReport {
            edge: report.edge.clone(),
            ..WireReport::default()
        };
        self.edges.insert(edge, report);
        for each in self.edges.values() {
            total.up += each.up;
            total.down += each.down;
            total.requests += each.requests;
            total.at = total.at.max(each.at);
        }
        self.wire.push_back(WireSample {
            at_us,
            report: total,
            ticks: self.delivered,
        });
    }

    /// An HTTP request went out.
    pub fn request(&mut self, at_us: i64) {
        self.requests.add(at_us, 1);
    }

    /// An HTTP poll was answered; `empty` when it had no ticks, `timed_out` for a long poll
    /// answered at its timeout.
    pub fn answer(&mut self, at_us: i64, empty: bool, timed_out: bool) {
        self.answers.add(at_us, 1);
        self.empty.add(at_us, u64::from(empty));
        self.timeouts.add(at_us, u64::from(timed_out));
    }

    /// Something (data, heartbeat, pong) came: the connection is alive.
    pub fn heard(&mut self, at_us: i64) {
        self.last_heard_us = at_us;
        self.state = ConnState::Live;
    }

    pub fn bytes(&mut self, at_us: i64, bytes: usize) {
        self.bytes.add(at_us, bytes as u64);
    }

    pub fn reconnecting(&mut self, attempt: u32, retry_in_ms: u32) {
        self.reconnects += 1;
        self.state = ConnState::Reconnecting {
            attempt,
            retry_in_ms,
        };
    }

    /// The lag-over-time points of the last [`PLOT_US`], with the clock offset `offset_us`.
    pub fn points(&self, offset_us: i64) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.points
            .iter()
            .map(move |&(at, apart)| (at, apart + offset_us))
    }

    /// Forgets what fell out of the windows and computes the figures at `now_us`. Lags are
    /// shown only once the clock offset is known, and all with the best offset known now:
    /// it is one clock difference, so a better estimate is better for the earlier ticks too.
    pub fn view(&mut self, now_us: i64, offset_us: Option<i64>) -> StatsView {
        self.lag.expire(now_us);
        for rolling in [
            &mut self.ticks,
            &mut self.requests,
            &mut self.bytes,
            &mut self.answers,
            &mut self.empty,
            &mut self.timeouts,
        ] {
            rolling.expire(now_us);
        }
        while self
            .points
            .front()
            .is_some_and(|&(at, _)| now_us - at > PLOT_US)
        {
            self.points.pop_front();
        }
        let span_s = ((now_us - self.started_us).clamp(1, WINDOW_US)) as f64 / 1e6;
        let share = |part: &Rolling| {
            (self.answers.sum() > 0).then(|| part.sum() as f64 / self.answers.sum() as f64)
        };
        // Keep one report from before the window as the baseline.
        while self.wire.len() > 2 && now_us - self.wire[1].at_us > WINDOW_US {
            self.wire.pop_front();
        }
        let wire = self.wire_view();
        let state = match self.state {
            ConnState::Live if now_us - self.last_heard_us > self.stall_after_us => {
                ConnState::Stalled
            }
            state => state,
        };
        StatsView {
            lag: offset_us.and_then(|offset| Some(self.lag.summary()?.shifted(offset))),
            updates_per_s: self.ticks.sum() as f64 / span_s,
            requests_per_s: self.requests.sum() as f64 / span_s,
            bytes_per_s: self.bytes.sum() as f64 / span_s,
            empty_share: share(&self.empty),
            timeout_share: share(&self.timeouts),
            reconnects: self.reconnects,
            state,
            ticks: self.total_ticks,
            wire,
        }
    }

    /// The cost between the window's baseline and the latest report.
    fn wire_view(&self) -> Option<WireView> {
        let (first, last) = (self.wire.front()?, self.wire.back()?);
        if self.wire.len() < 2 {
            return None;
        }
        let span_s = ((last.at_us - first.at_us).max(1)) as f64 / 1e6;
        let down = last.report.down.saturating_sub(first.report.down) as f64;
        let up = last.report.up.saturating_sub(first.report.up) as f64;
        let requests = last.report.requests.saturating_sub(first.report.requests) as f64;
        let ticks = last.ticks.saturating_sub(first.ticks);
        let per_tick = |amount: f64| (ticks > 0).then(|| amount / ticks as f64);
        Some(WireView {
            down_per_s: down / span_s,
            up_per_s: up / span_s,
            down_per_tick: per_tick(down),
            up_per_tick: per_tick(up),
            requests_per_tick: per_tick(requests),
            total: last.report.clone(),
            edges: self
                .edges
                .keys()
                .filter(|edge| !edge.is_empty())
                .cloned()
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    #[test]
    fn rates_are_per_second_over_the_time_seen() {
        let mut stats = TransportStats::new(0, 5 * S);
        for second in 0..10 {
            stats.request(second * S);
            stats.batch(second * S + 1, &[1_000, 3_000], 200);
            stats.answer(second * S + 1, false, false);
        }
        let view = stats.view(10 * S, Some(0));
        assert_eq!(view.ticks, 20);
        assert!((view.updates_per_s - 2.0).abs() < 1e-9);
        assert!((view.requests_per_s - 1.0).abs() < 1e-9);
        assert!((view.bytes_per_s - 200.0).abs() < 1e-9);
        assert_eq!(view.empty_share, Some(0.0));
        let lag = view.lag.unwrap();
        assert_eq!(
            (lag.p50_us, lag.max_us, lag.current_us),
            (1_000, 3_000, 3_000)
        );
    }

    #[test]
    fn old_samples_leave_the_window() {
        let mut stats = TransportStats::new(0, 5 * S);
        stats.batch(0, &[9_000], 100);
        stats.batch(40 * S, &[1_000], 100);
        let view = stats.view(40 * S, Some(0));
        assert_eq!(view.lag.unwrap().max_us, 1_000);
        assert!((view.updates_per_s - 1.0 / 30.0).abs() < 1e-9);
    }

    fn report(at_s: i64, up: u64, down: u64, requests: u64) -> WireReport {
        WireReport {
            up,
            down,
            requests,
            at: at_s * S,
            edge: None,
        }
    }

    #[test]
    fn wire_costs_are_per_second_and_per_delivered_tick() {
        let mut stats = TransportStats::new(0, 5 * S);
        assert_eq!(stats.view(0, Some(0)).wire, None, "nothing reported yet");
        for second in 1..=10u64 {
            // Ten ticks a second.
            stats.batch(second as i64 * S, &[0; 10], 500);
            stats.wire(
                second as i64 * S,
                report(second as i64, 700 * second, 1_000 * second, 2 * second),
            );
        }
        let wire = stats.view(10 * S, Some(0)).wire.expect("reported");
        assert!((wire.down_per_s - 1_000.0).abs() < 1e-9, "{wire:?}");
        assert!((wire.up_per_s - 700.0).abs() < 1e-9);
        assert_eq!(wire.down_per_tick, Some(100.0));
        assert_eq!(wire.up_per_tick, Some(70.0));
        assert_eq!(wire.requests_per_tick, Some(0.2));
        assert_eq!(wire.total, report(10, 7_000, 10_000, 20));
        assert!(wire.edges.is_empty());

        // A late report older than the last is ignored; the window moves on.
        stats.wire(11 * S, report(9, 1, 1, 1));
        stats.wire(50 * S, report(50, 7_000, 14_000, 20));
        let wire = stats.view(50 * S, Some(0)).wire.expect("reported");
        assert_eq!(wire.down_per_tick, None, "no tick since the baseline");
        assert!((wire.down_per_s - 4_000.0 / 40.0).abs() < 1e-9, "{wire:?}");
    }

    #[test]
    fn behind_a_balancer_each_edges_share_is_added_up() {
        let mut stats = TransportStats::new(0, 5 * S);
        let on = |edge: &str, report: WireReport| WireReport {
            edge: Some(edge.into()),
            ..report
        };
        stats.batch(S, &[0; 10], 500);
        stats.wire(S, on("a", report(1, 100, 1_000, 1)));
        stats.batch(2 * S, &[0; 10], 500);
        stats.wire(2 * S, on("b", report(2, 100, 1_000, 1)));
        stats.batch(3 * S, &[0; 10], 500);
        stats.wire(3 * S, on("a", report(3, 200, 2_000, 2)));
        // A's report of second 1 arriving late changes nothing.
        stats.wire(3 * S, on("a", report(1, 100, 1_000, 1)));
        let wire = stats.view(3 * S, Some(0)).wire.expect("reported");
        assert_eq!(wire.total.down, 3_000);
        assert_eq!(wire.total.requests, 3);
        assert_eq!(wire.total.edge.as_deref(), Some("a"));
        assert_eq!(wire.edges, ["a", "b"]);
        assert_eq!(wire.down_per_tick, Some(100.0), "{wire:?}");
    }

    #[test]
    fn shares_of_empty_polls_and_timeouts() {
        let mut stats = TransportStats::new(0, 5 * S);
        stats.answer(1, true, false);
        stats.answer(2, true, true);
        stats.answer(3, false, false);
        stats.answer(4, false, false);
        let view = stats.view(5, Some(0));
        assert_eq!(view.empty_share, Some(0.5));
        assert_eq!(view.timeout_share, Some(0.25));
        assert_eq!(TransportStats::new(0, S).view(1, Some(0)).empty_share, None);
    }

    #[test]
    fn silence_turns_live_into_stalled() {
        let mut stats = TransportStats::new(0, 2 * S);
        assert_eq!(stats.view(0, Some(0)).state, ConnState::Connecting);
        stats.heard(S);
        assert_eq!(stats.view(2 * S, Some(0)).state, ConnState::Live);
        assert_eq!(stats.view(4 * S, Some(0)).state, ConnState::Stalled);
        stats.reconnecting(1, 500);
        assert_eq!(stats.view(4 * S, Some(0)).reconnects, 1);
        assert_eq!(
            stats.view(4 * S, Some(0)).state.label(),
            "reconnecting (attempt 1, in 0.5 s)"
        );
    }
}
