//! How clients reach the load balancer: with a certificate, an HTTPS listener on 443 (a TLS 1.3
//! and 1.2 security policy) forwarding to the target group and port 80 answering every request
//! with a redirect to it; with `plain_http`, port 80 forwarding and no 443. Switching between
//! the two, or changing the certificate, changes the listeners in place.

use aws_sdk_elasticloadbalancingv2::Client as Elb;
use aws_sdk_elasticloadbalancingv2::types::{
    Action as ListenerAction, ActionTypeEnum, Certificate, Listener, ProtocolEnum,
    RedirectActionConfig, RedirectActionStatusCodeEnum,
};

use crate::error::{DeployError, code};
use crate::plan::{Action, Plan};

pub const HTTP_PORT: i32 = 80;
pub const HTTPS_PORT: i32 = 443;

/// TLS 1.3 and 1.2 with forward-secret AEAD ciphers only: AWS's recommended policy for an ALB
/// since 2023, which every current client speaks.
pub const TLS_POLICY: &str = "ELBSecurityPolicy-TLS13-1-2-2021-06";

/// How the load balancer speaks to clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listening {
    /// HTTPS on 443 with this certificate; 80 redirects to it.
    Https { certificate_arn: String },
    /// Plain HTTP on 80, for a load balancer behind something else that speaks TLS.
    PlainHttp,
}

impl Listening {
    /// The ports the load balancer's security group opens to the internet.
    pub fn ports(&self) -> &'static [i32] {
        match self {
            Self::Https { .. } => &[HTTP_PORT, HTTPS_PORT],
            Self::PlainHttp => &[HTTP_PORT],
        }
    }

    /// The scheme clients use.
    pub fn scheme(&self) -> &'static str {
        match self {
            Self::Https { .. } => "https",
            Self::PlainHttp => "http",
        }
    }
}

/// One listener as wanted.
#[derive(Clone, Debug, PartialEq)]
struct Wanted {
    port: i32,
    protocol: ProtocolEnum,
    /// The certificate and TLS policy of an HTTPS listener.
    tls: Option<(String, &'static str)>,
    action: Forwarding,
}

#[derive(Clone, Debug, PartialEq)]
enum Forwarding {
    /// To the target group.
    Forward(String),
    /// A permanent redirect to HTTPS on 443, same host, path and query.
    RedirectToHttps,
}

impl Wanted {
    fn describe(&self) -> String {
        let action = match &self.action {
            Forwarding::Forward(_) => "forward to the target group".to_owned(),
            Forwarding::RedirectToHttps => format!("redirect to HTTPS:{HTTPS_PORT} (301)"),
        };
        match &self.tls {
            Some((certificate, policy)) => format!("{action}, {certificate}, {policy}"),
            None => action,
        }
    }

    fn default_action(&self) -> ListenerAction {
        match &self.action {
            Forwarding::Forward(target_group_arn) => ListenerAction::builder()
                .r#type(ActionTypeEnum::Forward)
                .target_group_arn(target_group_arn)
                .build(),
            Forwarding::RedirectToHttps => ListenerAction::builder()
                .r#type(ActionTypeEnum::Redirect)
                .redirect_config(
                    RedirectActionConfig::builder()
                        .protocol("HTTPS")
                        .port(HTTPS_PORT.to_string())
                        .status_code(RedirectActionStatusCodeEnum::Http301)
                        .build(),
                )
                .build(),
        }
    }

