//! `push` and `manifest_digest` against Debian's `docker-registry` (distribution v2) on loopback.

use ragway_image::{ImageError, Target, build, manifest_digest, push};

use crate::support::{Fixture, Registry, RegistryOptions, free_port, write_file};

#[tokio::test]
async fn push_uploads_every_blob_then_skips_them_all() {
    let registry = Registry::start().await;
    let temp = tempfile::tempdir().unwrap();
    let fixture = Fixture::new(temp.path());
    let image = build(&fixture.spec(), &temp.path().join("out")).unwrap();
    let target = registry.target("team/ragway", "v1");

    assert_eq!(
        manifest_digest(&target).await.unwrap(),
        None,
        "nothing pushed yet"
    );
    let report = push(&image, &target).await.unwrap();
    assert_eq!(report.digest, image.manifest_digest);
    assert_eq!(
        (report.blobs_pushed, report.blobs_skipped),
        (3, 0),
        "{report:?}"
    );
    assert_eq!(
        report.bytes_pushed,
        image.layers.iter().map(|l| l.size).sum::<u64>() + image.config.size
    );
    assert!(report.manifest_pushed);

    // Each blob went up monolithically (ECR refuses some chunked uploads): one POST to open
    // the session, one PUT with the digest and the whole body, never a PATCH.
    let log = registry.log();
    let ours: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ragway-image/"))
        .collect();
    let count = |needle: &str| ours.iter().filter(|l| l.contains(needle)).count();
    assert_eq!(count("\"POST /v2/team/ragway/blobs/uploads/ "), 3, "{log}");
    assert_eq!(count("\"PUT /v2/team/ragway/blobs/uploads/"), 3, "{log}");
    assert_eq!(count("\"PATCH "), 0, "{log}");

    for blob in image.layers.iter().chain([&image.config]) {
        assert_eq!(
            registry.blob_status("team/ragway", &blob.digest).await,
            200,
            "{}",
            blob.digest
        );
    }
    let (digest, body) = registry.manifest("team/ragway", "v1").await;
    assert_eq!(digest, image.manifest_digest);
    assert_eq!(
        body, image.manifest,
        "the registry stores the manifest byte for byte"
    );
    assert_eq!(
        manifest_digest(&target).await.unwrap(),
        Some(image.manifest_digest.clone())
    );

    // Again: every blob is there, and the tag already points at the manifest.
    let again = push(&image, &target).await.unwrap();
    assert_eq!(
        (again.blobs_pushed, again.blobs_skipped, again.bytes_pushed),
        (0, 3, 0),
        "{again:?}"
    );
    assert!(!again.manifest_pushed);
    assert_eq!(again.digest, image.manifest_digest);

    // The same image under a second tag: no blob moves, only the manifest is written.
    let latest = registry.target("team/ragway", "latest");
    let tagged = push(&image, &latest).await.unwrap();
    assert_eq!((tagged.blobs_pushed, tagged.blobs_skipped), (0, 3));
    assert!(tagged.manifest_pushed);
    assert_eq!(
        manifest_digest(&latest).await.unwrap(),
        Some(image.manifest_digest.clone())
    );

    // A new binary: only its layer and the config are uploaded; the tag moves.
    write_file(
        &fixture.dir.join("app"),
        b"#!/bin/sh\necho ragway v2\n",
        0o755,
    );
    let next = build(&fixture.spec(), &temp.path().join("out")).unwrap();
    let report = push(&next, &target).await.unwrap();
    assert_eq!(
        (report.blobs_pushed, report.blobs_skipped),
        (2, 1),
        "{report:?}"
    );
    assert_eq!(report.bytes_pushed, next.layers[1].size + next.config.size);
    assert_eq!(
        manifest_digest(&target).await.unwrap(),
        Some(next.manifest_digest.clone())
    );
    assert_ne!(next.manifest_digest, image.manifest_digest);
}

