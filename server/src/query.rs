//! Decoding what clients send in query strings and subscriptions, with errors a person can act
//! on. Everything here is pure, so it is tested (and fuzzed) without a server.

use crate::feed::symbols::{SymbolFilter, Universe};

/// What was wrong with a client's input and what is allowed; becomes a 400 or a close reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

/// A decoded query string. Unknown parameters are ignored (cache-busters are common); a known
/// one given twice is an error, since it is unclear which was meant.
#[derive(Debug, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

/// Why a client opens a stream again; the page says so, and `/metrics` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reconnect {
    /// The client heard nothing, not even a heartbeat, for two heartbeat intervals.
    Silent,
    /// The connection failed or closed.
    Error,
}

impl Params {
    pub fn parse(query: &str) -> Result<Self, InputError> {
        let pairs = serde_urlencoded::from_str::<Vec<(String, String)>>(query)
            .map_err(|err| InputError(format!("the query string is not valid: {err}")))?;
        Ok(Self { pairs })
    }

    /// The value of `name`, if given once.
    pub fn get(&self, name: &str) -> Result<Option<&str>, InputError> {
        let mut values = self.pairs.iter().filter(|(key, _)| key == name);
        let first = values.next().map(|(_, value)| value.as_str());
        if values.next().is_some() {
            return Err(InputError(format!(
                "{name} is given more than once; give it once"
            )));
        }
        Ok(first)
    }

    /// `name` as a whole number from 0 to `max`.
    pub fn number(&self, name: &str, max: u64) -> Result<Option<u64>, InputError> {
        self.get(name)?
            .map(|text| parse_number(name, text, max))
            .transpose()
    }

    /// Why a stream client is connecting again (`reconnect=silent|error`), if it says.
    pub fn reconnect(&self) -> Result<Option<Reconnect>, InputError> {
        self.get("reconnect")?
            .map(|text| match text {
                "silent" => Ok(Reconnect::Silent),
                "error" => Ok(Reconnect::Error),
                other => Err(InputError(format!(
                    "reconnect must be silent (the feed went quiet) or error (the connection \
                     failed), got {other:?}"
                ))),
            })
            .transpose()
    }

    /// The `since` cursor.
    pub fn since(&self) -> Result<Option<u64>, InputError> {
        self.number("since", u64::MAX)
    }

    /// The `symbols` list (comma-separated) as a filter; absent means every symbol.
    pub fn symbols(&self, universe: &Universe, max: usize) -> Result<SymbolFilter, InputError> {
        match self.get("symbols")? {
            None => Ok(SymbolFilter::All),
            Some(list) => symbol_filter(list.split(','), universe, max),
        }
    }
}

/// Parses a cursor or limit: a whole number from 0 to `max`.
pub fn parse_number(name: &str, text: &str, max: u64) -> Result<u64, InputError> {
    text.parse::<u64>()
        .ok()
        .filter(|&value| value <= max)
        .ok_or_else(|| {
            InputError(format!(
                "{name} must be a whole number from 0 to {max}, got {:?}",
                clip(text)
            ))
        })
}

/// Resolves symbol names into a filter. The list must name between 1 and `max` known symbols,
/// each once.
pub fn symbol_filter<'a>(
    names: impl IntoIterator<Item = &'a str>,
    universe: &Universe,
    max: usize,
) -> Result<SymbolFilter, InputError> {
    let names: Vec<&str> = names.into_iter().take(max + 1).collect();
    if names.len() > max {
        return Err(InputError(format!(
            "at most {max} symbols per request; leave symbols out for all of them"
        )));
    }
    if names.is_empty() || names == [""] {
        return Err(InputError(
            "symbols is empty: name one or more symbols separated by commas, or leave it out for all"
                .into(),
        ));
    }
    let mut ids = Vec::with_capacity(names.len());
    for name in names {
        let id = universe.id(name).ok_or_else(|| {
            InputError(format!(
                "unknown symbol {:?}; GET /api/symbols lists the known ones",
                clip(name)
            ))
        })?;
        if ids.contains(&id) {
            return Err(InputError(format!(
                "symbol {name:?} is listed twice; list it once"
            )));
        }
        ids.push(id);
    }
    Ok(SymbolFilter::only(ids, universe.len()))
}

/// At most 40 characters of what the client sent, so an error never echoes a huge input.
fn clip(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn universe() -> Universe {
        Universe::generate(12, &mut StdRng::seed_from_u64(1))
    }

    #[test]
    fn since_and_symbols_decode() {
        let params = Params::parse("since=42&symbols=ACME,BLU&_=123").unwrap();
        assert_eq!(params.since(), Ok(Some(42)));
        let filter = params.symbols(&universe(), 100).unwrap();
        assert!(filter.passes(0) && filter.passes(1) && !filter.passes(2));
        let none = Params::parse("").unwrap();
        assert_eq!(none.since(), Ok(None));
        assert_eq!(none.symbols(&universe(), 100), Ok(SymbolFilter::All));
    }

    #[test]
    fn bad_numbers_say_what_is_allowed() {
        for bad in [
            "since=abc",
            "since=-1",
            "since=1.5",
            "since=",
            "since=99999999999999999999999",
        ] {
            let err = Params::parse(bad).unwrap().since().unwrap_err();
            assert!(
                err.0.starts_with("since must be a whole number"),
                "{bad}: {err}"
            );
        }
        let err = Params::parse("since=1&since=2")
            .unwrap()
            .since()
            .unwrap_err();
        assert!(err.0.contains("more than once"));
        let err = Params::parse("timeout_ms=70000")
            .unwrap()
            .number("timeout_ms", 60_000);
        assert!(err.unwrap_err().0.contains("from 0 to 60000"));
    }

    #[test]
    fn bad_symbol_lists_say_what_is_allowed() {
        let universe = universe();
        let cases = [
            ("symbols=NOPE", "unknown symbol \"NOPE\""),
            ("symbols=", "symbols is empty"),
            ("symbols=ACME,ACME", "listed twice"),
            ("symbols=ACME,,BLU", "unknown symbol \"\""),
        ];
        for (query, expected) in cases {
            let err = Params::parse(query)
                .unwrap()
                .symbols(&universe, 100)
                .unwrap_err();
            assert!(err.0.contains(expected), "{query}: {err}");
        }
        let many = vec!["ACME"; 101].join(",");
        let err = Params::parse(&format!("symbols={many}"))
            .unwrap()
            .symbols(&universe, 100)
            .unwrap_err();
        assert!(err.0.starts_with("at most 100 symbols"));
    }

    #[test]
    fn errors_never_echo_huge_input() {
        let huge = "X".repeat(100_000);
        let err = parse_number("since", &huge, 10).unwrap_err();
        assert!(err.0.len() < 120, "{}", err.0.len());
    }
}
