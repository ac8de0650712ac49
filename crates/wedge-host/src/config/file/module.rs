//! One `[modules.<name>]` table of `wedge.toml`: its fields, checked and filled with the
//! defaults into the runtime's [`ModuleSpec`].

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use wedge_core::doc::ModuleKind;
use wedge_runtime::spec::{
    AllowedHosts, DEFAULT_CPU_MS_PER_CALL, DEFAULT_CPU_MS_PER_SECOND, DEFAULT_HTTP_BODY_KB,
    DEFAULT_HTTP_CONCURRENCY, DEFAULT_HTTP_TIMEOUT_MS, DEFAULT_INBOX, DEFAULT_LOG_KB,
    DEFAULT_MEMORY_MB, DEFAULT_METHOD_TIMEOUT_MS, DEFAULT_SOCKETS, DEFAULT_STATE_KB, DesiredStatus,
    HttpTrigger, ModuleSpec, RestartPolicy, SocketGrants, kib,
};

use super::super::ModuleDecl;
use super::{DeploymentError, Locator};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct FileModule {
    path: Spanned<PathBuf>,
    kind: Option<Spanned<ModuleKind>>,
    #[serde(default)]
    config: Option<Spanned<toml::Table>>,
    allowed_hosts: Option<Spanned<Vec<String>>>,
    connect: Option<Spanned<Vec<String>>>,
    listen: Option<Spanned<Vec<String>>>,
    http_listen: Option<Spanned<String>>,
    tick_ms: Option<Spanned<u64>>,
    #[serde(default)]
    data_dir: bool,
    memory_mb: Option<Spanned<u64>>,
    cpu_ms_per_call: Option<Spanned<u64>>,
    cpu_ms_per_second: Option<Spanned<u64>>,
    http_body_kb: Option<Spanned<u64>>,
    http_timeout_ms: Option<Spanned<u64>>,
    http_concurrency: Option<Spanned<u64>>,
    inbox: Option<Spanned<u64>>,
    method_timeout_ms: Option<Spanned<u64>>,
    state_kb: Option<Spanned<u64>>,
    log_kb: Option<Spanned<u64>>,
    sockets: Option<Spanned<u64>>,
    restart_policy: Option<RestartPolicy>,
}

/// The header of a WebAssembly component (magic, then layer 1 version 0x0d).
pub(super) const COMPONENT_HEADER: [u8; 8] = *b"\0asm\x0d\x00\x01\x00";
/// The header of a core WebAssembly module, which wedge cannot run.
pub(super) const CORE_MODULE_HEADER: [u8; 8] = *b"\0asm\x01\x00\x00\x00";

