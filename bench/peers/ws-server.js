// The feed over a plain Node `ws@8` server, broadcast the way its README shows:
// each tick is encoded once and sent to every open client.
'use strict';
const { WebSocketServer, WebSocket } = require('ws');
const feed = require('./feed');

const { port, rate } = feed.options();
const wss = new WebSocketServer({ host: '127.0.0.1', port, backlog: 4096 });
feed.start(rate, (batch) => {
  const text = JSON.stringify(batch);
  wss.clients.forEach((client) => {
    if (client.readyState === WebSocket.OPEN) client.send(text);
  });
});
wss.on('listening', () => console.log(`ws peer on ws://127.0.0.1:${port}/ at ${rate} ticks/s`));
