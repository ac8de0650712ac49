//! The server loop: accepts clients up to `max-clients` and serves each in two tasks, a reader
//! (lines in: commands, publications, telemetry) and a writer (its queue out). Everything waits
//! in `wasi:io/poll`: idle clients cost nothing.

use std::cell::Cell;
use std::collections::HashSet;
use std::rc::Rc;

use wstd::future::FutureExt as _;
use wstd::time::Duration;

use crate::Settings;
use crate::hub::{Client, Frame, Hub};
use crate::protocol::{self, Command};
use crate::socket::{self, Connection};

/// How long a closing client's writer may take to send what is queued (the `ERR` line).
const DRAIN_MS: u64 = 1000;

/// How much one read takes from a socket (and one write sends).
const CHUNK: usize = 64 * 1024;

/// Most messages the host takes in one `send-batch`.
const MAX_BATCH: usize = 1024;

struct Server {
    settings: Settings,
    hub: Hub,
    /// Whether the missing route for `output` was logged already.
    warned_no_route: Cell<bool>,
}

/// Listens on `settings.listen` and serves until the listener fails.
pub async fn run(settings: Settings) -> Result<(), String> {
    let listener = socket::listen(&settings.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
    wedge_sdk::log::info(&format!("listening on {}", settings.listen));
    let server = Rc::new(Server {
        settings,
        hub: Hub::default(),
        warned_no_route: Cell::new(false),
    });
    loop {
        let connection = match listener.accept().await {
            Ok(connection) => connection,
            Err(e) => {
                wedge_sdk::log::warn(&format!("accept failed: {e}"));
                continue;
            }
        };
        if server.hub.clients() >= server.settings.max_clients {
            wedge_sdk::log::warn(&format!(
                "refused a client: {} connected (max-clients)",
                server.hub.clients()
            ));
            wstd::runtime::spawn(refuse(connection)).detach();
            continue;
        }
        wstd::runtime::spawn(serve(server.clone(), connection)).detach();
    }
}

async fn refuse(connection: Connection) {
    let _ = connection
        .output
        .write_all(b"ERR too many clients\n")
        .timeout(Duration::from_millis(DRAIN_MS))
        .await;
}

/// One client, from connect to close.
async fn serve(server: Rc<Server>, connection: Connection) {
    let connection = Rc::new(connection);
    let client = Client::new(server.settings.max_queue_kb * 1024);
    let id = server.hub.join(client.clone());
    let writer = wstd::runtime::spawn(write(connection.clone(), client.clone()));
    let mut subscriptions = HashSet::new();
    if let Err(why) = read(&server, id, &connection, &client, &mut subscriptions).await {
        client.push(Frame::from(format!("ERR {why}\n").into_bytes()));
    }
    server.hub.leave(id, &subscriptions);
    // The writer sends the `ERR` line, or is cancelled when the client does not take it.
    let _ = writer.timeout(Duration::from_millis(DRAIN_MS)).await;
}

/// Writes the client's queue to its socket until it is closed and drained, as many queued
/// lines at a time as fit in a chunk. The buffer is given back after each write: an idle
/// client holds none.
async fn write(connection: Rc<Connection>, client: Rc<Client>) {
    let mut out = Vec::new();
    while client.take(&mut out, CHUNK).await {
        if connection.output.write_all(&out).await.is_err() {
            client.close();
            return;
        }
        out = Vec::new();
    }
}

/// Reads the client's lines until it leaves (`Ok`) or breaks the protocol (`Err`: the reason).
async fn read(
    server: &Server,
    id: u64,
    connection: &Connection,
    client: &Client,
    subscriptions: &mut HashSet<String>,
) -> Result<(), String> {
    let max_line = server.settings.max_line;
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let Some(chunk) = connection.read(CHUNK).await else {
            return Ok(());
        };
        match pending.is_empty() {
            true => pending = chunk,
            false => pending.extend_from_slice(&chunk),
        }
        let mut telemetry = Vec::new();
        let mut start = 0;
        let mut result = Ok(());
        while let Some(end) = pending[start..].iter().position(|b| *b == b'\n') {
            let line = &pending[start..start + end];
            start += end + 1;
            if line.len() > max_line {
                result = Err(format!("line longer than {max_line} bytes"));
                break;
            }
            result = handle(server, id, line, client, subscriptions, &mut telemetry);
            if result.is_err() {
                break;
            }
        }
        pending.drain(..start);
        // What a burst grew is given back: an idle client holds at most a partial line.
        pending.shrink_to(max_line.min(pending.capacity()));
        if result.is_ok() && pending.len() > max_line {
            result = Err(format!("line longer than {max_line} bytes"));
        }
        send(server, telemetry);
        result?;
    }
}

/// One line: its answer queued, its publication delivered and added to `telemetry`.
fn handle(
    server: &Server,
    id: u64,
    line: &[u8],
    client: &Client,
    subscriptions: &mut HashSet<String>,
    telemetry: &mut Vec<wedge_sdk::Message>,
) -> Result<(), String> {
    match protocol::parse(line)? {
        Command::Sub(topic) => {
            if !subscriptions.contains(topic) {
                if subscriptions.len() >= server.settings.max_subscriptions {
                    return Err(format!(
                        "more than {} subscriptions",
                        server.settings.max_subscriptions
                    ));
                }
                subscriptions.insert(topic.to_string());
                server.hub.subscribe(id, topic);
            }
            client.push(Frame::from(&b"OK\n"[..]));
        }
        Command::Unsub(topic) => {
            subscriptions.remove(topic);
            server.hub.unsubscribe(id, topic);
            client.push(Frame::from(&b"OK\n"[..]));
        }
        Command::Pub { topic, payload } => {
            let frame = Frame::from(protocol::delivery(topic, payload));
            server.hub.publish(id, topic, &frame);
            if server.settings.output.is_some() {
                telemetry.push(wedge_sdk::Message::text(payload).with_property("topic", topic));
            }
        }
        Command::Ping => client.push(Frame::from(&b"PONG\n"[..])),
    }
    Ok(())
}

/// Sends one read's publications as telemetry, in as few batches as the host takes.
fn send(server: &Server, telemetry: Vec<wedge_sdk::Message>) {
    let Some(output) = &server.settings.output else {
        return;
    };
    if telemetry.is_empty() {
        return;
    }
    for batch in telemetry.chunks(MAX_BATCH) {
        match wedge_sdk::telemetry::send_batch(output, batch) {
            Ok(()) => {}
            Err(wedge_sdk::SendError::NoRoute(_)) => {
                if !server.warned_no_route.replace(true) {
                    wedge_sdk::log::warn(&format!(
                        "no route from output `{output}`: publications are not sent as telemetry"
                    ));
                }
                return;
            }
            Err(e) => wedge_sdk::log::warn(&format!(
                "{} publications not sent as telemetry: {e}",
                batch.len()
            )),
        }
    }
}
