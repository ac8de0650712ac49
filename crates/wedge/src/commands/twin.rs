//! `wedge twin get|set`: the local twin of the running host.

use std::path::Path;

use anyhow::{Context, bail};
use serde_json::{Map, Value};

use wedge_host::control::Request;

use crate::client;

/// `wedge twin` subcommands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Print the twin document, or one module's desired and reported properties.
    Get {
        /// Only this module.
        module: Option<String>,
    },
    /// Change desired properties of a module; it gets them through `on-config` at once.
    Set {
        /// The module.
        module: String,
        /// `key=value` pairs. The value is JSON if it parses (`25`, `true`, `{"a":1}`), else a
        /// string; `a.b=1` sets a nested key; `key=null` removes a key.
        #[arg(required = true)]
        assignments: Vec<String>,
    },
}

/// Runs a `wedge twin` subcommand against the host on `data_dir`.
pub async fn run(command: Command, data_dir: &Path) -> anyhow::Result<()> {
    let output = match command {
        Command::Get { module } => {
            let twin = client::call(data_dir, &Request::TwinGet).await?;
            match module {
                None => twin,
                Some(m) => serde_json::json!({
                    "desired": twin["desired"]["wedge"]["modules"][&m]["config"],
                    "reported": twin["reported"]["wedge"]["modules"][&m]["properties"],
                    "status": twin["reported"]["wedge"]["modules"][&m]["runtimeStatus"],
                }),
            }
        }
        Command::Set {
            module,
            assignments,
        } => {
            let patch = patch_from_assignments(&assignments)?;
            client::call(data_dir, &Request::TwinSet { module, patch }).await?
        }
    };
    out!("{}", serde_json::to_string_pretty(&output)?);
    Ok(())
}

/// Builds a JSON merge patch from `key=value` pairs.
fn patch_from_assignments(assignments: &[String]) -> anyhow::Result<Value> {
    let mut patch = Map::new();
    for assignment in assignments {
        let (key, raw) = assignment
            .split_once('=')
            .with_context(|| format!("`{assignment}`: expected key=value"))?;
        let value = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()));
        let mut path: Vec<&str> = key.split('.').collect();
        if path.iter().any(|p| p.is_empty()) {
            bail!("`{assignment}`: empty key segment");
        }
        let last = path.pop().expect("split yields at least one segment");
        let mut table = &mut patch;
        for segment in path {
            let entry = table
                .entry(segment)
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                bail!("`{assignment}`: `{segment}` is set to a value and used as a table");
            }
            table = entry.as_object_mut().expect("checked above");
        }
        table.insert(last.to_string(), value);
    }
    Ok(Value::Object(patch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn assignments_become_a_merge_patch() {
        let args = [
            "threshold=25.5",
            "field=pressure",
            "range.min=1",
            "range.max=2",
            "old=null",
            "s=\"7\"",
        ];
        let patch = patch_from_assignments(&args.map(String::from)).unwrap();
        assert_eq!(
            patch,
            json!({"threshold": 25.5, "field": "pressure", "range": {"min": 1, "max": 2}, "old": null, "s": "7"})
        );
        assert!(patch_from_assignments(&["novalue".into()]).is_err());
        assert!(patch_from_assignments(&["a=1".into(), "a.b=2".into()]).is_err());
    }
}
