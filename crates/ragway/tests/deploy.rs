//! `ragway deploy` end to end, offline: moto_server stands in for ECR, IAM, ECS, ELBv2, EC2 and
//! CloudWatch Logs, and Debian's docker-registry receives the image. Every resource is read
//! back through the AWS SDK after the real CLI ran.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_credential_types::Credentials;
use ragway_deploy::Clients;

const REGION: &str = "us-east-1";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when dropped.
struct Guard(Child, #[allow(dead_code)] tempfile::TempDir);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(url: &str) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if raw_http::get_status(url).is_ok_and(|status| status < 500) {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{url} did not come up");
}

mod raw_http {
    /// A plain GET returning the status, without an async runtime (the guards start servers
    /// before the test's own runtime work).
    pub fn get_status(url: &str) -> Result<u16, std::io::Error> {
        use std::io::{Read, Write};
        let rest = url.trim_start_matches("http://");
        let (host, path) = rest
            .split_once('/')
            .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
        let mut stream = std::net::TcpStream::connect(host)?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
        let mut answer = String::new();
        stream.take(64).read_to_string(&mut answer).ok();
        answer
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| std::io::Error::other("no status"))
    }
}

/// moto_server on a free port, with ECS services reporting `running` tasks.
fn moto(running: u32) -> (Guard, String) {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .env("MOTO_ECS_SERVICE_RUNNING", running.to_string())
        // AWS managed policies (AmazonECSTaskExecutionRolePolicy) exist only when asked for.
        .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server (pip install 'moto[server]')");
    let url = format!("http://127.0.0.1:{port}");
    wait_for(&format!("{url}/moto-api/"));
    (Guard(child, dir), url)
}

/// Debian's docker-registry (distribution v2) on a free port, storing in a temp folder.
fn registry() -> (Guard, String) {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry (apt install docker-registry)");
    let url = format!("127.0.0.1:{port}");
    wait_for(&format!("http://{url}/v2/"));
    (Guard(child, dir), url)
}

/// The ragway binary without debug info (the debug build is ~800 MB; stripped ~70 MB).
fn stripped_binary(dir: &Path) -> PathBuf {
    let out = dir.join("ragway");
    let status = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(crate::support::ragway_bin())
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "objcopy failed");
    out
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn ragway(moto: &str, args: &[&str]) -> Run {
    ragway_without(moto, args, &[])
}

