//! JSON-lines file (and stdout): one notification document per line.

use std::io::Write;
use std::path::PathBuf;

use super::{Outcome, payload};
use crate::group::Notification;

pub struct JsonLines {
    pub path: PathBuf,
}

impl JsonLines {
    pub async fn deliver<T>(&self, n: &Notification<T>) -> Outcome {
        let mut line = payload::document(n).to_string();
        line.push('\n');
        let path = self.path.clone();
        let write = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            f.write_all(line.as_bytes())?;
            f.sync_data()
        })
        .await;
        match write {
            Ok(Ok(())) => Outcome::Delivered,
            Ok(Err(e)) => Outcome::Retry(format!("cannot append to {}: {e}", self.path.display())),
            Err(e) => Outcome::Retry(format!("writer task failed: {e}")),
        }
    }

    pub fn healthcheck(&self) -> Result<(), String> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map(|_| ())
            .map_err(|e| format!("cannot open {}: {e}", self.path.display()))
    }
}

/// Results go to stdout, one document per line.
pub fn stdout<T>(n: &Notification<T>) -> Outcome {
    let line = payload::document(n).to_string();
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{line}").and_then(|_| out.flush()) {
        Ok(()) => Outcome::Delivered,
        Err(e) => Outcome::Retry(format!("stdout: {e}")),
    }
}
