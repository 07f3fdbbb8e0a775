//! Compare mode: every transport on the same feed at once (with HTTP/1.1 beside HTTP/2 when
//! asked), one lag-over-time line each and their figures in one table.

use leptos::html::Canvas;
use leptos::prelude::*;
use plotters::prelude::*;
use plotters_canvas::CanvasBackend;

use super::lag_panel::{Figures, figures, lag_cell, lag_us, protocol_cell, wire_cell, wire_total};
use super::theme::{BACKGROUND, dark_mesh};
use crate::format;
use crate::state::SessionStore;
use crate::stats::PLOT_US;
use crate::transport::{Transport, TransportKind, Via, now_us};

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
        TransportKind::Stream => RGBColor(255, 123, 114),
        TransportKind::WebTransport => RGBColor(57, 197, 207),
    }
}

/// The swatch's classes: the kind's colour (style.css), dashed over HTTP/1.1.
fn swatch(transport: Transport) -> String {
    match transport.via {
        Via::Page => format!("swatch {}", transport.kind.id()),
        Via::Http1 => format!("swatch {} http1", transport.kind.id()),
    }
}

/// One line per transport: (seconds ago, lag in ms) points of the last minute.
type Lines = Vec<(Transport, Vec<(f64, f64)>)>;

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
    for (transport, points) in lines {
        let clamped = points
            .iter()
            .map(|&(s, ms)| (s, ms.clamp(LAG_RANGE_MS.start, LAG_RANGE_MS.end)));
        let style = colour(transport.kind).stroke_width(2);
        // The same transport over HTTP/1.1: its colour, dashed.
        match transport.via {
            Via::Page => chart.draw_series(LineSeries::new(clamped, style)).ok()?,
            Via::Http1 => chart
                .draw_series(DashedLineSeries::new(clamped, 6, 4, style))
                .ok()?,
        };
    }
    root.present().ok()
}

#[component]
pub fn Compare(
    session: SessionStore,
    frame: RwSignal<u64>,
    transports: Vec<Transport>,
) -> impl IntoView {
    let versions = transports.iter().any(|t| t.via == Via::Http1);
    let rows = Memo::new(move |_| {
        frame.get();
        transports
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
                        let offset = channel.clock.offset_us();
                        let points = channel
                            .stats
                            .points(offset.unwrap_or_default())
                            .filter(|_| offset.is_some())
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
            <h2>{if versions {
                "Every transport, same feed, the HTTP ones over HTTP/2 and over HTTP/1.1 (dashed): lag of each batch over the last minute, and what each delivered tick costs on the wire"
            } else {
                "All transports, same feed: lag of each batch over the last minute, and what each delivered tick costs on the wire"
            }}</h2>
            <div class="compare-top">
                <canvas class="lag-plot" node_ref=canvas width=WIDTH height=HEIGHT></canvas>
                <Costs rows=rows />
            </div>
            <table class="compare-table">
                <thead>
                    <tr>
                        <th>"Transport"</th><th>"State"</th><th>"Lag now"</th><th>"p50"</th><th>"p95"</th><th>"max"</th>
                        <th>"Updates"</th><th>"Requests"</th><th>"Wire down"</th><th>"Wire up"</th><th>"Empty"</th><th>"Timeouts"</th><th>"Reconnects"</th><th>"HTTP"</th><th>"Breaks"</th>
                    </tr>
                </thead>
                <tbody>
                    {move || rows.get().into_iter().map(|(kind, f)| view! {
                        <tr data-testid=format!("compare-row-{}", kind.id())
                            data-wire-up=wire_total(&f, |w| w.up as i64)
                            data-wire-down=wire_total(&f, |w| w.down as i64)
                            data-wire-requests=wire_total(&f, |w| w.requests as i64)
                            data-lag-p50-us=lag_us(&f, |l| l.p50_us)
                            data-lag-p99-us=lag_us(&f, |l| l.p99_us)
                            data-protocol=f.as_ref().and_then(|f| f.protocol.clone())>
                            <td><span class=swatch(kind)></span>{kind.label()}</td>
                            <td>{cell(&f, &|f| f.view.state.label())}</td>
                            <td>{cell(&f, &|f| lag_cell(f, |l| l.current_us))}</td>
                            <td data-testid="p50">{cell(&f, &|f| lag_cell(f, |l| l.p50_us))}</td>
                            <td>{cell(&f, &|f| lag_cell(f, |l| l.p95_us))}</td>
                            <td>{cell(&f, &|f| lag_cell(f, |l| l.max_us))}</td>
                            <td>{cell(&f, &|f| format::rate(f.view.updates_per_s))}</td>
                            <td>{cell(&f, &|f| format::rate(f.view.requests_per_s))}</td>
                            <td data-testid="wire-down">{cell(&f, &|f| wire_cell(f, |w| format::bytes_per_s(w.down_per_s)))}</td>
                            <td>{cell(&f, &|f| wire_cell(f, |w| format::bytes_per_s(w.up_per_s)))}</td>
                            <td>{cell(&f, &|f| format::share(f.view.empty_share))}</td>
                            <td>{cell(&f, &|f| format::share(f.view.timeout_share))}</td>
                            <td>{cell(&f, &|f| f.view.reconnects.to_string())}</td>
                            <td data-testid="protocol">{cell(&f, &|f| protocol_cell(f))}</td>
                            <td data-testid="breaks">{cell(&f, &|f| f.chain.clone())}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        </section>
    }
}

/// The cost view: per transport, bytes on the wire per delivered tick, down and up, as bars
/// on one scale, with requests per tick: polling's empty answers, long polling's request per
/// batch and push's near-zero upstream read at a glance.
#[component]
fn Costs(rows: Memo<Vec<(Transport, Option<Figures>)>>) -> impl IntoView {
    let bars = move || {
        let rows = rows.get();
        let per_tick = |f: &Option<Figures>| {
            let wire = f.as_ref()?.view.wire.as_ref()?;
            Some((
                wire.down_per_tick?,
                wire.up_per_tick?,
                wire.requests_per_tick?,
            ))
        };
        let widest = rows
            .iter()
            .filter_map(|(_, f)| per_tick(f))
            .map(|(down, up, _)| down.max(up))
            .fold(1.0, f64::max);
        let width = |bytes: f64| format!("width: {:.1}%", bytes / widest * 100.0);
        rows.into_iter()
            .map(|(kind, f)| {
                let (down, up, requests) = per_tick(&f).unwrap_or_default();
                view! {
                    <div class="cost" data-testid=format!("cost-{}", kind.id())>
                        <div class="cost-name"><span class=swatch(kind)></span>{kind.label()}</div>
                        <div class="cost-bar down" style=width(down)></div>
                        <div class="cost-figure">{format!("{} down", format::bytes_per_tick(Some(down)))}</div>
                        <div class="cost-bar up" style=width(up)></div>
                        <div class="cost-figure">{format!("{} up · {} requests", format::bytes_per_tick(Some(up)), format::per_tick(Some(requests)))}</div>
                    </div>
                }
            })
            .collect_view()
    };
    view! {
        <div class="costs" data-testid="costs">
            <h3>"On the wire per delivered tick"</h3>
            {bars}
            <p class="fine">"TCP payload bytes of each transport's connections, both ways, counted by the server: heads, framing, handshakes and clock exchanges included. Over the last 30 s."</p>
        </div>
    }
}
