/**
 * How a config key is declared, parsed and reported. Each key is one zod schema that turns the raw text Pulumi
 * hands the program (every value is a string; lists and structured values are JSON) into its typed value, and
 * carries its project-file declaration (type, default, description) and the form it expects. src/config.ts
 * declares the keys with these builders; Pulumi.yaml's `config:` block is rendered from the same declarations.
 */
import * as pulumi from "@pulumi/pulumi";
import * as ipaddr from "ipaddr.js";
import { z } from "zod";

/** A config key's declaration in Pulumi.yaml. Its errors state the form it expects from the schema's own messages. */
export interface KeyMeta {
    /** Pulumi's project config type; `structured` keys have none Pulumi can declare and are described in a comment. */
    type: "string" | "integer" | "boolean" | "array" | "structured";
    /** The default, as Pulumi.yaml states it. */
    default: unknown;
    /** One line for users, in Pulumi.yaml and `pulumi config`. */
    description: string;
}

/** A field of an entry of a structured key (a worker group's `count`, say). */
export interface FieldMeta {
    /** The field's JSON type, with its bounds. */
    type: string;
    /** Whether an entry must have it. */
    required: boolean;
    /** One line for users. */
    description: string;
}

/** The declarations, keyed by schema: what Pulumi.yaml and the error messages are made from. */
export const keyMeta = z.registry<KeyMeta>();
export const fieldMeta = z.registry<FieldMeta>();

/** A config key: parses the raw text (undefined when unset) into its typed, defaulted value. */
export type KeySchema<T = unknown> = z.ZodType<T, string | undefined>;

function declare<S extends z.ZodType>(schema: S, meta: KeyMeta): S {
    keyMeta.add(schema as z.ZodType, meta);
    return schema;
}

const WHOLE = /^\s*\d+\s*$/;
const wholeForm = (min: number, max: number) => `a whole number from ${min} to ${max}`;

/** A whole number from min to max. */
export function integer(defaultValue: number, min: number, max: number, description: string) {
    const expected = wholeForm(min, max);
    return declare(z.string({ error: expected }).regex(WHOLE, { error: expected }).transform(Number)
        .pipe(z.number().min(min, { error: expected }).max(max, { error: expected })).default(defaultValue),
    { type: "integer", default: defaultValue, description });
}

/** true or false. */
export function flag(defaultValue: boolean, description: string) {
    const expected = "true or false";
    return declare(z.enum(["true", "false"], { error: expected }).transform((text) => text === "true").default(defaultValue),
        { type: "boolean", default: defaultValue, description });
}

/** Text of a given form; the default must match it unless it stands for a value derived later (an empty string). */
export function text(defaultValue: string, pattern: RegExp, expected: string, description: string, bound?: Bound<string>) {
    let schema = z.string({ error: expected }).regex(pattern, { error: expected, abort: true });
    if (bound) {
        schema = schema.refine(bound.holds, { error: bound.expected });
    }
    return declare(schema.default(defaultValue), { type: "string", default: defaultValue, description });
}

/** One of a few words. */
export function choice<const T extends readonly [string, ...string[]]>(defaultValue: T[number], choices: T, description: string) {
    const expected = `one of ${choices.map((c) => `'${c}'`).join(", ")}`;
    return declare(z.enum(choices, { error: expected }).default(defaultValue),
        { type: "string", default: defaultValue, description });
}

/** A JSON list of distinct words of one form (availability zones, subnet ids). */
export function textList(defaultValue: string[], pattern: RegExp, expected: string, description: string) {
    const list = z.array(z.string({ error: expected }), { error: expected }).superRefine((words, ctx) => {
        const bad = words.find((word) => !pattern.test(word));
        if (bad !== undefined) {
            ctx.addIssue({ code: "custom", message: `${expected}; '${bad}' is not one`, abort: true });
            return;
        }
        const twice = words.find((word, i) => words.indexOf(word) !== i);
        if (twice !== undefined) {
            ctx.addIssue({ code: "custom", message: `${expected}, each once; '${twice}' is there twice` });
        }
    });
    return declare(json(expected).pipe(list).default(defaultValue), { type: "array", default: defaultValue, description });
}

const CIDR_FORM = "an IPv4 CIDR block such as 10.0.0.0/16, with no host bits set";

