//! The image repository in ECR: created when missing (scan on push, tag mutability from the
//! config), asked whether a tag is already registered, and the push credentials.

use aws_sdk_ecr::Client;
use aws_sdk_ecr::types::{ImageIdentifier, ImageScanningConfiguration, ImageTagMutability};
use base64::Engine as _;

use crate::error::{DeployError, code};
use crate::plan::{Action, Plan};

/// The repository deploy pushes to.
#[derive(Clone, Debug)]
pub struct Repository {
    pub name: String,
    /// `ACCOUNT.dkr.ecr.REGION.amazonaws.com/NAME`, what the task definition pulls.
    pub uri: String,
    /// Empty in a dry run when the repository does not exist yet.
    pub exists: bool,
}

/// The repository named `name`, if there is one.
async fn find_repository(
    ecr: &Client,
    name: &str,
) -> Result<Option<aws_sdk_ecr::types::Repository>, DeployError> {
    match ecr
        .describe_repositories()
        .repository_names(name)
        .send()
        .await
    {
        Ok(output) => Ok(output.repositories.unwrap_or_default().into_iter().next()),
        Err(error) if code(&error) == Some("RepositoryNotFoundException") => Ok(None),
        Err(error) => Err(DeployError::aws(
            format!("ecr DescribeRepositories {name}"),
            error,
        )),
    }
}

/// Makes sure the repository exists with the wanted settings.
pub async fn ensure_repository(
    ecr: &Client,
    name: &str,
    immutable: bool,
    plan: &mut Plan,
) -> Result<Repository, DeployError> {
    let mutability = if immutable {
        ImageTagMutability::Immutable
    } else {
        ImageTagMutability::Mutable
    };
    let found = find_repository(ecr, name).await?;
    if let Some(repository) = found {
        let uri = repository.repository_uri.clone().unwrap_or_default();
        let scan = repository
            .image_scanning_configuration
            .as_ref()
            .is_some_and(|c| c.scan_on_push);
        let mut changed = Vec::new();
        if repository.image_tag_mutability.as_ref() != Some(&mutability) {
            changed.push(format!("tag mutability {}", mutability.as_str()));
            if !plan.dry_run {
                ecr.put_image_tag_mutability()
                    .repository_name(name)
                    .image_tag_mutability(mutability.clone())
                    .send()
                    .await
                    .map_err(|e| {
                        DeployError::aws(format!("ecr PutImageTagMutability {name}"), e)
                    })?;
            }
        }
        if !scan {
            changed.push("scan on push".to_owned());
            if !plan.dry_run {
                ecr.put_image_scanning_configuration()
                    .repository_name(name)
                    .image_scanning_configuration(
                        ImageScanningConfiguration::builder()
                            .scan_on_push(true)
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| {
                        DeployError::aws(format!("ecr PutImageScanningConfiguration {name}"), e)
                    })?;
            }
        }
        let action = if changed.is_empty() {
            Action::Reuse
        } else {
            Action::Update
        };
        plan.record("ecr repository", name, action, changed.join(", "));
        return Ok(Repository {
            name: name.to_owned(),
            uri,
            exists: true,
        });
    }
    if plan.dry_run {
        plan.record("ecr repository", name, Action::Create, "scan on push");
        return Ok(Repository {
            name: name.to_owned(),
            uri: format!("<account>.dkr.ecr.<region>.amazonaws.com/{name}"),
            exists: false,
        });
    }
    let created = ecr
        .create_repository()
        .repository_name(name)
        .image_tag_mutability(mutability)
        .image_scanning_configuration(
            ImageScanningConfiguration::builder()
                .scan_on_push(true)
                .build(),
        )
        .send()
        .await
        .map_err(|e| DeployError::aws(format!("ecr CreateRepository {name}"), e))?;
    let uri = created
        .repository
        .and_then(|r| r.repository_uri)
        .ok_or_else(|| DeployError::Aws {
            step: format!("ecr CreateRepository {name}"),
            message: "the answer has no repository URI".into(),
        })?;
    plan.record("ecr repository", name, Action::Create, "scan on push");
    Ok(Repository {
        name: name.to_owned(),
        uri,
        exists: true,
    })
}

