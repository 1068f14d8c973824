'use strict';
/*
 * redis.js - a real redis-server (or Sentinel) for a test file, and a
 * tiny RESP client.
 *
 * The client speaks just enough RESP2 over node:net for the tests:
 * PING, PUBLISH, XADD and any other command whose reply is a simple
 * string, error, integer, bulk string or array. Arguments may be strings
 * or Buffers, so binary payloads (0xff 0xfe) go out byte for byte.
 * Written by hand (about 100 lines) because the only npm dependencies the
 * test suite allows are eventsource and playwright-core.
 */
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { freePort, makeTempDir, spawnTracked, stopProcess, waitFor, withTimeout } = require('./procs');

/* Encodes one command as a RESP array of bulk strings. */
function encodeCommand(args) {
    const parts = [Buffer.from(`*${args.length}\r\n`)];
    for (const arg of args) {
        const buf = Buffer.isBuffer(arg) ? arg : Buffer.from(String(arg), 'utf8');
        parts.push(Buffer.from(`$${buf.length}\r\n`), buf, Buffer.from('\r\n'));
    }
    return Buffer.concat(parts);
}

/*
 * Parses one reply at buf[pos]. Returns {value, next} or null when the
 * buffer does not hold the whole reply yet. Errors become Error values.
 */
function parseReply(buf, pos) {
    const eol = buf.indexOf('\r\n', pos);
    if (eol < 0) {
        return null;
    }
    const type = String.fromCharCode(buf[pos]);
    const line = buf.toString('utf8', pos + 1, eol);
    const after = eol + 2;
    switch (type) {
    case '+':
        return { value: line, next: after };
    case '-':
        return { value: new Error(line), next: after };
    case ':':
        return { value: Number(line), next: after };
    case '$': {
        const len = Number(line);
        if (len < 0) {
            return { value: null, next: after };
        }
        if (buf.length < after + len + 2) {
            return null;
        }
        return { value: buf.toString('utf8', after, after + len), next: after + len + 2 };
    }
    case '*': {
        const count = Number(line);
        if (count < 0) {
            return { value: null, next: after };
        }
        const items = [];
        let next = after;
        for (let i = 0; i < count; i++) {
            const item = parseReply(buf, next);
            if (!item) {
                return null;
            }
            items.push(item.value);
            next = item.next;
        }
        return { value: items, next };
    }
    default:
        throw new Error(`RESP: unexpected reply type ${JSON.stringify(type)}`);
    }
}

/* A connected client; replies are matched to commands in order. */
class RespClient {
    constructor(socket) {
        this.socket = socket;
        this.pending = [];
        this.buffer = Buffer.alloc(0);
        socket.on('data', (chunk) => this.onData(chunk));
        socket.on('error', (err) => this.failAll(err));
        socket.on('close', () => this.failAll(new Error('redis connection closed')));
    }

    onData(chunk) {
        this.buffer = Buffer.concat([this.buffer, chunk]);
        let pos = 0;
        for (;;) {
            const reply = this.pending.length ? parseReply(this.buffer, pos) : null;
            if (!reply) {
                break;
            }
            pos = reply.next;
            const { resolve, reject } = this.pending.shift();
            if (reply.value instanceof Error) {
                reject(reply.value);
            } else {
                resolve(reply.value);
            }
        }
        this.buffer = this.buffer.subarray(pos);
    }

    failAll(err) {
        for (const { reject } of this.pending.splice(0)) {
            reject(err);
        }
    }

    /* Sends a command; resolves with its reply, rejects on -ERR or when
     * no reply came within this.timeoutMs (default 5 s; a test that
     * pipelines thousands of commands on a loaded machine raises it). */
    command(...args) {
        return withTimeout(new Promise((resolve, reject) => {
            this.pending.push({ resolve, reject });
            this.socket.write(encodeCommand(args));
        }), `redis reply to ${String(args[0])}`, this.timeoutMs);
    }

    ping() { return this.command('PING'); }

