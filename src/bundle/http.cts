/**
 * `node:http` for the bundle, taken as CommonJS exports. Node builds an ES module's view of a builtin by reading
 * every export, and `node:http`'s include the lazy `WebSocket`, `CloseEvent` and `MessageEvent`: one `import` of
 * it loads Node's own copy of undici (the fetch implementation), which the daemon never uses — client-node brings
 * its own — at about 8 MB of resident memory. `npm run bundle` aliases `http` and `node:http` to this file.
 */
export = process.getBuiltinModule("node:http");
