'use strict'
// The test helpers, one module per meaning; `require('./helpers')` gets them all.
//   wait.js       waiting for events, conditions and promises, with timeouts
//   net.js        loopback host, free ports, flooding a socket
//   wire.js       the wire written and read by hand: frames, session ids
//   legacy.js     ours and the published uhura 0.1.2 / 0.0.10, their quirks
//   resources.js  per-test servers, clients, raw sockets, closed at the end
//   exchange.js   checked traffic: ping/pong, acked sends, a full exchange
//   factory.js    transports of the factory hooks: net, an in-memory network
//   sessions.js   sessions and stores as the session tests compare them
//   redis.js      a private redis-server and a RESP client
//   process.js    the exit watchdog and node child processes
//   delivery.js   the delivery tests' servers, tallies and holding proxy
// None of these names ends in .test.js, so `node --test __test__/` runs none.

module.exports = {
  ...require('./wait'),
  ...require('./net'),
  ...require('./wire'),
  ...require('./legacy'),
  ...require('./resources'),
  ...require('./exchange'),
  ...require('./factory'),
  ...require('./sessions'),
  ...require('./redis'),
  ...require('./process'),
  ...require('./delivery'),
}