/** An IPv4 CIDR block with no host bits set, the form AWS accepts; `rule` states any further bound of its own. */
export function cidr(defaultValue: string, description: string, rule?: Bound<ParsedCidr>) {
    let schema = z.string({ error: CIDR_FORM }).refine((value) => parseCidr(value) !== undefined, { error: CIDR_FORM, abort: true });
    if (rule) {
        schema = schema.refine((value) => rule.holds(parseCidr(value)!), { error: rule.expected });
    }
    return declare(schema.default(defaultValue), { type: "string", default: defaultValue, description });
}

const CIDR_LIST_FORM = 'a JSON list of IPv4 CIDR blocks such as ["203.0.113.0/24"]';

/** A JSON list of CIDR blocks, none overlapping another; `rule` states any further bound of its own. */
export function cidrList(defaultValue: string[], description: string, rule?: Bound<string[]>) {
    let list = z.array(z.string({ error: CIDR_LIST_FORM }), { error: CIDR_LIST_FORM }).superRefine((blocks, ctx) => {
        const ranges = blocks.map(parseCidr);
        const bad = blocks.find((_, i) => ranges[i] === undefined);
        if (bad !== undefined) {
            ctx.addIssue({ code: "custom", message: `${CIDR_LIST_FORM}; '${bad}' is not one`, abort: true });
            return;
        }
        // Overlapping blocks make duplicate or redundant security-group rules, which AWS rejects or hides.
        ranges.forEach((range, i) => ranges.slice(0, i).forEach((other, j) => {
            if (overlaps(range!, other!)) {
                ctx.addIssue({ code: "custom", message: `${CIDR_LIST_FORM}, none overlapping another; '${blocks[i]}' overlaps '${blocks[j]}'` });
            }
        }));
    });
    if (rule) {
        list = list.refine(rule.holds, { error: rule.expected });
    }
    return declare(json(CIDR_LIST_FORM).pipe(list).default(defaultValue),
        { type: "array", default: defaultValue, description });
}

/**
 * A structured value: a JSON list of entries, as Pulumi passes a YAML list from the stack file or one built with
 * `pulumi config set --path`. Errors inside an entry name it and the field (see problemsOf).
 */
export function structured<S extends z.ZodType<unknown[]>>(list: S, description: string, expected: string) {
    return declare(json(expected).pipe(list).default([] as unknown as z.core.util.NoUndefined<z.output<S>>),
        { type: "structured", default: [], description });
}

/** Parses JSON text, with an issue stating the expected form when it is not JSON. */
function json(expected: string) {
    return z.string({ error: expected }).transform((value, ctx): unknown => {
        const parsed = parseJson(value);
        if (parsed === undefined) {
            ctx.addIssue({ code: "custom", message: expected });
            return z.NEVER;
        }
        return parsed;
    });
}

/** A further bound a value must meet, beyond its form. */
export interface Bound<T> {
    holds: (value: T) => boolean;
    expected: string;
}

/** A field, optional unless required; its metadata is on the schema the entry's shape holds. */
function field<S extends z.ZodType, R extends boolean>(schema: S, meta: FieldMeta & { required: R }): R extends true ? S : z.ZodOptional<S> {
    const shaped: z.ZodType = meta.required ? schema : schema.optional();
    fieldMeta.add(shaped, meta);
    return shaped as R extends true ? S : z.ZodOptional<S>;
}

/** A field of a structured entry: a whole number, given as a number or (set with --path) as its digits. */
export function wholeField<R extends boolean>(min: number, max: number, description: string, required: R) {
    const expected = wholeForm(min, max);
    const schema = z.union([z.number(), z.string().regex(/^\d+$/).transform(Number)], { error: expected })
        .pipe(z.number().int({ error: expected }).min(min, { error: expected }).max(max, { error: expected }));
    return field(schema, { type: `integer, ${min} to ${max}`, required, description });
}

/** A field of a structured entry: text of a given form, and any further bound. */
export function textField<R extends boolean>(pattern: RegExp, expected: string, description: string, required: R,
    bound?: Bound<string>) {
    let schema = z.string({ error: expected }).regex(pattern, { error: expected, abort: true });
    if (bound) {
        schema = schema.refine(bound.holds, { error: bound.expected });
    }
    return field(schema, { type: "string", required, description });
}

/** A field of a structured entry: true or false, as a boolean or (set with --path) as a word. */
export function flagField(description: string) {
    const expected = "true or false";
    const schema = z.union([z.boolean(), z.enum(["true", "false"]).transform((word) => word === "true")], { error: expected });
    return field(schema, { type: "boolean", required: false as const, description });
}

