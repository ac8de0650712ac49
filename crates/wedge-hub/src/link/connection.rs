//! The task that owns one upstream's connection: connect, serve the connection until it fails,
//! wait, connect again. Everything it waits on is its own (the broker, the outbox, the
//! handle's commands, timers): never the host.

use std::time::{Duration, SystemTime};

use rumqttc::{AsyncClient, Event, Outgoing, Packet, QoS};
use tokio::sync::{mpsc, oneshot};
use wedge_core::UpstreamMessage;

use super::outbox::{MAX_IN_FLIGHT, Outbox};
use super::{MAX_PACKET_BYTES, Protocol, StatusCell, Wire};

/// Reconnect delays: doubled after each failure, with jitter, up to the cap.
const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_CAP: Duration = Duration::from_secs(60);

struct Link<P: Protocol> {
    protocol: P,
    commands: mpsc::Receiver<P::Command>,
    status: StatusCell,
    outbox: Outbox,
    /// Resolves when the handle is dropped.
    stopped: oneshot::Receiver<()>,
}

/// Runs the link until its handle is dropped.
pub(super) async fn run<P: Protocol>(
    protocol: P,
    commands: mpsc::Receiver<P::Command>,
    status: StatusCell,
    outbox: Outbox,
    stopped: oneshot::Receiver<()>,
) {
    Link {
        protocol,
        commands,
        status,
        outbox,
        stopped,
    }
    .run()
    .await;
}

