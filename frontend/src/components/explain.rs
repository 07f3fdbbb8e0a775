//! A short "how it works" for each transport, shown beside its live numbers.

use leptos::prelude::*;

use crate::transport::TransportKind;

fn text(kind: TransportKind) -> &'static str {
    match kind {
        TransportKind::Polling { .. } => {
            "The page asks the server for news at a fixed interval, passing the cursor of the last \
             tick it has. Each ask is a full HTTP request, and when nothing happened the answer is \
             empty. A tick waits on average half an interval before anyone asks for it, so lag \
             follows the interval, and a faster interval buys lower lag with more requests."
        }
        TransportKind::LongPolling => {
            "The page asks, and the server holds the request open until a tick after the cursor \
             exists (or 25 s pass), then answers at once; the page asks again straight away. Lag \
             is close to push, but every batch still costs a request with its headers, and ticks \
             that arrive while the next request is on its way wait for it."
        }
        TransportKind::WebSocket => {
            "After one HTTP upgrade handshake, a single connection stays open in both directions. \
             The page subscribes with its cursor and the server pushes each batch as a small \
             frame as soon as it is published. Pings in both directions keep the connection \
             honest and give the page its clock offset."
        }
        TransportKind::Sse => {
            "One ordinary HTTP response that never ends: the server writes each batch as an event \
             tagged with its cursor. If the stream breaks, the page reconnects from that cursor \
             (a browser on its own sends it as Last-Event-ID). One direction only, plain HTTP, so \
             proxies and HTTP/2 handle it well."
        }
        TransportKind::Stream => {
            "One ordinary HTTP response that never ends, read by the page with fetch: each \
             batch is a line of JSON with its cursor, and a heartbeat line comes when nothing \
             else does. If the stream breaks, the page asks again from the last cursor. Plain \
             HTTP like SSE, without EventSource's text format, so any HTTP client can read it; \
             Centrifugo offers it where proxies break WebSocket."
        }
        TransportKind::WebTransport => {
            "HTTP/3 over QUIC, on UDP. The page opens a session (pinning the server's short-lived \
             certificate by its hash) and one control stream for pings and heartbeats; the \
             server sends each batch on a QUIC stream of its own. Over TCP one lost packet holds \
             up everything behind it; here it holds up only its own batch, and the page puts \
             batches back in order by the cursor each names. Lag is timed when a batch's stream \
             reaches the page."
        }
    }
}

#[component]
pub fn Explain(kinds: Vec<TransportKind>) -> impl IntoView {
    let items = kinds
        .into_iter()
        .map(|kind| {
            view! {
                <div class="explain-item" data-testid=format!("explain-{}", kind.id())>
                    <h3>{kind.label()}</h3>
                    <p>{text(kind)}</p>
                </div>
            }
        })
        .collect_view();
    view! { <section class="explain"><h2>"How it works"</h2>{items}</section> }
}
