//! The watchlist: every symbol's last price and change since open, kept current by polling.

use std::collections::BTreeMap;
use std::time::Duration;

use leptos::prelude::*;
use leptos::task::spawn_local;
use tickscope_shared::cursor::CursorChain;
use tickscope_shared::wire::{SymbolInfo, Tick};

use crate::api;

/// How often the shell polls.
const POLL_EVERY: Duration = Duration::from_secs(1);

#[derive(Clone, Debug, PartialEq)]
struct Row {
    info: SymbolInfo,
    last: Option<Tick>,
}

/// The whole app.
#[component]
pub fn App() -> impl IntoView {
    let rows = RwSignal::new(BTreeMap::<String, Row>::new());
    let status = RwSignal::new(String::from("connecting"));

    spawn_local(async move {
        let loaded = async {
            let symbols = api::symbols().await?;
            let snapshot = api::snapshot().await?;
            Ok::<_, String>((symbols, snapshot))
        };
        let (symbols, snapshot) = match loaded.await {
            Ok(loaded) => loaded,
            Err(err) => {
                status.set(format!("cannot reach the server: {err}"));
                return;
            }
        };
        rows.update(|rows| {
            for info in symbols.symbols {
                rows.insert(info.symbol.clone(), Row { info, last: None });
            }
            for quote in snapshot.quotes {
                if let Some(row) = rows.get_mut(&quote.symbol) {
                    row.last = Some(quote);
                }
            }
        });
        let mut chain = CursorChain::new(Some(snapshot.cursor), true);
        status.set(format!("live by polling every {} s", POLL_EVERY.as_secs()));
        loop {
            gloo_timers::future::sleep(POLL_EVERY).await;
            let since = chain.cursor().unwrap_or(snapshot.cursor);
            match api::poll(since).await {
                Ok(batch) => {
                    if let Err(err) = chain.accept(&batch) {
                        status.set(format!("feed broken: {err}"));
                    }
                    rows.update(|rows| {
                        for tick in batch.ticks {
                            if let Some(row) = rows.get_mut(&tick.symbol) {
                                row.last = Some(tick);
                            }
                        }
                    });
                }
                Err(err) => status.set(format!("reconnecting: {err}")),
            }
        }
    });

    view! {
        <main>
            <h1>"tickscope"</h1>
            <div class="status" data-testid="status">{move || status.get()}</div>
            <table data-testid="watchlist">
                <thead>
                    <tr><th>"Symbol"</th><th>"Last"</th><th>"Change"</th><th>"Bid"</th><th>"Ask"</th></tr>
                </thead>
                <tbody>
                    {move || rows.get().into_values().map(row_view).collect_view()}
                </tbody>
            </table>
        </main>
    }
}

fn row_view(row: Row) -> impl IntoView {
    let (last, change, bid, ask, class) = match &row.last {
        Some(tick) => {
            let change = tick.price - row.info.open;
            let pct = change / row.info.open * 100.0;
            let class = if change >= 0.0 { "up" } else { "down" };
            (
                format!("{:.2}", tick.price),
                format!("{change:+.2} ({pct:+.2}%)"),
                format!("{:.2}", tick.bid),
                format!("{:.2}", tick.ask),
                class,
            )
        }
        None => ("-".into(), "-".into(), "-".into(), "-".into(), ""),
    };
    view! {
        <tr data-testid="quote">
            <td title=row.info.name>{row.info.symbol}</td>
            <td data-testid="price">{last}</td>
            <td class=class>{change}</td>
            <td>{bid}</td>
            <td>{ask}</td>
        </tr>
    }
}
