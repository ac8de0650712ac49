//! The task that owns one upstream's connection: connect, serve the connection until it fails,
//! wait as `retry.rs` says (probing while unreachable, backing off while refused), connect
//! again. Everything it waits on is its own (the broker, the outbox, the handle's commands,
//! timers): never the host.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, Outgoing, Packet, QoS};
use tokio::sync::{mpsc, oneshot};
use wedge_core::UpstreamMessage;

use super::outbox::{MAX_IN_FLIGHT, Outbox};
use super::retry::{self, LinkError, Next, PROBE_TIMEOUT, Retry};
use super::{MAX_PACKET_BYTES, Protocol, RetryStatus, StatusCell, Wire};

/// How a connection ended.
enum End {
    /// The handle was dropped.
    Stopped,
    /// Its credentials need renewing: connect again at once.
    Renew,
    Failed(LinkError),
}

/// A connection's end, how long it was up (`None`: no CONNACK) and whom it was to.
struct Outcome {
    end: End,
    up_for: Option<Duration>,
    peer: Option<(String, u16)>,
}

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
        let mut retry = Retry::default();
        loop {
            let Outcome { end, up_for, peer } = self.connection().await;
            self.protocol.on_disconnected();
            let error = match end {
                End::Stopped => return,
                End::Renew => {
                    retry.renewed();
                    continue;
                }
                End::Failed(error) => error,
            };
            let next = retry.failed(&error, up_for, fastrand::f64());
            let at = match next {
                Next::After(delay) => Some(std::time::Instant::now() + delay),
                Next::Now | Next::Probe => None,
            };
            tracing::warn!(%error, kind = ?error.kind, ?next, "{} connection failed", P::PEER);
            self.status.update(|s| {
                s.connected = false;
                s.last_error = Some(error.message.clone());
                s.retry = Some(RetryStatus::new(
                    error.kind,
                    retry.failures(),
                    at,
                    error.message.clone(),
                ));
            });
            let go_on = match (next, peer) {
                (Next::Now, _) => true,
                (Next::After(delay), _) => self.wait(delay).await,
                (Next::Probe, Some(peer)) => {
                    let reachable = self.probe_until_reachable(&peer).await;
                    if reachable {
                        retry.probe_succeeded();
                    }
                    reachable
                }
                // Nothing to probe (the options could not even be made): back off instead.
                (Next::Probe, None) => self.wait(retry::BACKOFF_START).await,
            };
            if !go_on {
                return;
            }
        }
    }

    /// Probes `peer` with a bare TCP connect about every second until one succeeds (`true`),
    /// still taking commands. `false` when the handle is gone.
    async fn probe_until_reachable(&mut self, (host, port): &(String, u16)) -> bool {
        loop {
            if !self.wait(retry::probe_delay(fastrand::f64())).await {
                return false;
            }
            let probe = tokio::time::timeout(
                PROBE_TIMEOUT,
                tokio::net::TcpStream::connect((host.as_str(), *port)),
            );
            tokio::pin!(probe);
            // A probe into a black hole takes its whole timeout: commands go on meanwhile
            // (a module waiting in `twin.report` hears back at once).
            let reachable = loop {
                tokio::select! {
                    result = &mut probe => break matches!(result, Ok(Ok(_))),
                    _ = &mut self.stopped => return false,
                    command = self.commands.recv() => match command {
                        None => return false,
                        Some(command) => self.offline_command(command),
                    },
                }
            };
            if reachable {
                tracing::info!(host, port, "{} reachable again: connecting", P::PEER);
                return true;
            }
        }
    }

    /// A command while disconnected.
    fn offline_command(&mut self, command: P::Command) {
        if let Err(error) = self.protocol.on_command(command, None) {
            tracing::warn!(%error, "{} link", P::PEER);
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
                    Some(command) => self.offline_command(command),
                },
            }
        }
    }

    /// One connection, from CONNECT until it fails, its credentials need renewing or the handle
    /// is dropped.
    async fn connection(&mut self) -> Outcome {
        let (mut options, renew_in) = match self.protocol.connect() {
            Ok(connect) => connect,
            Err(error) => {
                return Outcome {
                    end: End::Failed(LinkError::refused(error)),
                    up_for: None,
                    peer: None,
                };
            }
        };
        let peer = Some(options.broker_address());
        // The same for every cloud but the session: the link re-sends what was not
        // acknowledged and the protocol subscribes again in either case; room for the largest
        // message with its topic, and rumqttc's window a little above the link's own.
        options
            .set_keep_alive(Duration::from_secs(60))
            .set_clean_session(P::CLEAN_SESSION)
            // Incoming publishes are acknowledged by the link (`Ack`), after the protocol: a
            // C2D message only once the host's route took it.
            .set_manual_acks(true)
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
        let mut connected_at = None;
        let end = loop {
            let deadline = self.protocol.deadline().map(tokio::time::Instant::from_std);
            let sendable = connected && self.outbox.sendable();
            // Waiting for new records borrows a handle of its own, not `self`.
            let store = self.outbox.drain().outbox.clone();
            let more_after = self.outbox.wants_more().filter(|_| connected);
            let step: Result<bool, LinkError> = tokio::select! {
                event = events.recv() => match event {
                    None => Err(LinkError::unreachable("the MQTT event loop ended")),
                    Some(Err(e)) => Err(LinkError::from_connection(&e)),
                    Some(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                        connected = true;
                        connected_at = Some(std::time::Instant::now());
                        tracing::info!("connected to the {}", P::PEER);
                        self.status.update(|s| {
                            s.connected = true;
                            s.last_error = None;
                            s.retry = None;
                        });
                        // Subscriptions and the twin GET are requested here, before the first
                        // telemetry publish of this connection, so backlog never delays them.
                        self.with_wire(Some(&client), |protocol, wire| {
                            protocol.on_connected(wire.expect("connected"))
                        })
                        .map(|()| true)
                        .map_err(LinkError::unreachable)
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
                        .map_err(LinkError::unreachable)
                    }
                },
                () = std::future::ready(()), if sendable => self.send_window(&client).map(|()| true),
                () = store.wait_after(more_after.unwrap_or(0)), if more_after.is_some() => {
                    self.outbox.fill().map(|()| true).map_err(LinkError::unreachable)
                }
                () = sleep_until_opt(deadline) => {
                    self.with_wire(connected.then_some(&client), |protocol, wire| {
                        protocol.on_deadline(wire)
                    })
                    .map(|()| true)
                    .map_err(LinkError::unreachable)
                }
                () = sleep_until_opt(renew_at) => {
                    tracing::info!("renewing credentials: reconnecting to the {}", P::PEER);
                    break End::Renew;
                }
            };
            match step {
                Ok(true) => {}
                Ok(false) => break End::Stopped,
                Err(e) => break End::Failed(e),
            }
        };
        let _ = client.try_disconnect();
        drop(poller);
        Outcome {
            end,
            up_for: connected_at.map(|at: std::time::Instant| at.elapsed()),
            peer,
        }
    }

    /// Fills the in-flight window at once (reading more records as needed), instead of one
    /// publish per turn of the loop: after a reconnect the backlog starts at full speed.
    fn send_window(&mut self, client: &AsyncClient) -> Result<(), LinkError> {
        loop {
            while self.outbox.sendable() {
                self.send_next(client).map_err(LinkError::unreachable)?;
            }
            match self.outbox.wants_more() {
                Some(_) if self.outbox.fill_some().map_err(LinkError::unreachable)? => {}
                _ => return Ok(()),
            }
        }
    }

    /// Calls the protocol with the wire (`None` while disconnected).
    fn with_wire<R>(
        &mut self,
        client: Option<&AsyncClient>,
        call: impl FnOnce(&mut P, Option<&mut Wire<'_>>) -> R,
    ) -> R {
        self.with_wire_acking(client, None, call)
    }

    /// As [`Self::with_wire`], handling a publish whose acknowledgement is `ack`: sent after
    /// `call` unless the protocol took it.
    fn with_wire_acking<R>(
        &mut self,
        client: Option<&AsyncClient>,
        ack: Option<super::Ack>,
        call: impl FnOnce(&mut P, Option<&mut Wire<'_>>) -> R,
    ) -> R {
        let mut wire = client.map(|client| Wire {
            client,
            outbox: &mut self.outbox,
            status: &self.status,
            ack,
        });
        let result = call(&mut self.protocol, wire.as_mut());
        if let Some(ack) = wire.and_then(|mut wire| wire.take_ack()) {
            ack.ack();
        }
        result
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

    fn on_event(&mut self, event: Event, client: &AsyncClient) -> Result<(), LinkError> {
        match event {
            Event::Outgoing(Outgoing::Publish(pkid)) => self.outbox.sent(pkid),
            Event::Incoming(Packet::PubAck(ack)) if self.outbox.acknowledged(ack.pkid) => {
                self.status.update(|s| s.acknowledged += 1);
            }
            Event::Incoming(Packet::Publish(publish)) => {
                let ack = super::Ack {
                    client: client.clone(),
                    publish: publish.clone(),
                };
                self.with_wire_acking(Some(client), Some(ack), |protocol, wire| {
                    protocol.on_publish(&publish.topic, &publish.payload, wire.expect("connected"))
                })
                .map_err(LinkError::unreachable)?;
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
