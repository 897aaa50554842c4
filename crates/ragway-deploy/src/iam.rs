//! The two IAM roles a task needs: the execution role (ECS pulls the image, writes logs, reads
//! the configured secrets) and the task role, with least privilege derived from the config:
//! Bedrock invoke on the configured model and inference-profile ARNs (rerank models included),
//! Bedrock Rerank, Retrieve on the configured knowledge bases, Kendra on the configured
//! indexes. Created when missing; an inline policy is rewritten only when it differs.

use std::collections::BTreeSet;

use aws_sdk_iam::Client;
use ragway_core::config::{Config, EmbedderConfig, LlmConfig, RerankerConfig, VectorStoreConfig};
use serde_json::{Value, json};

use crate::error::{DeployError, code};
use crate::plan::{Action, Plan};

/// AWS's managed policy for pulling from ECR and writing CloudWatch logs.
pub const EXECUTION_MANAGED_POLICY: &str =
    "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy";
/// The name of the inline policy deploy writes on each role.
pub const INLINE_POLICY: &str = "ragway";

/// Who may assume the roles: ECS tasks.
pub fn trust_policy() -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "ecs-tasks.amazonaws.com"},
            "Action": "sts:AssumeRole"
        }]
    })
}

/// Cross-region inference profiles are model ids with a geography prefix.
const PROFILE_PREFIXES: [&str; 5] = ["us.", "eu.", "apac.", "us-gov.", "global."];

/// The task role's policy: what the configured components call, on exactly their resources.
/// None when the config calls no AWS service.
pub fn task_policy(
    config: &Config,
    region: &str,
    account: &str,
) -> Result<Option<Value>, DeployError> {
    let mut bedrock = BTreeSet::new();
    let mut bedrock_stream = false;
    let mut kendra = BTreeSet::new();
    let mut knowledge_bases = BTreeSet::new();
    let mut model = |model_id: &str, component_region: &Option<String>| {
        let region = component_region.as_deref().unwrap_or(region);
        match PROFILE_PREFIXES
            .iter()
            .find_map(|p| model_id.strip_prefix(p))
        {
            Some(base) => {
                bedrock.insert(format!(
                    "arn:aws:bedrock:{region}:{account}:inference-profile/{model_id}"
                ));
                // A cross-region profile routes to the model in any of its regions.
                bedrock.insert(format!("arn:aws:bedrock:*::foundation-model/{base}"));
            }
            None => {
                bedrock.insert(format!(
                    "arn:aws:bedrock:{region}::foundation-model/{model_id}"
                ));
            }
        }
    };
    for llm in &config.llm {
        if let LlmConfig::Bedrock(c) = llm {
            model(&c.model_id, &c.region);
            bedrock_stream = true;
        }
    }
    for embedder in &config.embedder {
        if let EmbedderConfig::Bedrock(c) = embedder {
            model(&c.model_id, &c.region);
        }
    }
    // Rerank has no resource-level permission (its statement is on "*"); the model it calls
    // is invoked, and that is what the policy narrows.
    let mut rerank = false;
    for reranker in &config.reranker {
        if let RerankerConfig::Bedrock(c) = reranker {
            rerank = true;
            if c.model_id.starts_with("arn:") {
                bedrock.insert(c.model_id.clone());
            } else {
                let region = c.region.as_deref().unwrap_or(region);
                bedrock.insert(format!(
                    "arn:aws:bedrock:{region}::foundation-model/{}",
                    c.model_id
                ));
            }
        }
    }
    for (i, store) in config.vector_store.iter().enumerate() {
        match store {
            VectorStoreConfig::Kendra(c) => {
                let index = c.index_id.resolve().map_err(|why| {
                    DeployError::Invalid(format!(
                        "vector_store[{i}].index_id: {why}; deploy needs the index id where it \
                         runs too, to name that index in the task role's policy"
                    ))
                })?;
                let region = c.region.as_deref().unwrap_or(region);
                kendra.insert(format!("arn:aws:kendra:{region}:{account}:index/{index}"));
            }
            VectorStoreConfig::BedrockKb(c) => {
                let id = c.knowledge_base_id.resolve().map_err(|why| {
                    DeployError::Invalid(format!(
                        "vector_store[{i}].knowledge_base_id: {why}; deploy needs the knowledge \
                         base id where it runs too, to name that knowledge base in the task \
                         role's policy"
                    ))
                })?;
                let region = c.region.as_deref().unwrap_or(region);
                knowledge_bases.insert(format!(
                    "arn:aws:bedrock:{region}:{account}:knowledge-base/{id}"
                ));
            }
            VectorStoreConfig::Faiss(_) | VectorStoreConfig::Pgvector(_) => {}
        }
    }
    let mut statements = Vec::new();
    if !bedrock.is_empty() {
        let mut actions = vec!["bedrock:InvokeModel"];
        if bedrock_stream {
            actions.push("bedrock:InvokeModelWithResponseStream");
        }
        statements.push(json!({
            "Sid": "Bedrock", "Effect": "Allow", "Action": actions,
            "Resource": bedrock.into_iter().collect::<Vec<_>>()
        }));
    }
    if !kendra.is_empty() {
        statements.push(json!({
            "Sid": "Kendra", "Effect": "Allow", "Action": ["kendra:Retrieve", "kendra:Query"],
            "Resource": kendra.into_iter().collect::<Vec<_>>()
        }));
    }
    if !knowledge_bases.is_empty() {
        statements.push(json!({
            "Sid": "BedrockKnowledgeBases", "Effect": "Allow", "Action": ["bedrock:Retrieve"],
            "Resource": knowledge_bases.into_iter().collect::<Vec<_>>()
        }));
    }
    if rerank {
        statements.push(json!({
            "Sid": "BedrockRerank", "Effect": "Allow", "Action": ["bedrock:Rerank"],
            "Resource": "*"
        }));
    }
    Ok((!statements.is_empty()).then(|| json!({"Version": "2012-10-17", "Statement": statements})))
}

