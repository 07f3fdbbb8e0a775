//! The page: loads the symbols and snapshot, owns the session and the running transport
//! clients, ticks the frame, and lays out the rest.

use std::rc::Rc;
use std::time::Duration;

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::chart::Chart;
use super::compare::Compare;
use super::explain::Explain;
use super::lag_panel::LagPanel;
use super::network::Network;
use super::switch::Switch;
use super::watchlist::Watchlist;
use crate::api;
use crate::backoff;
use crate::session::{Market, Session};
use crate::state::{Mode, SessionStore};
use crate::transport::{FeedClient, FeedEvent, TransportKind, Via, now_us};
use tickscope_shared::wire::EdgeHeader;

/// How often the page redraws from the session.
const FRAME: Duration = Duration::from_millis(250);
/// How long a transport may try to connect before the page says what may hold it.
const WAIT_HINT_US: i64 = 4_000_000;

#[component]
pub fn App() -> impl IntoView {
    let session: SessionStore = StoredValue::new_local(None);
    let clients = StoredValue::new_local(Vec::<FeedClient>::new());
    let frame = RwSignal::new(0u64);
    let loaded = RwSignal::new(false);
    let load_error = RwSignal::new(None::<String>);
    let path_note = RwSignal::new(String::new());
    let mode = RwSignal::new(Mode::Single(TransportKind::WebSocket));
    let selected = RwSignal::new(0usize);
    // The server's HTTP/1.1-only origin, when it has one (`--http1-addr`).
    let http1 = StoredValue::new(None::<String>);
    // Why WebTransport cannot run here, or `None` when it can.
    let no_webtransport = StoredValue::new(Some("checking...".to_owned()));

    let ticker = set_interval_with_handle(move || frame.update(|n| *n += 1), FRAME)
        .expect("setting the frame interval");
    on_cleanup(move || {
        ticker.clear();
        clients.update_value(Vec::clear);
    });

    spawn_local(async move {
        let mut attempt = 0;
        let market = loop {
            match load().await {
                Ok((market, path)) => {
                    path_note.set(path);
                    break market;
                }
                Err(err) => {
                    attempt += 1;
                    let wait_ms = backoff::delay_ms(attempt, js_sys::Math::random());
                    load_error.set(Some(format!(
                        "cannot reach the server ({err}); retrying in {:.1} s",
                        f64::from(wait_ms) / 1000.0
                    )));
                    gloo_timers::future::TimeoutFuture::new(wait_ms).await;
                }
            }
        };
        load_error.set(None);
        // Optional: without it compare mode runs on the page's origin only.
        let origins = api::origins().await.unwrap_or_default();
        no_webtransport.set_value(webtransport_missing(origins.webtransport.is_some()));
        http1.set_value(origins.http1);
        session.set_value(Some(Session::new(market)));
        start(
            mode.get_untracked(),
            session,
            clients,
            http1,
            no_webtransport,
        );
        loaded.set(true);
        // A mark the budget benchmark reads: the first frame with prices on screen.
        request_animation_frame(|| {
            if let Some(performance) = web_sys::window().and_then(|w| w.performance()) {
                let _ = performance.mark("tickscope-first-prices");
            }
        });
    });

    // Switching starts the new transport from the cursor the old one reached.
    Effect::new(move |previous: Option<Mode>| {
        let current = mode.get();
        if previous.is_some_and(|previous| previous != current) && loaded.get_untracked() {
            start(current, session, clients, http1, no_webtransport);
        }
        current
    });

    let notice = move || {
        frame.get();
        session.with_value(|s| s.as_ref().map(|s| s.notice.clone()).unwrap_or_default())
    };
    // Transports that have not connected after a few seconds: over HTTP/1.1 the likely cause
    // is the browser's limit of six connections per site, held by other tabs' streams.
    let waiting = move || {
        frame.get();
        session.with_value(|s| {
            s.as_ref()
                .map(|s| s.waiting(now_us(), WAIT_HINT_US))
                .unwrap_or_default()
        })
    };

    view! {
        <header>
            <h1>"tickscope"</h1>
            <span class="tagline">"live prices, and what each transport costs"</span>
        </header>
        <Show when=move || load_error.get().is_some()>
            <div class="banner error" data-testid="load-error">{move || load_error.get()}</div>
        </Show>
        <div class="notice" data-testid="notice">{notice}</div>
        <div class="fine" data-testid="path">{move || path_note.get()}</div>
        {move || {
            let kinds = waiting();
            (!kinds.is_empty()).then(|| {
                let names: Vec<String> = kinds.iter().map(|kind| kind.label()).collect();
                view! {
                    <div class="banner error" data-testid="connection-wait">
                        {format!(
                            "{} has not connected after {} s. Over HTTP/1.1 a browser opens at \
                             most six connections to one site, and every tickscope tab streaming \
                             over SSE, HTTP streaming or long polling holds one of them (compare \
                             mode three). If other tickscope tabs are open, close one or switch \
                             it to WebSocket or polling, and this one connects.",
                            names.join(", "),
                            WAIT_HINT_US / 1_000_000
                        )}
                    </div>
                }
            })
        }}
        <Show when=move || loaded.get() fallback=|| view! { <p class="loading">"connecting..."</p> }>
            <div class="layout">
                <Watchlist session frame selected />
                <section class="main">
                    <Chart session frame selected />
                    <Switch
                        mode
                        versions=http1.get_value().is_some()
                        no_webtransport=no_webtransport.get_value()
                    />
                    <Network />
                    {move || match mode.get() {
                        Mode::Single(kind) => view! {
                            <LagPanel session frame kind />
                            <Explain kinds=vec![kind] />
                        }.into_any(),
                        mode @ Mode::Compare { .. } => {
                            let webtransport = no_webtransport.get_value().is_none();
                            let kinds = TransportKind::COMPARED
                                .into_iter()
                                .filter(|&kind| webtransport || kind != TransportKind::WebTransport)
                                .collect();
                            view! {
                                <Compare session frame transports=mode.transports(webtransport) />
                                <Explain kinds />
                            }.into_any()
                        }
                    }}
                </section>
            </div>
        </Show>
    }
}

