/**
 * Reading policy files: YAML (several documents per file) → schema →
 * RolloutPolicy, with every problem reported as a PolicyError that names the
 * file, the line and column of the offending value, and the field path.
 *
 * Nothing here throws on bad input: a broken document, file or directory
 * becomes errors, and the good documents around it are still returned.
 */
import type { Stats } from "node:fs";
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import {
  isAlias,
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  parseAllDocuments,
  type Document,
  type Node,
} from "yaml";
import {
  claimedPolicyKey,
  createPolicyValidator,
  formatPath,
  type PathSegment,
  type PolicyIssue,
  type PolicySchemaOptions,
  type PolicyValidation,
} from "./schema.ts";
import type { RolloutPolicy, SourceLocation } from "./types.ts";

/** One problem in one file. line/column are 1-based; 0 means "the whole file" (unreadable, too large). */
export class PolicyError {
  readonly file: string;
  readonly line: number;
  readonly column: number;
  /** Field path such as "spec.steps[2]"; empty for YAML syntax and file errors. */
  readonly path: string;
  readonly message: string;

  constructor(file: string, line: number, column: number, path: string, message: string) {
    this.file = file;
    this.line = line;
    this.column = column;
    this.path = path;
    this.message = message;
  }

  /** `policies/checkout.yaml:14:9 spec.steps[2]: weights must increase (25 after 25)` */
  format(): string {
    const where = this.line > 0 ? `${this.file}:${this.line}:${this.column}` : `${this.file}:`;
    return this.path === "" ? `${where} ${this.message}` : `${where} ${this.path}: ${this.message}`;
  }
}

export function formatLocation(loc: SourceLocation): string {
  return `${loc.file}:${loc.line}:${loc.column}`;
}

/**
 * Caps that keep one bad file cheap: it is refused with one located error
 * before it can cost seconds of CPU or hundreds of MB (a 20 MB file, ten
 * thousand documents, a structure nested ten thousand deep).
 */
export const POLICY_LIMITS = {
  /** Bytes per file: the size limit of a ConfigMap. */
  maxFileBytes: 1024 * 1024,
  /** YAML documents per file. */
  maxDocuments: 1_000,
  /** Nesting of mappings and sequences in one document (a policy needs about 6). */
  maxDepth: 32,
  /** Problems reported per file; the rest are counted in one last line. */
  maxErrorsPerFile: 50,
} as const;

export interface ParseOptions extends PolicySchemaOptions {
  /** A validator built once with createPolicyValidator, to reuse across many files. */
  validator?: (data: unknown) => PolicyValidation;
  maxDocuments?: number;
  maxDepth?: number;
}

export interface PolicyFileResult {
  policies: RolloutPolicy[];
  errors: PolicyError[];
  /** Keys ("namespace/name") claimed by documents that failed validation, when their metadata was readable. */
  brokenKeys: string[];
  /**
   * Files with a problem that cannot be pinned to a key (YAML syntax error,
   * unreadable metadata, unreadable file): any policy they held may be in it.
   */
  opaqueFiles: string[];
}

interface ParsedFile extends PolicyFileResult {
  /** Where each returned policy's metadata.name is written (same order as policies). */
  nameLocations: SourceLocation[];
}

/** Parses every YAML document of one file. Empty documents are ignored. Never throws. */
export function parsePolicyFile(file: string, text: string, opts: ParseOptions = {}): PolicyFileResult {
  const { policies, errors, brokenKeys, opaqueFiles } = parseFile(file, text, opts);
  return { policies, errors, brokenKeys, opaqueFiles };
}

