/**
 * Writes through the API with one field manager name, JSON Patch only: the
 * routers change single fields and nothing else, so a patch says exactly
 * what we own.
 */
import { PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { FIELD_MANAGER } from "../contract.ts";
import type { JsonPatchOp, ObjectWriter } from "./access.ts";
import type { KubeClients } from "./client.ts";
import { toKubeError } from "./errors.ts";
import { KINDS, type KindInfo, type KindName, type KObject, type ObjectRef } from "./kinds.ts";

export class KubeWriter implements ObjectWriter {
  constructor(
    private readonly clients: KubeClients,
    /** The version the cluster serves (the watch's, from discovery); the declared one by default. */
    private readonly served: (kind: KindName) => KindInfo = (kind) => KINDS[kind],
  ) {}

  async jsonPatch(ref: ObjectRef, ops: JsonPatchOp[]): Promise<KObject> {
    const k = this.served(ref.kind);
    const what = `patch ${k.kind} ${ref.namespace}/${ref.name}`;
    const opts = setHeaderOptions("Content-Type", PatchStrategy.JsonPatch);
    try {
      if (ref.kind === "Deployment") {
        return await this.clients.apps.patchNamespacedDeployment(
          { name: ref.name, namespace: ref.namespace, body: ops, fieldManager: FIELD_MANAGER },
          opts,
        );
      }
      return (await this.clients.custom.patchNamespacedCustomObject(
        {
          group: k.group,
          version: k.version,
          namespace: ref.namespace,
          plural: k.plural,
          name: ref.name,
          body: ops,
          fieldManager: FIELD_MANAGER,
        },
        opts,
      )) as KObject;
    } catch (err) {
      throw toKubeError(err, what);
    }
  }

  async create(ref: ObjectRef, obj: KObject): Promise<KObject> {
    const k = this.custom(ref.kind);
    try {
      return (await this.clients.custom.createNamespacedCustomObject({
        group: k.group,
        version: k.version,
        namespace: ref.namespace,
        plural: k.plural,
        body: { ...obj, apiVersion: `${k.group}/${k.version}`, kind: k.kind },
        fieldManager: FIELD_MANAGER,
      })) as KObject;
    } catch (err) {
      throw toKubeError(err, `create ${k.kind} ${ref.namespace}/${ref.name}`);
    }
  }

  async delete(ref: ObjectRef, preconditions: { uid: string; resourceVersion: string }): Promise<void> {
    const k = this.custom(ref.kind);
    try {
      await this.clients.custom.deleteNamespacedCustomObject({
        group: k.group,
        version: k.version,
        namespace: ref.namespace,
        plural: k.plural,
        name: ref.name,
        body: { preconditions },
      });
    } catch (err) {
      throw toKubeError(err, `delete ${k.kind} ${ref.namespace}/${ref.name}`);
    }
  }

  /** rolloutd creates and deletes only custom objects of its own (never Deployments). */
  private custom(kind: KindName): KindInfo {
    if (kind === "Deployment") throw new Error("rolloutd never creates or deletes Deployments");
    return this.served(kind);
  }
}
