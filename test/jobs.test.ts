/**
 * Jobs and the pipeline's buckets under mocks: the environment and stack file every node's Ray gets, where the job
 * archive sits in the graph, the `jobs` output that `npm run job` reads, and the nodes' bucket grants evaluated
 * against requests by an IAM policy simulator (@cloud-copilot/iam-simulate).
 */
import { runSimulation } from "@cloud-copilot/iam-simulate";
import * as assert from "node:assert/strict";
import { describe, test } from "node:test";
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
