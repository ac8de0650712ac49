//! What a module's binary is: a wedge module, or an Azure IoT Operations data-flow operator
//! that the host drives (`kind = "aio-map"`, …).

use serde::{Deserialize, Serialize};

/// How the host drives a module's component.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModuleKind {
    /// Exports `wedge:edge/module` (`"module"`), the default.
    #[default]
    Module,
    /// `wasm-graph:processor/map`: each message becomes the one `process` returns, on output
    /// [`ModuleKind::OUTPUT`].
    AioMap,
    /// `wasm-graph:processor/filter`: a message is passed on to [`ModuleKind::OUTPUT`] when
    /// `process` says `true`, dropped when it says `false`.
    AioFilter,
    /// `wasm-graph:processor/branch`: a message goes to output `false` (the first branch) or
    /// `true` (the second), as `process` says.
    AioBranch,
    /// `wasm-graph:processor/accumulate`: messages are gathered for one `tick-ms` window, then
    /// folded into one message on [`ModuleKind::OUTPUT`].
    AioAccumulate,
    /// `wasm-graph:processor/delay`: a message is held until the time `process` gives it,
    /// then passed on to [`ModuleKind::OUTPUT`].
    AioDelay,
}

impl ModuleKind {
    /// The output of an operator's results (a branch has `false` and `true` instead).
    pub const OUTPUT: &'static str = "output";

    /// Whether this is an Azure IoT Operations operator.
    pub fn is_operator(self) -> bool {
        self != ModuleKind::Module
    }

    /// The name in a deployment, such as `aio-map`.
    pub fn name(self) -> &'static str {
        match self {
            ModuleKind::Module => "module",
            ModuleKind::AioMap => "aio-map",
            ModuleKind::AioFilter => "aio-filter",
            ModuleKind::AioBranch => "aio-branch",
            ModuleKind::AioAccumulate => "aio-accumulate",
            ModuleKind::AioDelay => "aio-delay",
        }
    }

    /// The component export the host calls for this kind.
    pub fn export(self) -> &'static str {
        match self {
            ModuleKind::Module => "wedge:edge/module@0.1.0",
            ModuleKind::AioMap => "wasm-graph:processor/map@1.1.0",
            ModuleKind::AioFilter => "wasm-graph:processor/filter@1.1.0",
            ModuleKind::AioBranch => "wasm-graph:processor/branch@1.1.0",
            ModuleKind::AioAccumulate => "wasm-graph:processor/accumulate@1.1.0",
            ModuleKind::AioDelay => "wasm-graph:processor/delay@1.1.0",
        }
    }

    /// Checks `tick-ms` against the kind: a module may be ticked, an accumulate operator must
    /// be (the tick is its window), the other operators have nothing to tick.
    ///
    /// # Errors
    /// The problem, for the `tick-ms` field (or `kind` when the tick is missing).
    pub fn check_tick(self, tick_ms: Option<u64>) -> Result<(), String> {
        match (self, tick_ms) {
            (ModuleKind::Module, _) | (ModuleKind::AioAccumulate, Some(_)) => Ok(()),
            (ModuleKind::AioAccumulate, None) => {
                Err("an `aio-accumulate` operator needs `tick-ms`: the length of its window".into())
            }
            (kind, Some(_)) => Err(format!(
                "an `{}` operator is not ticked: remove `tick-ms` (only modules and `aio-accumulate` windows are)",
                kind.name()
            )),
            (_, None) => Ok(()),
        }
    }
}

impl std::fmt::Display for ModuleKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::ModuleKind;

    #[test]
    fn only_modules_and_windows_are_ticked_and_windows_must_be() {
        assert!(ModuleKind::Module.check_tick(None).is_ok());
        assert!(ModuleKind::Module.check_tick(Some(5)).is_ok());
        assert!(ModuleKind::AioAccumulate.check_tick(Some(5)).is_ok());
        assert!(ModuleKind::AioMap.check_tick(None).is_ok());
        let missing = ModuleKind::AioAccumulate.check_tick(None).unwrap_err();
        assert!(missing.contains("needs `tick-ms`"), "{missing}");
        let extra = ModuleKind::AioFilter.check_tick(Some(5)).unwrap_err();
        assert!(
            extra.contains("`aio-filter` operator is not ticked"),
            "{extra}"
        );
    }

    #[test]
    fn kinds_are_spelled_as_in_a_deployment() {
        let kind: ModuleKind = serde_json::from_str("\"aio-branch\"").unwrap();
        assert_eq!(kind, ModuleKind::AioBranch);
        assert_eq!(serde_json::to_string(&kind).unwrap(), "\"aio-branch\"");
        assert_eq!(kind.to_string(), "aio-branch");
        assert!(serde_json::from_str::<ModuleKind>("\"aio-fold\"").is_err());
    }
}