    /// What differs between `existing` and this, in words; empty when nothing does.
    fn differences(&self, existing: &Listener) -> Vec<String> {
        let mut differences = Vec::new();
        if existing.protocol.as_ref() != Some(&self.protocol) {
            differences.push(format!("protocol {}", self.protocol.as_str()));
        }
        if let Some((certificate, policy)) = &self.tls {
            let current = existing
                .certificates()
                .first()
                .and_then(|c| c.certificate_arn.as_deref());
            if current != Some(certificate.as_str()) {
                differences.push(format!("certificate {certificate}"));
            }
            if existing.ssl_policy.as_deref() != Some(*policy) {
                differences.push(format!("TLS policy {policy}"));
            }
        }
        let actions = existing.default_actions();
        let action_matches = actions.len() == 1
            && match &self.action {
                Forwarding::Forward(target_group_arn) => {
                    actions[0].r#type.as_ref() == Some(&ActionTypeEnum::Forward)
                        && actions[0].target_group_arn.as_deref() == Some(target_group_arn.as_str())
                }
                Forwarding::RedirectToHttps => {
                    actions[0].r#type.as_ref() == Some(&ActionTypeEnum::Redirect)
                        && actions[0].redirect_config.as_ref().is_some_and(|r| {
                            r.protocol.as_deref() == Some("HTTPS")
                                && r.port.as_deref() == Some("443")
                                && r.status_code == Some(RedirectActionStatusCodeEnum::Http301)
                        })
                }
            };
        if !action_matches {
            differences.push(match &self.action {
                Forwarding::Forward(_) => "forward to the target group".to_owned(),
                Forwarding::RedirectToHttps => "redirect to HTTPS".to_owned(),
            });
        }
        differences
    }
}

/// The listeners `listening` asks for, HTTPS first: when switching to HTTPS, 443 is up
/// before 80 starts redirecting to it.
fn wanted(listening: &Listening, target_group_arn: &str) -> Vec<Wanted> {
    let forward = Forwarding::Forward(target_group_arn.to_owned());
    match listening {
        Listening::Https { certificate_arn } => vec![
            Wanted {
                port: HTTPS_PORT,
                protocol: ProtocolEnum::Https,
                tls: Some((certificate_arn.clone(), TLS_POLICY)),
                action: forward,
            },
            Wanted {
                port: HTTP_PORT,
                protocol: ProtocolEnum::Http,
                tls: None,
                action: Forwarding::RedirectToHttps,
            },
        ],
        Listening::PlainHttp => vec![Wanted {
            port: HTTP_PORT,
            protocol: ProtocolEnum::Http,
            tls: None,
            action: forward,
        }],
    }
}

/// Makes the load balancer `lb_arn` (named `name`) listen as `listening` asks: creates,
/// changes or leaves each wanted listener, and removes any other one deploy manages (443 when
/// plain HTTP is asked for). An empty `lb_arn` (a dry run before the load balancer exists)
/// plans them all.
pub async fn ensure_listeners(
    elb: &Elb,
    name: &str,
    lb_arn: &str,
    target_group_arn: &str,
    listening: &Listening,
    plan: &mut Plan,
) -> Result<(), DeployError> {
    let wanted = wanted(listening, target_group_arn);
    let existing = if lb_arn.is_empty() {
        Vec::new()
    } else {
        elb.describe_listeners()
            .load_balancer_arn(lb_arn)
            .send()
            .await
            .map_err(|e| DeployError::aws(format!("elbv2 DescribeListeners {name}"), e))?
            .listeners
            .unwrap_or_default()
    };
    for listener in &wanted {
        let label = format!("{name}:{}", listener.port);
        let found = existing.iter().find(|l| l.port == Some(listener.port));
        match found {
            None => {
                if !plan.dry_run {
                    let certificates = listener.tls.as_ref().map(|(certificate, _)| {
                        vec![Certificate::builder().certificate_arn(certificate).build()]
                    });
                    elb.create_listener()
                        .load_balancer_arn(lb_arn)
                        .protocol(listener.protocol.clone())
                        .port(listener.port)
                        .set_ssl_policy(listener.tls.as_ref().map(|(_, p)| (*p).to_owned()))
                        .set_certificates(certificates)
                        .default_actions(listener.default_action())
                        .send()
                        .await
                        .map_err(|e| {
                            certificate_error(format!("elbv2 CreateListener {label}"), e)
                        })?;
                }
                plan.record("listener", label, Action::Create, listener.describe());
            }
            Some(current) => {
                let differences = listener.differences(current);
                if differences.is_empty() {
                    plan.record("listener", label, Action::Reuse, listener.describe());
                    continue;
                }
                if !plan.dry_run {
                    let certificates = listener.tls.as_ref().map(|(certificate, _)| {
                        vec![Certificate::builder().certificate_arn(certificate).build()]
                    });
                    elb.modify_listener()
                        .listener_arn(current.listener_arn.clone().unwrap_or_default())
                        .protocol(listener.protocol.clone())
                        .port(listener.port)
                        .set_ssl_policy(listener.tls.as_ref().map(|(_, p)| (*p).to_owned()))
                        .set_certificates(certificates)
                        .default_actions(listener.default_action())
                        .send()
                        .await
                        .map_err(|e| {
                            certificate_error(format!("elbv2 ModifyListener {label}"), e)
                        })?;
                }
                plan.record("listener", label, Action::Update, differences.join(", "));
            }
        }
    }
    // Only the ports deploy manages: a listener a person added on another port stays.
    for listener in &existing {
        let port = listener.port.unwrap_or_default();
        let managed = port == HTTP_PORT || port == HTTPS_PORT;
        if !managed || wanted.iter().any(|w| w.port == port) {
            continue;
        }
        if !plan.dry_run {
            elb.delete_listener()
                .listener_arn(listener.listener_arn.clone().unwrap_or_default())
                .send()
                .await
                .map_err(|e| DeployError::aws(format!("elbv2 DeleteListener {name}:{port}"), e))?;
        }
        plan.record(
            "listener",
            format!("{name}:{port}"),
            Action::Delete,
            "not wanted with plain HTTP",
        );
    }
    Ok(())
}

/// An ELB error, with what to do added when the certificate is the trouble.
fn certificate_error<E, R>(
    step: String,
    error: aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> DeployError
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata
        + std::error::Error
        + Send
        + Sync
        + 'static,
    R: std::fmt::Debug,
{
    let hint = matches!(
        code(&error),
        Some("CertificateNotFound" | "CertificateNotFoundException")
    );
    match DeployError::aws(step, error) {
        DeployError::Aws { step, message } if hint => DeployError::Aws {
            step,
            message: format!(
                "{message} — deploy.certificate_arn must name an issued ACM certificate in the \
                 deploy's region (or an IAM server certificate)"
            ),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TG: &str = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/demo/abc";
    const CERT: &str = "arn:aws:acm:us-east-1:1:certificate/one";

    fn listener(port: i32, protocol: ProtocolEnum, action: ListenerAction) -> Listener {
        Listener::builder()
            .port(port)
            .protocol(protocol)
            .default_actions(action)
            .build()
    }

    #[test]
    fn https_forwards_on_443_with_a_tls13_policy_and_redirects_80() {
        let https = Listening::Https {
            certificate_arn: CERT.into(),
        };
        let wanted = wanted(&https, TG);
        assert_eq!(wanted.len(), 2);
        assert_eq!(
            (wanted[0].port, &wanted[0].protocol),
            (443, &ProtocolEnum::Https)
        );
        assert_eq!(
            wanted[0].tls,
            Some((CERT.to_owned(), "ELBSecurityPolicy-TLS13-1-2-2021-06"))
        );
        assert_eq!(wanted[0].action, Forwarding::Forward(TG.into()));
        assert_eq!(
            (wanted[1].port, &wanted[1].action),
            (80, &Forwarding::RedirectToHttps)
        );
        let redirect = wanted[1].default_action();
        let config = redirect.redirect_config().unwrap();
        assert_eq!(config.protocol(), Some("HTTPS"));
        assert_eq!(config.port(), Some("443"));
        assert_eq!(
            config.status_code(),
            Some(&RedirectActionStatusCodeEnum::Http301)
        );
        assert_eq!(https.ports(), &[80, 443]);
        assert_eq!(Listening::PlainHttp.ports(), &[80]);
    }

    #[test]
    fn a_listener_is_changed_only_where_it_differs() {
        let https = wanted(
            &Listening::Https {
                certificate_arn: CERT.into(),
            },
            TG,
        );
        let current = Listener::builder()
            .port(443)
            .protocol(ProtocolEnum::Https)
            .ssl_policy(TLS_POLICY)
            .certificates(Certificate::builder().certificate_arn(CERT).build())
            .default_actions(https[0].default_action())
            .build();
        assert!(https[0].differences(&current).is_empty());

        let renewed = wanted(
            &Listening::Https {
                certificate_arn: "arn:aws:acm:us-east-1:1:certificate/two".into(),
            },
            TG,
        );
        assert_eq!(
            renewed[0].differences(&current),
            ["certificate arn:aws:acm:us-east-1:1:certificate/two"]
        );

        // Port 80 forwarding (plain HTTP) becomes the redirect, and back.
        let plain = wanted(&Listening::PlainHttp, TG);
        let forwarding = listener(80, ProtocolEnum::Http, plain[0].default_action());
        assert!(plain[0].differences(&forwarding).is_empty());
        assert_eq!(https[1].differences(&forwarding), ["redirect to HTTPS"]);
        let redirecting = listener(80, ProtocolEnum::Http, https[1].default_action());
        assert!(https[1].differences(&redirecting).is_empty());
        assert_eq!(
            plain[0].differences(&redirecting),
            ["forward to the target group"]
        );
    }
}
