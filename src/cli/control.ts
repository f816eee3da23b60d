/**
 * abort, pause, resume, retry, promote: each sets exactly the annotations a
 * plain `kubectl annotate` would set on the route. The daemon stays the only
 * writer of weights, so these work the same whether it runs or not (it acts
 * when it next sees the route).
 */
import { userInfo } from "node:os";
import { CustomObjectsApi, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { toKubeError } from "../kube/errors.ts";
import { kindInfo, kubeFrom, parseTarget, type GlobalOptions } from "./target.ts";
import { ANNOTATIONS, FIELD_MANAGER } from "../contract.ts";

export type ControlVerb = "abort" | "pause" | "resume" | "retry" | "promote";

/** The annotation changes for a verb (null removes). Exported for tests and docs. */
export function annotationsFor(
  verb: ControlVerb,
  opts: { reason?: string; now: Date; user: string },
): Record<string, string | null> {
  const token = opts.now.toISOString();
  switch (verb) {
    case "abort":
      return {
        [ANNOTATIONS.abort]: "true",
        [ANNOTATIONS.abortReason]: opts.reason ?? `aborted by ${opts.user} with rolloutd abort`,
      };
    case "pause":
      return { [ANNOTATIONS.pause]: "true" };
    case "resume":
      // Removes an annotation pause and, for a pause after drift, asks to re-apply the step.
      return { [ANNOTATIONS.pause]: null, [ANNOTATIONS.resume]: token };
    case "retry":
      return { [ANNOTATIONS.abort]: null, [ANNOTATIONS.abortReason]: null, [ANNOTATIONS.retry]: token };
    case "promote":
      return { [ANNOTATIONS.promote]: token };
  }
}

export async function controlCommand(
  verb: ControlVerb,
  routeArg: string,
  o: GlobalOptions & { reason?: string },
  out: { write(s: string): void },
): Promise<number> {
  const target = parseTarget(routeArg);
  const { kc, namespace } = kubeFrom(o);
  const k = await kindInfo(kc, target.kind);
  const annotations = annotationsFor(verb, { reason: o.reason, now: new Date(), user: userInfo().username });
  try {
    await kc.makeApiClient(CustomObjectsApi).patchNamespacedCustomObject(
      {
        group: k.group,
        version: k.version,
        namespace,
        plural: k.plural,
        name: target.name,
        body: { metadata: { annotations } },
        fieldManager: `${FIELD_MANAGER}-cli`,
      },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
  } catch (err) {
    const e = toKubeError(err, `annotate ${target.kind} ${namespace}/${target.name}`);
    throw new Error(
      (e as { isNotFound?: boolean }).isNotFound
        ? `${target.kind} ${namespace}/${target.name} not found`
        : e.message,
      { cause: err },
    );
  }
  const shown = Object.entries(annotations)
    .map(([key, v]) => (v === null ? `${key}-` : `${key}=${JSON.stringify(v)}`))
    .join(" ");
  out.write(`${target.kind.toLowerCase()}/${target.name} annotated: ${shown}\n`);
  return 0;
}