impl<P: Protocol> Link<P> {
    async fn run(mut self) {
        let drain = self.outbox.drain().clone();
        self.protocol.prepare(&drain).await;
        let mut backoff = BACKOFF_START;
        loop {
            match self.connection().await {
                Ok(true) => backoff = BACKOFF_START,
                Ok(false) => return, // the handle was dropped
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "{} connection failed", P::PEER);
                    self.status.update(|s| {
                        s.connected = false;
                        s.last_error = Some(error.clone());
                    });
                }
            }
            self.protocol.on_disconnected();
            if !self.wait(jitter(backoff)).await {
                return;
            }
            backoff = (backoff * 2).min(BACKOFF_CAP);
        }
    }

    /// Waits out a reconnect delay, still taking commands. `false` when the handle is gone.
    async fn wait(&mut self, delay: Duration) -> bool {
        let until = tokio::time::Instant::now() + delay;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return true,
                _ = &mut self.stopped => return false,
                command = self.commands.recv() => match command {
                    None => return false,
                    Some(command) => {
                        if let Err(error) = self.protocol.on_command(command, None) {
                            tracing::warn!(%error, "{} link", P::PEER);
                        }
                    }
                },
            }
        }
    }

    /// One connection, from CONNECT until it fails (`Err`), its credentials need renewing
    /// (`Ok(true)`) or the handle is dropped (`Ok(false)`).
    async fn connection(&mut self) -> Result<bool, String> {
        let (mut options, renew_in) = self.protocol.connect()?;
        // The same for every cloud: a clean session (the link re-sends what was not
        // acknowledged and the protocol subscribes again), room for the largest message with
        // its topic, and rumqttc's window a little above the link's own.
        options
            .set_keep_alive(Duration::from_secs(60))
            .set_clean_session(true)
            .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES)
            .set_inflight(MAX_IN_FLIGHT as u16 + 16);
        let renew_at = renew_in.map(|d| tokio::time::Instant::now() + d);
        let (client, mut eventloop) = AsyncClient::new(options, 1024);
        let (event_tx, mut events) = mpsc::channel(256);
        let poller = AbortOnDrop(tokio::spawn(async move {
            loop {
                let event = eventloop.poll().await;
                let failed = event.is_err();
                if event_tx.send(event).await.is_err() || failed {
                    return;
                }
            }
        }));
        self.outbox.rewind();
        let mut connected = false;
        let result = loop {
            let deadline = self.protocol.deadline().map(tokio::time::Instant::from_std);
            let sendable = connected && self.outbox.sendable();
            // Waiting for new records borrows a handle of its own, not `self`.
            let store = self.outbox.drain().outbox.clone();
            let more_after = self.outbox.wants_more().filter(|_| connected);
            let step: Result<bool, String> = tokio::select! {
                event = events.recv() => match event {
                    None => Err("the MQTT event loop ended".to_string()),
                    Some(Err(e)) => Err(describe(&e)),
                    Some(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                        connected = true;
                        tracing::info!("connected to the {}", P::PEER);
                        self.status.update(|s| {
                            s.connected = true;
                            s.last_error = None;
                        });
                        self.with_wire(Some(&client), |protocol, wire| {
                            protocol.on_connected(wire.expect("connected"))
                        })
                        .map(|()| true)
                    }
                    Some(Ok(event)) => self.on_event(event, &client).map(|()| true),
                },
                _ = &mut self.stopped => Ok(false),
                command = self.commands.recv() => match command {
                    None => Ok(false),
                    Some(command) => {
                        self.with_wire(connected.then_some(&client), |protocol, wire| {
                            protocol.on_command(command, wire)
                        })
                        .map(|()| true)
                    }
                },
                () = std::future::ready(()), if sendable => self.send_next(&client).map(|()| true),
                () = store.wait_after(more_after.unwrap_or(0)), if more_after.is_some() => {
                    self.outbox.fill().map(|()| true)
                }
                () = sleep_until_opt(deadline) => {
                    self.with_wire(connected.then_some(&client), |protocol, wire| {
                        protocol.on_deadline(wire)
                    })
                    .map(|()| true)
                }
                () = sleep_until_opt(renew_at) => {
                    tracing::info!("renewing credentials: reconnecting to the {}", P::PEER);
                    break Ok(true);
                }
            };
            match step {
                Ok(true) => {}
                Ok(false) => break Ok(false),
                Err(e) => break Err(e),
            }
        };
        let _ = client.try_disconnect();
        drop(poller);
        result
    }

    /// Calls the protocol with the wire (`None` while disconnected).
    fn with_wire<R>(
        &mut self,
        client: Option<&AsyncClient>,
        call: impl FnOnce(&mut P, Option<&mut Wire<'_>>) -> R,
    ) -> R {
        let mut wire = client.map(|client| Wire {
            client,
            outbox: &mut self.outbox,
            status: &self.status,
        });
        call(&mut self.protocol, wire.as_mut())
    }

    fn send_next(&mut self, client: &AsyncClient) -> Result<(), String> {
        let Some((id, record)) = self.outbox.next_to_send() else {
            return Ok(());
        };
        let message_id = self.outbox.drain().message_id(id);
        let topic = UpstreamMessage::from_record(&record).and_then(|message| {
            let topic = self.protocol.telemetry_topic(&message_id, &message)?;
            if !super::fits_in_a_packet(&topic, &message.message.body) {
                return Err(format!(
                    "{} bytes with its topic, over the {MAX_PACKET_BYTES}-byte packet limit",
                    topic.len() + message.message.body.len()
                ));
            }
            Ok((topic, message.message.body))
        });
        match topic {
            Ok((topic, payload)) => {
                client
                    .try_publish(topic, QoS::AtLeastOnce, false, payload)
                    .map_err(|e| e.to_string())?;
                self.outbox.requested(Some(id));
            }
            // Admission checked the message before it was stored; this only happens if the
            // record was damaged or the deployment changed the topic template since. Keeping
            // the record would block the outbox for good.
            Err(error) => {
                tracing::error!(%error, message_id, "dropping a stored message that cannot be sent");
                self.status.update(|s| s.dropped.unsendable += 1);
                self.outbox.forget(id);
            }
        }
        Ok(())
    }

    fn on_event(&mut self, event: Event, client: &AsyncClient) -> Result<(), String> {
        match event {
            Event::Outgoing(Outgoing::Publish(pkid)) => self.outbox.sent(pkid),
            Event::Incoming(Packet::PubAck(ack)) if self.outbox.acknowledged(ack.pkid) => {
                self.status.update(|s| s.acknowledged += 1);
            }
            Event::Incoming(Packet::Publish(publish)) => {
                self.with_wire(Some(client), |protocol, wire| {
                    protocol.on_publish(&publish.topic, &publish.payload, wire.expect("connected"))
                })?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// Aborts the task when dropped, so a connection's poller never outlives it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// `delay` plus up to 25% random jitter, so that a fleet does not reconnect in lockstep.
fn jitter(delay: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    delay + delay.mul_f64(f64::from(nanos % 1000) / 4000.0)
}

/// A connection error in words, never including the password.
fn describe(error: &rumqttc::ConnectionError) -> String {
    match error {
        rumqttc::ConnectionError::ConnectionRefused(code) => {
            format!("the broker refused the connection ({code:?}): check the credentials")
        }
        other => other.to_string(),
    }
}
