//! From a module of the desired deployment to what the runtime runs: its settings checked and
//! filled with the defaults, its binary fetched (or taken from the store by sha256), verified
//! and compiled. Every error names the module and the field, in the document's own terms.

use std::collections::BTreeMap;

use wedge_core::doc::{DeploymentDoc, ModuleDoc, RouteSink, RouteSource};
use wedge_runtime::spec::{
    AllowedHosts, C2D_OUTPUT, DEFAULT_CPU_MS_PER_CALL, DEFAULT_CPU_MS_PER_SECOND,
    DEFAULT_HTTP_BODY_KB, DEFAULT_HTTP_CONCURRENCY, DEFAULT_HTTP_TIMEOUT_MS, DEFAULT_INBOX,
    DEFAULT_LOG_KB, DEFAULT_MEMORY_MB, DEFAULT_METHOD_TIMEOUT_MS, DEFAULT_SOCKETS,
    DEFAULT_STATE_KB, HttpTrigger, ModuleSpec, Route, SocketGrants, Target, UPSTREAM, kib,
};
use wedge_runtime::{EngineCtx, ModuleImage};
use wedge_source::{FetchOptions, Source};
use wedge_store::Blobs;

/// The runtime's settings for module `name` of the document.
///
/// # Errors
/// An allowed host does not parse: `modules.<name>.allowed-hosts: …`.
pub(crate) fn module_spec(name: &str, doc: &ModuleDoc) -> Result<ModuleSpec, String> {
    let allowed_hosts = AllowedHosts::parse(&doc.allowed_hosts)
        .map_err(|e| format!("modules.{name}.allowed-hosts: {e}"))?;
    let sockets = SocketGrants::parse(&doc.connect, &doc.listen)
        .map_err(|(field, e)| format!("modules.{name}.{field}: {e}"))?;
    let limits = &doc.limits;
    let http = match &doc.http_listen {
        Some(listen) => Some(HttpTrigger {
            listen: HttpTrigger::parse_listen(listen)
                .map_err(|e| format!("modules.{name}.http-listen: {e}"))?,
            body_bytes: kib(limits.http_body_kb.unwrap_or(DEFAULT_HTTP_BODY_KB)),
            timeout_ms: limits.http_timeout_ms.unwrap_or(DEFAULT_HTTP_TIMEOUT_MS),
            concurrency: limits
                .http_concurrency
                .map_or(DEFAULT_HTTP_CONCURRENCY as usize, |n| {
                    usize::try_from(n).unwrap_or(usize::MAX)
                }),
        }),
        None => None,
    };
    Ok(ModuleSpec {
        kind: doc.kind,
        config: doc.config.clone(),
        allowed_hosts,
        sockets,
        max_sockets: limits.sockets.map_or(DEFAULT_SOCKETS as usize, |n| {
            usize::try_from(n).unwrap_or(usize::MAX)
        }),
        http,
        tick_ms: doc.tick_ms,
        data_dir: doc.data_dir,
        memory_mb: limits.memory_mb.unwrap_or(DEFAULT_MEMORY_MB),
        cpu_ms_per_call: limits.cpu_ms_per_call.unwrap_or(DEFAULT_CPU_MS_PER_CALL),
        cpu_ms_per_second: limits
            .cpu_ms_per_second
            .unwrap_or(DEFAULT_CPU_MS_PER_SECOND),
        inbox: limits
            .inbox
            .map_or(DEFAULT_INBOX, |n| usize::try_from(n).unwrap_or(usize::MAX)),
        method_timeout_ms: doc.method_timeout_ms.unwrap_or(DEFAULT_METHOD_TIMEOUT_MS),
        state_quota_bytes: kib(limits.state_kb.unwrap_or(DEFAULT_STATE_KB)),
        log_bytes: kib(limits.log_kb.unwrap_or(DEFAULT_LOG_KB)),
        restart_policy: doc.restart_policy,
        status: doc.status,
    })
}

/// The runtime's routes of a validated document.
pub(crate) fn routes(doc: &DeploymentDoc) -> BTreeMap<String, Route> {
    doc.routes
        .iter()
        .filter_map(|(name, route)| {
            let (from_module, from_output) = match route.source()? {
                RouteSource::Module { module, output } => (module, output),
                RouteSource::UpstreamC2d => (UPSTREAM, C2D_OUTPUT),
            };
            let to = match route.sink()? {
                RouteSink::Module { module, input } => Target::Module {
                    module: module.to_string(),
                    input: input.to_string(),
                },
                RouteSink::Upstream => Target::Upstream,
            };
            let route = Route {
                from_module: from_module.to_string(),
                from_output: from_output.to_string(),
                to,
                durable: route.durable,
                when_full: route.when_full,
            };
            Some((name.clone(), route))
        })
        .collect()
}

/// Where binaries come from and go.
pub(crate) struct Binaries {
    pub engine: EngineCtx,
    pub blobs: Blobs,
    pub fetch: FetchOptions,
}

impl Binaries {
    /// The compiled binary of module `name`. A binary whose sha256 is known (pinned in the
    /// document, or `known`: what this module ran last time) is taken from the store when it
    /// is there, so that a device without network starts what it ran; otherwise it is fetched
    /// from its source, verified against the pinned sha256, and kept in the store.
    ///
    /// # Errors
    /// `modules.<name>.source: …` (unusable source, fetch failed, wrong sha256),
    /// `modules.<name>: …` (not a component wedge can run), or a store failure.
    pub(crate) async fn image(
        &self,
        name: &str,
        doc: &ModuleDoc,
        known: Option<&str>,
    ) -> Result<ModuleImage, String> {
        let field = format!("modules.{name}.source");
        let stored = match doc.sha256.as_deref().or(known) {
            Some(sha256) => self
                .blobs
                .get(sha256)
                .map_err(|e| format!("{field}: the store: {e}"))?,
            None => None,
        };
        let wasm = match stored {
            Some(wasm) => wasm,
            None => {
                let source =
                    Source::parse(&doc.source, None).map_err(|e| format!("{field}: {e}"))?;
                let fetched = wedge_source::fetch(&source, doc.sha256.as_deref(), &self.fetch)
                    .await
                    .map_err(|e| format!("{field}: {e}"))?;
                tracing::info!(module = name, source = %source, sha256 = fetched.sha256, bytes = fetched.bytes.len(), "fetched");
                // A file on the device is there at the next start too; what came over the
                // network is kept, so that a restart without network runs it.
                if !matches!(source, Source::File(_)) {
                    self.blobs.put(fetched.bytes.clone()).await.map_err(|e| {
                        format!("{field}: cannot keep the binary in the store: {e}")
                    })?;
                }
                fetched.bytes
            }
        };
        let engine = self.engine.clone();
        let what = format!("modules.{name}: {}", doc.source);
        let image = tokio::task::spawn_blocking(move || engine.compile(&wasm, &what))
            .await
            .map_err(|e| format!("modules.{name}: compilation failed: {e}"))?
            .map_err(|e| e.to_string())?;
        image
            .supports(doc.kind, doc.http_listen.is_some())
            .map_err(|e| format!("modules.{name}: {}: {e}", doc.source))?;
        Ok(image)
    }
}