function parseFile(file: string, text: string, opts: ParseOptions): ParsedFile {
  const validate = opts.validator ?? createPolicyValidator(opts);
  const out: ParsedFile = { policies: [], errors: [], brokenKeys: [], opaqueFiles: [], nameLocations: [] };
  const opaque = () => {
    if (out.opaqueFiles.length === 0) out.opaqueFiles.push(file);
  };
  const lines = new LineCounter();
  const at = (offset: number): SourceLocation => {
    const pos = lines.linePos(offset);
    return { file, line: pos.line, column: pos.col };
  };

  const maxDocuments = opts.maxDocuments ?? POLICY_LIMITS.maxDocuments;
  const maxDepth = opts.maxDepth ?? POLICY_LIMITS.maxDepth;
  // Cheap scans before the parser sees the text: a file over the caps costs one pass over its bytes.
  const tooMany = nthDocumentStart(text, maxDocuments);
  if (tooMany !== undefined) {
    const line = lineOf(text, tooMany);
    out.errors.push(
      new PolicyError(
        file,
        line,
        1,
        "",
        `more than ${maxDocuments} YAML documents in one file; split it into several files`,
      ),
    );
    opaque();
    return out;
  }
  const deepFlow = flowDepthBeyond(text, maxDepth * 8);
  if (deepFlow !== undefined) {
    const line = lineOf(text, deepFlow);
    out.errors.push(
      new PolicyError(
        file,
        line,
        deepFlow - text.lastIndexOf("\n", deepFlow - 1),
        "",
        depthMessage(maxDepth),
      ),
    );
    opaque();
    return out;
  }

  let docs;
  try {
    docs = parseAllDocuments(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  } catch (err) {
    out.errors.push(new PolicyError(file, 1, 1, "", `YAML syntax error: ${errorText(err)}`));
    opaque();
    return out;
  }

  for (const doc of docs) {
    const contents = doc.contents;
    if (doc.errors.length > 0) {
      for (const e of doc.errors) {
        const loc = at(e.pos[0]);
        out.errors.push(
          new PolicyError(file, loc.line, loc.column, "", `YAML syntax error: ${firstLine(e.message)}`),
        );
      }
      const key = safeToJS(doc).claimed;
      if (key !== undefined) out.brokenKeys.push(key);
      opaque();
      continue;
    }
    if (contents === null || (isScalar(contents) && contents.value === null)) continue;

    const start = at(contents.range?.[0] ?? doc.range[0]);
    const deep = deeperThan(contents, maxDepth);
    if (deep !== undefined) {
      const loc = at(deep);
      out.errors.push(new PolicyError(file, loc.line, loc.column, "", depthMessage(maxDepth)));
      opaque();
      continue;
    }
    const js = safeToJS(doc);
    if (js.error !== undefined) {
      out.errors.push(
        new PolicyError(file, start.line, start.column, "", `cannot read document: ${js.error}`),
      );
      opaque();
      continue;
    }
    const result = validate(js.data);
    if (result.ok) {
      const policy: RolloutPolicy = { ...result.policy, source: start };
      // A preview route is looked up in the cluster later: its problems are told at the field's place.
      if (policy.previewRoute) {
        const named = at(
          locate(doc, { path: ["spec", "preview", "route", "name"], at: "value", message: "" }),
        );
        policy.previewRoute = { ...policy.previewRoute, at: named };
      }
      out.policies.push(policy);
      out.nameLocations.push(at(locate(doc, { path: ["metadata", "name"], at: "value", message: "" })));
    } else {
      for (const issue of result.issues) {
        const loc = at(locate(doc, issue));
        out.errors.push(new PolicyError(file, loc.line, loc.column, formatPath(issue.path), issue.message));
      }
      if (js.claimed !== undefined) out.brokenKeys.push(js.claimed);
      else opaque();
    }
  }
  out.errors.sort((a, b) => a.line - b.line || a.column - b.column);
  capErrors(out.errors, file);
  return out;
}

/** Keeps the first problems of a file and says how many more there are, so one file cannot flood the log. */
function capErrors(errors: PolicyError[], file: string): void {
  const max = POLICY_LIMITS.maxErrorsPerFile;
  if (errors.length <= max) return;
  const more = errors.length - max;
  errors.length = max;
  errors.push(new PolicyError(file, 0, 0, "", `and ${more} more problems in this file`));
}

function depthMessage(max: number): string {
  return `nested deeper than ${max} levels; a policy needs far fewer`;
}

/** Offset of the `n`-th document start marker (`---` at a line start), if the text has that many. */
function nthDocumentStart(text: string, n: number): number | undefined {
  const marker = /^---(?=[ \t\r\n]|$)/gm;
  let count = 0;
  let first = true;
  let m: RegExpExecArray | null;
  while ((m = marker.exec(text)) !== null) {
    // A leading marker opens the first document; it does not add one.
    const leading = first && text.slice(0, m.index).trim() === "";
    first = false;
    if (!leading && ++count >= n) return m.index;
  }
  return undefined;
}

/**
 * Offset where flow collections ([ and {) nest deeper than `max`, counted
 * naively (brackets inside quoted text count too: only a guard against
 * pathological input, set far above any real policy).
 */
function flowDepthBeyond(text: string, max: number): number | undefined {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return i;
    } else if ((c === 0x5d || c === 0x7d) && depth > 0) depth--;
  }
  return undefined;
}

