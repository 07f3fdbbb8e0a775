//! The lag panel of the active transport: lag (current, p50, p95, max over 30 s), rates, the
//! shares of empty answers, reconnects, the connection state and the cursor chain's health.

use leptos::prelude::*;

use crate::format;
use crate::state::SessionStore;
use crate::stats::{StatsView, WireView};
use crate::transport::{Transport, TransportKind, now_us};
use tickscope_shared::wire::WireReport;

/// One transport's figures, ready to show.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    pub view: StatsView,
    pub offset_us: Option<i64>,
    /// Half the best round trip: how far off the offset can be.
    pub offset_error_us: Option<i64>,
    pub chain: String,
    pub error: Option<String>,
    /// The protocol its requests went over, as the browser reports it (`h2`, `http/1.1`).
    pub protocol: Option<String>,
}

/// Whether the page came over https: its requests then go over TLS.
fn secure() -> bool {
    web_sys::window()
        .and_then(|window| window.location().protocol().ok())
        .is_some_and(|protocol| protocol == "https:")
}

/// The protocol cell: "HTTP/2 over TLS", or a dash until the browser has said.
pub fn protocol_cell(figures: &Figures) -> String {
    figures.protocol.as_deref().map_or_else(
        || "-".into(),
        |next_hop| format::protocol(next_hop, secure()),
    )
}

/// The figures of `kind` at this instant, if it runs.
pub fn figures(session: SessionStore, kind: Transport) -> Option<Figures> {
    session
        .try_update_value(|s| {
            let channel = s.as_mut()?.channels.iter_mut().find(|c| c.kind == kind)?;
            Some(Figures {
                view: channel.stats.view(now_us(), channel.clock.offset_us()),
                offset_us: channel.clock.offset_us(),
                offset_error_us: channel.clock.best().map(|best| best.round_trip_us() / 2),
                chain: format!(
                    "cursor {} · {} ticks · {} gaps · {} breaks",
                    channel.cursor(),
                    channel.chain.ticks(),
                    channel.chain.gaps(),
                    channel.breaks
                ),
                error: channel.last_error.clone(),
                protocol: channel.protocol.clone(),
            })
        })
        .flatten()
}

/// A lag figure; one below the clock offset's error bound reads as within it.
pub fn lag_cell(figures: &Figures, pick: fn(&tickscope_shared::lag::LagSummary) -> i64) -> String {
    figures.view.lag.as_ref().map_or_else(
        || "-".into(),
        |lag| format::lag_within(pick(lag), figures.offset_error_us),
    )
}

/// A wire figure, or a dash until the server has reported.
pub fn wire_cell(figures: &Figures, show: fn(&WireView) -> String) -> String {
    figures.view.wire.as_ref().map_or_else(|| "-".into(), show)
}

/// The edges that counted this transport's bytes, the last to report first: one for a
/// stream, and behind a round-robin balancer every edge its polls landed on.
pub fn edges_cell(wire: &WireView) -> String {
    let last = wire.total.edge.clone().unwrap_or_else(|| "-".into());
    let others: Vec<&String> = wire.edges.iter().filter(|e| **e != last).collect();
    if others.is_empty() {
        last
    } else {
        let others: Vec<&str> = others.iter().map(|e| e.as_str()).collect();
        format!("{last} (and {})", others.join(", "))
    }
}

/// A field of the latest wire report, for the page's `data-wire-*` attributes (what the
/// packet-capture test reads).
pub fn wire_total(figures: &Option<Figures>, pick: fn(&WireReport) -> i64) -> String {
    figures
        .as_ref()
        .and_then(|f| f.view.wire.as_ref())
        .map_or_else(String::new, |wire| pick(&wire.total).to_string())
}

/// A lag figure in µs, for the `data-lag-*` attributes benchmarks read.
pub fn lag_us(
    figures: &Option<Figures>,
    pick: fn(&tickscope_shared::lag::LagSummary) -> i64,
) -> Option<String> {
    let lag = figures.as_ref()?.view.lag.as_ref()?;
    Some(pick(lag).to_string())
}

