//! Paths of the guest components built from `modules/`, for the host's tests.
//!
//! The build script compiles every member of the `modules/` workspace for `wasm32-wasip2` (in
//! release mode, as deployed) and this crate exposes one constant per component holding the
//! absolute path of its `.wasm` file:
//!
//! ```no_run
//! let bytes = std::fs::read(wedge_test_artifacts::SENSOR).unwrap();
//! ```
//!
//! Building needs the `wasm32-wasip2` target (`rustup target add wasm32-wasip2`).

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));

#[cfg(test)]
mod tests {
    /// What every component starts with: the wasm magic, then version 0x0d and layer 1 (a
    /// core module would have version 1, layer 0).
    const COMPONENT_HEADER: [u8; 8] = *b"\0asm\x0d\x00\x01\x00";

    #[test]
    fn every_artifact_is_a_component() {
        // Each guest of the build script once; the count changes only with its lists.
        assert_eq!(super::ALL.len(), 23);
        let names: std::collections::BTreeSet<_> = super::ALL.iter().map(|(n, _)| n).collect();
        assert_eq!(names.len(), super::ALL.len(), "a name twice");
        for (name, path) in super::ALL {
            let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{name}: {path}: {e}"));
            assert!(
                bytes.starts_with(&COMPONENT_HEADER),
                "{name}: {path} does not start with the component header: {:02x?}",
                &bytes[..bytes.len().min(8)]
            );
        }
    }
}
