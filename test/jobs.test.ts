/**
 * Jobs and the pipeline's buckets under mocks: the environment and stack file every node's Ray gets, where the job
 * archive sits in the graph, the `jobs` output that `npm run job` reads, and the nodes' bucket grants evaluated
 * against requests by an IAM policy simulator (@cloud-copilot/iam-simulate).
 */
import { runSimulation } from "@cloud-copilot/iam-simulate";
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, test } from "node:test";
import { EC2_EMULATOR_PYTHON } from "./harness/ec2-emulator";
import { argumentOf, byName, byType, MOCK_ACCOUNT_ID, Rendered, render, reveal, StackConfig } from "../tools/render";

async function rendered(config: StackConfig = {}, stack = "dev"): Promise<Rendered> {
    const r = await render(config, { stack });
    assert.equal(r.error, undefined, String(r.error?.stack));
    return r;
}

const NODES = ["headnode", "worker-1", "worker-2"];

describe("what every node's Ray processes know of the stack", () => {
    test("each node writes job.env with the region and the four bucket names, and stack.json for scripts", async () => {
        const r = await rendered({ "aws:region": "eu-west-1" });
        const buckets = r.outputs.bucketNames as Record<string, string>;
        for (const node of NODES) {
            const create = reveal(byName(r, `ray-cluster-${node}-job-env`).inputs).create as string;
            assert.deepEqual(argumentOf(create, "--env").split("\n"), [
                "AWS_REGION=eu-west-1",
                "AWS_DEFAULT_REGION=eu-west-1",
                `RAY_CLUSTER_STAGING_DATA_BUCKET=${buckets.stagingData}`,
                `RAY_CLUSTER_FEATURE_STORE_BUCKET=${buckets.featureStore}`,
                `RAY_CLUSTER_MODEL_STORE_BUCKET=${buckets.modelStore}`,
                `RAY_CLUSTER_RESULTS_BUCKET=${buckets.results}`,
                `RAY_CLUSTER_JOB_LOGS=s3://${buckets.results}/ray-jobs/`,
                "RAY_CLUSTER_STACK_FILE=/etc/ray-cluster/stack.json",
            ], node);
            assert.deepEqual(JSON.parse(argumentOf(create, "--stack-json")), {
                region: "eu-west-1", buckets, jobLogs: { bucket: buckets.results, prefix: "ray-jobs/" },
            });
            // No credentials travel to a node: they come from the instance role.
            assert.doesNotMatch(create, /AWS_(ACCESS_KEY_ID|SECRET_ACCESS_KEY|SESSION_TOKEN)|aws_access_key_id/);
        }
    });

    test("each node's Ray starts only once its job environment is in place, and the services read it", async () => {
        const r = await rendered();
        for (const node of NODES) {
            const start = byName(r, `ray-cluster-${node}-start`);
            assert.ok(start.dependencies.includes(byName(r, `ray-cluster-${node}-job-env`).urn), node);
            // The environment comes first: it runs beside prepare and install, off the critical path.
            assert.ok(!byName(r, `ray-cluster-${node}-install`).dependencies.includes(byName(r, `ray-cluster-${node}-job-env`).urn));
            assert.equal(byName(r, `ray-cluster-${node}-job-env`).options.deletedWith, byName(r, `ray-cluster-${node}`).urn);
            const unit = node === "headnode" ? "ray-head.service" : "ray-worker.service";
            const text = reveal(start.inputs).create as string;
            assert.ok(text.indexOf("EnvironmentFile=-/etc/ray-cluster/job.env") >= 0, unit);
            assert.ok(text.indexOf("EnvironmentFile=-/etc/ray-cluster/job.env") < text.indexOf("EnvironmentFile=@SETTINGS@"), unit);
        }
    });

    test("a launched elastic worker gets the head's job environment with the scripts the autoscaler syncs", async () => {
        const r = await rendered({ workerGroups: [{ name: "cpu", instanceType: "c7i.large", minCount: 0, maxCount: 2 }] });
        const create = reveal(byName(r, "ray-cluster-headnode-autoscaler").inputs).create as string;
        assert.match(create, /put "\$\{bundle\}\/install-job-env\.sh"/);
        assert.match(create, /for file in job\.env stack\.json; do/);
        assert.match(create, /install-job-env\.sh" --env "\$\(cat "\$\{here\}\/job\.env"\)"/, "join-cluster.sh installs it");
        assert.ok(byName(r, "ray-cluster-headnode-autoscaler").dependencies.includes(byName(r, "ray-cluster-headnode-start").urn));
    });

    test("without Ray there is no job environment, no archive, and the jobs output says why", async () => {
        const r = await rendered({ bootstrapRay: false });
        assert.deepEqual(r.resources.filter((x) => /job-(env|archive)$/.test(x.name)).map((x) => x.name), []);
        assert.equal(r.outputs.jobs, "off: bootstrapRay is false");
    });
});

describe("the job archive on the head", () => {
    test("it installs after Ray's venv and the stack file, off the critical path, and goes with the head", async () => {
        const r = await rendered();
        const archive = byName(r, "ray-cluster-headnode-job-archive");
        const inputs = reveal(archive.inputs);
        assert.match(inputs.create, /install-job-archive\.sh/);
        assert.equal(argumentOf(inputs.create, "--dashboard-url"), "http://10.0.1.10:8265");
        assert.equal(argumentOf(inputs.create, "--gcs-address"), "10.0.1.10:6379");
        assert.match(inputs.delete, /remove-job-archive\.sh/);
        assert.ok(archive.dependencies.includes(byName(r, "ray-cluster-headnode-install").urn));
        assert.ok(archive.dependencies.includes(byName(r, "ray-cluster-headnode-job-env").urn));
        assert.equal(archive.options.deletedWith, byName(r, "ray-cluster-headnode").urn);
        // Nothing of the bootstrap waits for it.
        for (const other of byType(r, "command:remote:Command")) {
            assert.ok(!other.dependencies.includes(archive.urn), other.name);
        }
    });

    test("the jobs output names the client's Ray release, the region and where job logs go", async () => {
        const r = await rendered({ "aws:region": "eu-west-1", "aws:profile": "ml", rayVersion: "2.59.0" });
        assert.deepEqual(r.outputs.jobs, {
            rayVersion: "2.59.0", dashboardPort: 8265, head: "headnode", region: "eu-west-1", profile: "ml",
            logs: `s3://${(r.outputs.bucketNames as Record<string, string>).results}/ray-jobs/`,
            submit: "npm run job -- submit <dir> -- python <script>.py",
        });
    });
});

describe("the nodes' bucket grants, evaluated by an IAM policy simulator", () => {
    const OBJECT_WRITES = ["s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:GetObjectVersion"];
    async function decide(policy: unknown, action: string, resource: string): Promise<string> {
        const result = await runSimulation({
            identityPolicies: [{ name: "buckets", policy }],
            serviceControlPolicies: [],
            resourceControlPolicies: [],
            resourcePolicy: undefined,
            request: { action, principal: `arn:aws:iam::${MOCK_ACCOUNT_ID}:role/ray-cluster-role-0123456`,
                resource: { accountId: MOCK_ACCOUNT_ID, resource }, contextVariables: {} },
        } as any, {});
        assert.notEqual(result.resultType, "error", JSON.stringify((result as any).errors));
        return (result as any).overallResult;
    }

    test("head and workers may read, write and list the four buckets, and nothing in any other bucket", async () => {
        const r = await rendered();
        const buckets = Object.values(r.outputs.bucketNames as Record<string, string>);
        for (const name of ["ray-cluster-head-buckets", "ray-cluster-buckets"]) {
            const policy = JSON.parse(byName(r, name).inputs.policy);
            for (const bucket of buckets) {
                for (const action of OBJECT_WRITES) {
                    assert.equal(await decide(policy, action, `arn:aws:s3:::${bucket}/ray-jobs/x/driver.log`), "Allowed", `${name} ${action} ${bucket}`);
                }
                assert.equal(await decide(policy, "s3:ListBucket", `arn:aws:s3:::${bucket}`), "Allowed");
                // Versions are listed, and an old one restored, only by whoever administers the stack.
                assert.equal(await decide(policy, "s3:PutBucketVersioning", `arn:aws:s3:::${bucket}`), "ImplicitlyDenied");
                assert.equal(await decide(policy, "s3:DeleteObjectVersion", `arn:aws:s3:::${bucket}/models/pipeline/model.json`), "ImplicitlyDenied");
            }
            for (const outside of ["another-team-data", `${buckets[0]}-copy`]) {
                assert.equal(await decide(policy, "s3:PutObject", `arn:aws:s3:::${outside}/escape.txt`), "ImplicitlyDenied", `${name} ${outside}`);
                assert.equal(await decide(policy, "s3:GetObject", `arn:aws:s3:::${outside}/data.csv`), "ImplicitlyDenied");
                assert.equal(await decide(policy, "s3:ListBucket", `arn:aws:s3:::${outside}`), "ImplicitlyDenied");
            }
        }
    });
});

describe("the job archive's copy, against moto's S3", () => {
    test("an ended job is copied once, a failed copy is logged and retried later, and autostop's last pass retries at once", (t) => {
        if (!fs.existsSync(EC2_EMULATOR_PYTHON) && process.env.RAY_CLUSTER_TEST_MODE === "quick") {
            t.skip("the EC2 emulator is not installed (bash tools/ec2-emulator.sh); npm test installs it");
            return;
        }
        const result = spawnSync(EC2_EMULATOR_PYTHON, ["-c", `
import json, sys, tempfile, types
sys.path.insert(0, ${JSON.stringify(path.join(__dirname, "..", "scripts"))})
import boto3
from moto import mock_aws
import job_archive

job_archive.STATE_DIR = tempfile.mkdtemp()
job_archive.ARCHIVED_FILE = job_archive.STATE_DIR + "/archived-jobs.json"
job_archive.LOCK_FILE = job_archive.STATE_DIR + "/lock"
Status = types.SimpleNamespace
job = lambda sid, status: types.SimpleNamespace(submission_id=sid, job_id="02000000", status=Status(value=status), entrypoint="python x.py",
                                                 message="", driver_exit_code=0, start_time=1_700_000_000_000, end_time=1_700_000_060_000)
class Client:
    jobs = [job("raysubmit_done", "SUCCEEDED"), job("raysubmit_running", "RUNNING"), job(None, "SUCCEEDED")]
    def list_jobs(self): return self.jobs
    def get_job_logs(self, sid): return f"log of {sid}\\n"
class Broken:
    def put_object(self, **kwargs): raise ConnectionError("the S3 endpoint did not answer")
stack = {"region": "us-east-1", "buckets": {}, "jobLogs": {"bucket": "results", "prefix": "ray-jobs/"}}
nodes = lambda job, gcs: [{"nodeId": "n1", "ip": "10.0.1.10", "group": "headnode"}]
settings = {"DASHBOARD_URL": "http://h:8265", "GCS_ADDRESS": "h:6379"}
out = {}
with mock_aws():
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="results")
    out["failed"] = job_archive.archive_pass(settings, stack, s3=Broken(), client=Client(), now=1000, nodes=nodes)
    out["beforeRetry"] = job_archive.archive_pass(settings, stack, s3=s3, client=Client(), now=1005, nodes=nodes)
    out["keysBeforeRetry"] = s3.list_objects_v2(Bucket="results").get("KeyCount", 0)
    out["lastPass"] = job_archive.archive_pass(settings, stack, s3=s3, client=Client(), now=1006, nodes=nodes, now_or_never=True)
    out["keys"] = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="results")["Contents"])
    out["record"] = json.loads(s3.get_object(Bucket="results", Key="ray-jobs/raysubmit_done/job.json")["Body"].read())
    out["log"] = s3.get_object(Bucket="results", Key="ray-jobs/raysubmit_done/driver.log")["Body"].read().decode()
    Client.jobs[1] = job("raysubmit_running", "STOPPED")
    out["again"] = job_archive.archive_pass(settings, stack, s3=s3, client=Client(), now=2000, nodes=nodes)
    out["keysAfter"] = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="results")["Contents"])
print(json.dumps(out))
`], { encoding: "utf8", timeout: 120_000 });
        assert.equal(result.status, 0, result.stderr);
        const lines = result.stdout.trim().split("\n");
        const out = JSON.parse(lines.pop()!);
        const log = lines.join("\n");
        assert.equal(out.failed, 1);
        assert.match(log, /could not copy job raysubmit_done \(SUCCEEDED\) to s3:\/\/results\/ray-jobs\/raysubmit_done\/ \(try 1\): ConnectionError: the S3 endpoint did not answer; trying again in 10s/);
        // Before its retry time the failed job waits; the last pass before a stop does not.
        assert.deepEqual([out.beforeRetry, out.keysBeforeRetry], [0, 0]);
        assert.equal(out.lastPass, 0);
        assert.deepEqual(out.keys, ["ray-jobs/raysubmit_done/driver.log", "ray-jobs/raysubmit_done/job.json"]);
        assert.equal(out.log, "log of raysubmit_done\n");
        assert.deepEqual(out.record, { ...out.record, submissionId: "raysubmit_done", status: "SUCCEEDED", entrypoint: "python x.py",
            startTime: "2023-11-14T22:13:20Z", endTime: "2023-11-14T22:14:20Z", driverLog: "s3://results/ray-jobs/raysubmit_done/driver.log",
            nodes: [{ nodeId: "n1", ip: "10.0.1.10", group: "headnode" }] });
        // A running job waits until it ends; a copied one is never copied again.
        assert.deepEqual(out.keysAfter, [...out.keys, "ray-jobs/raysubmit_running/driver.log", "ray-jobs/raysubmit_running/job.json"].sort());
        assert.equal(out.again, 0);
        assert.equal((log.match(/copied job raysubmit_done/g) ?? []).length, 1);
    });
});
