'use strict';
/*
 * guarantees.test.js - README claims that had no test of their own
 * (mapped in tests/GUARANTEES.md):
 *
 *   - reset "expired" caused by history.max_age and by history.max_bytes;
 *   - stream.max_lifetime closes each of 20 streams after 80-100% of it
 *     (plus the 250 ms housekeeping tick of bridge/bridge.c), spread out;
 *   - SIGTERM and SIGINT: each of 20 streams gets a final retry: within
 *     1-3 x stream.retry, spread out, and the exit status is 0;
 *   - SIGHUP with a token removed from the config closes its open stream;
 *     a changed broker URL is logged as needing a restart.
 */
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { after, before, describe, test } = require('node:test');
const { openSse } = require('./lib/sse');
const { waitFor } = require('./lib/procs');
const { connectRedis, startRedis } = require('./lib/redis');
const { startSluice, withLog } = require('./lib/sluice');

const TICK_MS = 250;          /* bridge/bridge.c: BRIDGE_TICK_MS */

const ctx = { redis: null, pub: null, sluices: [] };
before(async () => {
    ctx.redis = await startRedis();
    ctx.pub = await connectRedis(ctx.redis.port);
});
after(async () => {
    ctx.pub?.close();
    await Promise.all(ctx.sluices.map((s) => s.stop('SIGKILL')));
    await ctx.redis?.stop();
});

function config({ history = [], stream = [], auth = [], url } = {}) {
    return [
        'sources:',
        '  - name: cache',
        '    type: redis',
        `    url: ${url || `redis://127.0.0.1:${ctx.redis.port}`}`,
        'routes:',
        '  - path: /c/{ch}',
        '    topics: ["cache:c:{ch}"]',
        ...(history.length ? ['history:', ...history.map((l) => `  ${l}`)] : []),
        'stream:',
        '  heartbeat: 15s',
        ...stream.map((l) => `  ${l}`),
        ...auth,
        'shutdown_grace: 5s',
        'logging: {level: info, format: text}',
        '',
    ].join('\n');
}

async function launch(opts) {
    const s = await startSluice(config(opts));
    ctx.sluices.push(s);
    return s;
}

async function open(s, p, headers = {}) {
    const c = await openSse(s.port, p, { headers });
    assert.equal(c.status, 200, `GET ${p}: ${c.raw}`);
    await c.waitForFrame((f) => f.retry !== null, `the retry frame of ${p}`);
    return c;
}

const it = (name, get, fn) => test(name, withLog(get, fn));
const spread = (xs) => Math.max(...xs) - Math.min(...xs);

describe('reset "expired" end to end', () => {
    const own = { age: null, bytes: null };

    it('history.max_age: an id older than max_age gets reset "expired"', () => own.age, async () => {
        own.age = await launch({ history: ['max_age: 1s'] });
        const c = await open(own.age, '/c/age');
        /* The browser saw "old"; "missed" came after it, and both age
         * out: resuming from "old" cannot be exact any more. */
        await ctx.pub.publish('c:age', '"old"');
        await ctx.pub.publish('c:age', '"missed"');
        const [old] = await c.waitForEvents(2);
        c.close();
        /* Wait until the history no longer holds it (a condition, not a
         * sleep): sluice_history_events drops to 0. */
        await waitFor(async () => {
            const res = await (require('./lib/sse').httpRequest(own.age.port, '/metrics'));
            return /^sluice_history_events 0$/m.test(res.body);
        }, 'the event to age out of the history', 10000, 100);
        await ctx.pub.publish('c:age', '"new"');
        const r = await open(own.age, '/c/age', { 'Last-Event-ID': old.id });
        try {
            const first = await r.waitForFrame((f) => f.data !== null, 'the first event');
            assert.equal(first.event, 'reset', r.describe());
            assert.deepEqual(JSON.parse(first.data), { reason: 'expired', last_id: old.id });
        } finally {
            r.close();
        }
    });

    it('history.max_bytes: an id evicted for bytes gets reset "expired"', () => own.bytes, async () => {
        own.bytes = await launch({ history: ['max_bytes: 64KiB', 'max_events: 100000'] });
        const c = await open(own.bytes, '/c/bytes');
        await ctx.pub.publish('c:bytes', '"first"');
        const [first] = await c.waitForEvents(1);
        const big = JSON.stringify('y'.repeat(4096));
        for (let i = 0; i < 40; i++) {
            await ctx.pub.publish('c:bytes', big);
        }
        await c.waitForEvents(41, 10000);
        c.close();
        const r = await open(own.bytes, '/c/bytes', { 'Last-Event-ID': first.id });
        try {
            const f = await r.waitForFrame((x) => x.data !== null || x.event !== null, 'the first event');
            assert.equal(f.event, 'reset', r.describe());
            assert.deepEqual(JSON.parse(f.data), { reason: 'expired', last_id: first.id });
        } finally {
            r.close();
        }
    });
});