function lineOf(text: string, offset: number): number {
  let line = 1;
  for (let i = text.indexOf("\n"); i !== -1 && i < offset; i = text.indexOf("\n", i + 1)) line++;
  return line;
}

/** Offset of the first node nested deeper than `max`, walking without recursion. */
function deeperThan(root: Node | null, max: number): number | undefined {
  const stack: Array<[unknown, number]> = [[root, 1]];
  while (stack.length > 0) {
    const [node, depth] = stack.pop()!;
    if (!isMap(node) && !isSeq(node)) continue;
    if (depth > max) return (node as Node).range?.[0] ?? 0;
    for (const item of node.items as unknown[]) {
      if (isMap(node)) {
        const pair = item as { key: unknown; value: unknown };
        stack.push([pair.key, depth + 1], [pair.value, depth + 1]);
      } else stack.push([item, depth + 1]);
    }
  }
  return undefined;
}

function safeToJS(doc: Document.Parsed): { data?: unknown; claimed?: string; error?: string } {
  try {
    const data: unknown = doc.toJS({ maxAliasCount: 100 });
    return { data, claimed: claimedPolicyKey(data) };
  } catch (err) {
    return { error: errorText(err) };
  }
}

/**
 * The source offset an issue points at: the value at its path ("value"), the
 * key of its last segment ("key": unknown fields), or for a missing field the
 * key of its closest existing parent (a missing spec.canary points at `spec:`).
 */
function locate(doc: Document.Parsed, issue: PolicyIssue): number {
  const root = doc.contents;
  const fallback = root?.range?.[0] ?? doc.range[0];
  let node: Node | null = root;
  let keyNode: Node | null = null;
  for (const seg of issue.path) {
    const next = child(doc, node, seg);
    if (next === undefined) {
      // Missing: the closest existing parent, by its key when it has one.
      return (keyNode ?? node)?.range?.[0] ?? fallback;
    }
    node = next.value;
    keyNode = next.key;
  }
  if (issue.at === "key" && keyNode !== null) return keyNode.range?.[0] ?? fallback;
  if (issue.at === "parent" && keyNode !== null) return keyNode.range?.[0] ?? fallback;
  // `canary:` with nothing after it: point at the key, not at the end of the line.
  const empty = isScalar(node) && node.value === null && node.range?.[0] === node.range?.[1];
  if (empty && keyNode !== null) return keyNode.range?.[0] ?? fallback;
  return node?.range?.[0] ?? keyNode?.range?.[0] ?? fallback;
}

function child(
  doc: Document.Parsed,
  parent: Node | null,
  seg: PathSegment,
): { key: Node | null; value: Node | null } | undefined {
  const node = isAlias(parent) ? (parent.resolve(doc) ?? null) : parent;
  if (isMap(node)) {
    const pair = node.items.find((p) => {
      const k: unknown = isScalar(p.key) ? p.key.value : p.key;
      return (typeof k === "string" || typeof k === "number") && String(k) === String(seg);
    });
    if (pair === undefined) return undefined;
    return { key: asNode(pair.key), value: asNode(pair.value) };
  }
  if (isSeq(node) && typeof seg === "number") {
    const item: unknown = node.items[seg];
    return item === undefined ? undefined : { key: null, value: asNode(item) };
  }
  return undefined;
}

function asNode(value: unknown): Node | null {
  return value !== null && typeof value === "object" && "range" in value ? (value as Node) : null;
}

// ---------------------------------------------------------------------------
// Directories

