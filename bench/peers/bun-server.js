// The feed over Bun's own WebSocket server (uWebSockets inside), broadcast with its pub/sub
// the way Bun's documentation shows: each client subscribes to one topic on open, and each
// tick is encoded once and published to it.
'use strict';
const feed = require('./feed');

const { port, rate } = feed.options();
const server = Bun.serve({
  hostname: '127.0.0.1',
  port,
  fetch(request, server) {
    if (server.upgrade(request)) return undefined;
    return new Response('WebSocket only', { status: 400 });
  },
  websocket: {
    open(ws) {
      ws.subscribe('ticks');
    },
    message() {},
  },
});
feed.start(rate, (batch) => server.publish('ticks', JSON.stringify(batch)));
console.log(`bun peer on ws://127.0.0.1:${port}/ at ${rate} ticks/s (Bun ${Bun.version})`);