#[component]
pub fn LagPanel(session: SessionStore, frame: RwSignal<u64>, kind: TransportKind) -> impl IntoView {
    let figures = Memo::new(move |_| {
        frame.get();
        figures(session, kind.into())
    });
    let show = move |f: fn(&Figures) -> String| {
        move || figures.with(|x| x.as_ref().map(f).unwrap_or_default())
    };
    view! {
        <section class="panel" data-testid="lag-panel"
            data-wire-up=move || figures.with(|f| wire_total(f, |w| w.up as i64))
            data-wire-down=move || figures.with(|f| wire_total(f, |w| w.down as i64))
            data-wire-requests=move || figures.with(|f| wire_total(f, |w| w.requests as i64))
            data-wire-at=move || figures.with(|f| wire_total(f, |w| w.at))
            data-offset-us=move || figures.with(|f| f.as_ref().and_then(|f| f.offset_us).map(|o| o.to_string()))
            data-offset-error-us=move || figures.with(|f| f.as_ref().and_then(|f| f.offset_error_us).map(|e| e.to_string()))
            data-lag-p50-us=move || figures.with(|f| lag_us(f, |l| l.p50_us))
            data-lag-p99-us=move || figures.with(|f| lag_us(f, |l| l.p99_us))
            data-lag-mean-us=move || figures.with(|f| f.as_ref().and_then(|f| f.view.lag.as_ref()).map(|l| (l.mean_us as i64).to_string()))
            data-lag-count=move || figures.with(|f| f.as_ref().and_then(|f| f.view.lag.as_ref()).map(|l| l.count.to_string()))
            data-protocol=move || figures.with(|f| f.as_ref().and_then(|f| f.protocol.clone()))>
            <h2>{kind.label()} " " <span class="state" data-testid="state">{show(|f| f.view.state.label())}</span></h2>
            <div class="figures">
                <div><span>"lag now"</span><strong data-testid="lag-current">{show(|f| lag_cell(f, |l| l.current_us))}</strong></div>
                <div><span>"p50"</span><strong data-testid="lag-p50">{show(|f| lag_cell(f, |l| l.p50_us))}</strong></div>
                <div><span>"p95"</span><strong data-testid="lag-p95">{show(|f| lag_cell(f, |l| l.p95_us))}</strong></div>
                <div><span>"max"</span><strong data-testid="lag-max">{show(|f| lag_cell(f, |l| l.max_us))}</strong></div>
                <div><span>"updates"</span><strong data-testid="updates">{show(|f| format::rate(f.view.updates_per_s))}</strong></div>
                <div><span>"HTTP requests"</span><strong data-testid="requests">{show(|f| format::rate(f.view.requests_per_s))}</strong></div>
                <div><span>"on the wire, down"</span><strong data-testid="wire-down">{show(|f| wire_cell(f, |w| format::bytes_per_s(w.down_per_s)))}</strong></div>
                <div><span>"on the wire, up"</span><strong data-testid="wire-up">{show(|f| wire_cell(f, |w| format::bytes_per_s(w.up_per_s)))}</strong></div>
                <div><span>"down per tick"</span><strong data-testid="wire-down-per-tick">{show(|f| wire_cell(f, |w| format::bytes_per_tick(w.down_per_tick)))}</strong></div>
                <div><span>"up per tick"</span><strong data-testid="wire-up-per-tick">{show(|f| wire_cell(f, |w| format::bytes_per_tick(w.up_per_tick)))}</strong></div>
                <div><span>"requests per tick"</span><strong data-testid="requests-per-tick">{show(|f| wire_cell(f, |w| format::per_tick(w.requests_per_tick)))}</strong></div>
                <div><span>"payload received"</span><strong data-testid="bytes">{show(|f| format::bytes_per_s(f.view.bytes_per_s))}</strong></div>
                <div><span>"empty answers"</span><strong data-testid="empty">{show(|f| format::share(f.view.empty_share))}</strong></div>
                <div><span>"long-poll timeouts"</span><strong data-testid="timeouts">{show(|f| format::share(f.view.timeout_share))}</strong></div>
                <div><span>"reconnects"</span><strong data-testid="reconnects">{show(|f| f.view.reconnects.to_string())}</strong></div>
                <div><span>"HTTP version"</span><strong data-testid="protocol">{show(protocol_cell)}</strong></div>
                <div><span>"counted at edge"</span><strong data-testid="edge">{show(|f| wire_cell(f, edges_cell))}</strong></div>
            </div>
            <p class="fine">
                "Over the last 30 s. Lag is receive time minus the tick's server timestamp, on the server's clock (offset "
                <span data-testid="offset">{show(|f| match (f.offset_us, f.offset_error_us) {
                    (Some(offset), Some(error)) => format!("{:+.2} ms, within ±{:.2} ms", offset as f64 / 1000.0, error as f64 / 1000.0),
                    _ => "not yet measured".into(),
                })}</span>
                "). On the wire: every TCP payload byte of this transport's connections, both ways (request and response heads, framing, handshakes, clock exchanges), counted by the server; over HTTPS these are the TLS records, and on HTTP/2, where transports share one connection, this transport's streams' frames with their share of the records, the connection's own frames and handshake apart ("
                <span data-testid="wire-total">{show(|f| wire_cell(f, |w| format!("{} down, {} up, {} requests so far", format::bytes(w.total.down as f64), format::bytes(w.total.up as f64), w.total.requests)))}</span>
                "). Chain: " <span data-testid="chain">{show(|f| f.chain.clone())}</span>
                {move || figures.with(|f| f.as_ref().and_then(|f| f.error.clone()).map(|e| format!(". Last error: {e}")))}
            </p>
        </section>
    }
}
