//! The chart of the selected symbol: backfilled from `/api/history`, then built from live
//! ticks; a line or candlesticks over 1, 5 or 15 minutes, with price and time axes; hovering
//! shows the candle under the pointer. Drawn with plotters on a canvas, redrawn each frame
//! (4 a second) whatever the tick rate.

use leptos::html::Canvas;
use leptos::prelude::*;
use leptos::task::spawn_local;
use plotters::prelude::*;
use plotters_canvas::CanvasBackend;
use tickscope_shared::wire::Candle;

use super::theme::{ACCENT, BACKGROUND, DOWN, MUTED, UP, dark_mesh};
use crate::api;
use crate::format::clock_label;
use crate::state::SessionStore;
use crate::transport::now_us;

/// The canvas's drawing size in pixels; CSS scales it to the column.
const WIDTH: u32 = 800;
const HEIGHT: u32 = 300;

/// The chart's ranges, in seconds.
const RANGES: [(i64, &str); 3] = [(60, "1m"), (300, "5m"), (900, "15m")];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Line,
    Candles,
}

/// What one frame draws.
#[derive(Debug, Clone, PartialEq)]
struct Frame {
    symbol: String,
    candles: Vec<Candle>,
    now_s: i64,
    seconds: i64,
    style: Style,
}

#[component]
pub fn Chart(
    session: SessionStore,
    frame: RwSignal<u64>,
    selected: RwSignal<usize>,
) -> impl IntoView {
    let range_s = RwSignal::new(300i64);
    let style = RwSignal::new(Style::Line);
    // The pointer's x in canvas pixels, and the plot area's pixel span found by the last draw.
    let hover_px = RwSignal::new(None::<f64>);
    let plot_px = StoredValue::new((0i32, WIDTH as i32));
    let canvas = NodeRef::<Canvas>::new();

    // Backfill the selected symbol's last 15 minutes once it is picked.
    Effect::new(move |_| {
        let index = selected.get();
        let Some(symbol) = session.with_value(|s| {
            s.as_ref()
                .and_then(|s| s.market.symbols.get(index).map(|info| info.symbol.clone()))
        }) else {
            return;
        };
        spawn_local(async move {
            if let Ok(history) = api::history(&symbol, 900).await {
                session.try_update_value(|s| {
                    if let Some(s) = s.as_mut() {
                        s.market.backfill(index, history.candles);
                    }
                });
            }
        });
    });

    let data = Memo::new(move |_| {
        frame.get();
        let index = selected.get();
        let seconds = range_s.get();
        let now_s = now_us() / 1_000_000;
        session.with_value(|s| {
            s.as_ref().map(|s| Frame {
                symbol: s.market.symbols[index].symbol.clone(),
                candles: s.market.candles(index, now_s, seconds),
                now_s,
                seconds,
                style: style.get(),
            })
        })
    });

    // The candle under the pointer.
    let hovered = Memo::new(move |_| {
        let px = hover_px.get()?;
        data.with(|frame| {
            let frame = frame.as_ref()?;
            let (left, right) = plot_px.get_value();
            let span = f64::from((right - left).max(1));
            let t = frame.now_s - frame.seconds
                + ((px - f64::from(left)) / span * (frame.seconds + 1) as f64) as i64;
            frame
                .candles
                .iter()
                .min_by_key(|c| (c.t - t).abs())
                .cloned()
        })
    });

    Effect::new(move |_| {
        let Some(element) = canvas.get() else { return };
        let hover = hovered.get();
        data.with(|frame| {
            if let Some(frame) = frame
                && let Some(span) = paint(element, frame, hover.as_ref())
            {
                plot_px.set_value(span);
            }
        });
    });

    let on_move = move |event: web_sys::MouseEvent| {
        let Some(element) = canvas.get_untracked() else {
            return;
        };
        let rect = element.get_bounding_client_rect();
        if rect.width() > 0.0 {
            let px = (f64::from(event.client_x()) - rect.left()) / rect.width() * f64::from(WIDTH);
            hover_px.set(Some(px));
        }
    };

    let range_buttons = RANGES
        .into_iter()
        .map(|(seconds, label)| {
            view! {
                <button class:active=move || range_s.get() == seconds on:click=move |_| range_s.set(seconds)>
                    {label}
                </button>
            }
        })
        .collect_view();

    view! {
        <section class="chart" data-testid="chart">
            <div class="chart-head">
                <strong data-testid="chart-symbol">
                    {move || data.with(|f| f.as_ref().map(|f| f.symbol.clone()).unwrap_or_default())}
                </strong>
                <span class="hover" data-testid="chart-hover">{move || hovered.get().map(|c| describe(&c))}</span>
                <span class="controls">
                    {range_buttons}
                    <button class:active=move || style.get() == Style::Line on:click=move |_| style.set(Style::Line)>"Line"</button>
                    <button class:active=move || style.get() == Style::Candles on:click=move |_| style.set(Style::Candles)>"Candles"</button>
                </span>
            </div>
            <canvas
                node_ref=canvas
                width=WIDTH
                height=HEIGHT
                on:mousemove=on_move
                on:mouseleave=move |_| hover_px.set(None)
            ></canvas>
        </section>
    }
}

