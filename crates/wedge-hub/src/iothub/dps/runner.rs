//! One provisioning over MQTT/TLS, with a deadline: connect as the registration (clean
//! session: DPS keeps none), subscribe to the answers, register, wait what `retry-after` says,
//! poll until assigned. A poller task owns rumqttc's event loop (`poll` is not cancel-safe).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, MqttOptions, Packet, QoS,
    TlsConfiguration, Transport,
};
use tokio::sync::mpsc;

use super::machine::{RESPONSE_FILTER, Registration, Step};
use super::{Assignment, Attestation, DpsError, DpsOptions, key, username};
use crate::link::tls;

/// Provisions the device described by `options`, giving up after `deadline`.
///
/// # Errors
/// A [`DpsError`]: the attestation refused, DPS's error answer, unreachable, or no assignment
/// in time.
pub async fn provision(options: &DpsOptions, deadline: Duration) -> Result<Assignment, DpsError> {
    match tokio::time::timeout(deadline, run(options)).await {
        Ok(result) => result,
        Err(_) => Err(DpsError::Timeout(deadline)),
    }
}

async fn run(options: &DpsOptions) -> Result<Assignment, DpsError> {
    let (password, identity) = match &options.attestation {
        Attestation::SymmetricKey(device_key) => {
            let token = key::password(
                &options.id_scope,
                &options.registration_id,
                device_key,
                SystemTime::now(),
                options.token_ttl,
            )?;
            (token.expose().to_owned(), None)
        }
        Attestation::X509(identity) => (String::new(), Some(identity)),
    };
    let tls = tls::client_config_with_identity(options.ca_file.as_deref(), identity)?;
    let mut mqtt = MqttOptions::new(&options.registration_id, &options.host, options.port);
    mqtt.set_credentials(
        username(&options.id_scope, &options.registration_id),
        password,
    )
    .set_clean_session(true)
    .set_keep_alive(Duration::from_secs(60))
    .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        Arc::new(tls),
    )));
    let (client, mut eventloop) = AsyncClient::new(mqtt, 16);
    let (events_tx, mut events) = mpsc::channel(16);
    let poller = tokio::spawn(async move {
        loop {
            let event = eventloop.poll().await;
            let failed = event.is_err();
            if events_tx.send(event).await.is_err() || failed {
                return;
            }
        }
    });
    let _abort = AbortOnDrop(poller);
    let mut registration = Registration::new(&options.registration_id, options.payload.clone());
    let mut retry_at: Option<tokio::time::Instant> = None;
    let outcome = loop {
        let retry = async {
            match retry_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = events.recv() => match event {
                None => break Err(DpsError::Unreachable("the MQTT event loop ended".into())),
                Some(Err(error)) => break Err(connection_error(&error)),
                Some(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                    if let Err(e) = client.try_subscribe(RESPONSE_FILTER, QoS::AtLeastOnce) {
                        break Err(DpsError::Unreachable(e.to_string()));
                    }
                }
                Some(Ok(Event::Incoming(Packet::SubAck(_)))) => {
                    if let Err(e) = send(&client, &mut registration) {
                        break Err(e);
                    }
                }
                Some(Ok(Event::Incoming(Packet::Publish(publish)))) => {
                    match registration.on_response(&publish.topic, &publish.payload) {
                        Ok(Step::Ignore) => {}
                        Ok(Step::RetryAfter(wait)) => {
                            tracing::debug!(?wait, "DPS: waiting as retry-after says");
                            retry_at = Some(tokio::time::Instant::now() + wait);
                        }
                        Ok(Step::Assigned(assignment)) => break Ok(assignment),
                        Err(e) => break Err(e),
                    }
                }
                Some(Ok(_)) => {}
            },
            () = retry => {
                retry_at = None;
                if let Err(e) = send(&client, &mut registration) {
                    break Err(e);
                }
            }
        }
    };
    let _ = client.try_disconnect();
    outcome
}

fn send(client: &AsyncClient, registration: &mut Registration) -> Result<(), DpsError> {
    let (topic, payload) = registration.next_request();
    client
        .try_publish(topic, QoS::AtLeastOnce, false, payload)
        .map_err(|e| DpsError::Unreachable(e.to_string()))
}

fn connection_error(error: &ConnectionError) -> DpsError {
    match error {
        ConnectionError::ConnectionRefused(
            code @ (ConnectReturnCode::NotAuthorized | ConnectReturnCode::BadUserNamePassword),
        ) => DpsError::NotAuthorized(
            match code {
                ConnectReturnCode::NotAuthorized => "not authorized",
                _ => "bad user name or password",
            }
            .into(),
        ),
        ConnectionError::ConnectionRefused(code) => {
            DpsError::Unreachable(format!("connection refused: {code:?}"))
        }
        ConnectionError::Tls(rumqttc::TlsError::Io(e)) => DpsError::Unreachable(e.to_string()),
        // A certificate DPS does not take, or one of DPS's we do not trust.
        ConnectionError::Tls(e) => DpsError::NotAuthorized(format!("TLS: {e}")),
        other => DpsError::Unreachable(other.to_string()),
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