pub(super) fn module_spec(
    at: &Locator<'_>,
    base: &Path,
    field: &str,
    module: FileModule,
) -> Result<ModuleDecl, DeploymentError> {
    let path = base.join(module.path.get_ref());
    check_component(&path)
        .map_err(|e| at.error(module.path.span(), &format!("{field}.path"), &e))?;

    let config = match module.config {
        Some(config) => {
            let span = config.span();
            serde_json::to_value(config.into_inner())
                .map_err(|e| at.error(span, &format!("{field}.config"), &e.to_string()))?
        }
        None => serde_json::Value::Object(Default::default()),
    };
    let allowed_hosts = match module.allowed_hosts {
        Some(hosts) => AllowedHosts::parse(hosts.get_ref())
            .map_err(|e| at.error(hosts.span(), &format!("{field}.allowed-hosts"), &e))?,
        None => AllowedHosts::default(),
    };
    let sockets = socket_grants(at, field, module.connect, module.listen)?;

    let positive = |value: Option<Spanned<u64>>, name: &str, default: Option<u64>| match value {
        Some(v) if *v.get_ref() == 0 => Err(at.error(
            v.span(),
            &format!("{field}.{name}"),
            "must be greater than 0",
        )),
        Some(v) => Ok(Some(v.into_inner())),
        None => Ok(default),
    };
    let tick_span = module.tick_ms.as_ref().map(Spanned::span);
    let tick_ms = positive(module.tick_ms, "tick-ms", None)?;
    let kind_span = module.kind.as_ref().map(Spanned::span);
    let kind = module.kind.map(Spanned::into_inner).unwrap_or_default();
    kind.check_tick(tick_ms).map_err(|e| match tick_span {
        Some(span) => at.error(span, &format!("{field}.tick-ms"), &e),
        None => at.error(kind_span.unwrap_or_default(), &format!("{field}.kind"), &e),
    })?;
    let memory_mb = positive(module.memory_mb, "memory-mb", Some(DEFAULT_MEMORY_MB))?;
    let cpu_ms = positive(
        module.cpu_ms_per_call,
        "cpu-ms-per-call",
        Some(DEFAULT_CPU_MS_PER_CALL),
    )?;
    let inbox = positive(module.inbox, "inbox", Some(DEFAULT_INBOX as u64))?;
    let state_kb = positive(module.state_kb, "state-kb", Some(DEFAULT_STATE_KB))?;
    let log_kb = positive(module.log_kb, "log-kb", Some(DEFAULT_LOG_KB))?;
    let max_sockets = positive(module.sockets, "sockets", Some(DEFAULT_SOCKETS))?;
    let method_timeout_ms = positive(
        module.method_timeout_ms,
        "method-timeout-ms",
        Some(DEFAULT_METHOD_TIMEOUT_MS),
    )?;
    let cpu_ms_per_second = positive(
        module.cpu_ms_per_second,
        "cpu-ms-per-second",
        Some(DEFAULT_CPU_MS_PER_SECOND),
    )?;
    let body_kb = positive(
        module.http_body_kb,
        "http-body-kb",
        Some(DEFAULT_HTTP_BODY_KB),
    )?;
    let timeout_ms = positive(
        module.http_timeout_ms,
        "http-timeout-ms",
        Some(DEFAULT_HTTP_TIMEOUT_MS),
    )?;
    let concurrency = positive(
        module.http_concurrency,
        "http-concurrency",
        Some(DEFAULT_HTTP_CONCURRENCY),
    )?;
    let http = match module.http_listen {
        Some(listen) => Some(HttpTrigger {
            listen: HttpTrigger::parse_listen(listen.get_ref())
                .map_err(|e| at.error(listen.span(), &format!("{field}.http-listen"), &e))?,
            body_bytes: kib(body_kb.unwrap_or(DEFAULT_HTTP_BODY_KB)),
            timeout_ms: timeout_ms.unwrap_or(DEFAULT_HTTP_TIMEOUT_MS),
            concurrency: usize::try_from(concurrency.unwrap_or(DEFAULT_HTTP_CONCURRENCY))
                .unwrap_or(usize::MAX),
        }),
        None => None,
    };

    let spec = ModuleSpec {
        kind,
        config,
        allowed_hosts,
        sockets,
        max_sockets: usize::try_from(max_sockets.unwrap_or(DEFAULT_SOCKETS)).unwrap_or(usize::MAX),
        http,
        tick_ms,
        data_dir: module.data_dir,
        memory_mb: memory_mb.unwrap_or(DEFAULT_MEMORY_MB),
        cpu_ms_per_call: cpu_ms.unwrap_or(DEFAULT_CPU_MS_PER_CALL),
        cpu_ms_per_second: cpu_ms_per_second.unwrap_or(DEFAULT_CPU_MS_PER_SECOND),
        inbox: inbox.unwrap_or(DEFAULT_INBOX as u64) as usize,
        method_timeout_ms: method_timeout_ms.unwrap_or(DEFAULT_METHOD_TIMEOUT_MS),
        state_quota_bytes: kib(state_kb.unwrap_or(DEFAULT_STATE_KB)),
        log_bytes: kib(log_kb.unwrap_or(DEFAULT_LOG_KB)),
        restart_policy: module.restart_policy.unwrap_or_default(),
        status: DesiredStatus::Running,
    };
    Ok(ModuleDecl { path, spec })
}

/// Checks that `path` is a readable WebAssembly component, by its header.
fn check_component(path: &Path) -> Result<(), String> {
    use std::io::Read;
    let mut header = [0u8; 8];
    let mut file =
        std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    match file.read_exact(&mut header) {
        Ok(()) if header == COMPONENT_HEADER => Ok(()),
        Ok(()) if header == CORE_MODULE_HEADER => Err(format!(
            "{} is a core WebAssembly module, not a component; build it for wasm32-wasip2",
            path.display()
        )),
        _ => Err(format!("{} is not a WebAssembly component", path.display())),
    }
}

/// The `connect` and `listen` grants; an error points at the list with the bad entry.
fn socket_grants(
    at: &Locator<'_>,
    field: &str,
    connect: Option<Spanned<Vec<String>>>,
    listen: Option<Spanned<Vec<String>>>,
) -> Result<SocketGrants, DeploymentError> {
    let span_of = |list: &Option<Spanned<Vec<String>>>| list.as_ref().map(Spanned::span);
    let spans = (span_of(&connect), span_of(&listen));
    let entries =
        |list: Option<Spanned<Vec<String>>>| list.map(Spanned::into_inner).unwrap_or_default();
    SocketGrants::parse(&entries(connect), &entries(listen)).map_err(|(list, e)| {
        let span = if list == "connect" { spans.0 } else { spans.1 };
        at.error(span.unwrap_or_default(), &format!("{field}.{list}"), &e)
    })
}
