//! A plain rumqttc client playing an IoT Hub device against the emulator's broker.
#![allow(dead_code)] // Each test binary uses a different part of this module.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Packet, Publish, QoS,
    SubscribeReasonCode, TlsConfiguration, Transport,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use wedge_hub_emulator::{Broker, BrokerOptions, client_tls_config};

/// Generous bound for anything that should happen promptly on loopback.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Starts a TLS broker with the given `(username, password)` users.
pub fn broker(users: &[(&str, &str)]) -> Broker {
    Broker::start(BrokerOptions {
        users: users
            .iter()
            .map(|(u, p)| ((*u).to_owned(), (*p).to_owned()))
            .collect(),
        ..BrokerOptions::default()
    })
    .expect("starting mosquitto")
}

/// Device connection options: TLS trusting the broker's CA, client id = username.
pub fn options(broker: &Broker, user: &str, password: &str) -> MqttOptions {
    let mut options = MqttOptions::new(user, "127.0.0.1", broker.port());
    options.set_credentials(user, password);
    let tls = client_tls_config(&broker.ca_pem()).unwrap();
    options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        Arc::new(tls),
    )));
    options
}

/// Polls until the CONNACK, returning the connection error if the broker refuses.
pub async fn connect(eventloop: &mut EventLoop) -> Result<(), ConnectionError> {
    loop {
        if let Event::Incoming(Packet::ConnAck(_)) = eventloop.poll().await? {
            return Ok(());
        }
    }
}

/// A connected fake device: incoming packets are forwarded to `incoming`.
pub struct Device {
    pub client: AsyncClient,
    incoming: mpsc::UnboundedReceiver<Packet>,
    task: JoinHandle<()>,
}

impl Drop for Device {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Device {
    pub async fn connect(broker: &Broker, user: &str, password: &str) -> Result<Device> {
        let (client, mut eventloop) = AsyncClient::new(options(broker, user, password), 64);
        tokio::time::timeout(TIMEOUT, connect(&mut eventloop))
            .await
            .context("connect timed out")??;
        let (tx, incoming) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            // Stops at the first error: these tests treat a dropped connection as the end.
            while let Ok(event) = eventloop.poll().await {
                if let Event::Incoming(packet) = event {
                    let _ = tx.send(packet);
                }
            }
        });
        Ok(Device {
            client,
            incoming,
            task,
        })
    }

    /// Subscribes at QoS 1 and returns whether the broker granted it.
    pub async fn subscribe(&mut self, filter: &str) -> Result<bool> {
        self.client.subscribe(filter, QoS::AtLeastOnce).await?;
        loop {
            if let Packet::SubAck(ack) = self.next_packet().await? {
                return Ok(!matches!(ack.return_codes[0], SubscribeReasonCode::Failure));
            }
        }
    }

    /// Publishes at QoS 1 and waits for the broker's PUBACK.
    pub async fn publish(&mut self, topic: &str, payload: impl Into<Vec<u8>>) -> Result<()> {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.into())
            .await?;
        loop {
            if let Packet::PubAck(_) = self.next_packet().await? {
                return Ok(());
            }
        }
    }

    /// The next PUBLISH the device receives.
    pub async fn next_publish(&mut self) -> Result<Publish> {
        loop {
            if let Packet::Publish(publish) = self.next_packet().await? {
                return Ok(publish);
            }
        }
    }

    async fn next_packet(&mut self) -> Result<Packet> {
        match tokio::time::timeout(TIMEOUT, self.incoming.recv()).await {
            Ok(Some(packet)) => Ok(packet),
            Ok(None) => bail!("device connection closed"),
            Err(_) => bail!("no packet within {TIMEOUT:?}"),
        }
    }
}
