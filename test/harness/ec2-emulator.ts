/**
 * The EC2 API of the end-to-end test: moto's server (test/harness/ec2_emulator.py) inside the booted hosts' mirror
 * namespace, where the head's autostop reaches it through AWS_ENDPOINT_URL. It records every call that starts,
 * stops or terminates instances, so a test can read exactly what autostop asked for.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

const MACHINES_SH = path.join(__dirname, "..", "e2e", "machines.sh");
const EMULATOR_PY = path.join(__dirname, "ec2_emulator.py");
/** The venv tools/ec2-emulator.sh fills (npm test's pretest); RAY_CLUSTER_EC2_EMULATOR overrides it. */
export const EC2_EMULATOR_PYTHON = path.join(process.env.RAY_CLUSTER_EC2_EMULATOR ??
    path.join(__dirname, "..", "..", ".cache", "ec2-emulator"), "bin", "python");

/** One recorded call: when, which action, on which instances, in the order the caller listed them. */
export interface Ec2Call {
    at: number;
    action: "StartInstances" | "StopInstances" | "TerminateInstances";
    instanceIds: string[];
}

export class Ec2Emulator {
    public endpoint = "";
    private state = "";

    /** Starts the emulator in the rig's mirror namespace; the rig's down() stops it with the namespace. */
    start(state: string): void {
        if (!fs.existsSync(EC2_EMULATOR_PYTHON)) {
            throw new Error(`no EC2 emulator at ${EC2_EMULATOR_PYTHON}; npm test's pretest installs it (tools/ec2-emulator.sh)`);
        }
        this.state = state;
        execFileSync("bash", [MACHINES_SH, "ec2", state, EC2_EMULATOR_PYTHON, EMULATOR_PY], { stdio: "inherit" });
        this.endpoint = fs.readFileSync(path.join(state, "ec2-endpoint"), "utf8").trim();
    }

    private cli(...args: string[]): string {
        return execFileSync(EC2_EMULATOR_PYTHON, [EMULATOR_PY, ...args, "--endpoint", this.endpoint], { encoding: "utf8" }).trim();
    }

    /** Launches an instance with these tags, as RunInstances would for the stack; returns its id. */
    runInstance(tags: Record<string, string>): string {
        return this.cli("run-instance", ...Object.entries(tags).flatMap(([k, v]) => ["--tag", `${k}=${v}`]));
    }

    startInstance(id: string): void {
        this.cli("start", id);
    }

    states(): Record<string, { state: string; tags: Record<string, string> }> {
        return JSON.parse(this.cli("states"));
    }

    calls(): Ec2Call[] {
        const file = path.join(this.state, "ec2-calls.jsonl");
        return fs.existsSync(file)
            ? fs.readFileSync(file, "utf8").trim().split("\n").filter(Boolean).map((line) => JSON.parse(line) as Ec2Call)
            : [];
    }
}
