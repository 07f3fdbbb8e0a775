// The feed tickscope's simulator makes, for the Node peers: the same twelve symbols and
// opening prices, Poisson arrivals at RATE ticks per second, a geometric Brownian motion per
// symbol, bid/ask from a per-symbol spread, volume in 100-share lots, a global seq from 1 and
// a timestamp `ts` in Unix microseconds. `ts` is the tick's arrival time, as tickscope's
// simulator stamps it: a server whose one thread is busy sending runs the timer late, and that
// wait is part of every client's lag (stamped when the timer ran, it was not: at 1,000 clients
// Bun's timer ran 10 ms late at the median). Each tick goes out as the batch tickscope's
// WebSocket sends: {"type":"batch","cursor":seq,"gap":false,"ticks":[tick]}.
'use strict';

// symbol, opening price, annual volatility, activity, spread (basis points)
const COMPANIES = [
  ['ACME', 142.5, 0.32, 1.4, 2.0], ['BLU', 61.2, 0.38, 1.0, 3.0],
  ['CRST', 318.75, 0.45, 1.8, 1.5], ['DLTA', 47.85, 0.2, 0.7, 4.0],
  ['EVRG', 88.1, 0.25, 1.1, 2.0], ['FLUX', 23.4, 0.65, 1.3, 6.0],
  ['GRNT', 104.3, 0.28, 0.6, 3.0], ['HLX', 76.95, 0.55, 0.9, 5.0],
  ['IONQ', 12.65, 0.8, 1.2, 8.0], ['JADE', 35.6, 0.22, 0.8, 3.0],
  ['KITE', 58.2, 0.3, 0.7, 3.0], ['LUMN', 29.15, 0.35, 0.9, 4.0],
];
const TRADING_YEAR_S = 252 * 6.5 * 3600;

// `at`, a `performance.now()` reading, in Unix microseconds.
function unixUs(at) {
  return Math.round((performance.timeOrigin + at) * 1000);
}

function gaussian() {
  const u = 1 - Math.random();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * Math.random());
}

// Calls `publish(batch)` with each tick's batch object until the process ends.
function start(rate, publish) {
  const symbols = COMPANIES.map(([symbol, open, volatility, activity, spreadBps]) => ({
    symbol, price: open, volatility, activity, spreadBps, lastS: 0,
  }));
  const totalActivity = symbols.reduce((sum, s) => sum + s.activity, 0);
  const started = performance.now();
  let seq = 0;

  // The tick that arrives at `due` (a `performance.now()` time, now or just past).
  function tick(due) {
    let pick = Math.random() * totalActivity;
    const s = symbols.find((candidate) => (pick -= candidate.activity) < 0) || symbols[0];
    const t = (due - started) / 1000;
    const dt = Math.max(t - s.lastS, 1e-6) / TRADING_YEAR_S;
    s.lastS = t;
    s.price *= Math.exp((0.05 - s.volatility ** 2 / 2) * dt + s.volatility * Math.sqrt(dt) * gaussian());
    const price = Math.round(s.price * 100) / 100;
    const half = Math.max(s.price * s.spreadBps / 20000, 0.005);
    const bid = Math.max(Math.floor((s.price - half) * 100) / 100, 0.01);
    const ask = Math.max(Math.ceil((s.price + half) * 100) / 100, bid + 0.01);
    const lots = Math.floor(Math.log(1 - Math.random()) / Math.log(0.65)) + 1;
    seq += 1;
    const data = { seq, symbol: s.symbol, price, bid, ask, volume: lots * 100, ts: unixUs(due) };
    publish({ type: 'batch', cursor: seq, gap: false, ticks: [data] });
  }

  // Poisson arrivals: wait until the next arrival, publish every tick that is due, repeat.
  const gapMs = () => (-Math.log(1 - Math.random()) / rate) * 1000;
  let next = performance.now() + gapMs();
  function wait() {
    setTimeout(() => {
      while (performance.now() >= next) {
        tick(next);
        next += gapMs();
      }
      wait();
    }, Math.max(0, next - performance.now()));
  }
  wait();
}

function options() {
  const port = Number(process.env.PORT || 18081);
  const rate = Number(process.env.RATE || 50);
  return { port, rate };
}

module.exports = { start, options };
