//! Browser entry point (`dx serve --platform web` from `ui/`). Natively this
//! binary only explains where the app runs, so workspace builds stay green.

fn main() {
    #[cfg(target_arch = "wasm32")]
    hearth_ui::launch();

    #[cfg(not(target_arch = "wasm32"))]
    eprintln!(
        "hearth-ui runs in the browser: build it for wasm32-unknown-unknown (e.g. `dx serve --platform web`)."
    );
}
