//! The desired deployment: types, parsing and validation.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::ModuleKind;

mod limits;
#[cfg(test)]
mod tests;

pub use limits::Limits;

/// The longest module name, in characters (all ASCII, so also bytes).
pub const MAX_MODULE_NAME_LEN: usize = 64;

/// The route endpoint for the cloud, as a route's `to`.
pub const UPSTREAM: &str = "$upstream";

/// Cloud-to-device messages, as a route's `from`.
pub const UPSTREAM_C2D: &str = "$upstream/c2d";

/// What [`is_valid_module_name`] checks, for error messages.
pub const NAME_RULE: &str = "a module name is 1-64 characters of a-z, 0-9, '-' and '_', starting with a letter, and not `wedge` (the host's own direct methods are `wedge.<method>`)";
/// The name direct methods of the host itself go to (`wedge.get-logs`): no module has it.
pub const HOST_METHODS: &str = "wedge";
const NOT_POSITIVE: &str = "must be greater than 0";

/// A problem with a deployment document: where (a JSON path such as
/// `modules.sensor.tick-ms`, or `.` for the document itself) and what.
///
/// Its `Display` is one line, `path: message`; control characters from the document (say, in a
/// module name) are escaped so that it stays one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct DocError {
    path: String,
    message: String,
}

impl DocError {
    /// An error at `path` (`.`-separated keys; `.` alone for the document itself).
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: one_line(path.into()),
            message: one_line(message.into()),
        }
    }

    /// The JSON path, like `modules.sensor.limits.memory-mb`; `.` for the document itself.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The problem, like `must be greater than 0`.
    pub fn message(&self) -> &str {
        &self.message
    }

    fn from_serde(err: serde_path_to_error::Error<serde_json::Error>) -> Self {
        Self::new(err.path().to_string(), err.inner().to_string())
    }
}

/// Escapes control characters (newlines above all) so that a message stays on one line.
fn one_line(s: String) -> String {
    if !s.chars().any(char::is_control) {
        return s;
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The desired deployment: the modules to run and the routes between them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    rename_all = "kebab-case",
    deny_unknown_fields,
    expecting = "a deployment object"
)]
pub struct DeploymentDoc {
    /// The modules, by name (see [`is_valid_module_name`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub modules: BTreeMap<String, ModuleDoc>,
    /// The routes, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub routes: BTreeMap<String, RouteDoc>,
}

/// One module of a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    rename_all = "kebab-case",
    deny_unknown_fields,
    expecting = "a module object"
)]
pub struct ModuleDoc {
    /// Where the module's binary comes from (`oci://…`, …); its syntax is checked elsewhere.
    pub source: String,
    /// What the binary is: a wedge module (the default) or an operator the host drives.
    #[serde(default, skip_serializing_if = "is_default")]
    pub kind: ModuleKind,
    /// The binary's SHA-256, 64 lowercase hex digits, when pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The module's own configuration: a JSON object, `{}` by default.
    #[serde(default = "empty_object", skip_serializing_if = "is_empty_object")]
    pub config: Value,
    /// The hosts the module may call out to; their syntax is checked elsewhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_hosts: Vec<String>,
    /// Where the module may connect through `wasi:sockets` (`tcp://10.0.0.5:502`, …); their
    /// syntax is checked elsewhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connect: Vec<String>,
    /// Where the module may listen through `wasi:sockets` (`tcp://0.0.0.0:5020`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listen: Vec<String>,
    /// The address the host serves the module's `wasi:http/incoming-handler` on
    /// (`127.0.0.1:8081`); no HTTP trigger when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_listen: Option<String>,
    /// The period of the module's tick, in milliseconds; no tick when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tick_ms: Option<u64>,
    /// Resource limits; the host's defaults for those absent.
    #[serde(default, skip_serializing_if = "Limits::is_unset")]
    pub limits: Limits,
    /// How long a direct method call may take, in milliseconds; the host's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method_timeout_ms: Option<u64>,
    /// Whether the module gets a data directory of its own.
    #[serde(default, skip_serializing_if = "is_default")]
    pub data_dir: bool,
    /// What to do when the module stops.
    #[serde(default, skip_serializing_if = "is_default")]
    pub restart_policy: RestartPolicy,
    /// Whether the module should run.
    #[serde(default, skip_serializing_if = "is_default")]
    pub status: DesiredStatus,
}

