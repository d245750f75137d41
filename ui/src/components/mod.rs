//! The web app's components, one per file; [`App`] is the root.

mod app;
mod coming_soon;

pub use app::App;
use coming_soon::ComingSoon;
