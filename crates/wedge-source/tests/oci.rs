//! OCI sources against a real registry (Debian's docker-registry, started per test by
//! wedge-test-registry).

use std::time::{Duration, Instant};

use wedge_source::{
    FetchErrorKind, FetchOptions, RegistryAuth, Source, WASM_LAYER_MEDIA_TYPE, fetch, sha256_hex,
};
use wedge_test_registry::Registry;

fn module(seed: u8) -> Vec<u8> {
    // Any bytes: the fetcher does not parse wasm.
    let mut bytes = b"\0asm\x0d\0\x01\0".to_vec();
    bytes.extend((0..5_000u32).map(|i| (i as u8).wrapping_mul(seed)));
    bytes
}

fn source(text: &str) -> Source {
    Source::parse(text, None).unwrap()
}

#[tokio::test]
async fn pull_by_tag_and_by_digest() {
    let registry = Registry::start().unwrap();
    let wasm = module(3);
    let digest = registry
        .push_wasm("wedge/sensor", "1.0", &wasm)
        .await
        .unwrap();
    assert!(digest.starts_with("sha256:"), "{digest}");

    let by_tag = source(&registry.oci_source("wedge/sensor:1.0"));
    let fetched = fetch(&by_tag, None, &FetchOptions::default())
        .await
        .unwrap();
    assert_eq!(fetched.bytes, wasm);
    assert_eq!(fetched.sha256, sha256_hex(&wasm));

    // A tag pull verified against a given sha256.
    fetch(&by_tag, Some(&sha256_hex(&wasm)), &FetchOptions::default())
        .await
        .unwrap();
    let wrong = sha256_hex(b"other");
    let err = fetch(&by_tag, Some(&wrong), &FetchOptions::default())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "oci://{}/wedge/sensor:1.0: sha256 mismatch: expected {wrong}, got {}",
            registry.host(),
            sha256_hex(&wasm)
        )
    );

    let by_digest = source(&registry.oci_source(&format!("wedge/sensor@{digest}")));
    let fetched = fetch(&by_digest, None, &FetchOptions::default())
        .await
        .unwrap();
    assert_eq!(fetched.bytes, wasm);
}

#[tokio::test]
async fn a_tag_moved_to_another_module_pulls_the_new_one_but_the_digest_stays() {
    let registry = Registry::start().unwrap();
    let (v1, v2) = (module(5), module(7));
    let first = registry
        .push_wasm("wedge/filter", "stable", &v1)
        .await
        .unwrap();
    registry
        .push_wasm("wedge/filter", "stable", &v2)
        .await
        .unwrap();

    let by_tag = source(&registry.oci_source("wedge/filter:stable"));
    let fetched = fetch(&by_tag, None, &FetchOptions::default())
        .await
        .unwrap();
    assert_eq!(fetched.bytes, v2);
    let pinned = source(&registry.oci_source(&format!("wedge/filter@{first}")));
    let fetched = fetch(&pinned, None, &FetchOptions::default())
        .await
        .unwrap();
    assert_eq!(fetched.bytes, v1);
}

#[tokio::test]
async fn a_manifest_without_a_wasm_layer_is_refused() {
    let registry = Registry::start().unwrap();
    let tar = "application/vnd.oci.image.layer.v1.tar";
    registry
        .push_other("wedge/image", "1.0", b"not wasm", tar)
        .await
        .unwrap();
    let text = registry.oci_source("wedge/image:1.0");
    let err = fetch(&source(&text), None, &FetchOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind, FetchErrorKind::NoWasmLayer { .. }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!("{text}: no layer of media type {WASM_LAYER_MEDIA_TYPE} (layers: {tar})")
    );
}

#[tokio::test]
async fn unknown_tag_repository_and_digest_are_not_found() {
    let registry = Registry::start().unwrap();
    registry
        .push_wasm("wedge/sensor", "1.0", &module(1))
        .await
        .unwrap();
    let unknown_digest = format!("wedge/sensor@sha256:{}", "0".repeat(64));
    for reference in [
        "wedge/sensor:2.0",
        "wedge/nothing:1.0",
        unknown_digest.as_str(),
    ] {
        let text = registry.oci_source(reference);
        let err = fetch(&source(&text), None, &FetchOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err.kind, FetchErrorKind::NotFound(_)), "{err}");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("{text}: not found in the registry")),
            "{msg}"
        );
    }
}

#[tokio::test]
async fn a_layer_declared_over_max_bytes_is_refused() {
    let registry = Registry::start().unwrap();
    let wasm = module(9);
    registry.push_wasm("wedge/big", "1.0", &wasm).await.unwrap();
    let text = registry.oci_source("wedge/big:1.0");
    let options = FetchOptions {
        max_bytes: wasm.len() as u64 - 1,
        ..FetchOptions::default()
    };
    let err = fetch(&source(&text), None, &options).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{text}: larger than {} bytes", wasm.len() - 1)
    );
}

#[tokio::test]
async fn an_unreachable_registry_is_refused() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let text = format!("oci://127.0.0.1:{port}/wedge/sensor:1.0");
    let err = fetch(&source(&text), None, &FetchOptions::default())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{text}: unreachable: connection refused")
    );
}

#[tokio::test]
async fn a_registry_that_never_answers_times_out() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let text = format!("oci://127.0.0.1:{port}/wedge/sensor:1.0");
    let options = FetchOptions {
        timeout: Duration::from_millis(500),
        ..FetchOptions::default()
    };
    let started = Instant::now();
    let err = fetch(&source(&text), None, &options).await.unwrap_err();
    assert!(matches!(err.kind, FetchErrorKind::TimedOut(_)), "{err}");
    assert_eq!(err.to_string(), format!("{text}: timed out after 500ms"));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_registry_with_basic_auth() {
    let registry = Registry::start_with_auth("wedge", "s3cret-pw").unwrap();
    let wasm = module(11);
    registry
        .push_wasm("wedge/private", "1.0", &wasm)
        .await
        .unwrap();
    let text = registry.oci_source("wedge/private:1.0");

    let err = fetch(&source(&text), None, &FetchOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err.kind, FetchErrorKind::Unauthorized(_)), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "{text}: not authorized by the registry (no credentials for {})",
            registry.host()
        )
    );

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");

    registry
        .write_docker_config(&config, "wedge", "wrong")
        .unwrap();
    let options = FetchOptions {
        registry_auth: RegistryAuth::from_docker_config_file(&config).unwrap(),
        ..FetchOptions::default()
    };
    let err = fetch(&source(&text), None, &options).await.unwrap_err();
    assert!(matches!(err.kind, FetchErrorKind::Unauthorized(_)), "{err}");
    assert!(err.to_string().contains("were refused"), "{err}");
    assert!(!err.to_string().contains("wrong"), "{err}");

    registry
        .write_docker_config(&config, "wedge", "s3cret-pw")
        .unwrap();
    let options = FetchOptions {
        registry_auth: RegistryAuth::from_docker_config_file(&config).unwrap(),
        ..FetchOptions::default()
    };
    let fetched = fetch(&source(&text), None, &options).await.unwrap();
    assert_eq!(fetched.bytes, wasm);
    assert!(!format!("{options:?}").contains("s3cret"));
}

#[tokio::test]
async fn an_oci_source_built_directly_is_checked() {
    let err = fetch(
        &Source::Oci("sensor".into()),
        None,
        &FetchOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err.kind, FetchErrorKind::InvalidSource(_)),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("oci://sensor: invalid OCI reference"),
        "{err}"
    );
}
