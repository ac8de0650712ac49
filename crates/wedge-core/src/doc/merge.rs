//! Patch semantics: JSON merge patch (RFC 7396), the effective deployment, and what changed.

use serde_json::{Map, Value};

use crate::doc::desired::{DeploymentDoc, DocError, ModuleDoc};

#[cfg(test)]
mod tests;

/// Applies `patch` to `target` as a JSON merge patch (RFC 7396): an object merges key by key,
/// `null` removes the key, anything else replaces. A non-object patch replaces `target` whole
/// (so a `null` patch makes it `null`).
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// `base` with `patch` applied as a JSON merge patch (RFC 7396); `base` is left as it is.
pub fn merged(base: &Value, patch: &Value) -> Value {
    let mut target = base.clone();
    merge_patch(&mut target, patch);
    target
}

/// The smallest JSON merge patch that turns `from` into `to`, or `None` if they are equal:
/// removed keys become `null`, equal ones are left out, objects are compared key by key.
///
/// `merge_patch(from, patch)` then gives `to`, as long as `to` holds no `null` inside an object
/// (which no merge patch can express: a `null` there means "remove").
pub fn patch_between(from: &Value, to: &Value) -> Option<Value> {
    let (Value::Object(from), Value::Object(to)) = (from, to) else {
        return (from != to).then(|| to.clone());
    };
    let mut patch = Map::new();
    for key in from.keys().filter(|key| !to.contains_key(*key)) {
        patch.insert(key.clone(), Value::Null);
    }
    for (key, to_value) in to {
        let change = match from.get(key) {
            Some(from_value) => patch_between(from_value, to_value),
            None => Some(to_value.clone()),
        };
        if let Some(change) = change {
            patch.insert(key.clone(), change);
        }
    }
    (!patch.is_empty()).then_some(Value::Object(patch))
}

/// What differs between a desired deployment and the running one, as
/// [`DeploymentDoc::diff`] reports it. Every list is sorted by module name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// Modules to start: desired, not running.
    pub added: Vec<String>,
    /// Modules to stop: running, no longer desired.
    pub removed: Vec<String>,
    /// Modules whose binary changed (`source` or `sha256`): to reload.
    pub binary_changed: Vec<String>,
    /// Modules whose binary is the same but whose settings changed (limits, tick, allowed
    /// hosts, restart policy, status, data dir, method timeout): to restart with new settings.
    pub settings_changed: Vec<String>,
    /// Modules, neither added nor removed, whose `config` changed — whether or not they are in
    /// `binary_changed` or `settings_changed` too.
    pub config_changed: Vec<String>,
    /// Whether the routes differ.
    pub routes_changed: bool,
}

impl Diff {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl DeploymentDoc {
    /// The deployment in force: the device's local `base` document (from its config file; `null`
    /// when it has none) with the twin's `desired` section merged over it as a JSON merge patch
    /// (`null` when the twin has none: the base alone), then parsed and validated as a whole, so
    /// that a route of the twin may name a module of the base.
    pub fn effective(base: &Value, desired: &Value) -> Result<Self, DocError> {
        let empty = Value::Object(Map::new());
        let base = if base.is_null() { &empty } else { base };
        if desired.is_null() {
            return Self::from_value(base);
        }
        Self::from_value(&merged(base, desired))
    }

    /// What it takes to go from `running` to `self`. A module is in the first of `added`,
    /// `removed`, `binary_changed` and `settings_changed` that applies, and also in
    /// `config_changed` if its config differs.
    pub fn diff(&self, running: &DeploymentDoc) -> Diff {
        let mut diff = Diff {
            routes_changed: self.routes != running.routes,
            ..Diff::default()
        };
        for (name, want) in &self.modules {
            let Some(have) = running.modules.get(name) else {
                diff.added.push(name.clone());
                continue;
            };
            if want.source != have.source || want.sha256 != have.sha256 {
                diff.binary_changed.push(name.clone());
            } else if settings_differ(want, have) {
                diff.settings_changed.push(name.clone());
            }
            if want.config != have.config {
                diff.config_changed.push(name.clone());
            }
        }
        diff.removed = running
            .modules
            .keys()
            .filter(|name| !self.modules.contains_key(*name))
            .cloned()
            .collect();
        diff
    }
}

/// Whether anything but the binary and the config differs. Destructured so that a new field
/// of [`ModuleDoc`] cannot be forgotten here.
fn settings_differ(a: &ModuleDoc, b: &ModuleDoc) -> bool {
    let ModuleDoc {
        source: _,
        sha256: _,
        config: _,
        kind,
        allowed_hosts,
        connect,
        listen,
        http_listen,
        tick_ms,
        limits,
        method_timeout_ms,
        data_dir,
        restart_policy,
        status,
    } = a;
    (
        kind,
        allowed_hosts,
        (connect, listen, http_listen),
        tick_ms,
        limits,
        method_timeout_ms,
        data_dir,
        restart_policy,
        status,
    ) != (
        &b.kind,
        &b.allowed_hosts,
        (&b.connect, &b.listen, &b.http_listen),
        &b.tick_ms,
        &b.limits,
        &b.method_timeout_ms,
        &b.data_dir,
        &b.restart_policy,
        &b.status,
    )
}
