/**
 * Which shard a policy belongs to, and how many shards one replica may hold.
 *
 * A policy is placed by its route (namespace, kind, name), not by its own
 * name: two policies naming one route must be judged by the same replica,
 * which lets the first by key own the route and reports the other (see
 * registry.ownerOf). The hash is FNV-1a (32 bit): stable across processes,
 * versions and platforms, so every replica agrees without talking.
 */
import type { RolloutPolicy } from "../policy/types.ts";

export function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

export function routeKey(p: Pick<RolloutPolicy, "namespace" | "target">): string {
  return `${p.namespace}/${p.target.kind}/${p.target.name}`;
}

export function shardOf(p: Pick<RolloutPolicy, "namespace" | "target">, shards: number): number {
  return fnv1a(routeKey(p)) % shards;
}

/** The most shards one of `live` replicas takes: together they cover every shard, none carries more than its part. */
export function fairShare(shards: number, live: number): number {
  return Math.ceil(shards / Math.max(1, live));
}
