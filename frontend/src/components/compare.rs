//! Compare mode: all four transports on the same feed at once, one lag-over-time line each
//! and their figures in one table.

use leptos::prelude::*;

use super::app::SessionStore;
use super::lag_panel::{Figures, figures, lag_cell};
use crate::format;
use crate::geometry::LogScale;
use crate::stats::PLOT_US;
use crate::transport::{TransportKind, now_us};

const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 52.0;
const RIGHT: f64 = WIDTH - 8.0;
const TOP: f64 = 8.0;
const BOTTOM: f64 = HEIGHT - 20.0;
/// The plot's lag range, in milliseconds (log scale).
const LAG_RANGE_MS: (f64, f64) = (0.05, 10_000.0);

#[component]
pub fn Compare(session: SessionStore, frame: RwSignal<u64>) -> impl IntoView {
    let rows = Memo::new(move |_| {
        frame.get();
        TransportKind::COMPARED
            .iter()
            .map(|&kind| (kind, figures(session, kind)))
            .collect::<Vec<_>>()
    });
    let lines = Memo::new(move |_| {
        frame.get();
        let now = now_us();
        let y = LogScale::new(LAG_RANGE_MS, (BOTTOM, TOP));
        session.with_value(|s| {
            let Some(s) = s.as_ref() else {
                return Vec::new();
            };
            s.channels
                .iter()
                .map(|channel| {
                    let points: Vec<String> = channel
                        .stats
                        .points()
                        .map(|(at, lag)| {
                            let x = RIGHT - (now - at) as f64 / PLOT_US as f64 * (RIGHT - LEFT);
                            format!("{x:.1},{:.1}", y.map(lag as f64 / 1000.0))
                        })
                        .collect();
                    (channel.kind.id(), points.join(" "))
                })
                .collect::<Vec<_>>()
        })
    });
    let y = LogScale::new(LAG_RANGE_MS, (BOTTOM, TOP));
    let grid = [0.1, 1.0, 10.0, 100.0, 1000.0, 10_000.0]
        .into_iter()
        .map(|ms: f64| {
            let label = if ms >= 1000.0 {
                format!("{} s", ms / 1000.0)
            } else {
                format!("{ms} ms")
            };
            view! {
                <line class="grid" x1=LEFT x2=RIGHT y1=y.map(ms) y2=y.map(ms) />
                <text class="axis" x=LEFT - 6.0 y=y.map(ms) + 4.0 text-anchor="end">{label}</text>
            }
        })
        .collect_view();
    let cell = |f: &Option<Figures>, show: &dyn Fn(&Figures) -> String| {
        f.as_ref().map(show).unwrap_or_else(|| "-".into())
    };
    view! {
        <section class="compare" data-testid="compare">
            <h2>"All transports, same feed"</h2>
            <svg class="lag-plot" viewBox=format!("0 0 {WIDTH} {HEIGHT}") preserveAspectRatio="none">
                {grid}
                <text class="axis" x=LEFT y=HEIGHT - 4.0>"60 s ago"</text>
                <text class="axis" x=RIGHT y=HEIGHT - 4.0 text-anchor="end">"now"</text>
                {move || lines.get().into_iter().map(|(id, points)| view! {
                    <polyline class=format!("lag-line {id}") points=points />
                }).collect_view()}
            </svg>
            <table class="compare-table">
                <thead>
                    <tr>
                        <th>"Transport"</th><th>"State"</th><th>"Lag now"</th><th>"p50"</th><th>"p95"</th><th>"max"</th>
                        <th>"Updates"</th><th>"Requests"</th><th>"Received"</th><th>"Empty"</th><th>"Timeouts"</th><th>"Reconnects"</th><th>"Breaks"</th>
                    </tr>
                </thead>
                <tbody>
                    {move || rows.get().into_iter().map(|(kind, f)| view! {
                        <tr data-testid=format!("compare-row-{}", kind.id())>
                            <td><span class=format!("swatch {}", kind.id())></span>{kind.label()}</td>
                            <td>{cell(&f, &|f| f.view.state.label())}</td>
                            <td>{cell(&f, &|f| lag_cell(f, |l| l.current_us))}</td>
                            <td data-testid="p50">{cell(&f, &|f| lag_cell(f, |l| l.p50_us))}</td>
                            <td>{cell(&f, &|f| lag_cell(f, |l| l.p95_us))}</td>
                            <td>{cell(&f, &|f| lag_cell(f, |l| l.max_us))}</td>
                            <td>{cell(&f, &|f| format::rate(f.view.updates_per_s))}</td>
                            <td>{cell(&f, &|f| format::rate(f.view.requests_per_s))}</td>
                            <td>{cell(&f, &|f| format::bytes_per_s(f.view.bytes_per_s))}</td>
                            <td>{cell(&f, &|f| format::share(f.view.empty_share))}</td>
                            <td>{cell(&f, &|f| format::share(f.view.timeout_share))}</td>
                            <td>{cell(&f, &|f| f.view.reconnects.to_string())}</td>
                            <td data-testid="breaks">{cell(&f, &|f| f.chain.clone())}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        </section>
    }
}
