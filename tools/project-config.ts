/**
 * Renders Pulumi.yaml's `config:` block from the declarations in src/config.ts, so the project file and the
 * program never disagree on a key, its type, its default or its description:
 *   npm run config:yaml          rewrites the block in Pulumi.yaml
 * A structured key (workerGroups) has no type Pulumi can declare, so a comment describes its entries' fields.
 */
import * as fs from "fs";
import * as path from "path";
import * as yaml from "js-yaml";
import { z } from "zod";
import { CONFIG_KEYS, ENTRIES, SETTINGS } from "../src/config";
import { fieldMeta, keyMeta } from "../src/config-schema";

export const PROJECT_FILE = path.resolve(__dirname, "..", "Pulumi.yaml");
const MARK = "# The config contract, rendered from src/config.ts by `npm run config:yaml`: edit the declarations there.";

/** The `config:` block and the comments on structured keys, as Pulumi.yaml holds them from MARK to its end. */
export function renderProjectConfig(): string {
    const declared: Record<string, unknown> = {};
    const comments: string[] = [];
    for (const key of CONFIG_KEYS) {
        const meta = keyMeta.get(SETTINGS[key] as z.ZodType);
        if (!meta) {
            throw new Error(`config key ${key} has no declaration`);
        }
        if (meta.type === "structured") {
            comments.push(...structuredComment(key, meta.description));
            continue;
        }
        declared[key] = {
            type: meta.type,
            ...(meta.type === "array" ? { items: { type: "string" } } : {}),
            default: meta.default,
            description: meta.description,
        };
    }
    return [MARK, yaml.dump({ config: declared }, { lineWidth: -1, quotingType: "\"" }).trimEnd(), ...comments].join("\n") + "\n";
}

function structuredComment(key: string, description: string): string[] {
    const entries = ENTRIES[key as keyof typeof ENTRIES];
    const fields = Object.entries(entries.schema.shape).map(([name, schema]) => {
        const meta = fieldMeta.get(schema as z.ZodType);
        if (!meta) {
            throw new Error(`field ${name} of ${key} has no declaration`);
        }
        return `#   ${name.padEnd(13)} ${meta.type}, ${meta.required ? "required" : "optional"}. ${meta.description}`;
    });
    return [
        `# ${key} (structured): ${description}`,
        "# A project declares config types only as string, integer, boolean and arrays of those, so this key is not",
        `# declared above; src/config.ts validates it. A list of ${entries.noun}s, each a map with:`,
        ...fields,
    ];
}

/** Pulumi.yaml with its block replaced by a fresh rendering. */
export function withRenderedConfig(projectFile: string): string {
    const start = projectFile.indexOf(MARK);
    const head = start >= 0 ? projectFile.slice(0, start) : projectFile.slice(0, projectFile.search(/^config:/m));
    return head + renderProjectConfig();
}

/** The part of Pulumi.yaml the rendering owns, as the file has it now. */
export function projectConfigAsWritten(projectFile: string): string {
    const start = projectFile.indexOf(MARK);
    return start >= 0 ? projectFile.slice(start) : "";
}

if (require.main === module) {
    fs.writeFileSync(PROJECT_FILE, withRenderedConfig(fs.readFileSync(PROJECT_FILE, "utf8")));
    console.log(`config:yaml: wrote the config block of ${path.basename(PROJECT_FILE)} (${CONFIG_KEYS.length} keys)`);
}