export interface LoadOptions extends PolicySchemaOptions {
  /**
   * key → file that currently owns the key. When a key is defined twice, the
   * owner keeps it and the other definition is the duplicate, whatever the
   * file names' order (the store passes the running policies here).
   */
  preferredSources?: ReadonlyMap<string, string>;
  /** Files larger than this are refused (default 1 MiB, the size limit of a ConfigMap). */
  maxFileBytes?: number;
  /**
   * What earlier loads parsed, by file name, kept by the caller between
   * loads: a file whose stat (inode, size, mtime, ctime) is unchanged is not
   * read or parsed again. Updated in place.
   */
  cache?: PolicyFileCache;
  /**
   * With a warm cache: only these file names may have changed (from the
   * directory watch), so only they are looked at; every other cached file is
   * reused without even a stat. Without it, every file is stat'ed.
   */
  only?: ReadonlySet<string>;
}

export interface CachedPolicyFile {
  signature: string;
  parsed: ParsedFile;
}

export type PolicyFileCache = Map<string, CachedPolicyFile>;

export interface PolicyDirResult extends PolicyFileResult {
  /** Every policy file found (read or not), in load order. */
  files: string[];
  /** False when the directory itself could not be listed: then nothing is known about its files. */
  dirReadable: boolean;
}

const POLICY_FILE = /\.ya?ml$/i;

/**
 * Loads every *.yaml / *.yml file directly inside `dir`, sorted by name.
 * Hidden entries are skipped: a ConfigMap volume keeps its real files under
 * `..data/` and exposes them as symlinks, which are followed.
 */
export async function loadPolicyDir(dir: string, opts: LoadOptions = {}): Promise<PolicyDirResult> {
  const result: PolicyDirResult = {
    policies: [],
    errors: [],
    brokenKeys: [],
    opaqueFiles: [],
    files: [],
    dirReadable: true,
  };
  const cache = opts.cache;
  const only = cache !== undefined && cache.size > 0 ? opts.only : undefined;
  let names: string[];
  if (only) {
    names = [...new Set([...cache!.keys(), ...[...only].filter(isPolicyFileName)])].sort(byName);
  } else {
    try {
      const entries = await readdir(dir, { withFileTypes: true });
      names = entries
        .filter((e) => isPolicyFileName(e.name) && !e.isDirectory())
        .map((e) => e.name)
        .sort(byName);
    } catch (err) {
      result.dirReadable = false;
      result.errors.push(new PolicyError(dir, 0, 0, "", `cannot read policy directory (${errorText(err)})`));
      return result;
    }
    if (cache) {
      const present = new Set(names);
      for (const name of [...cache.keys()]) if (!present.has(name)) cache.delete(name);
    }
  }

  let validator: ((data: unknown) => PolicyValidation) | undefined;
  const maxBytes = opts.maxFileBytes ?? POLICY_LIMITS.maxFileBytes;
  const parsed: { policy: RolloutPolicy; nameAt: SourceLocation }[] = [];
  // With a warm cache and a list of changed names, every other cached file is reused without a stat.
  const reused = (name: string) => only !== undefined && cache?.has(name) === true && !only.has(name);
  const stats = await statAll(
    dir,
    names.filter((name) => !reused(name)),
  );
  for (const name of names) {
    const file = join(dir, name);
    let one: ParsedFile;
    const cached = cache?.get(name);
    if (cached && reused(name)) {
      one = cached.parsed;
      result.files.push(file);
    } else {
      let text: string;
      let signature: string;
      try {
        const info = stats.get(name);
        if (info === undefined) throw new Error(`no stat of ${file}`);
        if (info instanceof Error) throw info;
        if (!info.isFile()) {
          cache?.delete(name);
          continue;
        }
        result.files.push(file);
        signature = `${info.ino}:${info.size}:${info.mtimeMs}:${info.ctimeMs}`;
        if (cached?.signature === signature) {
          collect(result, parsed, cached.parsed);
          continue;
        }
        if (info.size > maxBytes) {
          one = emptyParsed();
          one.errors.push(tooLarge(file, info.size, maxBytes));
          one.opaqueFiles.push(file);
          cache?.set(name, { signature, parsed: one });
          collect(result, parsed, one);
          continue;
        }
        text = await readFile(file, "utf8");
      } catch (err) {
        cache?.delete(name);
        if (errorCode(err) === "ENOENT") {
          // Deleted between listing and reading: it is gone, like any deleted file.
          if (result.files.at(-1) === file) result.files.pop();
          continue;
        }
        if (result.files.at(-1) !== file) result.files.push(file);
        result.errors.push(new PolicyError(file, 0, 0, "", `cannot read file (${errorText(err)})`));
        result.opaqueFiles.push(file);
        continue;
      }
      validator ??= createPolicyValidator(opts);
      one = parseFile(file, text, { validator });
      cache?.set(name, { signature, parsed: one });
    }
    collect(result, parsed, one);
  }
  return finish(result, parsed, opts);
}

