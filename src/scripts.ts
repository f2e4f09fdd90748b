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

/** The line by which a script sources lib.sh when run from a checkout; the nodes get lib.sh inlined instead. */
export const SOURCE_LIB_LINE = '. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"';

/**
 * A line by which a script reads a sibling file (a systemd unit, a helper) into a variable when run from a
 * checkout: `NAME=$(cat "$(dirname "\${BASH_SOURCE[0]}")/FILE")`. The nodes get the file's text inlined instead.
 */
const READ_SIBLING_LINE = /^([A-Z_]+)=\$\(cat "\$\(dirname "\$\{BASH_SOURCE\[0\]\}"\)\/([A-Za-z0-9_.-]+)"\)$/gm;

/** A script's text with lib.sh and the sibling files it reads inlined, so it runs on a node with no scripts/. */
export function inlinedScript(fileName: string): string {
    const text = readScript(fileName);
    if (!text.includes(SOURCE_LIB_LINE)) {
        throw new Error(`scripts/${fileName} does not source lib.sh with: ${SOURCE_LIB_LINE}`);
    }
    return text
        .replace(SOURCE_LIB_LINE, () => readScript("lib.sh"))
        .replace(READ_SIBLING_LINE, (_, name: string, sibling: string) =>
            `${name}=${shellQuote(readScript(sibling).replace(/\n$/, ""))}`);
}

/**
 * The command text that runs `scripts/<fileName>` on a node with the given arguments. Parameters travel in the
 * text itself: stock sshd drops the environment a client sends.
 */
export function scriptCommand(fileName: string, args: string[]): string {
    return ["bash", "-c", inlinedScript(fileName), fileName, ...args].map(shellQuote).join(" ");
}

/** Scripts in scripts/ that run on the user's machine, never on a node. */
const LAPTOP_SCRIPTS = new Set(["ssh-config.sh", "terminate-launched.js"]);

/** Every file that runs on nodes (scripts, helpers, systemd units, requirements), by name, in name order. */
export function nodeScriptFiles(): Record<string, string> {
    return Object.fromEntries(fs.readdirSync(SCRIPTS_DIR)
        .filter((file) => !LAPTOP_SCRIPTS.has(file) && fs.statSync(path.join(SCRIPTS_DIR, file)).isFile() && !file.endsWith(".pyc"))
        .sort()
        .map((file) => [file, readScript(file)]));
}
