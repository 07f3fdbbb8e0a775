//! The market simulation: Poisson tick arrivals, a geometric Brownian motion per symbol.
//!
//! One task owns the [`Simulator`] (and so its random generator) and is the only writer of the
//! feed. Given a seed, the sequence of drafts is reproducible; only the wall-clock times at
//! which they are published vary from run to run.

use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::weighted::WeightedIndex;
use rand_distr::{Distribution, Exp, Geometric, StandardNormal};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::feed::clock::now_us;
use crate::feed::symbols::Universe;
use crate::feed::{Feed, TickDraft};

/// Seconds in a trading year (252 days of 6.5 hours): the unit volatilities are quoted in.
const TRADING_YEAR_S: f64 = 252.0 * 6.5 * 3600.0;
/// Annual drift of every price; small next to the volatilities, as in a real market.
const DRIFT: f64 = 0.05;

/// The state of every symbol's price and the arrival process.
pub struct Simulator {
    rng: StdRng,
    prices: Vec<SymbolPrice>,
    pick_symbol: WeightedIndex<f64>,
    /// Inter-arrival times of the whole feed; `None` when the rate is 0 (paused).
    arrivals: Option<Exp<f64>>,
    lot_count: Geometric,
    /// Market seconds per real second.
    speed: f64,
}

struct SymbolPrice {
    price: f64,
    volatility: f64,
    spread_bps: f64,
    /// Real seconds since the start of the run when this symbol last ticked.
    last_s: f64,
}

impl Simulator {
    /// A simulator over `universe` at `rate` ticks per second. `rng` is the run's generator,
    /// already used to build the universe.
    pub fn new(universe: &Universe, rate: f64, speed: f64, rng: StdRng) -> Self {
        let prices = universe
            .listings()
            .iter()
            .map(|listing| SymbolPrice {
                price: listing.open,
                volatility: listing.volatility,
                spread_bps: listing.spread_bps,
                last_s: 0.0,
            })
            .collect();
        let pick_symbol = WeightedIndex::new(universe.listings().iter().map(|l| l.activity))
            .expect("every listing has a positive activity");
        Self {
            rng,
            prices,
            pick_symbol,
            arrivals: (rate > 0.0).then(|| Exp::new(rate).expect("rate is positive and finite")),
            lot_count: Geometric::new(0.35).expect("0.35 is a probability"),
            speed,
        }
    }

    /// A simulator seeded with `seed`, or from the OS when there is none.
    pub fn seeded_rng(seed: Option<u64>) -> StdRng {
        match seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        }
    }

    /// Goes on from these prices (symbol id, price) instead of the opening ones: a generator
    /// continuing a feed that is already in the broker.
    pub fn resume_prices(&mut self, prices: &[(u16, f64)]) {
        for &(id, price) in prices {
            if let Some(symbol) = self.prices.get_mut(id as usize) {
                symbol.price = price.max(0.01);
            }
        }
    }

    /// One quote per symbol at its opening price, so a snapshot is complete from the start.
    pub fn opening_quotes(&mut self) -> Vec<TickDraft> {
        (0..self.prices.len())
            .map(|id| self.quote(id as u16, 0))
            .collect()
    }

    /// Time until the next tick, or `None` when the feed is paused.
    pub fn next_arrival(&mut self) -> Option<Duration> {
        let arrivals = self.arrivals?;
        Some(Duration::from_secs_f64(arrivals.sample(&mut self.rng)))
    }

    /// The next tick, happening `at_s` real seconds after the start of the run.
    pub fn tick(&mut self, at_s: f64) -> TickDraft {
        let id = self.pick_symbol.sample(&mut self.rng);
        let symbol = &mut self.prices[id];
        let dt_years = (at_s - symbol.last_s).max(0.0) * self.speed / TRADING_YEAR_S;
        symbol.last_s = at_s;
        let shock: f64 = StandardNormal.sample(&mut self.rng);
        let sigma = symbol.volatility;
        symbol.price *=
            ((DRIFT - sigma * sigma / 2.0) * dt_years + sigma * dt_years.sqrt() * shock).exp();
        // A price under a cent would round to zero; real listings get delisted first.
        symbol.price = symbol.price.max(0.01);
        let lots = self.lot_count.sample(&mut self.rng) + 1;
        self.quote(id as u16, lots * 100)
    }

    fn quote(&self, id: u16, volume: u64) -> TickDraft {
        let symbol = &self.prices[id as usize];
        let half_spread = (symbol.price * symbol.spread_bps / 20_000.0).max(0.005);
        let bid = cents_down(symbol.price - half_spread).max(0.01);
        let ask = cents_up(symbol.price + half_spread).max(bid + 0.01);
        TickDraft {
            symbol_id: id,
            price: cents(symbol.price),
            bid: cents(bid),
            ask: cents(ask),
            volume,
        }
    }
}

