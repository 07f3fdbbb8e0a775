//! The transport switch: one button per transport (three polling intervals), and compare mode.

use leptos::prelude::*;

use super::app::Mode;
use crate::transport::TransportKind;

#[component]
pub fn Switch(mode: RwSignal<Mode>) -> impl IntoView {
    let buttons = TransportKind::CHOICES
        .into_iter()
        .map(|kind| {
            let active = move || mode.get() == Mode::Single(kind);
            view! {
                <button
                    class:active=active
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
                class:active=move || mode.get() == Mode::Compare
                data-testid="mode-compare"
                on:click=move |_| mode.set(Mode::Compare)
            >
                "Compare all"
            </button>
        </nav>
    }
}
