//! The module's console output: warnings and errors by default, a level the page sets with
//! `setLogLevel` (or `Peer.start`'s `logLevel`), and lines without build paths.
//!
//! Each line is `antiphon <level> <target>: <message> <field>=<value>...`, written with the
//! console method of its level. Debug lines exist only in debug builds (release builds compile
//! them out).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use crate::error::Error;

/// The levels a page may choose, quietest first.
pub(crate) const LEVELS: [&str; 5] = ["silent", "error", "warn", "info", "debug"];
/// Index into [`LEVELS`]; `warn` unless the page says otherwise.
static LEVEL: AtomicU8 = AtomicU8::new(2);

fn rank(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        _ => 4,
    }
}

/// Sets the level by name; `INVALID_ARGUMENT` for a name not in [`LEVELS`].
pub(crate) fn set_level(name: &str) -> Result<(), Error> {
    let index = LEVELS.iter().position(|l| *l == name).ok_or_else(|| Error::InvalidArgument {
        what: "logLevel".into(),
        reason: format!("{:?}: expected one of {}", name.chars().take(32).collect::<String>(), LEVELS.join(", ")),
    })?;
    if LEVEL.swap(index as u8, Ordering::Relaxed) != index as u8 {
        // Callsites cache whether they are enabled; they ask again.
        tracing::callsite::rebuild_interest_cache();
    }
    Ok(())
}

/// The level in use.
#[cfg(test)]
fn level() -> &'static str {
    LEVELS[usize::from(LEVEL.load(Ordering::Relaxed))]
}

/// Writes enabled events to the browser console.
pub(crate) struct ConsoleLayer;

impl<S: Subscriber> Layer<S> for ConsoleLayer {
    fn enabled(&self, metadata: &Metadata<'_>, _: Context<'_, S>) -> bool {
        rank(metadata.level()) <= LEVEL.load(Ordering::Relaxed)
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let metadata = event.metadata();
        let mut line = Line::default();
        event.record(&mut line);
        let text = format!(
            "antiphon {} {}: {}{}",
            metadata.level().as_str().to_lowercase(),
            metadata.target(),
            line.message,
            line.fields
        );
        let text = wasm_bindgen::JsValue::from(text);
        match *metadata.level() {
            Level::ERROR => web_sys::console::error_1(&text),
            Level::WARN => web_sys::console::warn_1(&text),
            Level::INFO => web_sys::console::info_1(&text),
            _ => web_sys::console::debug_1(&text),
        }
    }
}

/// An event's message and its other fields.
#[derive(Default)]
struct Line {
    message: String,
    fields: String,
}

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn levels_are_set_by_name_and_unknown_names_refused() {
        assert_eq!(level(), "warn", "quiet by default");
        set_level("debug").unwrap();
        assert_eq!(level(), "debug");
        assert_eq!(set_level("verbose").unwrap_err().code(), ErrorCode::InvalidArgument);
        assert_eq!(level(), "debug", "a refused name changes nothing");
        set_level("warn").unwrap();
        assert!(rank(&Level::WARN) <= LEVEL.load(Ordering::Relaxed));
        assert!(rank(&Level::INFO) > LEVEL.load(Ordering::Relaxed));
    }
}
