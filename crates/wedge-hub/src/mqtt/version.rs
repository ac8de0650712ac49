//! The version the MQTT upstream gives each config document (the `av` of its acknowledgements
//! and `lastDesiredVersion`): a counter that keeps growing across restarts.
//!
//! Why persisted and not the wall clock: edge devices often boot without a real-time clock
//! (a Raspberry Pi restores the time of its last shutdown, saved hourly, until NTP answers), so
//! a clock-derived version could go backwards after a restart, exactly when a stale retained
//! config document arrives first. The store is there and durable, so the counter lives in its
//! meta table. It is reserved in blocks, HiLo style: at start the ceiling `S` stored last time
//! is read, numbering continues from `S`, and `S + BLOCK` is made durable before the first
//! connection; halfway through a block the next ceiling is written in the background. So a
//! crash at any point restarts above every number handed out, without a store write per
//! document and without the link ever waiting on the store once it is connected.

use tokio::sync::watch;
use wedge_store::Meta;

/// The meta entry holding the ceiling, as decimal text.
const META_NAME: &str = "mqtt-config-version";
/// Versions reserved at a time.
const BLOCK: u64 = 1024;

/// The counter. Starts at 0 until [`Versions::reserve`] ran.
#[derive(Debug, Default)]
pub(super) struct Versions {
    last: u64,
    /// Every version up to this one is durably reserved.
    ceiling: u64,
    /// Latest ceiling to write, for the background writer.
    writer: Option<watch::Sender<u64>>,
}

impl Versions {
    /// Reads the ceiling left by the previous run and durably reserves the next block; starts
    /// the writer for later blocks. A store that fails is logged: numbering then starts from
    /// what could be read (versions may repeat after a restart, nothing else breaks).
    pub(super) async fn reserve(&mut self, meta: &Meta) {
        let stored = match meta.get(META_NAME) {
            Ok(value) => value
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .and_then(|text| text.parse::<u64>().ok())
                .unwrap_or(0),
            Err(error) => {
                tracing::error!(%error, "cannot read the MQTT config version");
                0
            }
        };
        self.last = self.last.max(stored);
        self.ceiling = self.last.saturating_add(BLOCK);
        if let Err(error) = meta
            .set(META_NAME, self.ceiling.to_string().into_bytes())
            .await
        {
            tracing::error!(%error, "cannot reserve MQTT config versions");
        }
        let (writer, mut latest) = watch::channel(self.ceiling);
        let meta = meta.clone();
        tokio::spawn(async move {
            while latest.changed().await.is_ok() {
                let ceiling = *latest.borrow_and_update();
                if let Err(error) = meta.set(META_NAME, ceiling.to_string().into_bytes()).await {
                    tracing::error!(%error, "cannot reserve MQTT config versions");
                }
            }
        });
        self.writer = Some(writer);
    }

    /// The next version.
    pub(super) fn next(&mut self) -> u64 {
        self.last = self.last.saturating_add(1);
        if self.ceiling.saturating_sub(self.last) < BLOCK / 2
            && let Some(writer) = &self.writer
        {
            self.ceiling = self.last.saturating_add(BLOCK);
            writer.send_replace(self.ceiling);
        }
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// The store in `dir` once the previous run's background writer (which holds it) is gone.
    async fn open_when_released(dir: &std::path::Path) -> wedge_store::Store {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match wedge_store::Store::open(dir) {
                Ok(store) => return store,
                Err(e) => assert!(Instant::now() < deadline, "{e}"),
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn versions_keep_growing_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let mut seen = 0;
        for run in 0..3 {
            let store = open_when_released(dir.path()).await;
            let mut versions = Versions::default();
            versions.reserve(&store.meta()).await;
            // The second run goes past half a block, so a later ceiling is written meanwhile.
            let count = if run == 1 { BLOCK } else { 3 };
            for _ in 0..count {
                let version = versions.next();
                assert!(version > seen, "run {run}: {version} after {seen}");
                seen = version;
            }
            store.flush().await.unwrap();
            // Let the background writer's last ceiling reach the store before "restarting".
            let wanted = versions.ceiling.to_string().into_bytes();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while store.meta().get(META_NAME).unwrap() != Some(wanted.clone()) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "ceiling never written"
                );
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
    }
}
