/**
 * Floor program: Node 24 with nothing loaded, woken every 2 s like a Lease renewal loop but doing no I/O. The
 * runtime's own cost, below which no Node daemon can go.
 */
setInterval(() => {}, 2000);
