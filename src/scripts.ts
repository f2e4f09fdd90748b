import * as fs from "fs";
import * as path from "path";

/** Where the node-side shell scripts live, next to src/. */
export const SCRIPTS_DIR = path.join(__dirname, "..", "scripts");

const cache = new Map<string, string>();

/** Reads a script once per process; a cluster of 100 nodes renders the same few scripts hundreds of times. */
export function readScript(fileName: string): string {
    let text = cache.get(fileName);
    if (text === undefined) {
        text = fs.readFileSync(path.join(SCRIPTS_DIR, fileName), "utf8");
        cache.set(fileName, text);
    }
    return text;
}

/** Quotes one word for a POSIX shell. */
export function shellQuote(word: string): string {
    return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * The command text that runs `scripts/<fileName>` (after the shared `lib.sh`) on a node with the given arguments.
 * Parameters travel in the text itself: stock sshd drops the environment a client sends.
 */
export function scriptCommand(fileName: string, args: string[]): string {
    const body = `${readScript("lib.sh")}\n${readScript(fileName)}`;
    return ["bash", "-c", body, fileName, ...args].map(shellQuote).join(" ");
}