#[tokio::test]
async fn unknown_tags_and_repositories_have_no_digest() {
    let registry = Registry::start().await;
    assert_eq!(
        manifest_digest(&registry.target("ragway", "nope"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        manifest_digest(&registry.target("never/pushed", "v1"))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn a_closed_port_is_reported_as_unreachable_with_its_address() {
    let temp = tempfile::tempdir().unwrap();
    let image = build(&Fixture::new(temp.path()).spec(), &temp.path().join("out")).unwrap();
    let address = format!("127.0.0.1:{}", free_port());
    let target = Target {
        registry: address.clone(),
        repository: "ragway".into(),
        tag: "v1".into(),
        auth: None,
        insecure: true,
    };

    let error = push(&image, &target).await.unwrap_err();
    assert!(
        matches!(&error, ImageError::Unreachable { registry, .. } if *registry == address),
        "{error:?}"
    );
    assert!(error.to_string().contains(&address), "{error}");
    println!("closed port: {error}");
    let error = manifest_digest(&target).await.unwrap_err();
    assert!(matches!(error, ImageError::Unreachable { .. }), "{error:?}");
}

#[tokio::test]
async fn a_repository_name_the_registry_would_reject_is_refused_before_any_request() {
    let temp = tempfile::tempdir().unwrap();
    let image = build(&Fixture::new(temp.path()).spec(), &temp.path().join("out")).unwrap();
    // A closed port: had any request been sent, the error would be Unreachable.
    let target = Target {
        registry: format!("127.0.0.1:{}", free_port()),
        repository: "Team/RagWay".into(),
        tag: "v1".into(),
        auth: None,
        insecure: true,
    };
    let error = push(&image, &target).await.unwrap_err();
    assert!(
        matches!(error, ImageError::InvalidReference { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("Team/RagWay") && error.to_string().contains("lower-case"),
        "{error}"
    );
    println!("bad name: {error}");
}

#[tokio::test]
async fn a_read_only_registry_refusal_carries_its_status_and_message() {
    let registry = Registry::start_with(RegistryOptions {
        read_only: true,
        ..Default::default()
    })
    .await;
    let temp = tempfile::tempdir().unwrap();
    let image = build(&Fixture::new(temp.path()).spec(), &temp.path().join("out")).unwrap();

    let error = push(&image, &registry.target("ragway", "v1"))
        .await
        .unwrap_err();
    let ImageError::Refused {
        registry: address,
        action,
        status,
        message,
    } = &error
    else {
        panic!("expected Refused, got {error:?}\n{}", registry.log());
    };
    assert_eq!(address, &registry.address);
    assert!(action.contains("upload blob sha256:"), "{action}");
    assert_eq!(*status, Some(405), "{error}");
    // This refusal has a plain-text body, which is passed on as it is.
    assert!(message.contains("Method not allowed"), "{message}");
    println!("read-only registry: {error}");
}

#[tokio::test]
async fn a_blob_changed_after_the_build_is_refused_with_the_registry_error_message() {
    let registry = Registry::start().await;
    let temp = tempfile::tempdir().unwrap();
    let image = build(&Fixture::new(temp.path()).spec(), &temp.path().join("out")).unwrap();
    // Same size, other bytes: only the registry's digest check can notice.
    let mut bytes = std::fs::read(&image.config.path).unwrap();
    bytes[0] ^= 0x20;
    std::fs::write(&image.config.path, bytes).unwrap();

    let error = push(&image, &registry.target("ragway", "v1"))
        .await
        .unwrap_err();
    let ImageError::Refused {
        status,
        message,
        action,
        ..
    } = &error
    else {
        panic!("expected Refused, got {error:?}");
    };
    assert_eq!(*status, Some(400), "{error}");
    assert!(action.contains(&image.config.digest), "{action}");
    // The OCI error body's errors[].code and message, not the raw JSON.
    assert!(
        message.starts_with("DIGEST_INVALID: ") && !message.contains('{'),
        "{message}"
    );
    println!("corrupted blob: {error}");
    // Nothing was tagged.
    assert_eq!(
        manifest_digest(&registry.target("ragway", "v1"))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn credentials_are_used_and_wrong_ones_are_reported_as_refused() {
    let registry = Registry::start_with(RegistryOptions {
        htpasswd: true,
        ..Default::default()
    })
    .await;
    let temp = tempfile::tempdir().unwrap();
    let image = build(&Fixture::new(temp.path()).spec(), &temp.path().join("out")).unwrap();

    let mut target = registry.target("ragway", "v1");
    target.auth = Some(("ragway".into(), "wrong".into()));
    let error = push(&image, &target).await.unwrap_err();
    assert!(
        matches!(
            error,
            ImageError::AuthRefused {
                anonymous: false,
                status: Some(401),
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("refused the credentials"),
        "{error}"
    );
    assert!(
        !format!("{error} {error:?}").contains("wrong"),
        "the password never appears: {error:?}"
    );

    println!("wrong password: {error}");

    target.auth = None;
    let error = manifest_digest(&target).await.unwrap_err();
    assert!(
        matches!(
            error,
            ImageError::AuthRefused {
                anonymous: true,
                ..
            }
        ),
        "{error:?}"
    );
    println!("no credentials: {error}");

    target.auth = Some(("ragway".into(), "secret".into()));
    let report = push(&image, &target).await.unwrap();
    assert_eq!(report.blobs_pushed, 3);
    assert_eq!(
        manifest_digest(&target).await.unwrap(),
        Some(image.manifest_digest.clone())
    );
}
