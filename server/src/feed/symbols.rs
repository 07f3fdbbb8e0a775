//! The listed companies and how their names map to the small ids the feed filters on.

use std::collections::HashMap;

use rand::Rng;
use tickscope_shared::wire::SymbolInfo;

/// A company of the simulated market and how its price behaves. A generator stores the
/// listings in NATS so that every edge serves the same market.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Listing {
    pub symbol: String,
    pub name: String,
    pub sector: String,
    pub open: f64,
    /// Annualised volatility of the price (0.3 = 30 %).
    pub volatility: f64,
    /// Relative share of all ticks that this symbol gets.
    pub activity: f64,
    /// Bid-ask spread in basis points of the price.
    pub spread_bps: f64,
}

/// The twelve fictional companies of the default market:
/// (symbol, name, sector, opening price, volatility, activity, spread in bps).
const COMPANIES: [(&str, &str, &str, f64, f64, f64, f64); 12] = [
    (
        "ACME",
        "Acme Rocket Works",
        "Industrials",
        142.50,
        0.32,
        1.4,
        2.0,
    ),
    ("BLU", "Blue Harbor Energy", "Energy", 61.20, 0.38, 1.0, 3.0),
    (
        "CRST",
        "Crestline Semiconductor",
        "Technology",
        318.75,
        0.45,
        1.8,
        1.5,
    ),
    (
        "DLTA",
        "Delta Fresh Foods",
        "Consumer Staples",
        47.85,
        0.20,
        0.7,
        4.0,
    ),
    (
        "EVRG",
        "Evergreen Bank",
        "Financials",
        88.10,
        0.25,
        1.1,
        2.0,
    ),
    (
        "FLUX",
        "Flux Mobility",
        "Consumer Discretionary",
        23.40,
        0.65,
        1.3,
        6.0,
    ),
    (
        "GRNT",
        "Granite Materials",
        "Materials",
        104.30,
        0.28,
        0.6,
        3.0,
    ),
    (
        "HLX",
        "Helix Therapeutics",
        "Health Care",
        76.95,
        0.55,
        0.9,
        5.0,
    ),
    (
        "IONQ",
        "Ionic Quantum Systems",
        "Technology",
        12.65,
        0.80,
        1.2,
        8.0,
    ),
    (
        "JADE",
        "Jade Telecom",
        "Communication Services",
        35.60,
        0.22,
        0.8,
        3.0,
    ),
    (
        "KITE",
        "Kite Logistics",
        "Industrials",
        58.20,
        0.30,
        0.7,
        3.0,
    ),
    (
        "LUMN",
        "Lumen Solar Grid",
        "Utilities",
        29.15,
        0.35,
        0.9,
        4.0,
    ),
];

/// Sectors for generated companies beyond the named twelve.
const SECTORS: [&str; 6] = [
    "Technology",
    "Financials",
    "Industrials",
    "Health Care",
    "Energy",
    "Utilities",
];

/// Every listing of this run, by id (its index), with a map from symbol to id.
#[derive(Debug, Clone)]
pub struct Universe {
    listings: Vec<Listing>,
    ids: HashMap<String, u16>,
}

impl Universe {
    /// The first `count` listings: the named companies, then generated ones (`X0013`, ...)
    /// whose prices and volatilities come from `rng`.
    pub fn generate(count: u16, rng: &mut impl Rng) -> Self {
        let listings = (0..count as usize)
            .map(|index| match COMPANIES.get(index) {
                Some(&(symbol, name, sector, open, volatility, activity, spread_bps)) => Listing {
                    symbol: symbol.to_owned(),
                    name: name.to_owned(),
                    sector: sector.to_owned(),
                    open,
                    volatility,
                    activity,
                    spread_bps,
                },
                None => Listing {
                    symbol: format!("X{:04}", index + 1),
                    name: format!("Generated Company {}", index + 1),
                    sector: SECTORS[index % SECTORS.len()].to_owned(),
                    open: (rng.random_range(5.0..400.0_f64) * 100.0).round() / 100.0,
                    volatility: rng.random_range(0.15..0.8),
                    activity: rng.random_range(0.5..1.5),
                    spread_bps: rng.random_range(1.0..8.0),
                },
            })
            .collect();
        Self::new(listings)
    }

    pub fn new(listings: Vec<Listing>) -> Self {
        assert!(
            listings.len() <= u16::MAX as usize,
            "symbol ids are u16, so at most 65535 listings"
        );
        let ids = listings
            .iter()
            .enumerate()
            .map(|(id, listing)| (listing.symbol.clone(), id as u16))
            .collect();
        Self { listings, ids }
    }

    pub fn len(&self) -> usize {
        self.listings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.listings.is_empty()
    }

    pub fn listings(&self) -> &[Listing] {
        &self.listings
    }

    pub fn listing(&self, id: u16) -> &Listing {
        &self.listings[id as usize]
    }

    pub fn id(&self, symbol: &str) -> Option<u16> {
        self.ids.get(symbol).copied()
    }

    pub fn infos(&self) -> Vec<SymbolInfo> {
        self.listings
            .iter()
            .map(|listing| SymbolInfo {
                symbol: listing.symbol.clone(),
                name: listing.name.clone(),
                sector: listing.sector.clone(),
                open: listing.open,
            })
            .collect()
    }
}

/// Which symbols a client wants: all, or a set of ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SymbolFilter {
    All,
    /// `wanted[id]` says whether symbol `id` passes.
    Only {
        wanted: Vec<bool>,
        count: usize,
    },
}

impl SymbolFilter {
    pub fn only(ids: impl IntoIterator<Item = u16>, universe_len: usize) -> Self {
        let mut wanted = vec![false; universe_len];
        let mut count = 0;
        for id in ids {
            if !wanted[id as usize] {
                wanted[id as usize] = true;
                count += 1;
            }
        }
        Self::Only { wanted, count }
    }

    pub fn passes(&self, id: u16) -> bool {
        match self {
            Self::All => true,
            Self::Only { wanted, .. } => wanted.get(id as usize).copied().unwrap_or(false),
        }
    }

    pub fn is_all(&self) -> bool {
        matches!(self, Self::All)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn the_default_market_has_twelve_named_companies() {
        let universe = Universe::generate(12, &mut StdRng::seed_from_u64(1));
        assert_eq!(universe.len(), 12);
        assert_eq!(universe.id("ACME"), Some(0));
        assert_eq!(universe.listing(11).symbol, "LUMN");
        assert!(universe.id("NOPE").is_none());
    }

    #[test]
    fn more_symbols_are_generated_with_unique_names() {
        let universe = Universe::generate(40, &mut StdRng::seed_from_u64(1));
        assert_eq!(universe.len(), 40);
        assert_eq!(universe.id("X0040"), Some(39));
        let first = Universe::generate(40, &mut StdRng::seed_from_u64(9));
        let again = Universe::generate(40, &mut StdRng::seed_from_u64(9));
        assert_eq!(
            first.listings(),
            again.listings(),
            "a seed makes it reproducible"
        );
    }

    #[test]
    fn filter_passes_only_what_was_asked() {
        let filter = SymbolFilter::only([1, 3, 3], 5);
        assert!(filter.passes(1) && filter.passes(3));
        assert!(!filter.passes(0) && !filter.passes(4) && !filter.passes(99));
        assert!(SymbolFilter::All.passes(4));
    }
}