fn cents(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

fn cents_down(value: f64) -> f64 {
    (value * 100.0).floor() / 100.0
}

fn cents_up(value: f64) -> f64 {
    (value * 100.0).ceil() / 100.0
}

/// Publishes the opening quotes at once, when called (so a server's snapshot is complete
/// before it takes a request, whichever thread serves it), and returns the simulation to run.
pub fn start(
    mut simulator: Simulator,
    feed: Feed,
    shutdown: CancellationToken,
) -> impl Future<Output = ()> {
    feed.publish(&simulator.opening_quotes());
    run(simulator, feed, shutdown)
}

/// Runs the simulation until `shutdown`: every tick whose arrival time has come, in one
/// publish per wake-up. Sleeping until the next arrival and catching up on all that are due
/// keeps the rate right even when the timer wakes late. Each tick's `ts` is its arrival time,
/// not the wake-up's, so a wake-up that comes late (the core busy) counts in every client's
/// lag.
async fn run(mut simulator: Simulator, feed: Feed, shutdown: CancellationToken) {
    let start = Instant::now();
    let Some(first) = simulator.next_arrival() else {
        shutdown.cancelled().await;
        return;
    };
    let mut next_at = start + first;
    let mut drafts = Vec::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = sleep_until(next_at) => {}
        }
        let (now, wall_us) = (Instant::now(), now_us());
        while next_at <= now {
            let late_us = i64::try_from((now - next_at).as_micros()).unwrap_or(i64::MAX);
            let draft = simulator.tick((next_at - start).as_secs_f64());
            drafts.push((wall_us.saturating_sub(late_us), draft));
            next_at += simulator.next_arrival().expect("the rate is positive");
        }
        feed.publish_stamped(&drafts);
        drafts.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn simulator(seed: u64, rate: f64) -> Simulator {
        let mut rng = Simulator::seeded_rng(Some(seed));
        let universe = Universe::generate(12, &mut rng);
        Simulator::new(&universe, rate, 30.0, rng)
    }

    #[test]
    fn the_same_seed_gives_the_same_ticks() {
        let mut first = simulator(7, 50.0);
        let mut again = simulator(7, 50.0);
        for step in 0..100 {
            let at = step as f64 * 0.02;
            assert_eq!(first.tick(at), again.tick(at));
            assert_eq!(first.next_arrival(), again.next_arrival());
        }
    }

    #[test]
    fn quotes_are_sane() {
        let mut sim = simulator(3, 50.0);
        for step in 0..10_000 {
            let draft = sim.tick(step as f64 * 0.02);
            assert!(draft.bid < draft.ask, "{draft:?}");
            assert!(draft.bid > 0.0 && draft.volume >= 100 && draft.volume.is_multiple_of(100));
            assert!((draft.price - cents(draft.price)).abs() < 1e-9);
        }
    }

    #[test]
    fn arrivals_average_to_the_rate() {
        let mut sim = simulator(11, 50.0);
        let total: f64 = (0..20_000)
            .map(|_| sim.next_arrival().unwrap().as_secs_f64())
            .sum();
        let mean = total / 20_000.0;
        assert!((mean - 0.02).abs() < 0.001, "mean gap {mean}");
        assert!(simulator(11, 0.0).next_arrival().is_none());
    }
}
