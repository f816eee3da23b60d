/**
 * Floor program: as owner.ts, but client-node's two classes are taken from its internal modules, so the bundle
 * holds none of its typed APIs and models: the least the stack can hold, by a route rolloutd does not take (those
 * paths are not a public interface of the package).
 */
import { KubeConfig } from "@kubernetes/client-node/dist/config.js";
import { Watch } from "@kubernetes/client-node/dist/watch.js";
import { holdStack } from "./stack.ts";

await holdStack(KubeConfig, Watch);
