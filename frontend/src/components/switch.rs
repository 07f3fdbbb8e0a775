//! The transport switch: one button per transport (three polling intervals), and compare mode,
//! also with HTTP/1.1 beside HTTP/2 when the server has an HTTP/1.1 origin.

use leptos::prelude::*;

use crate::state::Mode;
use crate::transport::TransportKind;

#[component]
pub fn Switch(
    mode: RwSignal<Mode>,
    versions: bool,
    /// Why WebTransport cannot run here; its button is then disabled and says why.
    no_webtransport: Option<String>,
) -> impl IntoView {
    let buttons = TransportKind::CHOICES
        .into_iter()
        .map(|kind| {
            let active = move || mode.get() == Mode::Single(kind);
            let missing = match kind {
                TransportKind::WebTransport => no_webtransport.clone(),
                _ => None,
            };
            view! {
                <button
                    class:active=active
                    disabled=missing.is_some()
                    title=missing
                    data-testid=format!("transport-{}", kind.id())
                    on:click=move |_| mode.set(Mode::Single(kind))
                >
                    {kind.label()}
                </button>
            }
        })
        .collect_view();
    view! {
        <nav class="switch" aria-label="transport">
            {buttons}
            <button
                class="compare-button"
                class:active=move || mode.get() == Mode::Compare { versions: false }
                data-testid="mode-compare"
                on:click=move |_| mode.set(Mode::Compare { versions: false })
            >
                "Compare all"
            </button>
            <Show when=move || versions>
                <button
                    class="compare-button"
                    class:active=move || mode.get() == Mode::Compare { versions: true }
                    data-testid="mode-compare-versions"
                    title="Each HTTP transport over HTTP/2 and over HTTP/1.1 (the server's second port), side by side"
                    on:click=move |_| mode.set(Mode::Compare { versions: true })
                >
                    "Compare HTTP/1.1 and HTTP/2"
                </button>
            </Show>
        </nav>
    }
}