/** A problem of one key, or of one field of one entry of a structured key. */
export interface Problem {
    key: string;
    /** The value as given; undefined for an unset key. */
    value?: unknown;
    /** For a structured key: how the entry is named ("group 'gpu'"), and the field, if the problem is one field's. */
    entry?: string;
    field?: string;
    /** A field the entry has and no entry may have, or a key the program does not read. */
    unknown?: "field" | "key";
    expected: string;
}

/** A problem with every key the stack sets is reported at once; RunError, so the CLI prints no stack trace. */
export class ConfigError extends pulumi.RunError {
    constructor(namespace: string, readonly problems: Problem[]) {
        super(problems.length === 1
            ? describeProblem(namespace, problems[0])
            : `${problems.length} problems in the stack's config:\n${problems.map((p) => `- ${describeProblem(namespace, p)}`).join("\n")}`);
        this.name = "ConfigError";
    }
}

const shown = (value: unknown) => (value === undefined ? "nothing (unset)" : JSON.stringify(value));

function describeProblem(namespace: string, p: Problem): string {
    const key = `'${namespace}:${p.key}'`;
    if (p.unknown === "key") {
        return `unknown config key ${key}${p.expected}`;
    }
    if (p.unknown === "field") {
        return `invalid config ${key}: ${p.entry}: unknown field '${p.field}': got ${shown(p.value)}, expected ${p.expected}`;
    }
    const where = p.entry === undefined ? "" : p.field === undefined ? `${p.entry}: ` : `${p.entry} field '${p.field}': `;
    return `invalid config ${key}: ${where}got ${shown(p.value)}, expected ${p.expected}`;
}

/** How the entries of a structured key are named in errors, and the fields an entry may have. */
export interface Entries {
    label: (entry: unknown, index: number) => string;
    fields: string[];
    noun: string;
}

/**
 * Turns zod's issues for one key into problems: the first per key, or per entry and field of a structured key,
 * so that one bad value is reported once.
 */
export function problemsOf(key: string, raw: string | undefined, issues: z.core.$ZodIssue[], entries?: Entries): Problem[] {
    const given = entries && raw !== undefined ? parseJson(raw) : undefined;
    const places = new Map<string, Problem>();
    for (const issue of issues) {
        const [index, field] = issue.path;
        if (typeof index !== "number" || !entries || !Array.isArray(given)) {
            if (!places.has("")) {
                places.set("", { key, value: raw, expected: issue.message });
            }
            continue;
        }
        const entry = given[index] as Record<string, unknown> | undefined;
        const label = entries.label(entry, index);
        if (issue.code === "unrecognized_keys") {
            for (const name of issue.keys) {
                places.set(`${index}/${name}`, { key, entry: label, unknown: "field", field: name, value: entry?.[name],
                    expected: `no such field: a ${entries.noun} has ${entries.fields.join(", ")}` });
            }
            continue;
        }
        const place = `${index}/${String(field ?? "")}`;
        if (!places.has(place)) {
            places.set(place, field === undefined
                ? { key, entry: label, value: entry, expected: issue.message }
                : { key, entry: label, field: String(field), value: entry?.[String(field)], expected: issue.message });
        }
    }
    return [...places.values()];
}

/** A config value parsed as JSON, as Pulumi stores lists and structured values; undefined when it is not JSON. */
export function parseJson(value: string): unknown {
    try {
        return JSON.parse(value) as unknown;
    } catch {
        return undefined;
    }
}

/** A parsed IPv4 CIDR block. */
export interface ParsedCidr {
    address: ipaddr.IPv4;
    prefix: number;
}

/** Parses an IPv4 CIDR block whose host bits are all zero, the form AWS accepts. */
export function parseCidr(value: string): ParsedCidr | undefined {
    if (!ipaddr.IPv4.isValidCIDR(value)) {
        return undefined;
    }
    const [address, prefix] = ipaddr.IPv4.parseCIDR(value);
    const network = ipaddr.IPv4.networkAddressFromCIDR(value);
    return network.toString() === address.toString() ? { address, prefix } : undefined;
}

/** Whether two blocks share an address. */
export const overlaps = (a: ParsedCidr, b: ParsedCidr) => a.address.match(b.address, Math.min(a.prefix, b.prefix));

/** Whether `inner` lies inside `outer`, with a prefix no longer than `longest`. */
export const inside = (inner: ParsedCidr, outer: ParsedCidr, longest: number) =>
    inner.prefix >= outer.prefix && inner.prefix <= longest && inner.address.match(outer.address, outer.prefix);

/** Addresses of a subnet that instances may take: AWS reserves five of each. */
export const usableAddresses = (block: ParsedCidr) => 2 ** (32 - block.prefix) - 5;
