//! Repeats a failed test's panic message after the node logs that `Drop` prints, so the reason
//! is the last thing in the output (CI shows the tail; the backtrace and logs would bury it).

use std::sync::{Mutex, Once};

/// The message of the latest panic in this test process.
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

/// Installs, once per process, a panic hook that records the message before the default hook
/// prints it.
pub(crate) fn record_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let location = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".to_string());
            if let Ok(mut last) = LAST_PANIC.lock() {
                *last = Some(format!("{message}{location}"));
            }
            default(info);
        }));
    });
}

/// Prints the recorded panic message again; called by the harness' `Drop`s after their logs.
pub(crate) fn echo_panic() {
    let last = LAST_PANIC.lock().ok().and_then(|l| l.clone());
    if let Some(message) = last {
        eprintln!("--- the test failed: {message}");
    }
}
