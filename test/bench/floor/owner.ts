/**
 * Floor program: Node 24 with only the dependencies the project's owner named, set up as a controller sets them
 * up, one watch open, and nothing of rolloutd's (stack.ts). client-node is imported from its entry point, as
 * rolloutd imports it. What any daemon built on that stack holds at rest before it caches one object of its own.
 */
import { KubeConfig, Watch } from "@kubernetes/client-node";
import { holdStack } from "./stack.ts";

await holdStack(KubeConfig, Watch);