impl ModuleDoc {
    /// A module from `source` with every other field at its default.
    pub fn new(source: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            kind: ModuleKind::default(),
            sha256: None,
            config: empty_object(),
            allowed_hosts: Vec::new(),
            connect: Vec::new(),
            listen: Vec::new(),
            http_listen: None,
            tick_ms: None,
            limits: Limits::default(),
            method_timeout_ms: None,
            data_dir: false,
            restart_policy: RestartPolicy::default(),
            status: DesiredStatus::default(),
        }
    }
}

/// What the host does when a module stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Restart it whatever the reason (`"always"`), the default.
    #[default]
    Always,
    /// Restart it only when it failed (`"on-failure"`).
    OnFailure,
    /// Never restart it (`"never"`).
    Never,
}

/// Whether a module should run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DesiredStatus {
    /// Run it (`"running"`), the default.
    #[default]
    Running,
    /// Keep it stopped (`"stopped"`).
    Stopped,
}

/// A route: messages from `from` go to `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    rename_all = "kebab-case",
    deny_unknown_fields,
    expecting = "a route object"
)]
pub struct RouteDoc {
    /// `module/output`, or `$upstream/c2d` for cloud-to-device messages.
    pub from: String,
    /// `module/input`, or `$upstream` for the cloud.
    pub to: String,
    /// Whether messages are kept across restarts until delivered (only to a module input).
    #[serde(default, skip_serializing_if = "is_default")]
    pub durable: bool,
    /// What a full inbox of the destination module does with this route's messages.
    #[serde(default, skip_serializing_if = "is_default")]
    pub when_full: WhenFull,
}

/// Why `when-full` is refused where it has no meaning.
pub const WHEN_FULL_APPLIES: &str =
    "`when-full` is for a route to a module's inbox; a durable route or `$upstream` queues on disk";

/// What a route does when the inbox of its destination module is full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WhenFull {
    /// Refuse (`full`, the sender tries again later) while the destination is healthy; drop
    /// its oldest waiting message while it is failing or stopped (`"adaptive"`, the default),
    /// so a failing module cannot stall the other destinations of the same output.
    #[default]
    Adaptive,
    /// Always refuse: the sender waits for a destination that may never recover.
    Reject,
    /// Always drop the destination's oldest waiting message to make room (counted).
    DropOldest,
}

impl RouteDoc {
    /// A non-durable route from `from` to `to`.
    pub fn new(from: impl Into<String>, to: impl Into<String>) -> Self {
        Self {
            from: from.into(),
            to: to.into(),
            durable: false,
            when_full: WhenFull::default(),
        }
    }

    /// The parsed `from`, or `None` if it is malformed.
    pub fn source(&self) -> Option<RouteSource<'_>> {
        RouteSource::parse(&self.from)
    }

    /// The parsed `to`, or `None` if it is malformed.
    pub fn sink(&self) -> Option<RouteSink<'_>> {
        RouteSink::parse(&self.to)
    }
}

/// Where a route takes its messages from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteSource<'a> {
    /// A module's output: `module/output`.
    Module {
        /// The module.
        module: &'a str,
        /// Its output.
        output: &'a str,
    },
    /// Cloud-to-device messages: `$upstream/c2d`.
    UpstreamC2d,
}

impl<'a> RouteSource<'a> {
    /// Parses `module/output` or `$upstream/c2d`; `None` for anything else (the module's
    /// existence is not checked here).
    pub fn parse(s: &'a str) -> Option<Self> {
        if s == UPSTREAM_C2D {
            return Some(Self::UpstreamC2d);
        }
        let (module, output) = split_endpoint(s)?;
        Some(Self::Module { module, output })
    }
}

/// Where a route delivers its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteSink<'a> {
    /// A module's input: `module/input`.
    Module {
        /// The module.
        module: &'a str,
        /// Its input.
        input: &'a str,
    },
    /// The cloud: `$upstream`.
    Upstream,
}

impl<'a> RouteSink<'a> {
    /// Parses `module/input` or `$upstream`; `None` for anything else (the module's existence
    /// is not checked here).
    pub fn parse(s: &'a str) -> Option<Self> {
        if s == UPSTREAM {
            return Some(Self::Upstream);
        }
        let (module, input) = split_endpoint(s)?;
        Some(Self::Module { module, input })
    }
}

/// `module/port` with both parts non-empty, one `/`, and no `$` system name as the module.
fn split_endpoint(s: &str) -> Option<(&str, &str)> {
    let (module, port) = s.split_once('/')?;
    let ok = !module.is_empty() && !port.is_empty() && !port.contains('/');
    (ok && !module.starts_with('$')).then_some((module, port))
}

