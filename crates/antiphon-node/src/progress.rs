//! Terminal progress bars for long commands; drawn only on a terminal and only once the work
//! has lasted longer than a moment.

use std::path::Path;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::ingest::{Progress, Stage};

/// How long an ingest runs before its bar appears.
const SHOW_AFTER: Duration = Duration::from_millis(300);

/// The progress bar of one ingest.
pub struct IngestBar {
    bar: ProgressBar,
    started: Instant,
    stage: std::cell::Cell<Option<Stage>>,
    shown: std::cell::Cell<bool>,
    name: String,
}

impl IngestBar {
    /// A hidden bar for ingesting `file`.
    pub fn new(file: &Path) -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        let name = file.file_name().map_or_else(|| file.display().to_string(), |n| n.to_string_lossy().into_owned());
        Self {
            bar,
            started: Instant::now(),
            stage: std::cell::Cell::new(None),
            shown: std::cell::Cell::new(false),
            name,
        }
    }

    /// Shows `progress`, drawing the bar once the ingest has run for [`SHOW_AFTER`].
    pub fn update(&self, progress: Progress) {
        if self.stage.get() != Some(progress.stage) {
            self.stage.set(Some(progress.stage));
            let (what, unit) = match progress.stage {
                Stage::Transcoding => ("transcoding", "samples"),
                Stage::Hashing => ("hashing", "segments"),
            };
            let template = if progress.total > 0 {
                format!("{{prefix}} {what} [{{bar:30}}] {{percent:>3}}% {{pos}}/{{len}} {unit}, {{eta}} left")
            } else {
                format!("{{prefix}} {what} {{spinner}} {{pos}} {unit}")
            };
            if let Ok(style) = ProgressStyle::with_template(&template) {
                self.bar.set_style(style.progress_chars("=> "));
            }
            self.bar.set_prefix(self.name.clone());
            self.bar.reset();
        }
        if !self.shown.get() && self.started.elapsed() >= SHOW_AFTER {
            self.shown.set(true);
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
        }
        self.bar.set_length(progress.total);
        self.bar.set_position(progress.done);
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
