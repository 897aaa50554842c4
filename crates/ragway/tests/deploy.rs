//! `ragway deploy` end to end, offline: moto_server stands in for ECR, IAM, ECS, ELBv2, EC2 and
//! CloudWatch Logs, and Debian's docker-registry receives the image. Every resource is read
//! back through the AWS SDK after the real CLI ran.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_credential_types::Credentials;
use ragway_deploy::Clients;
use ragway_testkit::moto::MotoServer;

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
        if ragway_testkit::moto::http_status(url).is_ok_and(|status| status < 500) {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{url} did not come up");
}

/// moto_server on a free port, with ECS services reporting `running` tasks.
fn moto(running: u32) -> (MotoServer, String) {
    let server = MotoServer::start(&[
        ("MOTO_ECS_SERVICE_RUNNING", &running.to_string()),
        // AWS managed policies (AmazonECSTaskExecutionRolePolicy) exist only when asked for.
        ("MOTO_IAM_LOAD_MANAGED_POLICIES", "true"),
    ])
    .unwrap();
    let url = server.url().to_owned();
    (server, url)
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

/// An ACM certificate for `domain`, made in moto: its ELBv2 takes only a certificate that its
/// ACM (or IAM) holds. boto3, moto's own client, asks for it (ragway has no ACM client).
fn certificate(moto: &str, domain: &str) -> String {
    const SCRIPT: &str = "import boto3, sys\n\
        acm = boto3.client('acm', endpoint_url=sys.argv[1], region_name=sys.argv[2],\n\
            aws_access_key_id='testing', aws_secret_access_key='testing')\n\
        print(acm.request_certificate(DomainName=sys.argv[3])['CertificateArn'])\n";
    let output = Command::new("python3")
        .args(["-c", SCRIPT, moto, REGION, domain])
        .output()
        .expect("python3 with boto3 (installed with moto)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let arn = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert!(arn.starts_with("arn:aws:acm:us-east-1:"), "{arn}");
    arn
}

const SECRET_ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:openai-key";
const KEY_ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:ragway-api-key";

/// The test's config: `deploy` goes into `[deploy]` (and may open `[deploy.autoscaling]`),
/// `extra_env` into `[deploy.environment]` (and may open later sections).
fn config(deploy: &str, extra_env: &str) -> String {
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
{deploy}

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

/// The service's scalable target and deploy's scaling policy, as Application Auto Scaling
/// reports them.
async fn scaling(
    clients: &Clients,
    name: &str,
) -> (
    Option<aws_sdk_applicationautoscaling::types::ScalableTarget>,
    Option<aws_sdk_applicationautoscaling::types::ScalingPolicy>,
) {
    use aws_sdk_applicationautoscaling::types::ServiceNamespace;
    let resource = format!("service/{name}/{name}");
    let targets = clients
        .scaling
        .describe_scalable_targets()
        .service_namespace(ServiceNamespace::Ecs)
        .resource_ids(&resource)
        .send()
        .await
        .unwrap();
    let policies = clients
        .scaling
        .describe_scaling_policies()
        .service_namespace(ServiceNamespace::Ecs)
        .resource_id(&resource)
        .send()
        .await
        .unwrap();
    (
        targets.scalable_targets().first().cloned(),
        policies
            .scaling_policies()
            .iter()
            .find(|p| p.policy_name() == format!("{name}-target-tracking"))
            .cloned(),
    )
}

/// The ports a security group opens to anyone (0.0.0.0/0).
async fn open_ports(clients: &Clients, group: &str) -> Vec<i32> {
    let groups = clients
        .ec2
        .describe_security_groups()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("group-name")
                .values(group)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let mut ports: Vec<i32> = groups.security_groups()[0]
        .ip_permissions()
        .iter()
        .filter(|p| {
            p.ip_ranges()
                .iter()
                .any(|r| r.cidr_ip() == Some("0.0.0.0/0"))
        })
        .filter_map(|p| p.from_port())
        .collect();
    ports.sort_unstable();
    ports
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_from_nothing_then_again_then_changed_then_destroyed() {
    let (_moto, moto_url) = moto(2);
    let (_registry, registry) = registry();
    let dir = tempfile::tempdir().unwrap();
    let binary = stripped_binary(dir.path());
    let config_path = dir.path().join("ragway.toml");
    let first_certificate = certificate(&moto_url, "api.example.com");
    let second_certificate = certificate(&moto_url, "api2.example.com");
    // HTTPS, and two to four tasks on CPU.
    let first_deploy = format!(
        "certificate_arn = \"{first_certificate}\"\n[deploy.autoscaling]\nmin = 2\nmax = 4\n"
    );
    std::fs::write(&config_path, config(&first_deploy, "")).unwrap();
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
        "scalable target",
        "scaling policy",
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
        first.stdout.contains("url      https://"),
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
    // Readiness decides where traffic goes; four failures 15 s apart take a task out.
    assert_eq!(tg.health_check_path(), Some("/readyz"));
    assert_eq!(tg.health_check_interval_seconds(), Some(15));
    assert_eq!(tg.unhealthy_threshold_count(), Some(4));
    assert_eq!(tg.target_type().unwrap().as_str(), "ip");
    assert_eq!(tg.port(), Some(8000));
    // The deregistration delay is the server's shutdown grace (25 s) …
    let attributes = aws
        .elb
        .describe_target_group_attributes()
        .target_group_arn(tg.target_group_arn().unwrap())
        .send()
        .await
        .unwrap();
    assert!(
        attributes
            .attributes()
            .iter()
            .any(|a| a.key() == Some("deregistration_delay.timeout_seconds")
                && a.value() == Some("25")),
        "{attributes:?}"
    );
    // … and the idle timeout the request timeout (300 s) and 5 s more.
    let lb_attributes = aws
        .elb
        .describe_load_balancer_attributes()
        .load_balancer_arn(lb.load_balancer_arn().unwrap())
        .send()
        .await
        .unwrap();
    assert!(
        lb_attributes
            .attributes()
            .iter()
            .any(|a| a.key() == Some("idle_timeout.timeout_seconds") && a.value() == Some("305")),
        "{lb_attributes:?}"
    );

    // HTTPS on 443 with the certificate and a TLS 1.3 policy, forwarding; 80 redirects to it.
    let listeners = |lb_arn: String| {
        let elb = aws.elb.clone();
        async move {
            let mut listeners = elb
                .describe_listeners()
                .load_balancer_arn(lb_arn)
                .send()
                .await
                .unwrap()
                .listeners
                .unwrap_or_default();
            listeners.sort_by_key(|l| l.port());
            listeners
        }
    };
    let lb_arn = lb.load_balancer_arn().unwrap().to_owned();
    let tg_arn = tg.target_group_arn().unwrap().to_owned();
    let found = listeners(lb_arn.clone()).await;
    assert_eq!(found.len(), 2, "{found:?}");
    let (http, https) = (&found[0], &found[1]);
    assert_eq!(https.port(), Some(443));
    assert_eq!(https.protocol().unwrap().as_str(), "HTTPS");
    assert_eq!(
        https.ssl_policy(),
        Some("ELBSecurityPolicy-TLS13-1-2-2021-06")
    );
    assert_eq!(
        https.certificates()[0].certificate_arn(),
        Some(first_certificate.as_str())
    );
    assert_eq!(
        https.default_actions()[0].r#type().unwrap().as_str(),
        "forward"
    );
    assert_eq!(
        https.default_actions()[0].target_group_arn(),
        Some(tg_arn.as_str())
    );
    assert_eq!(http.port(), Some(80));
    assert_eq!(http.protocol().unwrap().as_str(), "HTTP");
    let redirect = &http.default_actions()[0];
    assert_eq!(redirect.r#type().unwrap().as_str(), "redirect");
    let redirect = redirect.redirect_config().unwrap();
    assert_eq!(
        (
            redirect.protocol(),
            redirect.port(),
            redirect.status_code().unwrap().as_str()
        ),
        (Some("HTTPS"), Some("443"), "HTTP_301")
    );
    // The load balancer's security group opens 80 and 443 to everyone.
    assert_eq!(open_ports(&aws, "demo-alb").await, [80, 443]);

    // Autoscaling: two to four tasks, tracking 60 % CPU.
    let (target, policy) = scaling(&aws, "demo").await;
    let target = target.expect("a scalable target");
    assert_eq!((target.min_capacity(), target.max_capacity()), (2, 4));
    let policy = policy.expect("a scaling policy");
    assert_eq!(policy.policy_name(), "demo-target-tracking");
    assert_eq!(policy.policy_type().as_str(), "TargetTrackingScaling");
    let tracking = policy
        .target_tracking_scaling_policy_configuration()
        .unwrap();
    assert_eq!(tracking.target_value(), 60.0);
    assert_eq!(
        tracking
            .predefined_metric_specification()
            .unwrap()
            .predefined_metric_type()
            .as_str(),
        "ECSServiceAverageCPUUtilization"
    );

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
    // ECS asks the process only whether it lives; readiness is the target group's.
    assert_eq!(
        container.health_check().unwrap().command(),
        ["CMD", "/usr/local/bin/ragway", "healthcheck", "--live"]
    );
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
    // The changed config: another environment variable, a Bedrock embedder the task role
    // must now be allowed to call, a renewed certificate, and scaling on requests per task.
    let changed_deploy = format!(
        "certificate_arn = \"{second_certificate}\"\n[deploy.autoscaling]\nmin = 2\nmax = 6\n\
         metric = \"requests\"\ntarget = 500.0\n"
    );
    std::fs::write(
        &config_path,
        config(
            &changed_deploy,
            "LOG_FORMAT = \"json\"\n[[embedder]]\nname = \"titan\"\ntype = \"bedrock\"\n",
        ),
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
    // The listener has the new certificate; 80 still redirects.
    for line in [
        "updated       listener           demo:443  (certificate",
        "reused        listener           demo:80",
        "updated       scalable target    service/demo/demo  (2 to 4 tasks -> 2 to 6)",
        "updated       scaling policy     demo-target-tracking",
    ] {
        assert!(third.stdout.contains(line), "{line}\n{}", third.stdout);
    }
    let found = listeners(lb_arn.clone()).await;
    assert_eq!(
        found[1].certificates()[0].certificate_arn(),
        Some(second_certificate.as_str())
    );
    assert_eq!(
        found[0].default_actions()[0].r#type().unwrap().as_str(),
        "redirect"
    );
    // The policy tracks the load balancer's requests per task, labelled with its and the
    // target group's ARNs.
    let (target, policy) = scaling(&aws, "demo").await;
    assert_eq!(target.unwrap().max_capacity(), 6);
    let policy = policy.unwrap();
    let tracking = policy
        .target_tracking_scaling_policy_configuration()
        .unwrap();
    assert_eq!(tracking.target_value(), 500.0);
    let metric = tracking.predefined_metric_specification().unwrap();
    assert_eq!(
        metric.predefined_metric_type().as_str(),
        "ALBRequestCountPerTarget"
    );
    let label = format!(
        "{}/targetgroup/{}",
        lb_arn.split_once(":loadbalancer/").unwrap().1,
        tg_arn.split_once(":targetgroup/").unwrap().1
    );
    assert!(label.starts_with("app/demo/"), "{label}");
    assert_eq!(metric.resource_label(), Some(label.as_str()));

    // Again, nothing changed: the listeners, the scaling and every other resource as they are.
    let fourth = run(&[]);
    assert!(
        fourth.ok && fourth.stdout.contains("nothing changed"),
        "{}\n{}",
        fourth.stdout,
        fourth.stderr
    );

    // Destroy: what deploy made is gone, the images stay.
    let gone = ragway(&moto_url, &["deploy", "destroy", "--name", "demo", "--yes"]);
    assert!(gone.ok, "destroy failed:\n{}\n{}", gone.stdout, gone.stderr);
    let (target, policy) = scaling(&aws, "demo").await;
    assert!(
        target.is_none() && policy.is_none(),
        "autoscaling survived destroy:\n{}",
        gone.stdout
    );
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
    std::fs::write(&config_path, config("", "")).unwrap();
    let (config_arg, binary_arg) = (config_path.to_str().unwrap(), binary.to_str().unwrap());
    // No certificate: the load balancer would speak plain HTTP, which deploy refuses before
    // any AWS call (AWS here is a closed port) unless asked for by name …
    let closed = format!("http://127.0.0.1:{}", free_port());
    let clear_text = ragway(
        &closed,
        &[
            "deploy", "--config", config_arg, "--binary", binary_arg, "--name", "demo", "--yes",
        ],
    );
    assert!(
        !clear_text.ok
            && clear_text.stderr.contains("clear text")
            && clear_text.stderr.contains("certificate_arn")
            && clear_text.stderr.contains("--plain-http")
            && !clear_text.stderr.contains("cannot reach AWS"),
        "{}",
        clear_text.stderr
    );
    // … as the rest of this test does.
    let base = [
        "deploy",
        "--config",
        config_arg,
        "--binary",
        binary_arg,
        "--plain-http",
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
    std::fs::write(&config_path, config("", "LOG_FORMAT = \"json\"")).unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_between_plain_http_and_https_converges() {
    let (_moto, moto_url) = moto(1);
    let (_registry, registry) = registry();
    let dir = tempfile::tempdir().unwrap();
    let binary = stripped_binary(dir.path());
    let config_path = dir.path().join("ragway.toml");
    let certificate = certificate(&moto_url, "api.example.com");
    let registry_arg = format!("http://{registry}");
    let deploy = |body: &str, extra: &[&str]| {
        std::fs::write(
            &config_path,
            format!("[[llm]]\nname = 'gpt'\ntype = 'openai'\nmodel = 'm'\n{body}"),
        )
        .unwrap();
        let mut args = vec![
            "deploy",
            "--config",
            config_path.to_str().unwrap(),
            "--name",
            "modes",
            "--insecure-no-auth",
            "--registry",
            &registry_arg,
            "--binary",
            binary.to_str().unwrap(),
            "--builder",
            "oci",
            "--yes",
            "--poll-ms",
            "50",
            "--wait-secs",
            "60",
        ];
        args.extend(extra.iter().copied());
        let run = ragway(&moto_url, &args);
        assert!(run.ok, "deploy failed:\n{}\n{}", run.stdout, run.stderr);
        run
    };
    let aws = clients(&moto_url).await;
    let listeners = || async {
        let lb = aws
            .elb
            .describe_load_balancers()
            .names("modes")
            .send()
            .await
            .unwrap();
        let mut listeners = aws
            .elb
            .describe_listeners()
            .load_balancer_arn(lb.load_balancers()[0].load_balancer_arn().unwrap())
            .send()
            .await
            .unwrap()
            .listeners
            .unwrap_or_default();
        listeners.sort_by_key(|l| l.port());
        listeners
            .iter()
            .map(|l| {
                (
                    l.port().unwrap_or_default(),
                    l.default_actions()[0].r#type().unwrap().as_str().to_owned(),
                )
            })
            .collect::<Vec<_>>()
    };
    let forward = |port: i32| (port, "forward".to_owned());
    let redirect = |port: i32| (port, "redirect".to_owned());
    let plain_and_scaled = "[deploy.autoscaling]\nmin = 1\nmax = 3\n";

    // Plain HTTP, asked for by name, with autoscaling: 80 forwards, nothing on 443.
    deploy(plain_and_scaled, &["--plain-http"]);
    assert_eq!(listeners().await, [forward(80)]);
    assert_eq!(open_ports(&aws, "modes-alb").await, [80]);
    assert!(scaling(&aws, "modes").await.0.is_some());

    // HTTPS without autoscaling: 443 comes up, 80 redirects, the group opens 443, and the
    // scaling an earlier deploy made is removed.
    let https = deploy(
        &format!("[deploy]\ncertificate_arn = \"{certificate}\"\n"),
        &[],
    );
    assert_eq!(listeners().await, [redirect(80), forward(443)]);
    assert_eq!(open_ports(&aws, "modes-alb").await, [80, 443]);
    let (target, policy) = scaling(&aws, "modes").await;
    assert!(target.is_none() && policy.is_none(), "{}", https.stdout);
    for line in [
        "created       listener           modes:443",
        "updated       listener           modes:80  (redirect to HTTPS)",
        "updated       security group     modes-alb  (open port 443 from 0.0.0.0/0)",
        "deleted       scaling policy     modes-target-tracking",
        "deleted       scalable target    service/modes/modes",
    ] {
        assert!(https.stdout.contains(line), "{line}\n{}", https.stdout);
    }
    assert!(
        https.stdout.contains("url      https://"),
        "{}",
        https.stdout
    );

    // Back to plain HTTP (from the config this time): 443 goes, 80 forwards again, the group
    // closes 443.
    let plain = deploy(
        &format!("[deploy]\nplain_http = true\n{plain_and_scaled}"),
        &[],
    );
    assert_eq!(listeners().await, [forward(80)]);
    assert_eq!(open_ports(&aws, "modes-alb").await, [80]);
    assert!(
        plain
            .stdout
            .contains("deleted       listener           modes:443"),
        "{}",
        plain.stdout
    );
    assert!(
        plain.stdout.contains("url      http://"),
        "{}",
        plain.stdout
    );

    // And a rerun of that changes nothing.
    let again = deploy(
        &format!("[deploy]\nplain_http = true\n{plain_and_scaled}"),
        &[],
    );
    assert!(again.stdout.contains("nothing changed"), "{}", again.stdout);
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
            "--plain-http",
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
        "--plain-http",
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
