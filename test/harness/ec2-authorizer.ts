/**
 * The EC2 emulator's authorizer: a long-lived process ec2_emulator.py starts beside moto, which it asks before it
 * passes a call on. Each line on stdin is one call, with the role whose session signed it and the account's facts;
 * each line on stdout the decision (ec2-authorization.ts authorize), in the same order. No network: pipes only.
 */
import * as readline from "node:readline";
import { ApiCall, authorize, Decision, RigRole } from "./ec2-authorization";

/** One question from the emulator. */
interface Question {
    call: ApiCall;
    role: RigRole;
    session: string;
    region: string;
    account: string;
    /** The role ARN each instance profile holds. */
    instanceProfiles: Record<string, string>;
}

async function answer(line: string): Promise<Decision> {
    const q = JSON.parse(line) as Question;
    return authorize(q.call, q.role, q.session, {
        region: q.region, account: q.account,
        tagsOf: (id) => q.call.account?.tags[id] ?? {},
        roleOfProfile: (arn) => {
            const role = q.instanceProfiles[arn];
            if (!role) {
                throw new Error(`no role behind the instance profile ${arn}`);
            }
            return role;
        },
    });
}

let queue = Promise.resolve();
readline.createInterface({ input: process.stdin }).on("line", (line) => {
    // One at a time, in order: the emulator reads answers in the order it asked.
    queue = queue.then(() => answer(line)).then(
        (decision) => { process.stdout.write(`${JSON.stringify(decision)}\n`); },
        (e: Error) => {
            const message = `ray-cluster test rig: the authorizer failed on this call: ${e.stack ?? e.message}`;
            process.stderr.write(`${message}\n`);
            process.stdout.write(`${JSON.stringify({ allowed: false, requests: [], message } satisfies Decision)}\n`);
        });
});
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
