//! The network selector, shown when the server runs behind the network lab (`just lab`): which
//! emulated network the page's traffic crosses, what it emulates, and buttons to switch it.
//! The transports keep their connections and cursors across a switch; the lag panel and
//! compare mode show the new path's effect as it comes.

use leptos::prelude::*;
use leptos::task::spawn_local;
use tickscope_shared::lab::LabStatus;

use crate::api;

#[component]
pub fn Network() -> impl IntoView {
    let status = RwSignal::new(None::<LabStatus>);
    let error = RwSignal::new(None::<String>);
    let switching = RwSignal::new(false);
    spawn_local(async move {
        match api::lab().await {
            Ok(found) => status.set(found),
            Err(err) => error.set(Some(err)),
        }
    });
    let choose = move |name: String| {
        if switching.get_untracked() {
            return;
        }
        switching.set(true);
        spawn_local(async move {
            match api::switch_lab(&name).await {
                Ok(now) => {
                    status.set(Some(now));
                    error.set(None);
                }
                Err(err) => error.set(Some(err)),
            }
            switching.set(false);
        });
    };
    move || {
        let lab = status.get()?;
        let current = lab.active.clone().unwrap_or_default();
        let active = lab
            .profiles
            .iter()
            .find(|profile| profile.name == current)
            .cloned();
        let buttons = lab
            .profiles
            .iter()
            .map(|profile| {
                let name = profile.name.clone();
                let is_active = profile.name == current;
                view! {
                    <button
                        class:active=is_active
                        disabled=move || switching.get()
                        data-testid=format!("network-{}", profile.name)
                        title=profile.emulates.clone()
                        on:click=move |_| choose(name.clone())
                    >
                        {profile.title.clone()}
                    </button>
                }
            })
            .collect_view();
        Some(view! {
            <section class="network" data-testid="network" data-profile=current.clone()>
                <h2>"Network"</h2>
                <nav class="switch" aria-label="network">{buttons}</nav>
                {active.map(|profile| view! {
                    <p class="network-active" data-testid="network-active">
                        <strong>{profile.title}</strong>
                        {format!(" ({} ms round trip): ", profile.rtt_ms)}
                        {profile.emulates}
                        <span class="state">{format!(" Source: {}", profile.source)}</span>
                    </p>
                })}
                {move || error.get().map(|err| view! {
                    <p class="banner error" data-testid="network-error">{err}</p>
                })}
            </section>
        })
    }
}