/// The symbols and a snapshot to start from, and what the path to the server is.
async fn load() -> Result<(Market, String), String> {
    let (symbols, edge) = api::symbols().await?;
    let snapshot = api::snapshot().await?;
    Ok((Market::new(symbols.symbols, &snapshot), path(edge)))
}

/// What the page knows of its path to the server: straight to an edge, or through a proxy,
/// and so which hop the wire figures describe.
fn path(edge: Option<EdgeHeader>) -> String {
    let Some(edge) = edge else {
        return "Path: unknown (the answer named no edge).".into();
    };
    let page_host = web_sys::window()
        .and_then(|window| window.location().host().ok())
        .unwrap_or_default();
    match edge.proxy(&page_host) {
        None => format!(
            "Path: straight to edge {}. The wire figures are this browser's connections.",
            edge.name
        ),
        Some(evidence) => format!(
            "Path: through a proxy ({evidence}); edge {} answered first. The wire figures are \
             counted at the edges, so here they describe the proxy-to-edge hop, not this \
             browser's: a page cannot read its own hop (Resource Timing reports no upload \
             bytes, nothing for a WebSocket, and a stream's size only when it ends).",
            edge.name
        ),
    }
}

/// Why WebTransport cannot run in this page, or `None` when it can; `served`: whether the
/// server has an endpoint (`/api/origins`).
fn webtransport_missing(served: bool) -> Option<String> {
    if !crate::transport::webtransport::supported() {
        Some("this browser has no WebTransport".into())
    } else if !served {
        Some(
            "this server has no WebTransport endpoint (it runs with --webtransport-addr; \
             `just run` turns it on)"
                .into(),
        )
    } else {
        None
    }
}

/// Stops the running clients and starts those of `mode` from the session's cursor.
fn start(
    mode: Mode,
    session: SessionStore,
    clients: StoredValue<Vec<FeedClient>, LocalStorage>,
    http1: StoredValue<Option<String>>,
    no_webtransport: StoredValue<Option<String>>,
) {
    let webtransport = no_webtransport.get_value().is_none();
    clients.update_value(Vec::clear);
    let now = now_us();
    let started = session
        .try_update_value(|session| {
            let session = session.as_mut()?;
            Some(match mode {
                Mode::Single(kind) => vec![(kind.into(), session.switch_to(kind, now))],
                Mode::Compare { .. } => {
                    let transports = mode.transports(webtransport);
                    let since = session.compare(&transports, now);
                    transports.into_iter().map(|kind| (kind, since)).collect()
                }
            })
        })
        .flatten()
        .unwrap_or_default();
    let http1 = http1.get_value().unwrap_or_default();
    for (transport, since) in started {
        let emit = Rc::new(move |event: FeedEvent| {
            session.try_update_value(|session| {
                if let Some(session) = session.as_mut() {
                    session.handle(transport, event, now_us());
                }
            });
        });
        let origin = match transport.via {
            Via::Page => "",
            Via::Http1 => http1.as_str(),
        };
        let client = FeedClient::start(transport.kind, origin, since, emit);
        clients.update_value(|clients| clients.push(client));
    }
}
