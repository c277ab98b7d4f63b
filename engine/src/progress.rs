//! How far a long offline task has come (`db verify`, `db backup`, `db restore`), told to
//! whoever shows it: the CLI draws a progress bar on a terminal, tests and servers see nothing.

/// Told of a task's phases and its steps in each; called from the task's own thread.
pub trait Progress: Sync {
    /// A new phase begins: `what` it does, and how many steps (`total`) it takes, in its unit.
    fn start(&self, what: &'static str, total: u64);
    /// `steps` more of the current phase are done.
    fn advance(&self, steps: u64);
}

/// Progress nobody watches.
pub struct Silent;

impl Progress for Silent {
    fn start(&self, _what: &'static str, _total: u64) {}
    fn advance(&self, _steps: u64) {}
}
