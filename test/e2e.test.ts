/**
 * End to end on booted machines: three Debian hosts under systemd-nspawn, each booted with the stack's own user
 * data through cloud-init, as EC2 boots an instance. Real Ray from the wheelhouse through the package-index
 * override, driven by the remote.Commands the program registers under mocks, in the engine's order, as the
 * login user cloud-init created. Then the hosts reboot, power off and crash, and the cluster must come back alone.
 */
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import * as path from "node:path";
import { after, before, test } from "node:test";
import { NODE_USER_DATA } from "../src/nodes";
import { scriptCommand } from "../src/scripts";
import { byName, byType, Rendered, render, reveal } from "../tools/render";
import { eventually } from "./harness/eventually";
import { destroyPlan } from "./harness/destroy";
import { Ec2Emulator } from "./harness/ec2-emulator";
import { SecurityGroupFirewall, stackFirewall } from "./harness/firewall";
import { InstanceFacts, serveInstanceMetadata } from "./harness/instance-metadata";
import { instanceRole, REGION, S3Emulator } from "./harness/s3-emulator";
import { BootedHosts, describeOnBootedHosts, LOGIN_USER, OUTSIDER, THIS_MACHINE } from "./harness/machines";
import { cleanupKeys, CommandFailed, CommandInputs, runOverSsh } from "./harness/ssh";

const TIMEOUT_SECONDS = 90;
/** Bound on a node's return after a reboot or power-on: boot, Ray's start, and a worker's wait for its head. */
const RETURN_SECONDS = 300;
/** The head, one worker of the default group, and one of a second group declared GPU-bearing (`--num-gpus 1`). */
const NODES = ["headnode", "worker-1", "gpu-1"];
const GROUP_OF: Record<string, string> = { headnode: "headnode", "worker-1": "worker", "gpu-1": "gpu" };
const hosts = new BootedHosts({ headnode: 11, "worker-1": 12, "gpu-1": 13 });
const ec2 = new Ec2Emulator();
const s3 = new S3Emulator();
/** A bucket in the same account that is not the stack's: the nodes' role must not reach it. */
const OTHER_BUCKET = "another-team-data";
/** The stack's config in this test; autostop's idle bound is its shortest, one minute. */
const STACK_CONFIG = {
    bootstrapTimeoutSeconds: TIMEOUT_SECONDS,
    // This machine plays the user's laptop: SSH is open to it alone, as a user narrows sshAllowedCidrs to their own.
    sshAllowedCidrs: [`${THIS_MACHINE}/32`],
    autostopIdleMinutes: 1,
    workerCount: 1,
    // The test hosts have no GPU: the group says it has one, as a user may to cap or fake what Ray detects.
    // A spot group too, so that its node's spot watch is installed by the stack's own command.
    workerGroups: [{ name: "gpu", instanceType: "g5.xlarge", count: 1, gpus: 1, spot: true }],
};
/** How often the head checks for idleness here: the stack's timer says every minute; a drop-in makes it 15 s. */
const CHECK_SECONDS = 15;
/** Instance ids the emulated EC2 gave each node, and one instance of another stack that autostop must leave alone. */
const instanceIds: Record<string, string> = {};
let otherStackInstance = "";
let rendered: Rendered;
/** The stack's security groups, enforced on every host from its first boot. */
let firewall: SecurityGroupFirewall;
const log: Array<{ name: string; start: number; end: number; stdout: string; stderr: string }> = [];
/** What each node's instance metadata serves, as EC2 would: its identity, role credentials and spot notices. */
const metadataFacts: Record<string, InstanceFacts> = {};
const failedCommands: string[] = [];

/**
 * What the test adds on every node: the address of the S3 emulator, for every service (a top-level drop-in).
 * Credentials are not among it: each node gets its role's from its instance metadata, as on EC2.
 */
function nodeTestFiles(): Record<string, string> {
    return { "etc/systemd/system/service.d/s3-endpoint.conf": `[Service]\nEnvironment=AWS_ENDPOINT_URL_S3=${s3.endpoint}\n` };
}

/**
 * What the test adds on the head besides: the EC2 endpoint (credentials come from its instance metadata, as the
 * instance profile's), a check every 15 s, and a hold until the autostop tests, so that the reboot tests run undisturbed.
 */
function headTestFiles(): Record<string, string> {
    return {
        ...nodeTestFiles(),
        "etc/systemd/system/ray-autostop.service.d/ec2-emulator.conf": `[Service]\nEnvironment=AWS_ENDPOINT_URL_EC2=${ec2.endpoint}\n`,
        // One empty assignment resets all of the timer's triggers, of every kind; then both are set again.
        "etc/systemd/system/ray-autostop.timer.d/test-interval.conf":
            `[Timer]\nOnActiveSec=\nOnActiveSec=${CHECK_SECONDS}s\nOnUnitActiveSec=${CHECK_SECONDS}s\n`,
        "var/lib/ray-cluster/autostop-hold": "held by the end-to-end test until its autostop tests\n",
    };
}

/** The autostop verdicts the head's journal holds since UNIX_SECONDS: when, and what the check said. */
async function autostopVerdicts(since: number): Promise<Array<{ at: number; message: string }>> {
    const { stdout } = await onHost("headnode",
        `journalctl -u ray-autostop.service --no-pager -o short-unix --since @${Math.floor(since)}`);
    return stdout.split("\n").map((line) => /^(\d+\.\d+) \S+ ([^:]+): (.*)$/.exec(line))
        .filter((m): m is RegExpExecArray => m !== null && !/^systemd/.test(m[2]))
        .map((m) => ({ at: Number(m[1]), message: m[3] }))
        .filter((v) => /^(busy|idle|held|stopping|workers)/.test(v.message));
}

/** The calls that change an instance's power state, as autostop and `pulumi up` make them. */
const POWER_ACTIONS = ["StartInstances", "StopInstances", "TerminateInstances"] as const;

const sleep = (seconds: number) => new Promise((resolve) => setTimeout(resolve, seconds * 1000));

function command(name: string): CommandInputs & Record<string, any> {
    return reveal(byName(rendered, name).inputs);
}

const onHost = (node: string, text: string, stdin?: string) => hosts.run(node, text, stdin);

/** Waits until every given node is alive and listed by `ray status`; returns their node ids by name. */
function clusterWhole(nodes = NODES, what = "every node back in ray status"): Promise<Record<string, string>> {
    return hosts.clusterWhole(nodes, RETURN_SECONDS, what);
}

/** Node ids that `ray status` on the head lists as active or idle. */
async function statusNodes(): Promise<string[]> {
    const { stdout } = await onHost("headnode", "RAY_AUTH_MODE=token ~/ray-venv/bin/ray status");
    return [...stdout.split("Pending:")[0].matchAll(/\bnode_([0-9a-f]+)/g)].map((m) => m[1]);
}

const smokeJob = () => hosts.smokeJob(NODES.length);

/** Rows of the example pipeline's raw data here: enough for every stage to split across nodes, quick on 2 cores. */
const PIPELINE_ROWS = 20000;
/** The submission ids of the pipeline runs, in order. */
const pipelineJobs: string[] = [];
/** The job that ends while the job archive's watcher is stopped, just before autostop stops the stack. */
let jobBeforeStop = "";

/** The stack's outputs as `pulumi stack output --json --show-secrets` prints them, which `npm run job` reads. */
function outputsFile(): string {
    const file = path.join(hosts.state, "outputs.json");
    if (!fs.existsSync(file)) {
        fs.writeFileSync(file, JSON.stringify(reveal(rendered.outputs)));
    }
    return file;
}

/**
 * `npm run --silent job -- ARGS` as the user's laptop runs it: the stack's outputs, no Ray installed (uv installs
 * the client into a cache of its own, from the test's package index) and no AWS credentials but ENV's.
 */
function laptopJob(args: string[], env: Record<string, string> = {}): { code: number; stdout: string; stderr: string; seconds: number } {
    const began = Date.now();
    const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("AWS_"))) as Record<string, string>;
    const result = spawnSync("npm", ["run", "--silent", "job", "--", ...args], {
        cwd: path.join(__dirname, ".."), encoding: "utf8", timeout: 600_000,
        env: { ...base, RAY_CLUSTER_STACK_OUTPUTS: outputsFile(), RAY_CLUSTER_CACHE: path.join(hosts.state, "laptop-cache"),
            UV_DEFAULT_INDEX: hosts.indexUrl, ...env },
    });
    return { code: result.status ?? -1, stdout: result.stdout, stderr: result.stderr, seconds: (Date.now() - began) / 1000 };
}

/** The submission id `npm run job -- submit` reported. */
function submissionId(run: { stderr: string }): string {
    const id = /submitted (raysubmit_\w+)/.exec(run.stderr)?.[1];
    assert.ok(id, run.stderr);
    return id;
}

