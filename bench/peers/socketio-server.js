// The feed over a Socket.IO 4.8 server, broadcast the way its docs show: one
// `io.emit('batch', ...)` per tick reaches every connected client.
'use strict';
const { createServer } = require('http');
const { Server } = require('socket.io');
const feed = require('./feed');

const { port, rate } = feed.options();
const http = createServer();
const io = new Server(http, { transports: ['websocket'] });
// Socket.IO encodes each emitted packet once for all its clients.
feed.start(rate, (batch) => io.emit('batch', batch));
http.listen({ host: '127.0.0.1', port, backlog: 4096 }, () =>
  console.log(`socket.io peer on ws://127.0.0.1:${port}/socket.io/ at ${rate} ticks/s`));
