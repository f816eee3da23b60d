/**
 * The query language a policy may use: the names of the built-in templates
 * and the `{{variables}}` a raw query may contain, with the placeholder
 * parser. It belongs to the policy format (validate checks it without a
 * cluster or a Prometheus); src/analysis/templates.ts renders it.
 */

export const TEMPLATE_NAMES = [
  "request-success-rate",
  "error-rate",
  "latency-p99",
  "latency-p95",
  "latency-p50",
  "request-rate",
] as const;
export type TemplateName = (typeof TEMPLATE_NAMES)[number];

export const TEMPLATE_VARIABLES = [
  "canary",
  "stable",
  "namespace",
  "window",
  "route",
  "canaryDeployment",
  "stableDeployment",
] as const;
export type TemplateVariable = (typeof TEMPLATE_VARIABLES)[number];

export type TemplateErrorCode =
  "unknownTemplate" | "unknownVariable" | "missingVariable" | "invalidValue" | "malformedPlaceholder";

export class TemplateError extends Error {
  override readonly name = "TemplateError";
  readonly code: TemplateErrorCode;
  readonly variable: string | undefined;

  constructor(code: TemplateErrorCode, message: string, variable?: string) {
    super(message);
    this.code = code;
    this.variable = variable;
  }
}

export const PLACEHOLDER_RE = /\{\{\s*([^{}]*?)\s*\}\}/g;

export function isTemplateVariable(name: string): name is TemplateVariable {
  return (TEMPLATE_VARIABLES as readonly string[]).includes(name);
}

/**
 * The variables a query text uses, in order of first use. Throws TemplateError `unknownVariable` or
 * `malformedPlaceholder` — so a policy validator can reject `{{canry}}` before any value is known.
 */
export function queryVariables(text: string): TemplateVariable[] {
  const used: TemplateVariable[] = [];
  for (const match of text.matchAll(PLACEHOLDER_RE)) {
    const name = match[1] ?? "";
    if (!isTemplateVariable(name)) {
      throw new TemplateError(
        "unknownVariable",
        `unknown template variable {{${name}}}; known: ${TEMPLATE_VARIABLES.map((v) => `{{${v}}}`).join(" ")}`,
        name,
      );
    }
    if (!used.includes(name)) used.push(name);
  }
  const rest = text.replace(PLACEHOLDER_RE, "");
  const stray = rest.includes("{{") ? "{{" : rest.includes("}}") ? "}}" : undefined;
  if (stray !== undefined) {
    throw new TemplateError(
      "malformedPlaceholder",
      `unmatched "${stray}" in query: placeholders are {{name}}`,
    );
  }
  return used;
}
