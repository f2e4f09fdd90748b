/**
 * Loads policy/ the way `pulumi preview --policy-pack policy` does: the SDK's run-policy-pack in the pack's
 * directory, which compiles it with ts-node and serves the analyzer gRPC API on loopback. The test then asks it
 * for its policies and has it analyze the program's resources over that API.
 */
import * as assert from "node:assert/strict";
import { ChildProcess, spawn } from "node:child_process";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";
import { policies } from "../policy/policies";
import { policyProps } from "./harness/policy";
import { byType, RegisteredResource, render } from "../tools/render";

const root = path.join(__dirname, "..");
// gRPC and protobuf as @pulumi/pulumi loads them, so messages and stubs come from the same module instances.
const fromPulumi = (id: string) => require(require.resolve(id, { paths: [path.join(root, "node_modules", "@pulumi", "pulumi")] })); // eslint-disable-line @typescript-eslint/no-require-imports
const grpc = fromPulumi("@grpc/grpc-js");
const analyzerRpc = require("@pulumi/pulumi/proto/analyzer_grpc_pb"); // eslint-disable-line @typescript-eslint/no-require-imports
const analyzer = require("@pulumi/pulumi/proto/analyzer_pb"); // eslint-disable-line @typescript-eslint/no-require-imports
const { Struct } = fromPulumi("google-protobuf/google/protobuf/struct_pb");
const { Empty } = fromPulumi("google-protobuf/google/protobuf/empty_pb");

let pack: ChildProcess;
let client: any;

function call<T>(method: string, request: unknown): Promise<T> {
    return new Promise((resolve, reject) => client[method](request, (err: Error | null, res: T) => (err ? reject(err) : resolve(res))));
}

function toAnalyzerResource(r: RegisteredResource) {
    // Struct takes plain JSON: secrets revealed (the engine does so for policies), undefined dropped.
    const props = JSON.parse(JSON.stringify(policyProps(r)));
    return new analyzer.AnalyzerResource()
        .setType(r.type).setName(r.name).setUrn(r.urn).setParent(r.parent)
        .setProperties(Struct.fromJavaScript(props))
        .setOptions(new analyzer.AnalyzerResourceOptions())
        .setDependenciesList(r.dependencies);
}

async function analyzeStack(resources: RegisteredResource[]): Promise<Array<{ policy: string; message: string }>> {
    const response: any = await call("analyzeStack", new analyzer.AnalyzeStackRequest().setResourcesList(resources.map(toAnalyzerResource)));
    const perResource = await Promise.all(resources.map((r) => {
        const a = toAnalyzerResource(r);
        return call<any>("analyze", new analyzer.AnalyzeRequest().setType(a.getType()).setName(a.getName()).setUrn(a.getUrn())
            .setProperties(a.getProperties()).setOptions(a.getOptions()));
    }));
    return [response, ...perResource].flatMap((res) => res.getDiagnosticsList())
        .map((d: any) => ({ policy: d.getPolicyname(), message: d.getMessage() }));
}

describe("the policy pack as the Pulumi CLI loads it", { timeout: 120_000 }, () => {
    before(async () => {
        pack = spawn(process.execPath, [path.join(root, "node_modules", "@pulumi", "pulumi", "cmd", "run-policy-pack"), "127.0.0.1:0", "."],
            { cwd: path.join(root, "policy"), stdio: ["ignore", "pipe", "pipe"] });
        let stderr = "";
        pack.stderr!.on("data", (d) => (stderr += d));
        const port = await new Promise<number>((resolve, reject) => {
            pack.stdout!.once("data", (d) => resolve(Number(String(d).trim())));
            pack.once("exit", (code) => reject(new Error(`policy pack exited ${code}: ${stderr}`)));
        });
        assert.ok(port > 0, "the pack printed its port");
        client = new analyzerRpc.AnalyzerClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    });

    after(() => {
        client?.close();
        pack?.kill();
    });

    test("it serves every policy, each mandatory", async () => {
        const info: any = await call("getAnalyzerInfo", new Empty());
        assert.equal(info.getName(), "ray-cluster");
        const served = info.getPoliciesList().map((p: any) => p.getName()).sort();
        assert.deepEqual(served, policies.map((p) => p.name).sort());
        assert.ok(info.getPoliciesList().every((p: any) => p.getEnforcementlevel() === analyzer.EnforcementLevel.MANDATORY));
    });

    test("the program's resources pass, and the lab's security group is reported", async () => {
        const r = await render();
        assert.deepEqual(await analyzeStack(r.resources), []);
        const lab = structuredClone(byType(r, "aws:ec2/securityGroup:SecurityGroup")[0]);
        Object.assign(lab, { name: "micro-sec-group", urn: `${lab.urn}-lab` });
        lab.inputs.ingress = [{ protocol: "tcp", fromPort: 1024, toPort: 65535, cidrBlocks: ["0.0.0.0/0"] }];
        const fired = (await analyzeStack([...r.resources, lab])).map((v) => v.policy).sort();
        assert.deepEqual(fired, ["security-group-no-public-ray-ports", "security-group-public-ingress-ssh-only"]);
    });

    test("the head's grants with elastic groups pass; a launch from any image in the region is reported", async () => {
        const r = await render({ workerGroups: [{ name: "gpu", instanceType: "g5.xlarge", maxCount: 2, spot: true }] });
        assert.deepEqual(await analyzeStack(r.resources), []);
        const broken = structuredClone(r.resources);
        const grants = broken.find((x) => x.name === "ray-cluster-autoscaler")!;
        const doc = JSON.parse(grants.inputs.policy);
        doc.Statement.find((s: { Sid: string }) => s.Sid === "LaunchIntoThisStack").Resource.push("arn:aws:ec2:us-east-1::image/*");
        grants.inputs.policy = JSON.stringify(doc);
        const fired = await analyzeStack(broken);
        assert.deepEqual(fired.map((v) => v.policy), ["iam-launch-scoped-to-stack"]);
        assert.match(fired[0].message, /image\/\*: it could boot any image in the region/);
    });
});