describe('stream.max_lifetime: 20 streams', () => {
    const own = { s: null };
    it('each closes after 80-100% of max_lifetime (+ one 250 ms tick), spread out', () => own.s, async (t) => {
        const LIFE = 4000;
        own.s = await launch({ stream: [`max_lifetime: ${LIFE}ms`, 'retry: 1s'] });
        const streams = await Promise.all(Array.from({ length: 20 }, () => open(own.s, '/c/life')));
        const opened = streams.map((c) => c.frames[0].at);
        await Promise.all(streams.map((c) => c.waitForEnd(LIFE + 5000)));
        const lives = streams.map((c, i) => c.endedAt - opened[i]);
        t.diagnostic(`lifetimes (ms): ${lives.sort((a, b) => a - b).join(' ')}`);
        for (const l of lives) {
            assert.ok(l >= 0.8 * LIFE - 50 && l <= LIFE + TICK_MS + 250,
                `a lifetime of ${l} ms is outside [${0.8 * LIFE}, ${LIFE}] + the tick`);
        }
        assert.ok(spread(lives) >= 0.05 * LIFE, `closes are spread, not at once: ${spread(lives)} ms`);
    });
});

describe('shutdown: a final retry spread over 1-3 x stream.retry', () => {
    for (const sig of ['SIGTERM', 'SIGINT']) {
        const own = { s: null };
        it(`${sig}: 20 streams each get retry in [1000, 3000] ms, spread; exit 0`, () => own.s, async (t) => {
            own.s = await launch({ stream: ['retry: 1s'] });
            const streams = await Promise.all(Array.from({ length: 20 }, () => open(own.s, '/c/term')));
            await ctx.pub.publish('c:term', '"before"');
            await Promise.all(streams.map((c) => c.waitForEvents(1)));
            const stopping = own.s.stop(sig);
            const finals = await Promise.all(streams.map((c) =>
                c.waitForFrame((f) => f.retry !== null && f !== c.frames[0], 'the final retry', 10000)));
            const res = await stopping;
            assert.deepEqual(res, { code: 0, signal: null }, `${sig}: exit 0`);
            const retries = finals.map((f) => f.retry);
            t.diagnostic(`${sig} final retry values (ms): ${retries.slice().sort((a, b) => a - b).join(' ')}`);
            for (const r of retries) {
                assert.ok(r >= 1000 && r <= 3000, `retry ${r} outside 1-3 x 1000 ms`);
            }
            assert.ok(new Set(retries).size >= 10 && spread(retries) >= 500,
                `spread over the range, not one value: ${retries}`);
            assert.match(own.s.stderr, new RegExp(sig === 'SIGINT' ? 'SIGINT|signal|shut' : 'SIGTERM|signal|shut', 'i'));
        });
    }
});

describe('SIGHUP', () => {
    const own = { s: null };
    it('a token removed from the config closes its open stream; the kept one stays', () => own.s, async () => {
        const auth = (names) => ['auth:', '  tokens:', ...names.flatMap((n) => [
            `    - name: ${n}`, `      token: tok-${n}-0123456789`])];
        own.s = await launch({ auth: auth(['keep', 'gone']) });
        const keep = await open(own.s, '/c/hup', { Authorization: 'Bearer tok-keep-0123456789' });
        const gone = await open(own.s, '/c/hup', { Authorization: 'Bearer tok-gone-0123456789' });
        try {
            fs.writeFileSync(own.s.configFile,
                `listen: 127.0.0.1:${own.s.port}\n${config({ auth: auth(['keep']) })}`);
            own.s.child.kill('SIGHUP');
            await gone.waitForEnd(10000);
            await ctx.pub.publish('c:hup', '"after"');
            const [ev] = await keep.waitForEvents(1);
            assert.equal(JSON.parse(ev.data).payload, 'after');
            assert.ok(!keep.ended, 'the stream whose token still resolves stays open');
        } finally {
            keep.close();
            gone.close();
        }
    });

    it('a changed broker URL is logged as needing a restart', () => own.s, async () => {
        const before = own.s.stderr.length;
        fs.writeFileSync(own.s.configFile, `listen: 127.0.0.1:${own.s.port}\n${config({
            url: 'redis://127.0.0.1:1' })}`);
        own.s.child.kill('SIGHUP');
        await waitFor(() => /restart/i.test(own.s.stderr.slice(before)), 'a log line saying a restart is needed', 10000);
        assert.match(own.s.stderr.slice(before), /source cache: connection settings changed; restart/);
    });
});
