//! The watchlist: last price, change since open, bid/ask and a sparkline per symbol; a changed
//! price flashes green or red; a click selects the symbol for the chart.

use leptos::prelude::*;

use crate::format;
use crate::session::QuoteRow;
use crate::state::SessionStore;
use crate::transport::now_us;

#[component]
pub fn Watchlist(
    session: SessionStore,
    frame: RwSignal<u64>,
    selected: RwSignal<usize>,
) -> impl IntoView {
    let rows = Memo::new(move |_| {
        frame.get();
        session.with_value(|s| {
            s.as_ref()
                .map(|s| s.market.rows(now_us()))
                .unwrap_or_default()
        })
    });
    view! {
        <section class="watchlist" data-testid="watchlist">
            <table>
                <thead>
                    <tr>
                        <th>"Symbol"</th>
                        <th>"Last"</th>
                        <th>"Change"</th>
                        <th class="wide">"Bid / Ask"</th>
                        <th class="wide">"Trend"</th>
                    </tr>
                </thead>
                <tbody>
                    {move || {
                        rows.get()
                            .into_iter()
                            .enumerate()
                            .map(|(index, row)| row_view(index, row, selected))
                            .collect_view()
                    }}
                </tbody>
            </table>
        </section>
    }
}

fn row_view(index: usize, row: QuoteRow, selected: RwSignal<usize>) -> impl IntoView {
    let flash = match row.flash {
        Some(true) => " flash-up",
        Some(false) => " flash-down",
        None => "",
    };
    let chosen = if selected.get_untracked() == index {
        " selected"
    } else {
        ""
    };
    let (last, change, change_class, quote) = match &row.last {
        Some(tick) => (
            format!("{:.2}", tick.price),
            format::change(tick.price, row.open),
            if tick.price >= row.open { "up" } else { "down" },
            format!("{:.2} / {:.2}", tick.bid, tick.ask),
        ),
        None => ("-".into(), "-".into(), "", "-".into()),
    };
    let testid = format!("quote-{}", row.symbol);
    view! {
        <tr
            class=format!("quote{flash}{chosen}")
            data-testid=testid
            on:click=move |_| selected.set(index)
        >
            <td class="symbol" title=row.name>{row.symbol}</td>
            <td class="price" data-testid="price">{last}</td>
            <td class=change_class>{change}</td>
            <td class="wide">{quote}</td>
            <td class="wide">
                <svg class="spark" viewBox="0 0 60 18" width="60" height="18">
                    <path d=row.spark />
                </svg>
            </td>
        </tr>
    }
}