/// Whether `name` is a valid module name: 1-64 characters of `a-z`, `0-9`, `-` and `_`,
/// starting with a letter, and not [`HOST_METHODS`].
pub fn is_valid_module_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let allowed = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_');
    bytes.first().is_some_and(u8::is_ascii_lowercase)
        && bytes.len() <= MAX_MODULE_NAME_LEN
        && bytes.iter().all(allowed)
        && name != HOST_METHODS
}

impl DeploymentDoc {
    /// Parses and validates a deployment document (the twin's `desired.wedge`, an MQTT config
    /// message, or the local file). Keys starting with `$` (IoT Hub's `$version`, `$metadata`)
    /// are ignored at every level but inside a module's `config`, which is passed on untouched.
    pub fn from_value(value: &Value) -> Result<Self, DocError> {
        if !value.is_object() {
            return Err(DocError::new(".", "expected a deployment object"));
        }
        let stripped = strip_system_keys(value);
        let doc: Self =
            serde_path_to_error::deserialize(&stripped).map_err(DocError::from_serde)?;
        doc.validate()?;
        Ok(doc)
    }

    /// The document as JSON, leaving out absent and default fields so that it stays small.
    /// [`from_value`](Self::from_value) reads it back to an equal document. It is a whole
    /// document, not a merge patch: as a patch, an omitted field would keep its old value.
    pub fn to_value(&self) -> Value {
        // Cannot fail: every map has string keys and every value serializes.
        serde_json::to_value(self).unwrap_or_else(|_| empty_object())
    }

    /// Checks what the types cannot: names, formats, positive numbers, routes naming modules of
    /// this document, and no cycle of routes between modules. The first problem found is
    /// returned (modules and routes in name order, then cycles).
    pub fn validate(&self) -> Result<(), DocError> {
        for (name, module) in &self.modules {
            validate_module(name, module)?;
        }
        for (name, route) in &self.routes {
            self.validate_route(name, route)?;
        }
        self.check_cycles()
    }

    fn validate_route(&self, name: &str, route: &RouteDoc) -> Result<(), DocError> {
        let at = |field: &str| format!("routes.{name}.{field}");
        let unknown = |module: &str| format!("unknown module `{module}`");
        let source = route.source().ok_or_else(|| {
            DocError::new(at("from"), "expected `module/output` or `$upstream/c2d`")
        })?;
        if let RouteSource::Module { module, .. } = source
            && !self.modules.contains_key(module)
        {
            return Err(DocError::new(at("from"), unknown(module)));
        }
        let sink = route
            .sink()
            .ok_or_else(|| DocError::new(at("to"), "expected `module/input` or `$upstream`"))?;
        match sink {
            RouteSink::Module { module, .. } if !self.modules.contains_key(module) => {
                Err(DocError::new(at("to"), unknown(module)))
            }
            RouteSink::Upstream if source == RouteSource::UpstreamC2d => Err(DocError::new(
                at("to"),
                "a route from `$upstream/c2d` cannot lead back to `$upstream`",
            )),
            RouteSink::Upstream if route.durable => Err(DocError::new(
                at("durable"),
                "only a route to a module input can be durable",
            )),
            _ if route.when_full != WhenFull::default()
                && (route.durable || sink == RouteSink::Upstream) =>
            {
                Err(DocError::new(at("when-full"), WHEN_FULL_APPLIES))
            }
            _ => Ok(()),
        }
    }

    /// Refuses a cycle of module-to-module routes, naming its modules in order from the
    /// alphabetically first one.
    fn check_cycles(&self) -> Result<(), DocError> {
        let edges = self
            .routes
            .values()
            .filter_map(|route| match (route.source(), route.sink()) {
                (
                    Some(RouteSource::Module { module: a, .. }),
                    Some(RouteSink::Module { module: b, .. }),
                ) => Some((a, b)),
                _ => None,
            });
        match find_cycle(edges) {
            Some(cycle) => Err(DocError::new("routes", cycle_text(&cycle))),
            None => Ok(()),
        }
    }
}