/// The hover readout of a candle.
fn describe(candle: &Candle) -> String {
    format!(
        "{}  O {:.2}  H {:.2}  L {:.2}  C {:.2}  vol {}",
        clock_label(candle.t),
        candle.open,
        candle.high,
        candle.low,
        candle.close,
        candle.volume
    )
}

/// Draws one frame; returns the plot area's horizontal pixel span, for hovering.
fn paint(
    element: web_sys::HtmlCanvasElement,
    frame: &Frame,
    hover: Option<&Candle>,
) -> Option<(i32, i32)> {
    let root = CanvasBackend::with_canvas_object(element)?.into_drawing_area();
    root.fill(&BACKGROUND).ok()?;
    let (low, high) = frame
        .candles
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), c| {
            (lo.min(c.low), hi.max(c.high))
        });
    let (low, high) = if frame.candles.is_empty() {
        (0.0, 1.0)
    } else {
        (low, high)
    };
    let pad = ((high - low) * 0.08).max(0.01);
    let x_range = (frame.now_s - frame.seconds)..(frame.now_s + 1);
    let mut chart = ChartBuilder::on(&root)
        .margin(8)
        .x_label_area_size(22)
        .right_y_label_area_size(58)
        .build_cartesian_2d(x_range, (low - pad)..(high + pad))
        .ok()?;
    dark_mesh(&mut chart.configure_mesh())
        .x_labels(5)
        .y_labels(5)
        .x_label_formatter(&|t| clock_label(*t))
        .y_label_formatter(&|price| format!("{price:.2}"))
        .draw()
        .ok()?;
    let span = chart.plotting_area().get_pixel_range().0;
    match frame.style {
        Style::Line => {
            let line = frame.candles.iter().map(|c| (c.t, c.close));
            chart
                .draw_series(LineSeries::new(line, ACCENT.stroke_width(2)))
                .ok()?;
        }
        Style::Candles => {
            let per_second = f64::from(span.end - span.start) / (frame.seconds + 1) as f64;
            let width = (per_second * 0.7).max(1.0) as u32;
            chart
                .draw_series(frame.candles.iter().map(|c| {
                    CandleStick::new(
                        c.t,
                        c.open,
                        c.high,
                        c.low,
                        c.close,
                        UP.filled(),
                        DOWN.filled(),
                        width,
                    )
                }))
                .ok()?;
        }
    }
    if let Some(candle) = hover {
        let cursor = [(candle.t, low - pad), (candle.t, high + pad)];
        chart.draw_series(LineSeries::new(cursor, MUTED)).ok()?;
    }
    root.present().ok()?;
    Some((span.start, span.end))
}