/** Stats at once this many files: a rescan of a big folder costs a few wake-ups, not one per file. */
const STAT_CONCURRENCY = 64;

/**
 * The stat of every named file, or the error it gave, read STAT_CONCURRENCY at
 * a time (one after the other, each await was a round trip to the thread pool:
 * 1,000 files cost about 30 ms of CPU per rescan, in parallel about 6).
 */
async function statAll(dir: string, names: readonly string[]): Promise<Map<string, Stats | Error>> {
  const out = new Map<string, Stats | Error>();
  let next = 0;
  const worker = async () => {
    while (next < names.length) {
      const name = names[next++]!;
      try {
        out.set(name, await stat(join(dir, name)));
      } catch (err) {
        out.set(name, err instanceof Error ? err : new Error(String(err)));
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(STAT_CONCURRENCY, names.length) }, worker));
  return out;
}

function collect(
  result: PolicyDirResult,
  parsed: { policy: RolloutPolicy; nameAt: SourceLocation }[],
  one: ParsedFile,
): void {
  result.errors.push(...one.errors);
  result.brokenKeys.push(...one.brokenKeys);
  result.opaqueFiles.push(...one.opaqueFiles);
  one.policies.forEach((policy, i) => {
    parsed.push({ policy, nameAt: one.nameLocations[i] ?? policy.source });
  });
}

function finish(
  result: PolicyDirResult,
  parsed: { policy: RolloutPolicy; nameAt: SourceLocation }[],
  opts: LoadOptions,
): PolicyDirResult {
  // Duplicates: the first definition (or the preferred owner) wins.
  const winners = new Map<string, { policy: RolloutPolicy; nameAt: SourceLocation }>();
  for (const entry of parsed) {
    const key = entry.policy.key;
    const seen = winners.get(key);
    if (seen === undefined) {
      winners.set(key, entry);
      continue;
    }
    const preferred = opts.preferredSources?.get(key);
    const [keep, drop] =
      preferred !== undefined &&
      entry.policy.source.file === preferred &&
      seen.policy.source.file !== preferred
        ? [entry, seen]
        : [seen, entry];
    winners.set(key, keep);
    result.errors.push(
      new PolicyError(
        drop.nameAt.file,
        drop.nameAt.line,
        drop.nameAt.column,
        "metadata.name",
        `duplicate policy ${key}, first defined at ${formatLocation(keep.policy.source)}`,
      ),
    );
  }
  result.policies = parsed.filter((e) => winners.get(e.policy.key) === e).map((e) => e.policy);

  const order = new Map(result.files.map((f, i) => [f, i]));
  result.errors.sort(
    (a, b) => (order.get(a.file) ?? -1) - (order.get(b.file) ?? -1) || a.line - b.line || a.column - b.column,
  );
  return result;
}

function isPolicyFileName(name: string): boolean {
  return !name.startsWith(".") && !name.includes("/") && POLICY_FILE.test(name);
}

function byName(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function emptyParsed(): ParsedFile {
  return { policies: [], errors: [], brokenKeys: [], opaqueFiles: [], nameLocations: [] };
}

/** A file over the size cap, refused before it is read. */
export function tooLarge(file: string, size: number, max: number): PolicyError {
  return new PolicyError(
    file,
    0,
    0,
    "",
    `file is ${size} bytes, larger than the ${max}-byte limit (a ConfigMap's); not read`,
  );
}

function errorCode(err: unknown): string | undefined {
  return typeof err === "object" && err !== null && "code" in err && typeof err.code === "string"
    ? err.code
    : undefined;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function firstLine(text: string): string {
  return (text.split("\n")[0] ?? text).replace(/ at line \d+, column \d+:?$/, "").trim();
}
