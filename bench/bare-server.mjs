// Bare smtp-server baseline for benchmarks: accepts every message and discards it.
// Usage: node bench/bare-server.mjs [port]   -> prints "LISTENING <port>" once bound.
import { SMTPServer } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';

// smtp-server's SMTPConnection.init() waits a fixed 100 ms before the 220 greeting
// (to catch early talkers). That caps one-message-per-connection throughput at
// ~10 msgs/s per session, so the baseline would measure a sleep, not the server.
// This subclass replicates init() from dist/esm/smtp-connection.js (3.21.6)
// minus the timer.
class NoDelayConnection extends SMTPConnection {
  init() {
    this._setListeners(() => {
      // same connection limit check as the original
      if (this._server.options.maxClients && this._server.connections.size > this._server.options.maxClients) {
        return this.send(421, this.name + ' Too many connected clients, try again in a moment', false);
      }
      this.connectionReady();
    });
  }
}

// With --spool DIR it stores each message the way Portcullis does (same Spool class,
// fsync'ed before the 250): the like-for-like baseline for Portcullis's own overhead.
const spoolDir = process.argv.indexOf('--spool') > 0 ? process.argv[process.argv.indexOf('--spool') + 1] : null;
const spool = spoolDir ? new (await import('../dist/host/spool/spool.js')).Spool(spoolDir) : null;
const { newMessageId } = await import('../dist/host/spool/spool.js');

const server = new SMTPServer({
  authOptional: true,
  disabledCommands: ['AUTH', 'STARTTLS'],
  disableReverseLookup: true,
  logger: false,
  size: 1024 * 1024 * 1024, // 1 GB: never the limiting factor
  closeTimeout: 1000, // bounded shutdown if clients linger
  onData(stream, session, callback) {
    const chunks = [];
    stream.on('data', (c) => { if (spool) chunks.push(c); }); // drain (and keep, to spool)
    stream.on('error', () => {}); // client vanished mid-message: nothing to do
    stream.on('end', () => {
      if (!spool) return callback();
      const id = newMessageId();
      const env = { id, receivedAt: new Date().toISOString(), mailFrom: session.envelope.mailFrom.address, rcptTo: session.envelope.rcptTo.map((r) => r.address) };
      spool.store('spool', env, [Buffer.concat(chunks)]).then(() => callback(null, `Ok: queued as ${id}`), (e) => callback(e));
    });
  },
});

// Replicates SMTPServer.prototype.connect() from dist/esm/smtp-server.js (3.21.6)
// with the subclass above.
server.connect = function (socket, socketOptions) {
  const connection = new NoDelayConnection(this, socket, socketOptions);
  this.connections.add(connection);
  connection.on('error', (err) => this._onError(err));
  connection.on('connect', (data) => this._onClientConnect(data));
  connection.init();
};

// Per-connection errors (ECONNRESET when a client hangs up) must not crash the baseline.
server.on('error', (err) => {
  if (err && err.code !== 'ECONNRESET' && err.code !== 'EPIPE') console.error('bare-server error:', err.message);
});

const port = Number(process.argv[2] ?? 0) || 0;
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`LISTENING ${server.server.address().port}\n`);
});

let stopping = false;
const shutdown = () => {
  if (stopping) return;
  stopping = true;
  setTimeout(() => process.exit(0), 3000).unref(); // hard cap on shutdown time
  server.close(() => process.exit(0));
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