    /* Resolves with the number of subscribers that received it. */
    publish(channel, message) { return this.command('PUBLISH', channel, message); }

    /* fields: flat [field, value, ...]; resolves with the entry id. */
    xadd(key, fields, id = '*') { return this.command('XADD', key, id, ...fields); }

    close() {
        this.socket.destroy();
    }
}

/* Connects to 127.0.0.1:port; resolves with a RespClient. */
function connectRedis(port) {
    return withTimeout(new Promise((resolve, reject) => {
        const socket = net.connect(port, '127.0.0.1');
        socket.once('error', reject);
        socket.once('connect', () => {
            socket.removeListener('error', reject);
            socket.setNoDelay(true);
            resolve(new RespClient(socket));
        });
    }), `connection to redis on port ${port}`);
}

/*
 * Starts redis-server on port (a free one when omitted), without
 * persistence, and waits until it answers PING. opts.aofDir: keep an
 * append-only file there instead (--appendonly yes), so that a restart
 * with the same aofDir, even after kill -9, has every write it
 * acknowledged; opts.args: more command line options. Resolves with
 * {port, child, stop()}: stop() kills it (SIGKILL by default, so the
 * daemon sees the connection die as a crash would).
 */
async function startRedis(port, opts = {}) {
    const p = port || await freePort();
    /* Its own dir: a replica's full sync writes dump.rdb there. */
    const persistence = opts.aofDir
        ? ['--appendonly', 'yes', '--dir', opts.aofDir]
        : ['--appendonly', 'no', '--dir', makeTempDir('sluice-redis-')];
    const child = spawnTracked('redis-server', [
        '--port', String(p), '--bind', '127.0.0.1', '--save', '',
        ...persistence, '--loglevel', 'warning', ...(opts.args || []),
    ]);
    await waitFor(async () => {
        if (child.exitCode !== null) {
            throw new Error(`redis-server exited: ${child.output}`);
        }
        const client = await connectRedis(p);
        try {
            return (await client.ping()) === 'PONG';
        } finally {
            client.close();
        }
    }, `redis-server on port ${p}`);
    return {
        port: p,
        child,
        stop: (signal = 'SIGKILL') => stopProcess(child, signal),
    };
}

/*
 * Starts a Redis Sentinel (redis-server --sentinel) on a free port that
 * monitors masterName at 127.0.0.1:masterPort with the given quorum,
 * with a config in a temp dir (Sentinel rewrites it). opts:
 * {downAfterMs (default 1000), failoverTimeoutMs (default 2000)}.
 * Resolves with {port, child, stop()} once it answers PING.
 */
async function startSentinel(masterName, masterPort, quorum, opts = {}) {
    const port = await freePort();
    const dir = makeTempDir('sluice-sentinel-');
    const conf = path.join(dir, 'sentinel.conf');
    fs.writeFileSync(conf, [
        `port ${port}`,
        'bind 127.0.0.1',
        `dir ${dir}`,
        'loglevel warning',
        `sentinel monitor ${masterName} 127.0.0.1 ${masterPort} ${quorum}`,
        `sentinel down-after-milliseconds ${masterName} ${opts.downAfterMs || 1000}`,
        `sentinel failover-timeout ${masterName} ${opts.failoverTimeoutMs || 2000}`,
        `sentinel parallel-syncs ${masterName} 1`,
        '',
    ].join('\n'));
    const child = spawnTracked('redis-server', [conf, '--sentinel']);
    await waitFor(async () => {
        if (child.exitCode !== null) {
            throw new Error(`redis sentinel exited: ${child.output}`);
        }
        const client = await connectRedis(port);
        try {
            return (await client.ping()) === 'PONG';
        } finally {
            client.close();
        }
    }, `redis sentinel on port ${port}`);
    return {
        port,
        child,
        stop: (signal = 'SIGKILL') => stopProcess(child, signal),
    };
}

module.exports = { connectRedis, encodeCommand, parseReply, startRedis, startSentinel };
