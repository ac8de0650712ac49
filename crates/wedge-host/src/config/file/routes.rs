//! `[routes.NAME]` tables: endpoints checked against the modules, `durable` and `when-full`
//! where they apply, and no cycle between modules.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;
use wedge_core::doc::{WHEN_FULL_APPLIES, cycle_text, find_cycle};
use wedge_runtime::spec::{C2D_OUTPUT, Route, Target, UPSTREAM, WhenFull};

use super::Locator;
use crate::config::{DeploymentError, ModuleDecl};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct FileRoute {
    from: Spanned<String>,
    to: Spanned<String>,
    durable: Option<Spanned<bool>>,
    when_full: Option<Spanned<WhenFull>>,
}

/// Checks each route and returns them by name.
pub(super) fn parse(
    at: &Locator<'_>,
    file_routes: BTreeMap<String, Spanned<FileRoute>>,
    modules: &BTreeMap<String, ModuleDecl>,
) -> Result<BTreeMap<String, Route>, DeploymentError> {
    let mut routes = BTreeMap::new();
    let mut spans = BTreeMap::new();
    for (name, route) in file_routes {
        let field = format!("routes.{name}");
        let route = route.into_inner();
        let (from_module, from_output) = split_endpoint(route.from.get_ref()).ok_or_else(|| {
            at.error(
                route.from.span(),
                &format!("{field}.from"),
                "expected `module/output`",
            )
        })?;
        // `$upstream/c2d`: cloud-to-device messages from the hub.
        let from_hub = from_module == UPSTREAM;
        if from_hub && from_output != C2D_OUTPUT {
            return Err(at.error(
                route.from.span(),
                &format!("{field}.from"),
                &format!("the hub's only output is `{UPSTREAM}/{C2D_OUTPUT}`"),
            ));
        }
        if !from_hub && !modules.contains_key(from_module) {
            return Err(at.error(
                route.from.span(),
                &format!("{field}.from"),
                &format!("unknown module `{from_module}`"),
            ));
        }
        let to = if route.to.get_ref() == UPSTREAM {
            if from_hub {
                return Err(at.error(
                    route.to.span(),
                    &format!("{field}.to"),
                    "a route from the hub cannot lead back to it",
                ));
            }
            Target::Upstream
        } else {
            let (module, input) = split_endpoint(route.to.get_ref()).ok_or_else(|| {
                at.error(
                    route.to.span(),
                    &format!("{field}.to"),
                    "expected `module/input` or `$upstream`",
                )
            })?;
            if !modules.contains_key(module) {
                return Err(at.error(
                    route.to.span(),
                    &format!("{field}.to"),
                    &format!("unknown module `{module}`"),
                ));
            }
            Target::Module {
                module: module.to_string(),
                input: input.to_string(),
            }
        };
        let durable = match route.durable {
            Some(durable) if *durable.get_ref() && to == Target::Upstream => {
                return Err(at.error(
                    durable.span(),
                    &format!("{field}.durable"),
                    "`$upstream` is always durable (the outbox); `durable` is for routes to a module input",
                ));
            }
            Some(durable) => durable.into_inner(),
            None => false,
        };
        let when_full = match route.when_full {
            Some(when_full)
                if *when_full.get_ref() != WhenFull::default()
                    && (durable || to == Target::Upstream) =>
            {
                return Err(at.error(
                    when_full.span(),
                    &format!("{field}.when-full"),
                    WHEN_FULL_APPLIES,
                ));
            }
            Some(when_full) => when_full.into_inner(),
            None => WhenFull::default(),
        };
        spans.insert(name.clone(), route.from.span());
        routes.insert(
            name,
            Route {
                from_module: from_module.to_string(),
                from_output: from_output.to_string(),
                to,
                durable,
                when_full,
            },
        );
    }
    no_cycle(at, &routes, &spans)?;
    Ok(routes)
}

/// Refuses a cycle of module-to-module routes (a message in one would circulate for ever),
/// pointing at the `from` of a route in it.
fn no_cycle(
    at: &Locator<'_>,
    routes: &BTreeMap<String, Route>,
    spans: &BTreeMap<String, Range<usize>>,
) -> Result<(), DeploymentError> {
    let edges = routes.values().filter_map(|r| match &r.to {
        Target::Module { module, .. } if r.from_module != UPSTREAM => {
            Some((r.from_module.as_str(), module.as_str()))
        }
        _ => None,
    });
    let Some(cycle) = find_cycle(edges) else {
        return Ok(());
    };
    let (name, _) = routes
        .iter()
        .find(|(_, r)| {
            r.from_module == cycle[0]
                && matches!(&r.to, Target::Module { module, .. } if module == cycle[1])
        })
        .expect("the cycle is made of these routes");
    Err(at.error(
        spans[name].clone(),
        &format!("routes.{name}"),
        &cycle_text(&cycle),
    ))
}

fn split_endpoint(endpoint: &str) -> Option<(&str, &str)> {
    let (module, port) = endpoint.split_once('/')?;
    (!module.is_empty() && !port.is_empty() && !port.contains('/')).then_some((module, port))
}
