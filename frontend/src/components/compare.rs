//! Compare mode: all four transports on the same feed at once, one lag-over-time line each
//! and their figures in one table.

use leptos::html::Canvas;
use leptos::prelude::*;
use plotters::prelude::*;
use plotters_canvas::CanvasBackend;

use super::app::SessionStore;
use super::lag_panel::{Figures, figures, lag_cell};
use super::theme::{BACKGROUND, dark_mesh};
use crate::format;
use crate::stats::PLOT_US;
use crate::transport::{TransportKind, now_us};

/// The plot's drawing size in pixels; CSS scales it to the column.
const WIDTH: u32 = 800;
const HEIGHT: u32 = 240;
/// The plot's lag range, in milliseconds (log scale).
const LAG_RANGE_MS: std::ops::Range<f64> = 0.05..10_000.0;

/// Each transport's line colour; the table's swatches use the same (style.css).
fn colour(kind: TransportKind) -> RGBColor {
    match kind {
        TransportKind::Polling { .. } => RGBColor(210, 153, 34),
        TransportKind::LongPolling => RGBColor(163, 113, 247),
        TransportKind::WebSocket => RGBColor(63, 185, 80),
        TransportKind::Sse => RGBColor(88, 166, 255),
    }
}

/// One line per transport: (seconds ago, lag in ms) points of the last minute.
type Lines = Vec<(TransportKind, Vec<(f64, f64)>)>;

fn paint(element: web_sys::HtmlCanvasElement, lines: &Lines) -> Option<()> {
    let root = CanvasBackend::with_canvas_object(element)?.into_drawing_area();
    root.fill(&BACKGROUND).ok()?;
    let window_s = PLOT_US as f64 / 1e6;
    let mut chart = ChartBuilder::on(&root)
        .margin(8)
        .x_label_area_size(22)
        .y_label_area_size(58)
        .build_cartesian_2d(-window_s..0.0, LAG_RANGE_MS.log_scale())
        .ok()?;
    dark_mesh(&mut chart.configure_mesh())
        .x_labels(7)
        .x_label_formatter(&|s| {
            if *s == 0.0 {
                "now".into()
            } else {
                format!("{:.0} s", s)
            }
        })
        .y_label_formatter(&|ms| format::lag_ms((*ms * 1000.0) as i64))
        .draw()
        .ok()?;
    for (kind, points) in lines {
        let clamped = points
            .iter()
            .map(|&(s, ms)| (s, ms.clamp(LAG_RANGE_MS.start, LAG_RANGE_MS.end)));
        chart
            .draw_series(LineSeries::new(clamped, colour(*kind).stroke_width(2)))
            .ok()?;
    }
    root.present().ok()
}

#[component]
pub fn Compare(session: SessionStore, frame: RwSignal<u64>) -> impl IntoView {
    let rows = Memo::new(move |_| {
        frame.get();
        TransportKind::COMPARED
            .iter()
            .map(|&kind| (kind, figures(session, kind)))
            .collect::<Vec<_>>()
    });
    let canvas = NodeRef::<Canvas>::new();
    Effect::new(move |_| {
        frame.get();
        let Some(element) = canvas.get() else { return };
        let now = now_us();
        let lines: Lines = session.with_value(|s| {
            s.as_ref().map_or_else(Vec::new, |s| {
                s.channels
                    .iter()
                    .map(|channel| {
                        let points = channel
                            .stats
                            .points()
                            .map(|(at, lag)| (-((now - at) as f64) / 1e6, lag as f64 / 1000.0))
                            .collect();
                        (channel.kind, points)
                    })
                    .collect()
            })
        });
        paint(element, &lines);
    });
    let cell = |f: &Option<Figures>, show: &dyn Fn(&Figures) -> String| {
        f.as_ref().map(show).unwrap_or_else(|| "-".into())
    };
    view! {
        <section class="compare" data-testid="compare">
            <h2>"All transports, same feed: lag of each batch over the last minute"</h2>
            <canvas class="lag-plot" node_ref=canvas width=WIDTH height=HEIGHT></canvas>
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
