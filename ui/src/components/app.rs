//! Root component: page frame with the product name around the current screen.

use dioxus::prelude::*;

use super::ComingSoon;

/// Product name as shown to operators (page header and title).
pub const PRODUCT_NAME: &str = "Hearth";

#[component]
pub fn App() -> Element {
    rsx! {
        div { class: "hearth",
            header {
                h1 { "{PRODUCT_NAME}" }
                p { "Remote supervision for heating, cooling and ventilation plants." }
            }
            main { ComingSoon {} }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_builds_its_tree_without_a_renderer() {
        // Runs every component once, so a hook or rsx panic fails here rather
        // than only in the browser.
        let mut dom = VirtualDom::new(App);
        dom.rebuild_in_place();
    }
}
