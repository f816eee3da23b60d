/**
 * A token bucket: the budget that keeps optional work (in-step checks) from
 * growing with the fleet. Time comes from the caller, so it is testable.
 */
export /** Tokens refill continuously up to `burst`; take() spends one if there is one. */
class TokenBucket {
  private tokens: number;
  private last: number | undefined;
  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
  ) {
    this.tokens = burst;
  }
  take(now: number): boolean {
    if (this.last !== undefined)
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.perSecond);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