/// The digest ECR has for `tag`, or None when the tag is not registered.
pub async fn image_digest(
    ecr: &Client,
    repository: &Repository,
    tag: &str,
) -> Result<Option<String>, DeployError> {
    if !repository.exists {
        return Ok(None);
    }
    let answer = ecr
        .describe_images()
        .repository_name(&repository.name)
        .image_ids(ImageIdentifier::builder().image_tag(tag).build())
        .send()
        .await;
    match answer {
        Ok(output) => Ok(output
            .image_details
            .unwrap_or_default()
            .into_iter()
            .find_map(|detail| detail.image_digest)),
        Err(error) if code(&error) == Some("ImageNotFoundException") => Ok(None),
        Err(error) => Err(DeployError::aws(
            format!("ecr DescribeImages {}:{tag}", repository.name),
            error,
        )),
    }
}

/// ECR's registry endpoint (`host`, no scheme) and the basic-auth pair for pushing to it.
pub async fn push_credentials(ecr: &Client) -> Result<(String, String, String), DeployError> {
    let output = ecr
        .get_authorization_token()
        .send()
        .await
        .map_err(|e| DeployError::aws("ecr GetAuthorizationToken", e))?;
    let data = output
        .authorization_data
        .unwrap_or_default()
        .into_iter()
        .next()
        .ok_or_else(|| DeployError::Aws {
            step: "ecr GetAuthorizationToken".into(),
            message: "the answer holds no authorization data".into(),
        })?;
    let token = data.authorization_token.unwrap_or_default();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.as_bytes())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| DeployError::Aws {
            step: "ecr GetAuthorizationToken".into(),
            message: "the token is not base64 of USER:PASSWORD".into(),
        })?;
    let (user, password) = decoded.split_once(':').ok_or_else(|| DeployError::Aws {
        step: "ecr GetAuthorizationToken".into(),
        message: "the token is not base64 of USER:PASSWORD".into(),
    })?;
    let endpoint = data.proxy_endpoint.unwrap_or_default();
    let host = endpoint
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    Ok((host, user.to_owned(), password.to_owned()))
}

/// Records a manifest pushed to another registry (`--registry`) under `tag` in ECR, so ECR
/// knows the image and the next deploy finds it. An identical existing image is fine.
pub async fn register_manifest(
    ecr: &Client,
    repository: &Repository,
    tag: &str,
    manifest: &[u8],
    media_type: &str,
    digest: &str,
) -> Result<(), DeployError> {
    let text = String::from_utf8_lossy(manifest).into_owned();
    let answer = ecr
        .put_image()
        .repository_name(&repository.name)
        .image_tag(tag)
        .image_manifest(text)
        .image_manifest_media_type(media_type)
        // ECR checks the manifest against it; the digest the registry gave is the one to keep.
        .image_digest(digest)
        .send()
        .await;
    match answer {
        Ok(_) => Ok(()),
        Err(error) if code(&error) == Some("ImageAlreadyExistsException") => Ok(()),
        Err(error) => Err(DeployError::aws(
            format!("ecr PutImage {}:{tag}", repository.name),
            error,
        )),
    }
}

/// Deletes the repository and every image in it (`destroy --purge-images` only).
pub async fn delete_repository(
    ecr: &Client,
    name: &str,
    plan: &mut Plan,
) -> Result<(), DeployError> {
    if find_repository(ecr, name).await?.is_none() {
        plan.record("ecr repository", name, Action::Absent, "");
        return Ok(());
    }
    if !plan.dry_run {
        ecr.delete_repository()
            .repository_name(name)
            .force(true)
            .send()
            .await
            .map_err(|e| DeployError::aws(format!("ecr DeleteRepository {name}"), e))?;
    }
    plan.record("ecr repository", name, Action::Delete, "with its images");
    Ok(())
}