/// `ragway ARGS` against moto, without the environment variables named in `unset`.
fn ragway_without(moto: &str, args: &[&str], unset: &[&str]) -> Run {
    let mut command = Command::new(crate::support::ragway_bin());
    command
        .args(args)
        .env_remove("RAGWAY_CONFIG")
        .env("AWS_ENDPOINT_URL", moto)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        // No profile files from the machine running the tests.
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    for name in unset {
        command.env_remove(name);
    }
    let output = command.output().unwrap();
    Run {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

async fn clients(moto: &str) -> Clients {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_types::region::Region::new(REGION))
        .endpoint_url(moto)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .load()
        .await;
    Clients::new(&config).unwrap()
}

const SECRET_ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:openai-key";
const KEY_ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:ragway-api-key";

fn config(extra_env: &str) -> String {
    format!(
        r#"
[[server.auth.keys]]
name = "app"
key = "env::RAGWAY_API_KEY"

[[llm]]
name = "gpt"
type = "openai"
model = "gpt-4o-mini"
base_url = "http://127.0.0.1:9/v1"
api_key = "env::OPENAI_API_KEY"

[[llm]]
name = "claude"
type = "bedrock"
model_id = "us.anthropic.claude-3-5-haiku-20241022-v1:0"

[deploy]
cpu = 512
memory = 1024
desired_count = 2
log_retention_days = 7

[deploy.secrets]
OPENAI_API_KEY = "{SECRET_ARN}"
RAGWAY_API_KEY = "{KEY_ARN}"

[deploy.environment]
RUST_LOG = "info"
{extra_env}
"#
    )
}

async fn revisions(clients: &Clients, family: &str) -> usize {
    clients
        .ecs
        .list_task_definitions()
        .family_prefix(family)
        .send()
        .await
        .unwrap()
        .task_definition_arns()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_from_nothing_then_again_then_changed_then_destroyed() {
    let (_moto, moto_url) = moto(2);
    let (_registry, registry) = registry();
    let dir = tempfile::tempdir().unwrap();
    let binary = stripped_binary(dir.path());
    let config_path = dir.path().join("ragway.toml");
    std::fs::write(&config_path, config("")).unwrap();
    let registry_arg = format!("http://{registry}");
    let deploy_args = |extra: &[&'static str]| -> Vec<String> {
        let mut args: Vec<String> = [
            "deploy",
            "--config",
            config_path.to_str().unwrap(),
            "--name",
            "demo",
            "--registry",
            &registry_arg,
            "--binary",
            binary.to_str().unwrap(),
            "--yes",
            "--poll-ms",
            "50",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let run = |extra: &[&'static str]| {
        let args = deploy_args(extra);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        ragway(&moto_url, &refs)
    };

    // A dry run from nothing plans every resource and creates none.
    let plan = run(&["--dry-run"]);
    assert!(plan.ok, "dry run failed:\n{}\n{}", plan.stdout, plan.stderr);
    for kind in [
        "ecr repository",
        "image",
        "iam role",
        "log group",
        "security group",
        "load balancer",
        "target group",
        "listener",
        "ecs cluster",
        "task definition",
        "ecs service",
    ] {
        assert!(
            plan.stdout
                .lines()
                .any(|l| l.contains("would create") && l.contains(kind)),
            "no {kind} in the plan:\n{}",
            plan.stdout
        );
    }
    let aws = clients(&moto_url).await;
    assert!(
        aws.ecr
            .describe_repositories()
            .repository_names("demo")
            .send()
            .await
            .is_err()
    );
    assert!(
        aws.iam
            .get_role()
            .role_name("demo-task")
            .send()
            .await
            .is_err()
    );
    assert!(
        aws.elb
            .describe_load_balancers()
            .names("demo")
            .send()
            .await
            .is_err()
    );

    // From nothing.
    let first = run(&[]);
    assert!(
        first.ok,
        "deploy failed:\n{}\n{}",
        first.stdout, first.stderr
    );
    assert!(
        first.stdout.contains("url      http://"),
        "{}",
        first.stdout
    );

    // ECR: the repository, scanning on push, and the image by its tag.
    let repo = aws
        .ecr
        .describe_repositories()
        .repository_names("demo")
        .send()
        .await
        .unwrap();
    let repo = &repo.repositories()[0];
    assert!(repo.image_scanning_configuration().unwrap().scan_on_push);
    let images = aws
        .ecr
        .describe_images()
        .repository_name("demo")
        .send()
        .await
        .unwrap();
    assert_eq!(images.image_details().len(), 1);
    let digest = images.image_details()[0].image_digest().unwrap().to_owned();
    let tag = images.image_details()[0].image_tags()[0].clone();
    assert!(tag.starts_with(env!("CARGO_PKG_VERSION")), "{tag}");

    // The registry has the manifest under that tag, with that digest, and every blob.
    let http = ::reqwest::Client::new();
    let manifest = http
        .get(format!("http://{registry}/v2/demo/manifests/{tag}"))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(manifest.status(), 200);
    assert_eq!(
        manifest.headers()["docker-content-digest"]
            .to_str()
            .unwrap(),
        digest
    );
    let manifest: serde_json::Value = manifest.json().await.unwrap();
    let mut blobs = vec![manifest["config"]["digest"].as_str().unwrap().to_owned()];
    for layer in manifest["layers"].as_array().unwrap() {
        blobs.push(layer["digest"].as_str().unwrap().to_owned());
    }
    assert!(
        blobs.len() >= 4,
        "config + libraries, binary and config layers: {manifest}"
    );
    for blob in &blobs {
        let head = http
            .head(format!("http://{registry}/v2/demo/blobs/{blob}"))
            .send()
            .await
            .unwrap();
        assert_eq!(head.status(), 200, "blob {blob}");
    }

    // IAM: the execution role with ECS's managed policy and the secret; the task role with
    // exactly the configured model's ARNs.
    let attached = aws
        .iam
        .list_attached_role_policies()
        .role_name("demo-execution")
        .send()
        .await
        .unwrap();
    assert_eq!(
        attached.attached_policies()[0].policy_arn(),
        Some(ragway_deploy::iam::EXECUTION_MANAGED_POLICY)
    );
    let secrets = aws
        .iam
        .get_role_policy()
        .role_name("demo-execution")
        .policy_name("ragway")
        .send()
        .await
        .unwrap();
    let secrets = percent_decode(secrets.policy_document());
    assert!(
        secrets.contains("secretsmanager:GetSecretValue") && secrets.contains(SECRET_ARN),
        "{secrets}"
    );
    let task = aws
        .iam
        .get_role_policy()
        .role_name("demo-task")
        .policy_name("ragway")
        .send()
        .await
        .unwrap();
    let task: serde_json::Value =
        serde_json::from_str(&percent_decode(task.policy_document())).unwrap();
    assert_eq!(
        task["Statement"][0]["Resource"],
        serde_json::json!([
            "arn:aws:bedrock:*::foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0",
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0",
        ])
    );

    // Logs, network and load balancer.
    let groups = aws
        .logs
        .describe_log_groups()
        .log_group_name_prefix("/ecs/demo")
        .send()
        .await
        .unwrap();
    assert_eq!(groups.log_groups()[0].retention_in_days(), Some(7));
    let lb = aws
        .elb
        .describe_load_balancers()
        .names("demo")
        .send()
        .await
        .unwrap();
    let lb = &lb.load_balancers()[0];
    assert!(
        first.stdout.contains(lb.dns_name().unwrap()),
        "{}",
        first.stdout
    );
    let tg = aws
        .elb
        .describe_target_groups()
        .names("demo")
        .send()
        .await
        .unwrap();
    let tg = &tg.target_groups()[0];
    assert_eq!(tg.health_check_path(), Some("/healthz"));
    assert_eq!(tg.target_type().unwrap().as_str(), "ip");
    assert_eq!(tg.port(), Some(8000));
    let attributes = aws
        .elb
        .describe_target_group_attributes()
        .target_group_arn(tg.target_group_arn().unwrap())
        .send()
        .await
        .unwrap();
    assert!(attributes.attributes().iter().any(|a| a.key()
        == Some("deregistration_delay.timeout_seconds")
        && a.value() == Some("10")));
    let listeners = aws
        .elb
        .describe_listeners()
        .load_balancer_arn(lb.load_balancer_arn().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(listeners.listeners()[0].port(), Some(80));

    // ECS: the service with the circuit breaker, running the task definition that names the
    // image by digest.
    let services = aws
        .ecs
        .describe_services()
        .cluster("demo")
        .services("demo")
        .send()
        .await
        .unwrap();
    let service = &services.services()[0];
    assert_eq!(service.desired_count(), 2);
    // (moto keeps no deployment configuration; the circuit breaker is unit-tested in ecs.rs.)
    assert_eq!(service.load_balancers()[0].container_port(), Some(8000));
    let definition = aws
        .ecs
        .describe_task_definition()
        .task_definition(service.task_definition().unwrap())
        .send()
        .await
        .unwrap();
    let definition = definition.task_definition().unwrap();
    assert_eq!(definition.cpu(), Some("512"));
    assert_eq!(definition.memory(), Some("1024"));
    let container = &definition.container_definitions()[0];
    assert_eq!(
        container.image(),
        Some(format!("{}@{digest}", repo.repository_uri().unwrap()).as_str())
    );
    assert_eq!(container.secrets()[0].value_from(), SECRET_ARN);
    assert_eq!(revisions(&aws, "demo").await, 1);

    // Again, nothing changed: nothing created, registered or pushed.
    let second = run(&[]);
    assert!(
        second.ok,
        "second deploy failed:\n{}\n{}",
        second.stdout, second.stderr
    );
    assert!(
        second.stdout.contains("nothing changed"),
        "{}",
        second.stdout
    );
    assert!(
        second.stdout.contains("already registered"),
        "{}",
        second.stdout
    );
    assert_eq!(revisions(&aws, "demo").await, 1);

    // --rebuild with nothing changed builds and pushes again (every blob is already there)
    // and still deploys the same digest: no new revision.
    let rebuilt = run(&["--rebuild"]);
    assert!(
        rebuilt.ok,
        "rebuild failed:\n{}\n{}",
        rebuilt.stdout, rebuilt.stderr
    );
    assert!(
        rebuilt.stdout.contains("0 pushed") && rebuilt.stdout.contains(&digest),
        "{}",
        rebuilt.stdout
    );
    assert_eq!(revisions(&aws, "demo").await, 1);

    // A dry run of a changed config changes nothing.
    // The changed config: another environment variable, and a Bedrock embedder the task role
    // must now be allowed to call.
    std::fs::write(
        &config_path,
        config("LOG_FORMAT = \"json\"\n[[embedder]]\nname = \"titan\"\ntype = \"bedrock\"\n"),
    )
    .unwrap();
    let dry = run(&["--dry-run"]);
    assert!(dry.ok, "dry run failed:\n{}\n{}", dry.stdout, dry.stderr);
    assert!(
        dry.stdout.contains("would create") && dry.stdout.contains("task definition"),
        "{}",
        dry.stdout
    );
    assert_eq!(revisions(&aws, "demo").await, 1);

    // The changed config: one new revision, and the service moved to it.
    let third = run(&[]);
    assert!(
        third.ok,
        "third deploy failed:\n{}\n{}",
        third.stdout, third.stderr
    );
    assert_eq!(revisions(&aws, "demo").await, 2);
    assert!(
        third
            .stdout
            .contains("updated       iam role           demo-task  (inline policy)"),
        "{}",
        third.stdout
    );
    let task = aws
        .iam
        .get_role_policy()
        .role_name("demo-task")
        .policy_name("ragway")
        .send()
        .await
        .unwrap();
    assert!(
        percent_decode(task.policy_document())
            .contains("foundation-model/amazon.titan-embed-text-v2:0"),
        "{}",
        task.policy_document()
    );
    // The config layer and the image config are new; the libraries and the binary are not.
    assert!(
        third.stdout.contains("2 pushed") && third.stdout.contains("2 already there"),
        "{}",
        third.stdout
    );
    let services = aws
        .ecs
        .describe_services()
        .cluster("demo")
        .services("demo")
        .send()
        .await
        .unwrap();
    assert!(
        services.services()[0]
            .task_definition()
            .unwrap()
            .ends_with(":2")
    );

    // Destroy: what deploy made is gone, the images stay.
    let gone = ragway(&moto_url, &["deploy", "destroy", "--name", "demo", "--yes"]);
    assert!(gone.ok, "destroy failed:\n{}\n{}", gone.stdout, gone.stderr);
    assert!(
        aws.elb
            .describe_load_balancers()
            .names("demo")
            .send()
            .await
            .is_err()
    );
    assert!(
        aws.elb
            .describe_target_groups()
            .names("demo")
            .send()
            .await
            .is_err()
    );
    assert!(
        aws.iam
            .get_role()
            .role_name("demo-task")
            .send()
            .await
            .is_err()
    );
    assert!(
        aws.iam
            .get_role()
            .role_name("demo-execution")
            .send()
            .await
            .is_err()
    );
    let services = aws
        .ecs
        .describe_services()
        .cluster("demo")
        .services("demo")
        .send()
        .await;
    assert!(
        services
            .map(|s| s.services().iter().all(|s| s.status() != Some("ACTIVE")))
            .unwrap_or(true)
    );
    let images = aws
        .ecr
        .describe_images()
        .repository_name("demo")
        .send()
        .await
        .unwrap();
    assert_eq!(
        images.image_details().len(),
        2,
        "images stay without --purge-images"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gives_clear_errors_and_a_rerun_picks_up_where_it_stopped() {
    let (_moto, moto_url) = moto(2);
    let dir = tempfile::tempdir().unwrap();
    let binary = stripped_binary(dir.path());
    let config_path = dir.path().join("ragway.toml");
    std::fs::write(&config_path, config("")).unwrap();
    let (config_arg, binary_arg) = (config_path.to_str().unwrap(), binary.to_str().unwrap());
    let base = [
        "deploy",
        "--config",
        config_arg,
        "--binary",
        binary_arg,
        "--yes",
        "--poll-ms",
        "50",
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let run = |moto: &str, args: Vec<String>, unset: &[&str]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ragway_without(moto, &args, unset)
    };

    // A name ECR, IAM and ELB would refuse is refused before any call.
    let bad = run(&moto_url, with(&["--name", "Bad_Name"]), &[]);
    assert!(
        !bad.ok && bad.stderr.contains("lowercase letters"),
        "{}",
        bad.stderr
    );

    // No region, no credentials, AWS unreachable.
    let no_region = run(
        &moto_url,
        with(&["--name", "demo"]),
        &["AWS_REGION", "AWS_DEFAULT_REGION"],
    );
    assert!(
        !no_region.ok && no_region.stderr.contains("no AWS region"),
        "{}",
        no_region.stderr
    );
    let no_keys = run(
        &moto_url,
        with(&["--name", "demo"]),
        &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
    );
    assert!(
        !no_keys.ok && no_keys.stderr.contains("no AWS credentials"),
        "{}",
        no_keys.stderr
    );
    let closed = format!("http://127.0.0.1:{}", free_port());
    let down = run(&closed, with(&["--name", "demo"]), &[]);
    assert!(
        !down.ok && down.stderr.contains("cannot reach AWS"),
        "{}",
        down.stderr
    );

    // A registry that refuses the push stops the deploy after the repository was made …
    let refused = run(
        &moto_url,
        with(&["--name", "demo", "--registry", &closed]),
        &[],
    );
    assert!(
        !refused.ok && refused.stderr.contains("image:"),
        "{}",
        refused.stderr
    );
    assert!(
        refused
            .stderr
            .contains(closed.trim_start_matches("http://")),
        "{}",
        refused.stderr
    );
    // … and the rerun with a working registry reuses it and finishes.
    let (_registry, registry) = registry();
    let registry_arg = format!("http://{registry}");
    let rerun = run(
        &moto_url,
        with(&["--name", "demo", "--registry", &registry_arg]),
        &[],
    );
    assert!(
        rerun.ok,
        "rerun failed:\n{}\n{}",
        rerun.stdout, rerun.stderr
    );
    assert!(
        rerun.stdout.contains("reused        ecr repository"),
        "{}",
        rerun.stdout
    );

    // Without --yes and without a terminal, deploy asks for --yes instead of hanging.
    let args: Vec<String> = with(&["--name", "demo", "--registry", &registry_arg])
        .into_iter()
        .filter(|a| a != "--yes")
        .collect();
    std::fs::write(&config_path, config("LOG_FORMAT = \"json\"")).unwrap();
    let unattended = run(&moto_url, args, &[]);
    assert!(
        !unattended.ok && unattended.stderr.contains("pass --yes"),
        "{}",
        unattended.stderr
    );

    // destroy --purge-images removes the repository too.
    let purged = run(
        &moto_url,
        [
            "deploy",
            "destroy",
            "--name",
            "demo",
            "--purge-images",
            "--yes",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        &[],
    );
    assert!(purged.ok, "{}\n{}", purged.stdout, purged.stderr);
    assert!(
        purged.stdout.contains("deleted       ecr repository"),
        "{}",
        purged.stdout
    );
    let aws = clients(&moto_url).await;
    assert!(
        aws.ecr
            .describe_repositories()
            .repository_names("demo")
            .send()
            .await
            .is_err()
    );
}

fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// A `docker` stand-in whose daemon "answers": it records each call (and what login read on
/// stdin) and answers `push` with a digest, as the real client prints it.
const FAKE_DOCKER: &str = r#"#!/bin/sh
log="$(dirname "$0")/calls.log"
echo "$*" >> "$log"
case "$1" in
  info) echo "27.0.0" ;;
  login) read -r password; echo "password $password" >> "$log"; echo "Login Succeeded" ;;
  build) echo "built" ;;
  push) echo "The push refers to repository [$2]"; echo "0.1.0: digest: sha256:1111111111111111111111111111111111111111111111111111111111111111 size: 1234" ;;
  *) echo "unexpected docker $*" >&2; exit 1 ;;
esac
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_docker_daemon_the_image_is_built_and_pushed_by_docker() {
    use std::os::unix::fs::PermissionsExt as _;
    let (_moto, moto_url) = moto(1);
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::write(bin.join("docker"), FAKE_DOCKER).unwrap();
    std::fs::set_permissions(bin.join("docker"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let context = dir.path().join("src");
    std::fs::create_dir(&context).unwrap();
    std::fs::write(context.join("Dockerfile"), "FROM scratch\n").unwrap();
    let config_path = dir.path().join("ragway.toml");
    std::fs::write(
        &config_path,
        "[[llm]]\nname = 'gpt'\ntype = 'openai'\nmodel = 'm'\n",
    )
    .unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());

    let output = Command::new(crate::support::ragway_bin())
        .args([
            "deploy",
            "--config",
            config_path.to_str().unwrap(),
            "--name",
            "viadocker",
            "--insecure-no-auth",
        ])
        .args([
            "--context",
            context.to_str().unwrap(),
            "--yes",
            "--poll-ms",
            "50",
            "--wait-secs",
            "60",
        ])
        .env_remove("RAGWAY_CONFIG")
        .env("PATH", path)
        .env("AWS_ENDPOINT_URL", &moto_url)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("docker build and push"), "{stdout}");

    // Built for linux/amd64 from the context, logged in to ECR with its token, pushed.
    let calls = std::fs::read_to_string(bin.join("calls.log")).unwrap();
    let host = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
    let lines: Vec<&str> = calls.lines().collect();
    assert_eq!(lines[0], "info --format {{.ServerVersion}}");
    assert!(
        lines[1].starts_with(&format!(
            "build --platform linux/amd64 -t {host}/viadocker:0.1.0-"
        )) && lines[1].ends_with(context.to_str().unwrap()),
        "{calls}"
    );
    assert_eq!(
        lines[2],
        format!("login --username AWS --password-stdin {host}")
    );
    assert_eq!(lines[3], "password 123456789012-auth-token");
    assert!(
        lines[4].starts_with(&format!("push {host}/viadocker:0.1.0-")),
        "{calls}"
    );

    // The task definition runs what docker pushed, by digest.
    let aws = clients(&moto_url).await;
    let services = aws
        .ecs
        .describe_services()
        .cluster("viadocker")
        .services("viadocker")
        .send()
        .await
        .unwrap();
    let definition = aws
        .ecs
        .describe_task_definition()
        .task_definition(services.services()[0].task_definition().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        definition
            .task_definition()
            .unwrap()
            .container_definitions()[0]
            .image(),
        Some(format!("{host}/viadocker@sha256:{}", "1".repeat(64)).as_str())
    );
}

/// A loopback proxy in front of moto that goes down — refusing new connections and cutting
/// open ones — when it sees a request containing `trigger`, as if AWS became unreachable in
/// the middle of a deploy. It fires once; `restore` brings the proxy back.
struct FlakyProxy {
    url: String,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl FlakyProxy {
    async fn start(upstream: &str, trigger: &'static [u8]) -> FlakyProxy {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let (flag, cutter) = (down.clone(), cut.clone());
        let fired = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if flag.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is refused
                }
                let (flag, cutter, upstream) = (flag.clone(), cutter.clone(), upstream.clone());
                let fired = fired.clone();
                let mut cut_seen = cutter.subscribe();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let up = async {
                        let mut buffer = vec![0u8; 64 * 1024];
                        loop {
                            let read = client_read.read(&mut buffer).await.unwrap_or(0);
                            let chunk = &buffer[..read];
                            if read == 0 {
                                return;
                            }
                            // The trigger fires once: the connection that carries it is cut
                            // and the proxy stays down until restored.
                            if chunk.windows(trigger.len()).any(|w| w == trigger)
                                && fired
                                    .compare_exchange(
                                        false,
                                        true,
                                        Ordering::SeqCst,
                                        Ordering::SeqCst,
                                    )
                                    .is_ok()
                            {
                                flag.store(true, Ordering::SeqCst);
                                cutter.send_modify(|generation| *generation += 1);
                                return;
                            }
                            if server_write.write_all(chunk).await.is_err() {
                                return;
                            }
                        }
                    };
                    let back = tokio::io::copy(&mut server_read, &mut client_write);
                    tokio::select! {
                        () = up => {}
                        _ = back => {}
                        _ = cut_seen.changed() => {}
                    }
                });
            }
        });
        FlakyProxy { url, down, cut }
    }

    fn restore(&self) {
        self.down.store(false, std::sync::atomic::Ordering::SeqCst);
        self.cut.send_modify(|generation| *generation += 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_going_away_mid_deploy_is_a_clear_error_and_the_rerun_finishes() {
    let (_moto, moto_url) = moto(1);
    let (_registry, registry) = registry();
    // AWS "goes away" when deploy asks IAM to create the first role: after the repository was
    // made and the image pushed.
    let proxy = FlakyProxy::start(&moto_url, b"Action=CreateRole").await;
    let dir = tempfile::tempdir().unwrap();
    let binary = stripped_binary(dir.path());
    let config_path = dir.path().join("ragway.toml");
    std::fs::write(
        &config_path,
        "[[llm]]\nname = 'gpt'\ntype = 'openai'\nmodel = 'm'\n",
    )
    .unwrap();
    let args: Vec<String> = [
        "deploy",
        "--config",
        config_path.to_str().unwrap(),
        "--name",
        "flaky",
        "--insecure-no-auth",
        "--registry",
        &format!("http://{registry}"),
        "--binary",
        binary.to_str().unwrap(),
        "--builder",
        "oci",
        "--yes",
        "--poll-ms",
        "50",
        "--wait-secs",
        "60",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let run = |url: String, args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            ragway(&url, &refs)
        })
    };

    let broken = run(proxy.url.clone(), args.clone()).await.unwrap();
    assert!(!broken.ok, "{}", broken.stdout);
    assert!(
        broken.stderr.contains("iam") && broken.stderr.contains("cannot reach AWS"),
        "{}",
        broken.stderr
    );
    assert!(
        broken.stdout.contains("created       image"),
        "{}",
        broken.stdout
    );

    proxy.restore();
    let rerun = run(proxy.url.clone(), args).await.unwrap();
    assert!(
        rerun.ok,
        "rerun failed:\n{}\n{}",
        rerun.stdout, rerun.stderr
    );
    assert!(
        rerun.stdout.contains("reused        ecr repository"),
        "{}",
        rerun.stdout
    );
    assert!(
        rerun.stdout.contains("already registered"),
        "{}",
        rerun.stdout
    );
    assert!(
        rerun.stdout.contains("created       ecs service"),
        "{}",
        rerun.stdout
    );
}
