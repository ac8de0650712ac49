//! The deployment documents, with no I/O: one shape for every upstream (the local hub, IoT Hub's
//! twin, an MQTT config topic) and for the base a device's `wedge.toml` gives.
//!
//! - [`DeploymentDoc`]: the *desired* deployment under `desired.wedge`: which modules run, from
//!   which binary, with which settings and config, and the routes between them.
//!   [`DeploymentDoc::effective`] merges the desired section over the device's base (a JSON
//!   merge patch: `null` removes) and validates the whole; every [`DocError`] is one line naming
//!   the JSON path, like `modules.sensor.limits.memory-mb: must be greater than 0`.
//!   [`DeploymentDoc::diff`] tells the host what to start, stop, swap or reconfigure.
//! - [`ReportedDoc`]: what an operator sees under `reported.wedge`, in the camelCase shape of
//!   Azure IoT Edge's edgeAgent; [`ReportedDoc::patch_from`] gives the smallest patch to send.

mod desired;
mod kind;
pub(crate) mod merge;
mod reported;

pub use desired::{
    DeploymentDoc, DesiredStatus, DocError, HOST_METHODS, Limits, MAX_MODULE_NAME_LEN, ModuleDoc,
    NAME_RULE, RestartPolicy, RouteDoc, RouteSink, RouteSource, UPSTREAM, UPSTREAM_C2D,
    WHEN_FULL_APPLIES, WhenFull, cycle_text, find_cycle, is_valid_module_name,
};
pub use kind::ModuleKind;
pub use merge::Diff;
pub use reported::{
    DesiredStatusReport, MAX_DESCRIPTION_LEN, ModuleReport, ReportedDoc, RuntimeStatus,
};
