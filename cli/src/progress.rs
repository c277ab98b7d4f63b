//! Progress bars for long offline work (indicatif): drawn on standard error when it is a
//! terminal, nothing at all when it is piped or redirected.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar the engine's long tasks move ([`allot_engine::Progress`]); cleared when dropped.
pub struct Bar(ProgressBar);

impl Bar {
    pub fn new() -> Bar {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template("{msg:28} [{bar:40}] {pos}/{len} {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        Bar(bar)
    }

    /// A spinner with a count, for work whose size is not known ahead.
    pub fn counting(what: &'static str) -> Bar {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template("{spinner} {pos} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        bar.set_style(style);
        bar.set_message(what);
        Bar(bar)
    }
}

impl allot_engine::Progress for Bar {
    fn start(&self, what: &'static str, total: u64) {
        self.0.set_message(what);
        self.0.set_position(0);
        self.0.set_length(total);
    }

    fn advance(&self, steps: u64) {
        self.0.inc(steps);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}
