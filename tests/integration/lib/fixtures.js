'use strict';
/*
 * fixtures.js - the shared test setup: the standard redis config of the
 * core tests, a before/after pair that starts redis-server + sluice for a
 * test file, and small assertions on ids and json envelopes.
 */
const assert = require('node:assert/strict');
const { after, before } = require('node:test');
const { connectRedis, startRedis } = require('./redis');
const { startSluice } = require('./sluice');

/*
 * The standard config (without "listen:") for a redis source "cache" on
 * redisPort. opts: {heartbeat, retry, maxLifetime, maxEvents, channels,
 * patterns, extraRoutes, logLevel}; durations as YAML strings ("1s").
 */
function redisConfig(redisPort, opts = {}) {
    const lines = [
        'sources:',
        '  - name: cache',
        '    type: redis',
        `    url: redis://127.0.0.1:${redisPort}`,
    ];
    if (opts.channels) {
        lines.push(`    channels: ${JSON.stringify(opts.channels)}`);
    }
    if (opts.patterns) {
        lines.push(`    patterns: ${JSON.stringify(opts.patterns)}`);
    }
    lines.push(
        'routes:',
        '  - path: /orders/{region}',
        '    topics: ["cache:orders:{region}"]',
        '  - path: /all',
        '    topics: ["cache:orders:*"]',
        '    event: topic',
        '  - path: /raw/{ch}',
        '    topics: ["cache:{ch}"]',
        '    format: raw',
        '  - path: /fixed',
        '    topics: ["cache:fixed"]',
        '    event: tick',
        ...(opts.extraRoutes || []),
        'stream:',
        `  retry: ${opts.retry || '2s'}`,
        `  heartbeat: ${opts.heartbeat || '15s'}`);
    if (opts.maxLifetime) {
        lines.push(`  max_lifetime: ${opts.maxLifetime}`);
    }
    if (opts.maxEvents) {
        lines.push('history:', `  max_events: ${opts.maxEvents}`);
    }
    lines.push(`logging: {level: ${opts.logLevel || 'info'}, format: text}`, '');
    return lines.join('\n');
}

/*
 * Registers before/after hooks that start a redis-server, a sluice with
 * redisConfig(port, opts) and a RESP client for publishing, and stop
 * them all. Returns the context object the hooks fill: {redis, sluice,
 * pub}.
 */
function useRedisSluice(opts = {}) {
    const ctx = { redis: null, sluice: null, pub: null };
    before(async () => {
        ctx.redis = await startRedis();
        ctx.sluice = await startSluice(redisConfig(ctx.redis.port, opts));
        ctx.pub = await connectRedis(ctx.redis.port);
    });
    after(async () => {
        if (ctx.pub) {
            ctx.pub.close();
        }
        if (ctx.sluice) {
            await ctx.sluice.stop();
        }
        if (ctx.redis) {
            await ctx.redis.stop();
        }
    });
    return ctx;
}

/*
 * Orders two ids "naturally": runs of digits compare as numbers, the rest
 * byte-wise. Ids are opaque (SPEC 3.2); this accepts both zero-padded and
 * plain counters such as "e1-9" < "e1-10".
 */
function compareIds(a, b) {
    const re = /(\d+|\D+)/g;
    const pa = a.match(re) || [];
    const pb = b.match(re) || [];
    for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
        const x = pa[i];
        const y = pb[i];
        if (/^\d/.test(x) && /^\d/.test(y)) {
            const d = BigInt(x) - BigInt(y);
            if (d !== 0n) {
                return d < 0n ? -1 : 1;
            }
        } else if (x !== y) {
            return x < y ? -1 : 1;
        }
    }
    return pa.length - pb.length;
}

function assertIncreasing(ids) {
    for (let i = 1; i < ids.length; i++) {
        assert.ok(compareIds(ids[i - 1], ids[i]) < 0,
            `ids not strictly increasing at ${i}: ${JSON.stringify(ids)}`);
    }
}

const ID_RE = /^[0-9A-Za-z._:-]+$/;
const TIME_RE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

/*
 * Parses a json-format event, checks the envelope's fixed parts (id equal
 * to the SSE id, source, time format, key set) and returns it. The time's
 * recency is checked only when asked: recentMs (the event must be at most
 * that old; replayed and restored events legitimately are not recent).
 */
