//! The load generator as a Job inside the cluster, sending to the ClusterIP
//! Service: the path real clients take (a port-forward would pin one pod).

use k8s_openapi::api::batch::v1::Job;

/// Port of the load generator's control endpoint (`GET /progress`, `POST /stop`).
pub const CONTROL_PORT: u16 = 9090;

/// The Job running `/loadgen` from the lameduck image with `args`.
pub fn manifest(name: &str, image: &str, args: &[String]) -> Job {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "lameduck-loadgen"}},
        "spec": {
            // One run, no retry: a second attempt would hide the first one's failures.
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": 600,
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "lameduck-loadgen", "job": name}},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": false,
                    "securityContext": {
                        "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"}
                    },
                    "containers": [{
                        "name": "loadgen",
                        "image": image,
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["/loadgen"],
                        "args": args,
                        "ports": [{"name": "control", "containerPort": CONTROL_PORT}],
                        "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}},
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": {"drop": ["ALL"]}
                        }
                    }]
                }
            }
        }
    }))
    .expect("the Job manifest is well-formed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_loadgen_once_from_the_same_image() {
        let job = manifest("load-1", "repo/lameduck:abc", &["--rate=2000".to_owned()]);
        let spec = job.spec.unwrap();
        assert_eq!(spec.backoff_limit, Some(0));
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        let c = &pod.containers[0];
        assert_eq!(c.image.as_deref(), Some("repo/lameduck:abc"));
        assert_eq!(c.command.as_deref(), Some(&["/loadgen".to_owned()][..]));
        assert_eq!(c.args.as_deref(), Some(&["--rate=2000".to_owned()][..]));
    }

    #[test]
    fn the_job_runs_the_scenarios_protocol_mix() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            scenario: crate::scenario::Scenario,
        }
        let scenario = <Cli as clap::Parser>::parse_from(["e2e"]).scenario;
        let args = scenario.load_args("lameduck.default.svc.cluster.local:80", "0.0.0.0:9090");
        let job = manifest("load-1", "repo/lameduck:abc", &args);
        let pod = job.spec.unwrap().template.spec.unwrap();
        let given = pod.containers[0].args.clone().unwrap();
        crate::scenario::tests::assert_flags(&given, crate::scenario::tests::DEFAULT_MIX_FLAGS);
    }
}
