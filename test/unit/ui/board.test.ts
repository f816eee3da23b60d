/**
 * The live page's in-memory view: what it keeps of each rollout, that it
 * stays bounded, and what its subscribers (the SSE clients) are told.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { RolloutState } from "../../../src/contract.ts";
import type { RolloutPolicy } from "../../../src/policy/types.ts";
import { RolloutBoard, type BoardUpdate } from "../../../src/ui/board.ts";

const policy = (name: string): RolloutPolicy => ({
  key: `shop/${name}`,
  name,
  namespace: "shop",
  target: { kind: "HTTPRoute", name },
  stable: "v1",
  canary: "v2",
  deployments: {},
  steps: [10, 50, 100],
  intervalMs: 60_000,
  routeReadyTimeoutMs: 60_000,
  source: { file: "p.yaml", line: 1, column: 1 },
});

const state = (at: number, weight: number, over: Partial<RolloutState> = {}): RolloutState => ({
  v: 1,
  phase: "Progressing",
  stable: "v1",
  canary: "v2",
  baseline: {},
  stepIndex: 0,
  canaryWeight: weight,
  failures: 0,
  noData: 0,
  errors: 0,
  tokens: {},
  message: `at ${weight}`,
  since: 0,
  updatedAt: at,
  ...over,
});

const analysis = (at: number, value: number | null) => ({
  at,
  stepIndex: 0,
  canaryWeight: 10,
  verdict: "pass" as const,
  summary: "",
  checks: [{ name: "p99", value, outcome: "value" as const, max: 500, verdict: "pass" as const }],
});

void describe("the rollout board", () => {
  void it("keeps weights and values per analysis, bounded, and tells subscribers", () => {
    const board = new RolloutBoard(() => 0, { points: 3, events: 2 });
    const updates: BoardUpdate[] = [];
    board.subscribe((u) => updates.push(u));
    const p = policy("web");
    for (let i = 1; i <= 5; i++)
      board.decided(p, state(i * 10, i * 10, { lastAnalysis: analysis(i * 10, i * 100) }), []);
    const card = board.get("shop/web")!;
    assert.deepEqual(card.weights, [30, 30, 40, 40, 50, 50]);
    assert.deepEqual(card.values.p99, [30, 300, 40, 400, 50, 500]);
    assert.deepEqual(card.bounds.p99, { max: 500 });
    for (const r of ["A", "B", "C"]) board.event(p, "Normal", r, r);
    assert.deepEqual(
      card.events.map((e) => e.reason),
      ["B", "C"],
    );
    assert.equal(updates.length, 5 + 3);
  });

  void it("an observed state already shown is not sent again; an abort shows its reason", () => {
    const board = new RolloutBoard(() => 0);
    const updates: BoardUpdate[] = [];
    board.subscribe((u) => updates.push(u));
    const p = policy("web");
    board.observed(p, state(10, 10));
    board.observed(p, state(10, 10));
    assert.equal(updates.length, 1);
    board.decided(
      p,
      state(20, 0, { phase: "Aborted", stepIndex: -1, abort: { at: 20, reason: "INC-1 (eve)" } }),
      [],
    );
    const card = board.get("shop/web")!;
    assert.equal(card.message, "aborted: INC-1 (eve); all traffic on v1");
    assert.equal(card.step, 0);
    assert.equal(updates.length, 2);
  });

  void it("holds at most `rollouts` cards, dropping the least recently updated, and says so", () => {
    const board = new RolloutBoard(() => 0, { rollouts: 2 });
    const updates: BoardUpdate[] = [];
    board.subscribe((u) => updates.push(u));
    board.observed(policy("a"), state(30, 10));
    board.observed(policy("b"), state(10, 10));
    board.observed(policy("c"), state(20, 10));
    assert.deepEqual(
      board.list().map((c) => c.policy),
      ["shop/a", "shop/c"],
    );
    assert.ok(updates.some((u) => u.type === "removed" && u.policy === "shop/b"));
    board.forget("shop/a");
    assert.deepEqual(
      board.list().map((c) => c.policy),
      ["shop/c"],
    );
  });
});