function parseEnvelope(frame, { source = 'cache', topic, encoding = false, recentMs } = {}) {
    assert.ok(frame.id !== null && ID_RE.test(frame.id), `bad SSE id ${JSON.stringify(frame.id)}`);
    const env = JSON.parse(frame.data);
    const keys = ['id', 'payload', 'source', 'time', 'topic'];
    if (encoding) {
        keys.push('encoding');
    }
    assert.deepEqual(Object.keys(env).sort(), keys.sort(), `envelope keys of ${frame.data}`);
    assert.equal(env.id, frame.id, 'envelope id equals the SSE id');
    assert.equal(env.source, source);
    if (topic !== undefined) {
        assert.equal(env.topic, topic);
    }
    assert.match(env.time, TIME_RE);
    if (recentMs !== undefined) {
        const age = Date.now() - Date.parse(env.time);
        assert.ok(age > -2000 && age <= recentMs,
            `event time ${env.time} is ${age} ms old (at most ${recentMs} ms expected)`);
    }
    return env;
}

/* Frames that carry more than retry/comments (the stream's content). */
function contentFrames(client) {
    return client.frames.filter((f) => f.id !== null || f.event !== null || f.data !== null);
}

/* A payload unique to this run, so events are told apart exactly. */
let counter = 0;
function uniquePayload(extra = {}) {
    counter += 1;
    return JSON.stringify({ n: counter, pid: process.pid, ...extra });
}

/*
 * Reads every event of path from port until `want` events arrived (want:
 * a count, or a function (events) => true when done), the way
 * a browser does when the server cuts it (stream.max_pending, lifetime):
 * on each end of the stream it reconnects with Last-Event-ID of the last
 * event it holds. Asserts that no resume gives a reset and that the ids
 * are strictly increasing with no duplicate (so nothing was repeated),
 * and returns {events, cuts}. The caller checks the payloads (nothing
 * lost). opts: {headers, timeoutMs (for the whole read), maxCuts}.
 */
async function readResuming(port, path, want, opts = {}) {
    const { openSse } = require('./sse');
    const deadline = Date.now() + (opts.timeoutMs || 30000);
    const maxCuts = opts.maxCuts ?? 50;
    const events = [];
    let cuts = -1;
    const enough = typeof want === 'function' ? want : (evs) => evs.length >= want;
    const cap = typeof want === 'function' ? Infinity : want;
    while (!enough(events)) {
        cuts += 1;
        assert.ok(cuts <= maxCuts, `more than ${maxCuts} cuts; ${events.length} events`);
        const headers = { ...(opts.headers || {}) };
        if (events.length > 0) {
            headers['Last-Event-ID'] = events[events.length - 1].id;
        }
        const c = opts.first && cuts === 0 ? opts.first : await openSse(port, path, { headers });
        try {
            assert.equal(c.status, 200, `GET ${path}: ${c.raw.slice(0, 200)}`);
            const left = Math.max(1, deadline - Date.now());
            /* Incremental: each chunk looks only at the frames it added. */
            let seen = 0;
            const take = () => {
                for (; seen < c.frames.length; seen++) {
                    const f = c.frames[seen];
                    if (f.event === 'reset') {
                        throw new Error(`a reset on resume ${cuts}: ${c.describe()}`);
                    }
                    if (f.data !== null && events.length < cap) {
                        events.push(f);
                    }
                }
                return enough(events) || c.ended;
            };
            await c.waitUntil(take, `more events (${events.length} held, cut ${cuts} times so far)`, left);
            take();
        } finally {
            c.close();
        }
    }
    assertIncreasing(events.map((e) => e.id));
    return { events, cuts };
}

/*
 * Serves `page` (HTML) at "/" (any query) on 127.0.0.1:port for a browser
 * test, 404 elsewhere; resolves with the http.Server once it listens.
 */
function startPageServer(port, page) {
    const http = require('node:http');
    const server = http.createServer((req, res) => {
        if (req.method === 'GET' && new URL(req.url, 'http://x').pathname === '/') {
            res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
            res.end(page);
            return;
        }
        res.writeHead(404, { 'Content-Type': 'text/plain' });
        res.end('not found\n');
    });
    return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, '127.0.0.1', () => resolve(server));
    });
}

module.exports = {
    startPageServer,
    ID_RE,
    readResuming,
    assertIncreasing,
    compareIds,
    contentFrames,
    parseEnvelope,
    redisConfig,
    uniquePayload,
    useRedisSluice,
};