/** What the example pipeline's latest run left in the buckets, read on the head with its role, as a user's script would. */
async function pipelineOutputs(): Promise<{ run: string; raw: number; features: number; train: number; test: number;
    predictions: number; accuracy: number; trainedOn: string[] }> {
    const { stdout } = await onHost("headnode", `set -a; . /etc/ray-cluster/job.env; set +a; AWS_ENDPOINT_URL_S3=${s3.endpoint} ~/ray-venv/bin/python - <<'PY'
import json, os
import numpy as np, pyarrow.csv as pacsv, pyarrow.dataset as ds, pyarrow.fs as pafs
fs = pafs.S3FileSystem(region=os.environ["AWS_REGION"], endpoint_override=os.environ["AWS_ENDPOINT_URL_S3"])
read = lambda path: fs.open_input_stream(path).read()
metrics = json.loads(read(os.environ["RAY_CLUSTER_RESULTS_BUCKET"] + "/metrics/latest.json"))
paths = metrics["paths"]
rows = lambda path: ds.dataset(path, filesystem=fs, format="parquet").count_rows()
test = ds.dataset(paths["training"] + "/test", filesystem=fs, format="parquet").to_table()
model = json.loads(read(paths["model"]))
x = (np.column_stack([test[f].to_numpy() for f in model["features"]]) - model["mean"]) / model["std"]
p = 1 / (1 + np.exp(-(x @ np.asarray(model["weights"]) + model["bias"])))
print(json.dumps({"run": metrics["run"], "raw": pacsv.read_csv(fs.open_input_stream(paths["raw"])).num_rows,
    "features": rows(paths["features"]), "train": rows(paths["training"] + "/train"), "test": test.num_rows,
    "predictions": rows(paths["predictions"]), "accuracy": float(np.mean((p > 0.5) == test["churned"].to_numpy())),
    "trainedOn": model["trainedOn"]}))
PY`);
    return JSON.parse(stdout.trim().split("\n").pop()!);
}

/** A job's record and driver log in the results bucket, once the head has copied them there (bounded). */
async function archived(id: string): Promise<{ record: Record<string, any>; log: string }> {
    const results = (rendered.outputs.bucketNames as Record<string, string>).results;
    return eventually({ what: `job ${id}'s record in s3://${results}/ray-jobs/`, timeoutSeconds: 90, intervalSeconds: 2 }, async (last) => {
        const out = JSON.parse(s3.python("-c", `
import boto3, json
s3 = boto3.client("s3")
try:
    record = json.loads(s3.get_object(Bucket="${results}", Key="ray-jobs/${id}/job.json")["Body"].read())
    log = s3.get_object(Bucket="${results}", Key="ray-jobs/${id}/driver.log")["Body"].read().decode()
    print(json.dumps({"record": record, "log": log}))
except s3.exceptions.NoSuchKey:
    print("{}")
`));
        last(JSON.stringify(out).slice(0, 200));
        return out.record ? out : undefined;
    });
}

function assertSmokeRanEverywhere(stdout: string): void {
    assert.match(stdout, /tasks ran on 3 of 3 expected nodes/);
    for (const node of NODES) {
        assert.match(stdout, new RegExp(`node ${node} ${hosts.address(node).replace(/\./g, "\\.")}`));
    }
}

const unitOf = (node: string) => (node === "headnode" ? "ray-head" : "ray-worker");

/** The service's main process and when it last became active: unchanged means not restarted. */
async function serviceIdentity(node: string): Promise<string> {
    const { stdout } = await onHost(node, `systemctl show -p MainPID -p ActiveEnterTimestampMonotonic ${unitOf(node)}`);
    return stdout.trim();
}

/** Asks a host to reboot and waits until it has started booting again. */
async function reboot(node: string): Promise<void> {
    const boots = hosts.boots(node).length;
    await onHost(node, "sudo systemctl reboot").catch(() => undefined); // the session may die with the host
    await hosts.waitForBoot(node, boots + 1, 180);
}

/** The Jobs API's answer through a dashboard tunnel on localPort: the only way the groups let this machine in. */
function dashboardStatus(localPort: number, token?: string): Promise<number> {
    return new Promise((resolve, reject) => {
        const req = http.get({ host: "127.0.0.1", port: localPort, path: "/api/jobs/", timeout: 10_000,
            headers: token ? { Authorization: `Bearer ${token}` } : {} }, (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
        });
        req.on("error", reject);
    });
}