/// The execution role's own policy: reading the secrets the task definition names.
pub fn secrets_policy(secret_arns: &[&str]) -> Option<Value> {
    let ssm: Vec<&str> = secret_arns
        .iter()
        .copied()
        .filter(|a| a.contains(":ssm:"))
        .collect();
    let manager: Vec<&str> = secret_arns
        .iter()
        .copied()
        .filter(|a| a.contains(":secretsmanager:"))
        .collect();
    let mut statements = Vec::new();
    if !ssm.is_empty() {
        statements
            .push(json!({"Effect": "Allow", "Action": ["ssm:GetParameters"], "Resource": ssm}));
    }
    if !manager.is_empty() {
        statements.push(json!({
            "Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"], "Resource": manager
        }));
    }
    (!statements.is_empty()).then(|| json!({"Version": "2012-10-17", "Statement": statements}))
}

/// A role as wanted: its managed policies and its one inline policy.
pub struct RoleSpec<'a> {
    pub name: &'a str,
    pub managed: &'a [&'a str],
    pub inline: Option<Value>,
}

/// The ARN of the role named `name`, if there is one.
async fn role_arn(iam: &Client, name: &str) -> Result<Option<String>, DeployError> {
    match iam.get_role().role_name(name).send().await {
        Ok(output) => Ok(output.role.map(|r| r.arn)),
        Err(error) if code(&error) == Some("NoSuchEntity") => Ok(None),
        Err(error) => Err(DeployError::aws(format!("iam GetRole {name}"), error)),
    }
}

