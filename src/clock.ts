/**
 * Time as a seam: the engine stores deadlines as wall-clock instants and asks
 * the clock for "now", so unit tests can move time without sleeping.
 */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };
