//! Mounts the tickscope browser app.

fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(tickscope_frontend::App);
}
