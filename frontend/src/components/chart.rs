//! The chart of the selected symbol: backfilled from `/api/history`, then built from live
//! ticks; a line or candlesticks over 1, 5 or 15 minutes, with price and time axes; hovering
//! shows the candle under the pointer.
//!
//! Drawn by hand in SVG: see the README for why no charting crate.

use leptos::prelude::*;
use leptos::task::spawn_local;
use tickscope_shared::wire::Candle;

use super::app::SessionStore;
use crate::api;
use crate::geometry::{Scale, clock_label, nice_ticks};
use crate::transport::now_us;

const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 8.0;
const RIGHT: f64 = WIDTH - 64.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = HEIGHT - 24.0;

/// The chart's ranges, in seconds.
const RANGES: [(i64, &str); 3] = [(60, "1m"), (300, "5m"), (900, "15m")];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Line,
    Candles,
}

/// Everything drawn, computed once per frame.
#[derive(Debug, Clone, PartialEq, Default)]
struct Drawing {
    symbol: String,
    line: String,
    /// (x, open y, close y, high y, low y, rising)
    bodies: Vec<(f64, f64, f64, f64, f64, bool)>,
    body_width: f64,
    y_ticks: Vec<(f64, String)>,
    x_ticks: Vec<(f64, String)>,
    hover: Option<(f64, String)>,
}

#[component]
pub fn Chart(
    session: SessionStore,
    frame: RwSignal<u64>,
    selected: RwSignal<usize>,
) -> impl IntoView {
    let range_s = RwSignal::new(300i64);
    let style = RwSignal::new(Style::Line);
    let hover_x = RwSignal::new(None::<f64>);

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

    let drawing = Memo::new(move |_| {
        frame.get();
        let index = selected.get();
        let seconds = range_s.get();
        let now_s = now_us() / 1_000_000;
        session.with_value(|s| {
            s.as_ref().map_or_else(Drawing::default, |s| {
                let candles = s.market.candles(index, now_s, seconds);
                let symbol = s.market.symbols[index].symbol.clone();
                draw(symbol, &candles, now_s, seconds, hover_x.get())
            })
        })
    });

    let on_move = move |event: web_sys::MouseEvent| {
        use wasm_bindgen::JsCast;
        let Some(target) = event
            .current_target()
            .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
        else {
            return;
        };
        let rect = target.get_bounding_client_rect();
        if rect.width() > 0.0 {
            let x = (f64::from(event.client_x()) - rect.left()) / rect.width() * WIDTH;
            hover_x.set(Some(x));
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
                <strong data-testid="chart-symbol">{move || drawing.with(|d| d.symbol.clone())}</strong>
                <span class="hover" data-testid="chart-hover">
                    {move || drawing.with(|d| d.hover.as_ref().map(|(_, text)| text.clone()).unwrap_or_default())}
                </span>
                <span class="controls">
                    {range_buttons}
                    <button class:active=move || style.get() == Style::Line on:click=move |_| style.set(Style::Line)>"Line"</button>
                    <button class:active=move || style.get() == Style::Candles on:click=move |_| style.set(Style::Candles)>"Candles"</button>
                </span>
            </div>
            <svg
                viewBox=format!("0 0 {WIDTH} {HEIGHT}")
                preserveAspectRatio="none"
                on:mousemove=on_move
                on:mouseleave=move |_| hover_x.set(None)
            >
                {move || drawing.with(|d| {
                    let grid = d.y_ticks.iter().map(|(y, label)| view! {
                        <line class="grid" x1=LEFT x2=RIGHT y1=*y y2=*y />
                        <text class="axis" x=RIGHT + 6.0 y=*y + 4.0>{label.clone()}</text>
                    }).collect_view();
                    let times = d.x_ticks.iter().map(|(x, label)| view! {
                        <text class="axis" x=*x y=HEIGHT - 6.0 text-anchor="middle">{label.clone()}</text>
                    }).collect_view();
                    let series = if style.get() == Style::Line {
                        view! { <path class="line" d=d.line.clone() /> }.into_any()
                    } else {
                        let width = d.body_width;
                        d.bodies.iter().map(|&(x, open, close, high, low, up)| {
                            let class = if up { "candle up" } else { "candle down" };
                            view! {
                                <g class=class>
                                    <line x1=x x2=x y1=high y2=low />
                                    <rect x=x - width / 2.0 width=width y=open.min(close) height=(open - close).abs().max(0.8) />
                                </g>
                            }
                        }).collect_view().into_any()
                    };
                    let cursor = d.hover.as_ref().map(|(x, _)| view! {
                        <line class="cursor" x1=*x x2=*x y1=TOP y2=BOTTOM />
                    });
                    view! { {grid} {times} {series} {cursor} }
                })}
            </svg>
        </section>
    }
}

fn draw(
    symbol: String,
    candles: &[Candle],
    now_s: i64,
    seconds: i64,
    hover_x: Option<f64>,
) -> Drawing {
    let x = Scale::new(
        ((now_s - seconds) as f64, (now_s + 1) as f64),
        (LEFT, RIGHT),
    );
    let x_ticks = (0..=4)
        .map(|i| {
            let t = now_s - seconds + seconds * i / 4;
            (
                x.map(t as f64).clamp(LEFT + 24.0, RIGHT - 24.0),
                clock_label(t),
            )
        })
        .collect();
    if candles.is_empty() {
        return Drawing {
            symbol,
            x_ticks,
            ..Drawing::default()
        };
    }
    let (low, high) = candles.iter().fold((f64::MAX, f64::MIN), |(lo, hi), c| {
        (lo.min(c.low), hi.max(c.high))
    });
    let pad = ((high - low) * 0.08).max(0.01);
    let y = Scale::new((low - pad, high + pad), (BOTTOM, TOP));
    let mut line = String::new();
    for (i, candle) in candles.iter().enumerate() {
        let command = if i == 0 { 'M' } else { 'L' };
        line.push_str(&format!(
            "{command}{:.1},{:.1}",
            x.map(candle.t as f64 + 0.5),
            y.map(candle.close)
        ));
    }
    let bodies = candles
        .iter()
        .map(|c| {
            let cx = x.map(c.t as f64 + 0.5);
            (
                cx,
                y.map(c.open),
                y.map(c.close),
                y.map(c.high),
                y.map(c.low),
                c.close >= c.open,
            )
        })
        .collect();
    let y_ticks = nice_ticks(low - pad, high + pad, 5)
        .into_iter()
        .map(|price| (y.map(price), format!("{price:.2}")))
        .collect();
    let hover = hover_x.and_then(|px| {
        let t = x.invert(px).floor() as i64;
        let candle = candles.iter().min_by_key(|c| (c.t - t).abs())?;
        Some((
            x.map(candle.t as f64 + 0.5),
            format!(
                "{}  O {:.2}  H {:.2}  L {:.2}  C {:.2}  vol {}",
                clock_label(candle.t),
                candle.open,
                candle.high,
                candle.low,
                candle.close,
                candle.volume
            ),
        ))
    });
    Drawing {
        symbol,
        line,
        bodies,
        body_width: ((RIGHT - LEFT) / seconds as f64 * 0.7).max(0.5),
        y_ticks,
        x_ticks,
        hover,
    }
}