/// Makes the role match `spec`; returns its ARN (a placeholder in a dry run before it exists).
pub async fn ensure_role(
    iam: &Client,
    spec: &RoleSpec<'_>,
    deployment: &str,
    plan: &mut Plan,
) -> Result<String, DeployError> {
    let name = spec.name;
    let found = role_arn(iam, name).await?;
    let mut changes = Vec::new();
    let arn = match found {
        Some(arn) => arn,
        None if plan.dry_run => {
            plan.record("iam role", name, Action::Create, "");
            return Ok(format!("arn:aws:iam::<account>:role/{name}"));
        }
        None => {
            let output = iam
                .create_role()
                .role_name(name)
                .assume_role_policy_document(trust_policy().to_string())
                .description(format!("ragway deployment {deployment}"))
                .tags(tag(deployment)?)
                .send()
                .await
                .map_err(|e| DeployError::aws(format!("iam CreateRole {name}"), e))?;
            changes.push("created".to_owned());
            output.role.map(|r| r.arn).unwrap_or_default()
        }
    };
    let created = !changes.is_empty();

    let attached: BTreeSet<String> = if created {
        BTreeSet::new()
    } else {
        iam.list_attached_role_policies()
            .role_name(name)
            .send()
            .await
            .map_err(|e| DeployError::aws(format!("iam ListAttachedRolePolicies {name}"), e))?
            .attached_policies
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| p.policy_arn)
            .collect()
    };
    for managed in spec.managed {
        if !attached.contains(*managed) {
            changes.push(format!("attach {managed}"));
            if !plan.dry_run {
                iam.attach_role_policy()
                    .role_name(name)
                    .policy_arn(*managed)
                    .send()
                    .await
                    .map_err(|e| DeployError::aws(format!("iam AttachRolePolicy {name}"), e))?;
            }
        }
    }

    let current = if created {
        None
    } else {
        match iam
            .get_role_policy()
            .role_name(name)
            .policy_name(INLINE_POLICY)
            .send()
            .await
        {
            Ok(output) => Some(parse_policy(&output.policy_document)),
            Err(error) if code(&error) == Some("NoSuchEntity") => None,
            Err(error) => return Err(DeployError::aws(format!("iam GetRolePolicy {name}"), error)),
        }
    };
    match (&spec.inline, current) {
        (Some(wanted), current) if current.as_ref() != Some(wanted) => {
            changes.push("inline policy".to_owned());
            if !plan.dry_run {
                iam.put_role_policy()
                    .role_name(name)
                    .policy_name(INLINE_POLICY)
                    .policy_document(wanted.to_string())
                    .send()
                    .await
                    .map_err(|e| DeployError::aws(format!("iam PutRolePolicy {name}"), e))?;
            }
        }
        (None, Some(_)) => {
            changes.push("remove inline policy".to_owned());
            if !plan.dry_run {
                iam.delete_role_policy()
                    .role_name(name)
                    .policy_name(INLINE_POLICY)
                    .send()
                    .await
                    .map_err(|e| DeployError::aws(format!("iam DeleteRolePolicy {name}"), e))?;
            }
        }
        _ => {}
    }
    let action = if created {
        Action::Create
    } else if changes.is_empty() {
        Action::Reuse
    } else {
        Action::Update
    };
    let detail = if created {
        String::new()
    } else {
        changes.join(", ")
    };
    plan.record("iam role", name, action, detail);
    Ok(arn)
}

/// IAM hands policy documents back URL-encoded; compare them as JSON.
fn parse_policy(document: &str) -> Value {
    let decoded = percent_encoding::percent_decode_str(document).decode_utf8_lossy();
    serde_json::from_str(&decoded).unwrap_or(Value::Null)
}

fn tag(deployment: &str) -> Result<aws_sdk_iam::types::Tag, DeployError> {
    aws_sdk_iam::types::Tag::builder()
        .key(crate::TAG_KEY)
        .value(deployment)
        .build()
        .map_err(|e| DeployError::Invalid(e.to_string()))
}

