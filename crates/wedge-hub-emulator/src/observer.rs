//! [`MqttObserver`]: the far side of the generic MQTT upstream, as a test sees it: a client with
//! the service user's rights that records what arrives on a topic filter and publishes
//! (retained) configuration documents.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::{Broker, client_tls_config};

/// One message the observer received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// Whether the broker delivered it as a retained message.
    pub retain: bool,
}

/// A subscriber/publisher on a [`Broker`]; its task stops when it is dropped.
pub struct MqttObserver {
    client: AsyncClient,
    received: Arc<Mutex<Vec<Received>>>,
    revision: watch::Receiver<u64>,
    task: JoinHandle<()>,
}

impl Drop for MqttObserver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MqttObserver {
    /// Connects as the service user, subscribes to `filter` at QoS 1 and returns once the
    /// subscription is acknowledged. The session is persistent: across a broker restart the
    /// subscription stays and messages published meanwhile are kept for the observer, as for
    /// any always-on consumer.
    pub async fn start(broker: &Broker, filter: &str) -> Result<MqttObserver> {
        static INSTANCES: AtomicU64 = AtomicU64::new(0);
        let (user, password) = broker.service_credentials();
        let instance = INSTANCES.fetch_add(1, Ordering::Relaxed);
        let client_id = format!("observer-{}-{instance}", std::process::id());
        let mut options = MqttOptions::new(client_id, "127.0.0.1", broker.port());
        options
            .set_credentials(user, password)
            .set_clean_session(false)
            .set_max_packet_size(512 * 1024, 512 * 1024);
        if broker.tls() {
            let tls = client_tls_config(&broker.ca_pem())?;
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                Arc::new(tls),
            )));
        }
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        client.subscribe(filter, QoS::AtLeastOnce).await?;
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let (revision_tx, revision) = watch::channel(0);
        let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
        let sink = received.clone();
        let task = tokio::spawn(async move {
            let mut subscribed_tx = Some(subscribed_tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = subscribed_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        sink.lock().unwrap().push(Received {
                            topic: p.topic.clone(),
                            payload: p.payload.to_vec(),
                            retain: p.retain,
                        });
                        revision_tx.send_modify(|r| *r += 1);
                    }
                    Ok(_) => {}
                    // Reconnects by polling again, after a pause so a stopped broker is not
                    // hammered.
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), subscribed)
            .await
            .context("the observer's subscription was not acknowledged")??;
        Ok(MqttObserver {
            client,
            received,
            revision,
            task,
        })
    }

    /// Everything received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Publishes at QoS 1.
    pub async fn publish(
        &self,
        topic: &str,
        payload: impl Into<Vec<u8>>,
        retain: bool,
    ) -> Result<()> {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload.into())
            .await?;
        Ok(())
    }

    /// Waits until `check` finds what it looks for in everything received, or `timeout`.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&[Received]) -> Option<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + timeout;
        let mut revision = self.revision.clone();
        loop {
            if let Some(found) = check(&self.received()) {
                return Ok(found);
            }
            if tokio::time::timeout_at(deadline, revision.changed())
                .await
                .is_err()
            {
                bail!(
                    "timed out after {timeout:?} waiting for {what}; received {} messages",
                    self.received().len()
                );
            }
        }
    }
}