/// A cycle in the graph of `edges` (module to module), if there is one: its modules from the
/// alphabetically first one, that one repeated at the end (`a -> b -> a`). Depth-first and
/// iterative (no recursion on the document's size). wedge.toml's parser uses it too.
pub fn find_cycle<'a>(edges: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<Vec<&'a str>> {
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (a, b) in edges {
        graph.entry(a).or_default().insert(b);
    }
    let none = BTreeSet::new();
    let mut done: BTreeSet<&str> = BTreeSet::new();
    for &start in graph.keys() {
        if done.contains(start) {
            continue;
        }
        // The current path, each node with the neighbours still to visit.
        let mut stack = vec![(start, graph.get(start).unwrap_or(&none).iter())];
        while let Some((node, next)) = stack.last_mut() {
            let node = *node;
            match next.next() {
                Some(&to) => {
                    if let Some(at) = stack.iter().position(|(n, _)| *n == to) {
                        let cycle: Vec<&str> = stack[at..].iter().map(|(n, _)| *n).collect();
                        return Some(from_first(&cycle));
                    }
                    if !done.contains(to) {
                        stack.push((to, graph.get(to).unwrap_or(&none).iter()));
                    }
                }
                None => {
                    done.insert(node);
                    stack.pop();
                }
            }
        }
    }
    None
}

/// `cycle` rotated to start at its alphabetically first module, that one repeated at the end.
fn from_first<'a>(cycle: &[&'a str]) -> Vec<&'a str> {
    let first = cycle
        .iter()
        .enumerate()
        .min_by_key(|(_, name)| **name)
        .map_or(0, |(i, _)| i);
    let mut names: Vec<&str> = cycle[first..]
        .iter()
        .chain(&cycle[..first])
        .copied()
        .collect();
    names.extend(names.first().copied());
    names
}

/// The error text for a cycle found by [`find_cycle`].
pub fn cycle_text(cycle: &[&str]) -> String {
    format!("a cycle between modules: {}", cycle.join(" -> "))
}

fn validate_module(name: &str, module: &ModuleDoc) -> Result<(), DocError> {
    let at = |field: &str| format!("modules.{name}.{field}");
    if !is_valid_module_name(name) {
        return Err(DocError::new(format!("modules.{name}"), NAME_RULE));
    }
    if let Some(sha) = &module.sha256
        && !(sha.len() == 64 && sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
    {
        return Err(DocError::new(
            at("sha256"),
            "expected 64 lowercase hex digits",
        ));
    }
    if !module.config.is_object() {
        return Err(DocError::new(at("config"), "must be an object"));
    }
    module.kind.check_tick(module.tick_ms).map_err(|e| {
        DocError::new(
            at(if module.tick_ms.is_some() {
                "tick-ms"
            } else {
                "kind"
            }),
            e,
        )
    })?;
    let limits = &module.limits;
    let positive = [
        ("tick-ms", module.tick_ms),
        ("limits.memory-mb", limits.memory_mb),
        ("limits.cpu-ms-per-call", limits.cpu_ms_per_call),
        ("limits.cpu-ms-per-second", limits.cpu_ms_per_second),
        ("limits.http-body-kb", limits.http_body_kb),
        ("limits.http-timeout-ms", limits.http_timeout_ms),
        ("limits.http-concurrency", limits.http_concurrency),
        ("limits.inbox", limits.inbox),
        ("limits.state-kb", limits.state_kb),
        ("limits.log-kb", limits.log_kb),
        ("limits.sockets", limits.sockets),
        ("method-timeout-ms", module.method_timeout_ms),
    ];
    match positive.iter().find(|(_, v)| *v == Some(0)) {
        Some((field, _)) => Err(DocError::new(at(field), NOT_POSITIVE)),
        None => Ok(()),
    }
}

/// A copy of `value` without the `$` keys IoT Hub adds, at the levels of the document that
/// wedge owns: the top, `modules`, each module, its `limits`, `routes` and each route.
fn strip_system_keys(value: &Value) -> Value {
    let mut value = value.clone();
    if let Value::Object(top) = &mut value {
        strip(top);
        for section in ["modules", "routes"] {
            let Some(Value::Object(entries)) = top.get_mut(section) else {
                continue;
            };
            strip(entries);
            for entry in entries.values_mut() {
                if let Value::Object(fields) = entry {
                    strip(fields);
                    if let Some(Value::Object(limits)) = fields.get_mut("limits") {
                        strip(limits);
                    }
                }
            }
        }
    }
    value
}

fn strip(map: &mut Map<String, Value>) {
    map.retain(|key, _| !key.starts_with('$'));
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

fn is_empty_object(value: &Value) -> bool {
    value.as_object().is_some_and(Map::is_empty)
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}