/// Removes a role deploy made: its policies first, as IAM requires.
pub async fn delete_role(iam: &Client, name: &str, plan: &mut Plan) -> Result<(), DeployError> {
    if role_arn(iam, name).await?.is_none() {
        plan.record("iam role", name, Action::Absent, "");
        return Ok(());
    }
    if !plan.dry_run {
        let inline = iam
            .list_role_policies()
            .role_name(name)
            .send()
            .await
            .map_err(|e| DeployError::aws(format!("iam ListRolePolicies {name}"), e))?;
        for policy in inline.policy_names {
            iam.delete_role_policy()
                .role_name(name)
                .policy_name(&policy)
                .send()
                .await
                .map_err(|e| DeployError::aws(format!("iam DeleteRolePolicy {name}"), e))?;
        }
        let attached = iam
            .list_attached_role_policies()
            .role_name(name)
            .send()
            .await
            .map_err(|e| DeployError::aws(format!("iam ListAttachedRolePolicies {name}"), e))?;
        for policy in attached.attached_policies.unwrap_or_default() {
            if let Some(arn) = policy.policy_arn {
                iam.detach_role_policy()
                    .role_name(name)
                    .policy_arn(arn)
                    .send()
                    .await
                    .map_err(|e| DeployError::aws(format!("iam DetachRolePolicy {name}"), e))?;
            }
        }
        iam.delete_role()
            .role_name(name)
            .send()
            .await
            .map_err(|e| DeployError::aws(format!("iam DeleteRole {name}"), e))?;
    }
    plan.record("iam role", name, Action::Delete, "");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_policy_names_models_profiles_and_indexes() {
        let config = Config::parse(
            r#"
[[llm]]
name = "claude"
type = "bedrock"
model_id = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
[[llm]]
name = "titan"
type = "bedrock"
model_id = "amazon.titan-text-express-v1"
region = "eu-west-1"
[[embedder]]
name = "titan-embed"
type = "bedrock"
[[vector_store]]
name = "kendra"
type = "kendra"
index_id = "0123abcd-0123-0123-0123-0123456789ab"
"#,
            "t",
        )
        .unwrap();
        let policy = task_policy(&config, "us-east-1", "123456789012")
            .unwrap()
            .unwrap();
        let bedrock = &policy["Statement"][0];
        assert_eq!(
            bedrock["Action"],
            json!([
                "bedrock:InvokeModel",
                "bedrock:InvokeModelWithResponseStream"
            ])
        );
        assert_eq!(
            bedrock["Resource"],
            json!([
                "arn:aws:bedrock:*::foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0",
                "arn:aws:bedrock:eu-west-1::foundation-model/amazon.titan-text-express-v1",
                "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0",
                "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-embed-text-v2:0",
            ])
        );
        assert_eq!(
            policy["Statement"][1]["Resource"],
            json!([
                "arn:aws:kendra:us-east-1:123456789012:index/0123abcd-0123-0123-0123-0123456789ab"
            ])
        );
    }

    #[test]
    fn knowledge_bases_get_retrieve_and_rerankers_rerank_and_their_model() {
        let config = Config::parse(
            r#"
[[reranker]]
name = "cohere"
type = "bedrock"
model_id = "cohere.rerank-v3-5:0"
[[reranker]]
name = "amazon"
type = "bedrock"
model_id = "amazon.rerank-v1:0"
region = "us-west-2"
[[reranker]]
name = "local"
type = "local"
path = "models/cross-encoder"
[[vector_store]]
name = "kb"
type = "bedrock_kb"
knowledge_base_id = "AES9P3MT9T"
rerank = { reranker = "cohere" }
[[vector_store]]
name = "kb-eu"
type = "bedrock_kb"
knowledge_base_id = "KB12345678"
region = "eu-central-1"
"#,
            "t",
        )
        .unwrap();
        let policy = task_policy(&config, "us-east-1", "123456789012")
            .unwrap()
            .unwrap();
        assert_eq!(
            policy["Statement"],
            json!([
                {
                    "Sid": "Bedrock", "Effect": "Allow", "Action": ["bedrock:InvokeModel"],
                    "Resource": [
                        "arn:aws:bedrock:us-east-1::foundation-model/cohere.rerank-v3-5:0",
                        "arn:aws:bedrock:us-west-2::foundation-model/amazon.rerank-v1:0",
                    ]
                },
                {
                    "Sid": "BedrockKnowledgeBases", "Effect": "Allow",
                    "Action": ["bedrock:Retrieve"],
                    "Resource": [
                        "arn:aws:bedrock:eu-central-1:123456789012:knowledge-base/KB12345678",
                        "arn:aws:bedrock:us-east-1:123456789012:knowledge-base/AES9P3MT9T",
                    ]
                },
                {
                    "Sid": "BedrockRerank", "Effect": "Allow", "Action": ["bedrock:Rerank"],
                    "Resource": "*"
                },
            ])
        );
    }

    #[test]
    fn a_knowledge_base_id_from_the_environment_is_resolved_or_named() {
        let text = |var: &str| {
            format!(
                "[[vector_store]]\nname = 'kb'\ntype = 'bedrock_kb'\nknowledge_base_id = 'env::{var}'\n"
            )
        };
        let config = Config::parse(&text("RAGWAY_TEST_IAM_KB_UNSET"), "t").unwrap();
        let error = task_policy(&config, "us-east-1", "1")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("vector_store[0].knowledge_base_id: environment variable RAGWAY_TEST_IAM_KB_UNSET is not set"),
            "{error}"
        );
        // PATH is set wherever tests run; its value stands in for an id here.
        let config = Config::parse(&text("PATH"), "t").unwrap();
        let path = std::env::var("PATH").unwrap();
        let policy = task_policy(&config, "us-east-1", "1").unwrap().unwrap();
        assert_eq!(
            policy["Statement"][0]["Resource"],
            json!([format!("arn:aws:bedrock:us-east-1:1:knowledge-base/{path}")])
        );
    }

    #[test]
    fn a_local_only_config_needs_no_task_policy() {
        let config =
            Config::parse("[[llm]]\nname='m'\ntype='local'\npath='m.gguf'\n", "t").unwrap();
        assert_eq!(task_policy(&config, "us-east-1", "1").unwrap(), None);
    }

    #[test]
    fn secrets_policy_splits_ssm_and_secrets_manager() {
        let policy = secrets_policy(&[
            "arn:aws:ssm:us-east-1:1:parameter/a",
            "arn:aws:secretsmanager:us-east-1:1:secret:b",
        ])
        .unwrap();
        assert_eq!(
            policy["Statement"][0]["Action"],
            json!(["ssm:GetParameters"])
        );
        assert_eq!(
            policy["Statement"][1]["Action"],
            json!(["secretsmanager:GetSecretValue"])
        );
        assert!(secrets_policy(&[]).is_none());
    }
}