describeOnBootedHosts("a Ray cluster on booted hosts", { timeout: 2_400_000 }, () => {
    const commandsBefore = () => log.length;

    before(async () => {
        hosts.up();
        ec2.start(hosts.state);
        s3.start(hosts.state);
        otherStackInstance = ec2.runInstance({ "ray-cluster:project": "ray-cluster", "ray-cluster:stack": "other", Name: "headnode" });
        firewall = await stackFirewall({ ...STACK_CONFIG, packageIndexUrl: hosts.indexUrl }, (node) => hosts.addresses(node));
        const t0 = Date.now();
        rendered = await render({ ...STACK_CONFIG, packageIndexUrl: hosts.indexUrl }, {
            addresses: (node) => ({ privateIp: hosts.address(node), publicIp: hosts.address(node) }),
            privateKeys: (name) => hosts.keyFor(name),
            // Creating an instance registers it with EC2 and powers on a machine with its own user data, as EC2 does.
            launchInstance: async (node, inputs, keyPair) => {
                instanceIds[node] = ec2.runInstance(inputs.tags);
                hosts.launch(node, { userData: inputs.userData, publicKey: keyPair.publicKey }, firewall,
                    node === "headnode" ? headTestFiles() : nodeTestFiles());
                return instanceIds[node];
            },
            runCommand: async (inputs, name) => {
                const start = Date.now() - t0;
                // A command the program's outputs do not wait for fails without failing the render: it is kept here.
                const result = await hosts.namingBlocked(NODES, () => runOverSsh(inputs as CommandInputs, inputs.create, inputs.stdin, name))
                    .catch((e: Error) => {
                        failedCommands.push(`${name}: ${e.message}`);
                        throw e;
                    });
                log.push({ name, start, end: Date.now() - t0, stdout: result.stdout, stderr: result.stderr });
                return result;
            },
        });
        // EC2 hands each instance the credentials of the role its own instance profile names, through IMDS.
        const credentials = s3.provision(rendered, [OTHER_BUCKET]);
        // The EC2 emulator authorizes each call against the signer's role, as rendered.
        ec2.loadStackIam(rendered);
        for (const [role, keys] of Object.entries(credentials)) {
            ec2.trustKey(keys.AccessKeyId, role);
        }
        for (const node of NODES) {
            const role = instanceRole(rendered, node);
            const instance = reveal(byName(rendered, `ray-cluster-${node}`).inputs);
            metadataFacts[node] = { instanceId: instanceIds[node], instanceType: instance.instanceType, imageId: instance.ami,
                privateIp: hosts.nodeIp(node), region: REGION, role, credentials: credentials[role], metadataOptions: instance.metadataOptions };
            serveInstanceMetadata(hosts, node, metadataFacts[node]);
        }
    });

    after(() => {
        try {
            hosts.down();
        } finally {
            cleanupKeys();
        }
    });

    test("the bootstrap succeeds as cloud-init's user and the verify step reports head + 2 workers", () => {
        assert.equal(rendered.error, undefined, String(rendered.error?.stack));
        assert.deepEqual(failedCommands, []);
        const status = rendered.outputs.rayClusterStatus;
        assert.equal(status.aliveNodes, 3);
        assert.deepEqual(status.nodes.map((n: { name: string }) => n.name), NODES);
        for (const entry of log) {
            console.log(`${(entry.start / 1000).toFixed(1)}s → ${(entry.end / 1000).toFixed(1)}s ${entry.name}`);
        }
        assert.equal(command("ray-cluster-headnode-prepare").connection.user, LOGIN_USER);
    });

    test("each host booted the stack's user data and its key pair, and cloud-init finished cleanly", async () => {
        const keyPair = byType(rendered, "aws:ec2/keyPair:KeyPair")[0];
        assert.equal(reveal(keyPair.inputs).publicKey.trim(), hosts.publicKey, "the hosts trust the stack's key");
        for (const node of NODES) {
            assert.equal(reveal(byName(rendered, `ray-cluster-${node}`).inputs).userData, NODE_USER_DATA);
            const { stdout } = await onHost(node, "cloud-init status; id -un; sudo cat /var/lib/cloud/instance/user-data.txt");
            assert.match(stdout, /^status: done$/m, `${node}: ${stdout}`);
            assert.match(stdout, new RegExp(`^${LOGIN_USER}$`, "m"));
            assert.ok(stdout.includes(NODE_USER_DATA.trim()), `${node} ran the stack's user data`);
        }
    });

    test("commands ran in the engine's order: installs overlapped, starts waited for the head", () => {
        const at = (name: string) => log.find((e) => e.name === `ray-cluster-${name}`)!;
        const installs = NODES.map((node) => at(`${node}-install`));
        assert.ok(Math.max(...installs.map((i) => i.start)) < Math.min(...installs.map((i) => i.end)), "installs ran in parallel");
        for (const worker of ["worker-1", "gpu-1"]) {
            assert.ok(at(`${worker}-start`).start >= at("headnode-start").end, `${worker} starts after the head is up`);
        }
        assert.ok(at("verify").start >= Math.max(at("worker-1-start").end, at("gpu-1-start").end));
        assert.ok(at("gpu-1-spot-watch").start >= at("gpu-1-start").end, "the spot watch shares the started worker's settings");
    });

    test("each host got its hostname, resolvable through its own /etc/hosts", async () => {
        for (const node of NODES) {
            const { stdout } = await onHost(node, `hostname; getent ahostsv4 ${node}`);
            assert.equal(stdout.split("\n")[0], node);
            assert.match(stdout, new RegExp(`^${hosts.address(node).replace(/\./g, "\\.")}\\s+STREAM ${node}$`, "m"));
        }
    });

    test("ray status on the head shows 3 nodes", async () => {
        // A snapshot on purpose: verify returned only once `ray status` listed every node, and it never unlists one.
        assert.equal((await statusNodes()).length, 3);
    });

    test("Ray runs as an enabled systemd service on every node, and the token is in no unit, setting or command line", async () => {
        const token = command("ray-cluster-headnode-start").stdin!;
        for (const node of NODES) {
            const unit = unitOf(node);
            const { stdout } = await onHost(node, `systemctl is-enabled ${unit}; systemctl is-active ${unit}; ` +
                `stat -c %a ~/.ray/auth_token; cat /etc/systemd/system/${unit}.service /etc/ray-cluster/${unit}.env; ps -eo args`);
            assert.match(stdout, /^enabled\nactive\n600\n/, `${node}: ${stdout.slice(0, 200)}`);
            assert.ok(!stdout.includes(token), `${node}: the token shows in a unit, a setting or a command line`);
            // systemd's own check of the installed unit. Debian 12's systemd 252 predates the backoff keys (254).
            const analysis = (await onHost(node, `systemd-analyze verify ${unit}.service 2>&1 || echo "exit $?"`)).stdout;
            const complaints = analysis.split("\n").filter((line) => line.trim() !== "" &&
                !/Unknown key '(RestartSteps|RestartMaxDelaySec)' in section \[Service\], ignoring\.$/.test(line));
            assert.deepEqual(complaints, [], `${node}: systemd-analyze verify ${unit}.service`);
        }
    });

    test("the smoke job ran tasks on all 3 hosts", async () => {
        assertSmokeRanEverywhere(await smokeJob());
    });

    test("the head runs the job archive as an enabled service, with the AWS SDK in Ray's venv", async () => {
        await eventually({ what: "ray-job-archive.service active on the head", timeoutSeconds: 120, intervalSeconds: 2 }, async (last) => {
            const { stdout } = await onHost("headnode", "systemctl is-enabled ray-job-archive; systemctl is-active ray-job-archive; " +
                "~/ray-venv/bin/python -c 'import boto3; print(\"boto3\", boto3.__version__)' 2>&1 | tail -1; cat /etc/ray-cluster/job-archive.env");
            last(stdout);
            return /^enabled\nactive\nboto3 \d/.test(stdout) ? stdout : undefined;
        });
        const { stdout } = await onHost("headnode", "journalctl -u ray-job-archive --no-pager -o cat | head -5");
        assert.match(stdout, /copying each job that ends to the results bucket, looking every 5s/);
    });

    test("the spot group's node runs the spot watch, which polls its metadata with IMDSv2 and drains nothing without a " +
        "notice; a re-run of its install changes nothing; no other node has it", async () => {
        const watch = command("ray-cluster-gpu-1-spot-watch");
        // The rig serves each host's metadata once the stack is up (its role's credentials come from the rendered
        // policies), so polls during the bootstrap may find none; from this test on, every poll must be answered.
        const since = Math.floor(Date.now() / 1000);
        await new Promise((resolve) => setTimeout(resolve, 12_000));
        const { stdout: state } = await onHost("gpu-1", "systemctl is-enabled ray-spot-watch; systemctl is-active ray-spot-watch");
        assert.equal(state, "enabled\nactive\n");
        const { stdout: journal } = await onHost("gpu-1", "journalctl -u ray-spot-watch --no-pager -o cat");
        assert.match(journal, /^spot-watch: watching the instance metadata for spot interruptions and rebalance recommendations every 5s$/m);
        assert.doesNotMatch(journal, /drained/, "nothing was drained");
        const { stdout: recent } = await onHost("gpu-1", `journalctl -u ray-spot-watch --no-pager -o cat --since @${since}`);
        assert.doesNotMatch(recent, /failed/, "every poll of the last 12 s (two or more) was answered");
        // gpu-1's metadata requires IMDSv2 (its metadataOptions): a poll without a session token would be refused, and
        // the refusal logged above.
        assert.equal(reveal(byName(rendered, "ray-cluster-gpu-1").inputs).metadataOptions.httpTokens, "required");
        const before = (await onHost("gpu-1", "systemctl show -p MainPID --value ray-spot-watch")).stdout;
        assert.match((await runOverSsh(watch, watch.create!, undefined, "spot watch again")).stdout, /spot watch already on/);
        assert.equal((await onHost("gpu-1", "systemctl show -p MainPID --value ray-spot-watch")).stdout, before, "restarted");
        for (const node of ["headnode", "worker-1"]) {
            assert.match((await onHost(node, "systemctl is-enabled ray-spot-watch 2>&1 || true")).stdout, /not-found|No such file|disabled/);
        }
    });

    test("every node's Ray processes see the region and the four buckets, and no AWS key is on any node", async () => {
        const buckets = rendered.outputs.bucketNames as Record<string, string>;
        const served = Object.values(JSON.parse(fs.readFileSync(path.join(hosts.state, "hosts", "headnode", "imds.json"), "utf8"))
            .metadata.values["iam-security-credentials"] as Record<string, string>);
        for (const node of NODES) {
            // What a task inherits: the raylet's environment, which every worker process it starts gets.
            const { stdout } = await onHost(node, "sudo cat /proc/$(pgrep -o -x raylet)/environ | tr '\\0' '\\n'; echo ---; cat /etc/ray-cluster/stack.json");
            const [environ, stackFile] = stdout.split("\n---\n");
            const env = Object.fromEntries(environ.split("\n").filter((l) => l.includes("=")).map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));
            assert.equal(env.AWS_REGION, REGION, node);
            assert.equal(env.AWS_DEFAULT_REGION, REGION, node);
            assert.deepEqual([env.RAY_CLUSTER_STAGING_DATA_BUCKET, env.RAY_CLUSTER_FEATURE_STORE_BUCKET, env.RAY_CLUSTER_MODEL_STORE_BUCKET,
                env.RAY_CLUSTER_RESULTS_BUCKET], [buckets.stagingData, buckets.featureStore, buckets.modelStore, buckets.results], node);
            assert.equal(env.RAY_CLUSTER_JOB_LOGS, `s3://${buckets.results}/ray-jobs/`);
            assert.deepEqual(JSON.parse(stackFile), { region: REGION, buckets, jobLogs: { bucket: buckets.results, prefix: "ray-jobs/" } });
            // No key anywhere a process, a unit or the login user keeps one: the role's credentials live in IMDS only.
            const keys = await onHost(node, "sudo sh -c 'cat /proc/[0-9]*/environ 2>/dev/null | tr \"\\0\" \"\\n\" | grep -E \"^AWS_(ACCESS_KEY_ID|SECRET_ACCESS_KEY|SESSION_TOKEN)=\"; " +
                "grep -rlIE \"AWS_(ACCESS_KEY_ID|SECRET_ACCESS_KEY|SESSION_TOKEN)|aws_access_key_id|(AKIA|ASIA)[A-Z0-9]{16}\" /etc/systemd /etc/ray-cluster /etc/environment " +
                "/home/ubuntu /root --exclude-dir=ray-venv --exclude-dir=.cache 2>/dev/null; " +
                `grep -rlF -e ${served[1]} -e ${served[2]} /etc /home/ubuntu /root /tmp/ray --exclude-dir=ray-venv 2>/dev/null; true'`);
            assert.equal(keys.stdout.trim(), "", `${node} keeps an AWS key: ${keys.stdout}`);
        }
    });

    test("npm run job submits the example pipeline through a tunnel with the token, and every bucket holds its part", async () => {
        const run = laptopJob(["submit", "examples/pipeline", "--", "python", "pipeline.py", "--rows", String(PIPELINE_ROWS)]);
        assert.equal(run.code, 0, run.stderr + run.stdout);
        const token = command("ray-cluster-headnode-start").stdin!;
        assert.ok(!run.stdout.includes(token) && !run.stderr.includes(token), "npm run job printed the token");
        pipelineJobs.push(submissionId(run));
        const metrics = JSON.parse(run.stdout.trim().split("\n").filter((l) => l.startsWith("{\"run\"")).pop()!);
        const found = await pipelineOutputs();
        assert.equal(found.run, metrics.run, "the results bucket's latest metrics are this run's");
        assert.equal(found.raw, PIPELINE_ROWS);
        assert.equal(found.features, PIPELINE_ROWS);
        assert.equal(found.test, PIPELINE_ROWS * 0.2);
        assert.equal(found.train + found.test, PIPELINE_ROWS);
        assert.equal(found.predictions, found.test);
        // The model loads and scores the test split as the job said, well above a coin's toss.
        assert.ok(Math.abs(found.accuracy - metrics.accuracy) < 1e-9, `recomputed ${found.accuracy}, job said ${metrics.accuracy}`);
        assert.ok(metrics.accuracy > 0.75 && metrics.accuracy < 1, `accuracy ${metrics.accuracy}`);
        assert.ok(metrics.logLoss > 0 && metrics.logLoss < 0.6, `log loss ${metrics.logLoss}`);
        assert.ok(found.trainedOn.length >= 2, `trained on ${found.trainedOn.join(", ")} only`);
        for (const host of found.trainedOn) {
            assert.ok(NODES.includes(host), host);
        }
        // Workers reached the buckets with their role's credentials through IMDSv2's token handshake.
        for (const node of ["worker-1", "gpu-1"]) {
            const imds = fs.readFileSync(path.join(hosts.state, "hosts", node, "imds.log"), "utf8");
            assert.match(imds, /Token validated!/, node);
            assert.match(imds, /security-credentials/, node);
        }
    });

    test("a second run adds a version of the model, and the README's restore brings the first back", async () => {
        const run = laptopJob(["submit", "examples/pipeline", "--", "python", "pipeline.py", "--rows", String(PIPELINE_ROWS)]);
        assert.equal(run.code, 0, run.stderr + run.stdout);
        pipelineJobs.push(submissionId(run));
        const results = (rendered.outputs.bucketNames as Record<string, string>).results;
        const versions = JSON.parse(s3.python("-c", `
import boto3, json
s3 = boto3.client("s3")
key = "models/pipeline/model.json"
versions = sorted(s3.list_object_versions(Bucket="${results}", Prefix=key)["Versions"], key=lambda v: v["LastModified"])
runs = [json.loads(s3.get_object(Bucket="${results}", Key=key, VersionId=v["VersionId"])["Body"].read())["run"] for v in versions]
# The README's restore: copy the first version over the object, which adds it again as the newest.
s3.copy_object(Bucket="${results}", Key=key, CopySource={"Bucket": "${results}", "Key": key, "VersionId": versions[0]["VersionId"]})
print(json.dumps({"runs": runs, "now": json.loads(s3.get_object(Bucket="${results}", Key=key)["Body"].read())["run"],
                  "count": len(s3.list_object_versions(Bucket="${results}", Prefix=key)["Versions"])}))
`));
        assert.equal(versions.runs.length, 2, JSON.stringify(versions));
        assert.notEqual(versions.runs[0], versions.runs[1]);
        assert.equal(versions.now, versions.runs[0], "the restored model is the first run's");
        assert.equal(versions.count, 3);
    });

    test("each job's driver log and record are in the results bucket, with its status, times and nodes", async () => {
        const results = (rendered.outputs.bucketNames as Record<string, string>).results;
        for (const id of pipelineJobs) {
            const { record, log: driverLog } = await archived(id);
            assert.equal(record.submissionId, id);
            assert.equal(record.status, "SUCCEEDED");
            assert.match(record.entrypoint, /^python pipeline\.py --rows \d+$/);
            assert.ok(Date.parse(record.startTime) <= Date.parse(record.endTime), JSON.stringify(record));
            assert.equal(record.driverLog, `s3://${results}/ray-jobs/${id}/driver.log`);
            const ips = record.nodes.map((n: { ip: string }) => n.ip).sort();
            assert.ok(ips.length >= 2, JSON.stringify(record.nodes));
            for (const ip of ips) {
                assert.ok(NODES.map((n) => hosts.nodeIp(n)).includes(ip), ip);
            }
            assert.match(driverLog, /5\. accuracy 0\.\d+/);
        }
    });

    test("a job that writes to a bucket outside the stack fails with AccessDenied in its own log; nothing else is affected", async () => {
        const before = await clusterWhole();
        const dir = fs.mkdtempSync(path.join(hosts.state, "escape-"));
        fs.writeFileSync(path.join(dir, "escape.py"), `import os, boto3
s3 = boto3.client("s3")
s3.put_object(Bucket=os.environ["RAY_CLUSTER_RESULTS_BUCKET"], Key="escape/allowed.txt", Body=b"inside the stack")
print("wrote to the stack's results bucket")
s3.put_object(Bucket="${OTHER_BUCKET}", Key="escape.txt", Body=b"outside the stack")
print("wrote outside the stack")
`);
        const run = laptopJob(["submit", dir, "--", "python", "escape.py"]);
        assert.equal(run.code, 1, run.stderr + run.stdout);
        assert.match(run.stdout, /wrote to the stack's results bucket/);
        assert.match(run.stdout, /An error occurred \(AccessDenied\) when calling the PutObject operation/);
        assert.doesNotMatch(run.stdout, /wrote outside the stack/);
        assert.match(run.stderr, /raysubmit_\w+ FAILED/);
        assert.equal(s3.python("-c", `import boto3; print(boto3.client("s3").list_objects_v2(Bucket="${OTHER_BUCKET}").get("KeyCount", 0))`), "0");
        const { record } = await archived(submissionId(run));
        assert.equal(record.status, "FAILED");
        assert.deepEqual(await clusterWhole(), before, "the cluster was touched");
    });

    test("npm run job lists, reports and stops a job; a stopped job exits 3 and its record says STOPPED", async () => {
        const submitted = laptopJob(["submit", "--no-wait", "examples/pipeline", "--", "python", "-c", "import time; time.sleep(600)"]);
        assert.equal(submitted.code, 0, submitted.stderr);
        const id = submitted.stdout.trim().split("\n").pop()!;
        assert.match(id, /^raysubmit_\w+$/);
        const running = await eventually({ what: `${id} running`, timeoutSeconds: 60, intervalSeconds: 2 }, async (last) => {
            const status = laptopJob(["status", id]);
            last(status.stdout + status.stderr);
            return / RUNNING/.test(status.stdout) ? status : undefined;
        });
        assert.equal(running.code, 0);
        assert.match(laptopJob(["list"]).stdout, new RegExp(`^${id}\\tRUNNING\\tpython -c `, "m"));
        assert.match(laptopJob(["stop", id]).stdout, new RegExp(`^${id} stop requested$`, "m"));
        await eventually({ what: `${id} stopped`, timeoutSeconds: 60, intervalSeconds: 2 },
            async () => (/ STOPPED/.test(laptopJob(["status", id]).stdout) ? true : undefined));
        assert.equal((await archived(id)).record.status, "STOPPED");
        // A job that ends stopped makes submit exit 3, so scripts can tell it from a failure.
        const stoppedWhileWatched = laptopJob(["submit", "examples/pipeline", "--", "python", "-c",
            "import time; from ray.job_submission import JobSubmissionClient as C; c = C('http://127.0.0.1:8265'); " +
            "[c.stop_job(j.submission_id) for j in c.list_jobs() if 'stop-me' in j.entrypoint and j.status == 'RUNNING']; " +
            "time.sleep(60)", "stop-me"]);
        assert.equal(stoppedWhileWatched.code, 3, stoppedWhileWatched.stderr);
    });

    test("with a tunnel already open, npm run job reuses it", async () => {
        const tunnel = await hosts.tunnel("headnode", 8265, 8265);
        try {
            const list = laptopJob(["list"]);
            assert.equal(list.code, 0, list.stderr);
            assert.match(list.stderr, /using the tunnel already open on localhost:8265/);
            assert.match(list.stdout, new RegExp(`^${pipelineJobs[0]}\\tSUCCEEDED\\tpython pipeline\\.py`, "m"));
        } finally {
            tunnel.close();
        }
    });

    test("submit with no way to the head says so in one line, names the fix, and does not hang", () => {
        const outputs = JSON.parse(fs.readFileSync(outputsFile(), "utf8"));
        // An address on the test's own bridge where no host answers: as a stopped head, or a wrong network.
        outputs.sshConfig = outputs.sshConfig.replace(/HostName \S+/g, "HostName 10.213.0.99");
        const unreachable = path.join(hosts.state, "outputs-unreachable.json");
        fs.writeFileSync(unreachable, JSON.stringify(outputs));
        const run = laptopJob(["submit", "examples/pipeline", "--", "python", "pipeline.py"], { RAY_CLUSTER_STACK_OUTPUTS: unreachable });
        assert.equal(run.code, 2);
        const lines = run.stderr.trim().split("\n");
        assert.equal(lines.length, 1, run.stderr);
        assert.match(lines[0], /^ray-cluster job: error: cannot reach headnode over SSH \(.*\)\. If the cluster is stopped, `pulumi up` starts it; otherwise check the ssh config/);
        assert.ok(run.seconds < 40, `took ${run.seconds}s`);
    });

    test("every node carries its group as a Ray label, and rayClusterStatus counts the nodes of each group", async () => {
        const { stdout } = await onHost("headnode", `RAY_AUTH_MODE=token ~/ray-venv/bin/python - <<'PY'
import json, ray
ray.init(address="auto", logging_level="ERROR", log_to_driver=False)
print(json.dumps({n["NodeManagerAddress"]: {"labels": n.get("Labels", {}), "gpus": n["Resources"].get("GPU", 0)}
                  for n in ray.nodes() if n["Alive"]}))
PY`);
        const seen = JSON.parse(stdout.trim().split("\n").pop()!);
        for (const node of NODES) {
            assert.equal(seen[hosts.address(node)]?.labels["ray-cluster/group"], GROUP_OF[node], `${node}: ${stdout}`);
            assert.equal(seen[hosts.address(node)].gpus, node === "gpu-1" ? 1 : 0, `${node}'s GPUs`);
        }
        const groups = rendered.outputs.rayClusterStatus.groups as Record<string, { expected: number; alive: number }>;
        assert.deepEqual(Object.fromEntries(Object.entries(groups).map(([g, v]) => [g, [v.expected, v.alive]])),
            { headnode: [1, 1], worker: [1, 1], gpu: [1, 1] });
    });

    test("a task pinned to a group runs only on its nodes, and a num_gpus=1 task only on the GPU group", async () => {
        const { stdout } = await onHost("headnode", `RAY_AUTH_MODE=token ~/ray-venv/bin/python - <<'PY'
import json, socket, time, ray
ray.init(address="auto", logging_level="ERROR", log_to_driver=False)
where = ray.remote(lambda: socket.gethostname())
# Each spread task holds its slot a moment: instant ones can all finish on the first nodes to answer.
held = ray.remote(lambda: (time.sleep(1), socket.gethostname())[1])
def hosts(task, n):
    return sorted(set(ray.get([task.remote() for _ in range(n)])))
print(json.dumps({
    "pinned": {g: hosts(where.options(num_cpus=0.5, label_selector={"ray-cluster/group": g}), 12) for g in ("worker", "gpu")},
    "gpu": hosts(where.options(num_gpus=1), 6),
    "spread": hosts(held.options(num_cpus=0.5, scheduling_strategy="SPREAD"), 30),
}))
PY`);
        const placed = JSON.parse(stdout.trim().split("\n").pop()!);
        assert.deepEqual(placed.pinned, { worker: ["worker-1"], gpu: ["gpu-1"] });
        assert.deepEqual(placed.gpu, ["gpu-1"]);
        // Unpinned work does reach every node, so the pinning above is the selector's doing.
        assert.deepEqual(placed.spread, [...NODES].sort());
    });

    test("re-running a node's install and start is a fast no-op that restarts nothing", async () => {
        const install = command("ray-cluster-worker-1-install");
        const again = await runOverSsh(install, install.create!, undefined, "install again");
        assert.match(again.stdout, /already installed/);
        assert.ok(again.seconds < 5, `no-op install took ${again.seconds}s`);
        for (const [node, expected] of [["worker-1", /already joined/], ["headnode", /already running/]] as const) {
            const before = await serviceIdentity(node);
            const start = command(`ray-cluster-${node}-start`);
            assert.match((await runOverSsh(start, start.create!, start.stdin, `${node} start again`)).stdout, expected);
            assert.equal(await serviceIdentity(node), before, `${node}'s service was restarted`);
        }
    });

    test("a client without the token is refused; the token lets it in", async () => {
        const token = command("ray-cluster-headnode-start").stdin!;
        const tunnel = await hosts.tunnel("headnode", 18266, 8265);
        try {
            assert.equal(await eventually({ what: "the dashboard answering through the tunnel", timeoutSeconds: 60 },
                async () => dashboardStatus(18266).catch(() => undefined)), 401);
            assert.equal(await dashboardStatus(18266, "not-the-token"), 403);
            assert.equal(await dashboardStatus(18266, token), 200);
        } finally {
            tunnel.close();
        }
        await assert.rejects(onHost("worker-1", "RAY_AUTH_MODE=token RAY_AUTH_TOKEN=wrong timeout 60 ~/ray-venv/bin/ray status"),
            (e: CommandFailed) => /AuthenticationError|InvalidAuthToken/.test(e.result.stderr + e.result.stdout));
    });

    test("the cluster ran behind exactly the rules the stack renders", () => {
        // The filters were built from a render before launch; the bootstrap's own render must give the same.
        const fromBootstrap = new SecurityGroupFirewall(rendered.resources, (node) => hosts.addresses(node));
        for (const node of NODES) {
            assert.equal(fromBootstrap.ruleset(node), firewall.ruleset(node), node);
        }
        assert.deepEqual(firewall.groupsOf, { headnode: ["ray-cluster-sg"], "worker-1": ["ray-cluster-sg"], "gpu-1": ["ray-cluster-sg"] });
    });

    test("from this machine, inside sshAllowedCidrs, SSH answers and no Ray port does", async () => {
        const ports = await hosts.rayPorts();
        hosts.forgetBlocked(NODES);
        for (const node of NODES) {
            const address = hosts.address(node);
            assert.ok(hosts.connects("this machine", address, 22), `${node}: SSH`);
            const rayPortsOfNode = node === "headnode"
                ? { GCS: 6379, dashboard: 8265, client: 10001, ...ports[address] } : ports[address];
            for (const [what, port] of Object.entries(rayPortsOfNode)) {
                assert.ok(!hosts.connects("this machine", address, port, 2), `${node}: ${what} (${port}) answered this machine`);
            }
        }
        // What kept them out is the groups: each try is in the head's record of dropped flows.
        assert.match(hosts.describeBlocked(["headnode"]), new RegExp(`${THIS_MACHINE.replace(/\./g, "\\.")} → headnode \\(.*\\) tcp/6379`));
    });

    test("from an address in no group nothing answers: SSH, GCS, dashboard, client, raylet, object manager", async () => {
        const ports = await hosts.rayPorts();
        hosts.forgetBlocked(NODES);
        const head = hosts.address("headnode");
        const tries: Array<[string, number]> = [["headnode", 22], ["headnode", 6379], ["headnode", 8265], ["headnode", 10001],
            ["worker-1", 22], ...NODES.flatMap((node) => Object.values(ports[hosts.address(node)]).map((port) => [node, port] as [string, number]))];
        for (const [node, port] of tries) {
            assert.ok(!hosts.connects("outsider", hosts.address(node), port, 2), `${node}:${port} answered an outsider`);
        }
        const blocked = hosts.describeBlocked(NODES);
        for (const [node, port] of tries) {
            const flow = `${OUTSIDER.public} → ${node} (${hosts.address(node)}) tcp/${port}`;
            assert.ok(blocked.includes(flow), `${flow} is not in the groups' record: ${blocked}`);
        }
        // The same ports do answer a member of the cluster's group: the groups, not the services, kept the outsider out.
        const { stdout } = await onHost("worker-1", `for p in 6379 8265 10001; do timeout 3 bash -c "exec 3<>/dev/tcp/${head}/$p" && echo "open $p"; done`);
        assert.deepEqual(stdout.trim().split("\n"), ["open 6379", "open 8265", "open 10001"]);
    });

    test("without the rule Ray needs between nodes, the cluster fails within its bound and names what the groups blocked", async () => {
        const head = hosts.address("headnode");
        hosts.forgetBlocked(NODES);
        hosts.enforce(firewall.without("ray-cluster-intra-cluster"), NODES);
        const began = Date.now();
        try {
            await onHost("worker-1", "sudo systemctl restart ray-worker");
            // The stack's verify, with a short bound: worker-1's raylet cannot reach the GCS to join.
            const text = scriptCommand("verify-cluster.sh", ["--address", `${head}:6379`, "--timeout", "20",
                ...NODES.flatMap((node) => ["--expect", `${node}=${hosts.address(node)}`])]);
            const failure = await hosts.namingBlocked(NODES, () => runOverSsh(command("ray-cluster-verify"), text, undefined, "verify"))
                .then(() => undefined, (e: Error) => e);
            assert.ok(failure, "verify passed with the cluster's own rule taken out");
            assert.match(failure.message, /1 of 3 nodes did not join within 20s: worker-1 \(10\.213\.0\.12\)/);
            assert.match(failure.message, /\nthe security groups blocked: .*worker-1 \(10\.213\.0\.12\) → headnode \(10\.213\.0\.11\) tcp\/6379/);
            assert.ok((Date.now() - began) / 1000 < 60, "failed within its bound, not at a timeout of its own");
        } finally {
            hosts.enforce(firewall, NODES);
        }
        // With the rule back, worker-1's next try to reach its head succeeds by itself.
        await clusterWhole(NODES, "worker-1 back once the rule is restored");
    });

    test("verify waits until a late worker shows in `ray status`, not just in the GCS node table", async () => {
        const worker = command("ray-cluster-gpu-1-start");
        await runOverSsh(worker, worker.delete!, undefined, "gpu-1 leaves");
        await eventually({ what: "gpu-1 gone from ray status", timeoutSeconds: 90 }, async (last) => {
            const nodes = await statusNodes();
            last(`${nodes.length} nodes listed`);
            return nodes.length === 2 ? true : undefined;
        });
        const verify = command("ray-cluster-verify");
        let verifyEnded = 0;
        const verifying = runOverSsh(verify, verify.create!, undefined, "verify").then((result) => {
            verifyEnded = Date.now();
            return result;
        });
        await new Promise((resolve) => setTimeout(resolve, 5000));
        assert.equal(verifyEnded, 0, "verify reported success while gpu-1 was away");
        await runOverSsh(worker, worker.create!, worker.stdin, "gpu-1 rejoins");
        const rejoined = Date.now();
        const result = await verifying;
        assert.ok(verifyEnded >= rejoined, "verify returned only after gpu-1 started again");
        assert.equal(JSON.parse(result.stdout.trim().split("\n").pop()!).aliveNodes, 3);
        // One snapshot on purpose: what verify promises is that the user's very next `ray status` agrees.
        assert.equal((await statusNodes()).length, 3, "ray status right after verify lists every node");
    });

    test("verify fails within its bound and names the node that never joined", async () => {
        const verify = command("ray-cluster-verify");
        const head = hosts.address("headnode");
        // The stack's verify script with a short bound and a node that does not exist.
        const text = scriptCommand("verify-cluster.sh", ["--address", `${head}:6379`, "--timeout", "5",
            "--expect", `headnode=${head}`, "--expect", "ghost-1=10.213.0.99"]);
        const began = Date.now();
        await assert.rejects(runOverSsh(verify, text, undefined, "verify a ghost"), (e: CommandFailed) => {
            assert.match(e.result.stderr, /verify-cluster: error: 1 of 2 nodes did not join within 5s: ghost-1 \(10\.213\.0\.99\)/);
            return true;
        });
        assert.ok((Date.now() - began) / 1000 < 60, "failed within its bound");
    });

    test("kill -9 of a worker's raylet: systemd brings the worker back", async () => {
        const before = await clusterWhole();
        const ran = commandsBefore();
        await onHost("worker-1", "sudo pkill -9 -x raylet");
        const afterKill = await eventually({ what: "worker-1 back with a new raylet", timeoutSeconds: RETURN_SECONDS,
            intervalSeconds: 3 }, async (last) => {
            const ids = await clusterWhole();
            last(`worker-1 is ${ids["worker-1"]}`);
            return ids["worker-1"] !== before["worker-1"] ? ids : undefined;
        });
        assert.equal(afterKill.headnode, before.headnode, "the head was untouched");
        const { stdout } = await onHost("worker-1", "systemctl show -p NRestarts ray-worker");
        assert.match(stdout, /NRestarts=[1-9]/, "systemd restarted the service");
        assert.equal(log.length, ran, "no bootstrap command ran again");
    });

    test("a signal that reaches `ray start --block` while it kills its daemons does not hang the worker: the service " +
        "kills the process group within its bound and systemd brings the worker back", async () => {
        const before = await clusterWhole();
        const ran = commandsBefore();
        const hook = await hosts.slowRayKill("worker-1");
        try {
            // The hook loads as Python starts: a fresh `ray start --block` has it.
            await onHost("worker-1", "sudo systemctl restart ray-worker");
            await eventually({ what: "worker-1 back with the hook loaded", timeoutSeconds: RETURN_SECONDS, intervalSeconds: 3 },
                async (last) => {
                    const view = await hosts.clusterView();
                    const id = view.alive[hosts.nodeIp("worker-1")];
                    last(`worker-1 is ${id ?? "not alive"}`);
                    return id && id !== before["worker-1"] && view.listed.includes(id) ? true : undefined;
                });
            const restarted = (await hosts.clusterView()).alive[hosts.nodeIp("worker-1")];
            const [block] = (await onHost("worker-1", "pgrep -u \"$(id -u)\" -f '[r]ay start --block'")).stdout.trim().split("\n").map(Number);
            await hook.stall(true);
            // A daemon's death sends `ray start --block` into kill_all_processes; the hook holds it there.
            await onHost("worker-1", "sudo pkill -9 -x raylet");
            const stalled = await eventually({ what: "ray start --block inside its kill of its daemons", timeoutSeconds: 30,
                intervalSeconds: 0.5 }, async (last) => {
                const pids = await hook.killing();
                last(`pids in the kill: ${pids.join(" ") || "none"}`);
                return pids.length > 0 ? pids : undefined;
            });
            assert.equal(stalled[0], block, "the stalled process is the service's ray start");
            // Ray's SIGTERM handler then re-enters kill_all_processes, whose lock the stalled call holds.
            await onHost("worker-1", `kill -TERM ${block}`);
            await hook.stall(false);
            const began = Date.now();
            // The service's bound (10 s), systemd's restart delay and a new raylet's join fit well inside this.
            const back = await eventually({ what: "worker-1 back with a new raylet after its stalled kill", timeoutSeconds: 120,
                intervalSeconds: 3 }, async (last) => {
                const view = await hosts.clusterView();
                const id = view.alive[hosts.nodeIp("worker-1")];
                last(`worker-1 is ${id ?? "not alive"}${id && !view.listed.includes(id) ? " (not yet in ray status)" : ""}`);
                return id && id !== restarted && view.listed.includes(id) ? view : undefined;
            });
            assert.equal(back.alive[hosts.nodeIp("headnode")], before.headnode, "the head was untouched");
            const { stdout } = await onHost("worker-1", `journalctl -u ray-worker --no-pager -o cat --since @${Math.floor(began / 1000) - 60} ` +
                `| grep 'ray-node-run:' ; if kill -0 ${block} 2>/dev/null; then echo "${block} still runs"; fi; ` +
                `if pgrep -g ${block} >/dev/null; then echo "its group ${block} still runs"; fi`);
            assert.match(stdout, /ray-node-run: ray start did not exit within 10s after raylet was gone; killing it and its daemons/);
            assert.doesNotMatch(stdout, /still runs/, "the deadlocked ray start and every process of its group are gone");
            assert.equal(log.length, ran, "no bootstrap command ran again");
        } finally {
            await hook.remove();
        }
    });

    test("a rebalance recommendation drains the idle spot node; once Ray shuts its raylet down the node stays out " +
        "(the service starts no fresh node), and it returns by itself when its drain mark's time has passed", async () => {
        const before = await clusterWhole();
        const ran = commandsBefore();
        const gpuIp = hosts.nodeIp("gpu-1");
        const since = Math.floor(Date.now() / 1000) - 1;
        // For the failure message: the node's services as its journal saw them, and its drain mark.
        const timeline = async () => (await onHost("gpu-1", `journalctl -u ray-worker -u ray-spot-watch --no-pager -o short-unix --since @${since} | ` +
            "grep -v '] \\|INFO\\|SUCC\\|WARN'; date +%s; cat /run/ray-cluster-spot/drained 2>&1 || true")).stdout;
        serveInstanceMetadata(hosts, "gpu-1", { ...metadataFacts["gpu-1"], spot: { rebalanceAt: new Date(Date.now() - 1000) } });
        try {
            const drained = await eventually({ what: "gpu-1's spot watch draining it", timeoutSeconds: 30, intervalSeconds: 1 }, async () =>
                (await onHost("gpu-1", `journalctl -u ray-spot-watch --no-pager -o cat --since @${since} | grep 'drained Ray node' || true`))
                    .stdout.trim() || undefined);
            assert.match(drained, new RegExp(`^spot-watch: EC2 rebalance recommendation at \\S+: drained Ray node ${before["gpu-1"]} ` +
                "\\(DRAIN_NODE_REASON_PREEMPTION, no deadline\\)"));
            // The node is idle: Ray shuts its raylet down.
            await eventually({ what: "gpu-1's drained node gone from the GCS", timeoutSeconds: 60, intervalSeconds: 2 }, async (last) => {
                const view = await hosts.clusterView();
                last(`gpu-1 is ${view.alive[gpuIp] ?? "not alive"}`);
                return view.alive[gpuIp] === undefined ? true : undefined;
            });
            // Without the mark, the service would have ended and systemd started a fresh node within 20 s.
            const outUntil = Date.now() + 30_000;
            while (Date.now() < outUntil) {
                const view = await hosts.clusterView();
                if (view.alive[gpuIp] !== undefined) {
                    assert.fail(`a fresh node joined from the drained instance: ${view.alive[gpuIp]}; gpu-1's journal:\n${await timeline()}`);
                }
                await sleep(3);
            }
            assert.match(drained, /; it stays out of the cluster for 900s unless the instance goes first\)$/);
            const mark = (await onHost("gpu-1", "cat /run/ray-cluster-spot/drained")).stdout;
            assert.match(mark, /^until=\d+\nreason=EC2 rebalance recommendation at \S+\n$/, "the drain's mark for ray-node-run.sh");
            const { stdout: worker } = await onHost("gpu-1", `journalctl -u ray-worker --no-pager -o cat --since @${since} | grep -v '^\\[\\|^20'`);
            assert.match(worker, /^ray-worker: this node was drained \(EC2 rebalance recommendation at \S+\); it stays out of the cluster until \S+Z unless its instance goes first$/m,
                `gpu-1's journal:\n${await timeline()}`);
            // The instance survived: the recommendation never became a notice. Its mark's time is made to pass now.
            await onHost("gpu-1", "sudo sed -i \"s/^until=.*/until=$(date +%s)/\" /run/ray-cluster-spot/drained");
            const back = await clusterWhole(NODES, "gpu-1 back once its drain mark's time has passed");
            assert.notEqual(back["gpu-1"], before["gpu-1"], "a new node");
            assert.equal(back.headnode, before.headnode, "the head was untouched");
            assert.equal(back["worker-1"], before["worker-1"], "worker-1 was untouched");
            const { stdout: watch } = await onHost("gpu-1", `journalctl -u ray-spot-watch --no-pager -o cat --since @${since} | grep -c 'drained Ray node' || true`);
            assert.equal(watch.trim(), "1", "the same recommendation drained no node again");
            assert.equal(log.length, ran, "no bootstrap command ran again");
        } finally {
            serveInstanceMetadata(hosts, "gpu-1", metadataFacts["gpu-1"]);
        }
    });

    test("a rebooted worker rejoins by itself and keeps its hostname", async () => {
        const before = await clusterWhole();
        const ran = commandsBefore();
        await reboot("worker-1");
        const ids = await eventually({ what: "worker-1 back after its reboot", timeoutSeconds: RETURN_SECONDS,
            intervalSeconds: 3 }, async (last) => {
            const now = await clusterWhole();
            last(`worker-1 is ${now["worker-1"]}`);
            return now["worker-1"] !== before["worker-1"] ? now : undefined;
        });
        assert.equal(ids["gpu-1"], before["gpu-1"], "gpu-1 was untouched");
        const { stdout } = await onHost("worker-1", "hostname; journalctl --list-boots --no-pager | tail -n +2 | wc -l");
        assert.deepEqual(stdout.trim().split("\n"), ["worker-1", "2"]);
        assert.equal(log.length, ran, "no bootstrap command ran again");
    });

    test("a rebooted head comes back at its address, its workers rejoin, and the smoke job runs on all", async () => {
        const before = await clusterWhole();
        const ran = commandsBefore();
        await reboot("headnode");
        await eventually({ what: "a new cluster on the rebooted head", timeoutSeconds: RETURN_SECONDS, intervalSeconds: 3 },
            async (last) => {
                const ids = await clusterWhole();
                last(`head is ${ids.headnode}`);
                return ids.headnode !== before.headnode ? true : undefined;
            });
        assertSmokeRanEverywhere(await smokeJob());
        assert.equal(log.length, ran, "no bootstrap command ran again");
    });

    test("stop and start of every node: workers keep trying while the head is away, then the cluster is whole", async () => {
        const ran = commandsBefore();
        hosts.powerOff("headnode");
        // Each try of a worker is bounded and says so in its journal; systemd keeps trying.
        const tries = await eventually({ what: "worker-1 logging failed tries to reach the stopped head",
            timeoutSeconds: RETURN_SECONDS, intervalSeconds: 5 }, async (last) => {
            const { stdout } = await onHost("worker-1", "journalctl -u ray-worker --no-pager -o cat | grep -c 'did not answer within' || true");
            last(`${stdout.trim()} failed tries`);
            return Number(stdout.trim()) >= 2 ? Number(stdout.trim()) : undefined;
        });
        const { stdout } = await onHost("worker-1", "journalctl -u ray-worker --no-pager -o cat | grep 'did not answer within' | tail -1");
        assert.match(stdout, new RegExp(`GCS at ${hosts.address("headnode").replace(/\./g, "\\.")}:6379 did not answer within 30s; trying again`));
        assert.ok(tries >= 2);
        for (const node of ["worker-1", "gpu-1"]) {
            hosts.powerOff(node);
        }
        for (const node of NODES) {
            hosts.powerOn(node);
        }
        await clusterWhole(NODES, "the cluster whole again after every node was stopped and started");
        assertSmokeRanEverywhere(await smokeJob());
        assert.equal(log.length, ran, "no bootstrap command ran again");
    });

    test("autostop runs on the head as a timer, with its settings and no secret, held by the test's flag", async () => {
        const token = command("ray-cluster-headnode-start").stdin!;
        const { stdout } = await onHost("headnode", "systemctl is-enabled ray-autostop.timer; systemctl is-active ray-autostop.timer; " +
            "systemctl show -p TimersMonotonic ray-autostop.timer; cat /etc/ray-cluster/autostop.env; ray-cluster-autostop status");
        assert.match(stdout, /^enabled\nactive\n/);
        // A first check after the timer starts, then one after each check: a boot-relative time would never fire.
        assert.match(stdout, /^TimersMonotonic=\{ OnActiveUSec=15s ;/m);
        assert.match(stdout, /^TimersMonotonic=\{ OnUnitActiveUSec=15s ;/m);
        const analysis = (await onHost("headnode", "systemd-analyze verify ray-autostop.timer ray-autostop.service 2>&1 || echo \"exit $?\"")).stdout;
        assert.deepEqual(analysis.split("\n").filter((line) => line.trim() !== "" && !/ray-head\.service.*Unknown key/.test(line)), []);
        for (const line of ["IDLE_MINUTES=1", "REGION=us-east-1", "PROJECT=ray-cluster", "STACK=dev",
            `HEAD_INSTANCE_ID=${instanceIds.headnode}`, `GCS_ADDRESS=${hosts.address("headnode")}:6379`]) {
            assert.ok(stdout.split("\n").includes(line), `settings lack ${line}: ${stdout}`);
        }
        assert.match(stdout, /after 1 idle minutes\nheld: held by the end-to-end test/);
        assert.ok(!stdout.includes(token));
        const verdicts = await eventually({ what: "a held verdict in the journal", timeoutSeconds: 90, intervalSeconds: 5 },
            async () => (await autostopVerdicts(0)).filter((v) => v.message.startsWith("held:")).length > 0 || undefined);
        assert.ok(verdicts);
        assert.deepEqual(ec2.calls(...POWER_ACTIONS), [], "nothing was stopped while held");
    });

    test("a running job keeps the cluster up past the idle bound", async () => {
        // The job archive's watcher is stopped, so that only autostop's own last copy can save this job's log.
        const { stdout } = await onHost("headnode", "sudo systemctl stop ray-job-archive && " +
            "RAY_AUTH_MODE=token ~/ray-venv/bin/ray job submit --no-wait " +
            "--address http://127.0.0.1:8265 -- python -c 'import time; time.sleep(90)' && ray-cluster-autostop release");
        const job = /'(raysubmit_\w+)'/.exec(stdout)?.[1];
        assert.ok(job, stdout);
        jobBeforeStop = job;
        const released = Date.now() / 1000;
        // No SSH session while the job runs: the job alone must keep the cluster up.
        await sleep(95);
        const during = (await autostopVerdicts(released)).filter((v) => v.at < released + 85);
        assert.ok(during.length >= 4, `${during.length} checks during the job: ${JSON.stringify(during)}`);
        for (const v of during) {
            assert.match(v.message, new RegExp(`^busy: .*job ${job} (PENDING|RUNNING)`), JSON.stringify(v));
        }
        assert.deepEqual(ec2.calls(...POWER_ACTIONS), [], "a busy cluster was stopped");
    });

    test("an open SSH session on the head, such as a dashboard tunnel, keeps the cluster up", async () => {
        const tunnel = await hosts.tunnel("headnode", 18265, 8265);
        try {
            const opened = Date.now() / 1000;
            await sleep(80);
            const during = (await autostopVerdicts(opened)).filter((v) => v.at < opened + 78);
            assert.ok(during.length >= 4, `${during.length} checks with the tunnel open`);
            for (const v of during) {
                assert.match(v.message, /^busy: .*\b1 SSH sessions open on the head/, JSON.stringify(v));
            }
            assert.deepEqual(ec2.calls(...POWER_ACTIONS), [], "the cluster was stopped under an open session");
        } finally {
            tunnel.close();
        }
    });

    test("an idle cluster stops this stack's instances through EC2, workers first and the head last", async () => {
        const idleFrom = Date.now() / 1000;
        // Watched from here without SSH, which would count as a session.
        const stops = await eventually({ what: "autostop stopping the head", timeoutSeconds: 60 * 3, intervalSeconds: 2 },
            async (last) => {
                const calls = ec2.calls().filter((c) => c.action === "StopInstances");
                last(JSON.stringify(calls));
                return calls.some((c) => c.instanceIds!.includes(instanceIds.headnode)) ? calls : undefined;
            });
        // Played as EC2 would: the stopped instances power off, workers first.
        for (const node of ["worker-1", "gpu-1", "headnode"]) {
            hosts.powerOff(node);
        }
        const workers = [instanceIds["worker-1"], instanceIds["gpu-1"]].sort();
        assert.deepEqual(stops.slice(0, 2).map((c) => c.instanceIds), [workers, [instanceIds.headnode]]);
        assert.ok(stops[0].at < stops[1].at);
        assert.ok(stops[1].at - idleFrom >= 60, `stopped ${stops[1].at - idleFrom}s after the last session, before the idle bound`);
        const states = ec2.states();
        for (const node of NODES) {
            assert.equal(states[instanceIds[node]].state, "stopped", node);
        }
        assert.equal(states[otherStackInstance].state, "running", "another stack's instance was left alone");
        assert.ok(ec2.calls(...POWER_ACTIONS).every((c) => !c.instanceIds!.includes(otherStackInstance)));
        // The job that ended while the archive's watcher was stopped was copied by autostop, before anything stopped.
        const { record } = await archived(jobBeforeStop);
        assert.equal(record.status, "SUCCEEDED");
        assert.ok(Date.parse(record.archivedAt) / 1000 <= stops[0].at, `copied at ${record.archivedAt}, first stop at ${stops[0].at}`);
    });

    test("with the head powered off, npm run job -- logs reads a job's log from the results bucket", () => {
        const run = laptopJob(["logs", pipelineJobs[0]], s3.adminEnv());
        assert.equal(run.code, 0, run.stderr);
        assert.match(run.stdout, /5\. accuracy 0\.\d+/);
        assert.match(run.stderr, /cannot reach headnode over SSH.*; reading the copy in the results bucket/);
        assert.match(run.stderr, new RegExp(`\\(from s3://\\S+/ray-jobs/${pipelineJobs[0]}/driver\\.log`));
        const unknown = laptopJob(["logs", "raysubmit_unknown"], s3.adminEnv());
        assert.equal(unknown.code, 4);
        assert.match(unknown.stderr, /no job raysubmit_unknown in s3:\/\//);
    });

    test("pulumi up after the stop starts every instance, and the cluster is whole and verified", async () => {
        const upLog: string[] = [];
        const up = await render({ ...STACK_CONFIG, packageIndexUrl: hosts.indexUrl }, {
            addresses: (node) => ({ privateIp: hosts.address(node), publicIp: hosts.address(node) }),
            privateKeys: (name) => hosts.keyFor(name),
            // The instances exist; refresh finds them stopped, and each instance state starts its own.
            launchInstance: async (node) => instanceIds[node],
            setInstanceState: async (node, state) => {
                assert.equal(state, "running");
                if (ec2.states()[instanceIds[node]].state === "stopped") {
                    ec2.startInstance(instanceIds[node]);
                    hosts.powerOn(node);
                }
            },
            runCommand: async (inputs, name) => {
                upLog.push(name);
                return runOverSsh(inputs as CommandInputs, inputs.create, inputs.stdin, `up: ${name}`);
            },
        });
        assert.equal(up.error, undefined, String(up.error?.stack));
        assert.equal(up.outputs.rayClusterStatus.aliveNodes, 3);
        assert.equal(up.outputs.headPublicIp, hosts.address("headnode"));
        const started = ec2.calls().filter((c) => c.action === "StartInstances").flatMap((c) => c.instanceIds!).sort();
        assert.deepEqual(started, NODES.map((node) => instanceIds[node]).sort());
        assert.ok(upLog.includes("ray-cluster-verify"));
        await clusterWhole(NODES, "the cluster whole after pulumi up started it");
        assertSmokeRanEverywhere(await smokeJob());
    });

    test("turning autostop off removes the head's timer, command and settings, and nothing checks any more", async () => {
        const autostop = command("ray-cluster-headnode-autostop");
        assert.match((await runOverSsh(autostop, autostop.delete!, undefined, "autostop off")).stdout, /autostop off/);
        const { stdout } = await onHost("headnode", "systemctl is-enabled ray-autostop.timer 2>&1 || true; " +
            "ls /etc/ray-cluster/autostop.env /usr/local/bin/ray-cluster-autostop 2>&1 || true");
        assert.match(stdout, /No such file|not-found|disabled/);
        assert.doesNotMatch(stdout, /^\/usr\/local\/bin\/ray-cluster-autostop$/m);
        assert.match((await runOverSsh(autostop, autostop.delete!, undefined, "autostop off again")).stdout, /autostop off/,
            "the delete is idempotent");
    });

    test("the token never appears in any command's output", () => {
        const token = command("ray-cluster-headnode-start").stdin!;
        for (const entry of log) {
            assert.ok(!entry.stdout.includes(token) && !entry.stderr.includes(token), `${entry.name} printed the token`);
        }
        assert.ok(!command("ray-cluster-headnode-start").create!.includes(token), "the token is not in the command text");
    });

    test("the delete commands stop and disable Ray, workers before the head, and no reboot brings it back (three at once, no unit failing to attach its cgroup)", async () => {
        // The spot watch goes first, as destroy deletes it before the start it depends on.
        const watch = command("ray-cluster-gpu-1-spot-watch");
        assert.match((await runOverSsh(watch, watch.delete!, undefined, "gpu-1 spot watch delete")).stdout, /spot watch off/);
        for (const node of ["worker-1", "gpu-1", "headnode"]) {
            const start = command(`ray-cluster-${node}-start`);
            const { stdout } = await runOverSsh(start, start.delete!, undefined, `${node} delete`);
            assert.match(stdout, new RegExp(`${unitOf(node)}\\.service stopped and disabled`));
            assert.match(stdout, /Ray stopped/);
        }
        await Promise.all(NODES.map((node) => reboot(node)));
        for (const node of NODES) {
            const { stdout, dialSeconds } = await onHost(node, `timeout 120 systemctl is-system-running --wait >/dev/null || true; ` +
                `systemctl is-enabled ${unitOf(node)} 2>&1 || true; pgrep -l -x 'raylet|gcs_server' || true; ` +
                `sudo journalctl -b --no-pager -o cat | grep -E 'Failed to attach to cgroup|status=219/CGROUP' || true`);
            // Three hosts booting at once once shared one cgroup tree, and one's systemd tore down a unit's cgroup
            // as another's attached to it: that unit failed (systemd-user-sessions left /run/nologin for good).
            assert.match(stdout.trim(), /^(disabled|.*No such file or directory.*)$/, `${node}: ${stdout}`);
            console.log(`${node}: logged in ${dialSeconds?.toFixed(1)}s after the first dial, once it had begun booting again`);
        }
    });

    test("a worker aimed at a dead head fails within its bound, saying what is missing", async () => {
        const start = command("ray-cluster-worker-1-start");
        const began = Date.now();
        await assert.rejects(runOverSsh(start, start.create!, start.stdin, "join dead head"), (e: CommandFailed) => {
            assert.match(e.result.stderr, new RegExp(`GCS at ${hosts.address("headnode").replace(/\./g, "\\.")}:6379 did not answer within ${TIMEOUT_SECONDS}s`));
            return true;
        });
        assert.ok((Date.now() - began) / 1000 < TIMEOUT_SECONDS + 30, "failed within the bound");
    });

    test("every command the stack registered was replayed", () => {
        const registered = byType(rendered, "command:remote:Command").map((r) => r.name).sort();
        assert.deepEqual(log.map((e) => e.name).sort(), registered);
        // Per node: prepare, job environment, install, start; on the head: the job archive, autostop and verify; on the
        // spot group's node, its spot watch.
        assert.equal(registered.length, 3 * 4 + 3 + 1);
    });

    test("destroy with every host stopped ends at once: the engine skips the node commands' deletes", async () => {
        for (const node of NODES) {
            hosts.powerOff(node);
        }
        const plan = destroyPlan(rendered.resources);
        const commands = byType(rendered, "command:remote:Command");
        assert.deepEqual(plan.skipped.map((r) => r.name).sort(), commands.map((r) => r.name).sort());
        // Whatever delete would still run must not dial the stopped hosts and wait out the bootstrap's bound.
        const began = Date.now();
        for (const resource of plan.deletes.filter((r) => r.type === "command:remote:Command")) {
            const inputs = reveal(resource.inputs) as CommandInputs & { delete?: string };
            if (inputs.delete) {
                await runOverSsh(inputs, inputs.delete, undefined, `${resource.name} delete`);
            }
        }
        assert.ok((Date.now() - began) / 1000 < 5, "destroy waited on stopped hosts");
        assert.ok(plan.deletes.some((r) => r.type === "aws:ec2/instance:Instance"), "the instances themselves go");
    });
});
