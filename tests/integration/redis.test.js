'use strict';
/*
 * redis.test.js - the Redis pub/sub source under faults and edge cases
 * (SPEC 3.1, 6): a redis-server restart while a stream is open, one event
 * per message despite overlapping subscriptions, and max_payload.
 */
const assert = require('node:assert/strict');
const { after, before, describe, test } = require('node:test');
const { openSse, httpRequest } = require('./lib/sse');
const { waitFor } = require('./lib/procs');
const { connectRedis, startRedis } = require('./lib/redis');
const { startSluice, withLog } = require('./lib/sluice');
const { assertIncreasing, parseEnvelope, redisConfig, uniquePayload, useRedisSluice } = require('./lib/fixtures');

const ctx = useRedisSluice();
const it = (name, fn) => test(name, withLog(() => ctx.sluice, fn));

async function open(sluice, path) {
    const c = await openSse(sluice.port, path);
    assert.equal(c.status, 200, `GET ${path}: ${c.raw}`);
    await c.waitForFrame((f) => f.retry !== null, 'the retry frame');
    return c;
}

describe('redis-server restart', () => {
    it('keeps streams open, /readyz goes 503 then 200, events flow again', async () => {
        const c = await open(ctx.sluice, '/orders/rs');
        try {
            await ctx.pub.publish('orders:rs', '"before"');
            const [first] = await c.waitForEvents(1);
            ctx.pub.close();
            await ctx.redis.stop('SIGKILL');

            const down = await waitFor(async () => {
                const res = await httpRequest(ctx.sluice.port, '/readyz');
                return res.status === 503 && res;
            }, '/readyz 503 after redis died');
            assert.match(down.body, /cache/, `503 body names the source: ${down.body}`);
            const metrics = await httpRequest(ctx.sluice.port, '/metrics');
            assert.match(metrics.body, /^sluice_source_up\{source="cache"\} 0$/m);

            ctx.redis = await startRedis(ctx.redis.port);
            ctx.pub = await connectRedis(ctx.redis.port);
            await waitFor(async () => (await httpRequest(ctx.sluice.port, '/readyz')).status === 200,
                '/readyz 200 after redis came back', 15000, 100);
            assert.equal(c.ended, false, 'the stream stayed open');
            const up = await httpRequest(ctx.sluice.port, '/metrics');
            assert.match(up.body, /^sluice_source_up\{source="cache"\} 1$/m);

            const after = uniquePayload({ after: true });
            await ctx.pub.publish('orders:rs', after);
            const events = await c.waitForEvents(2);
            assert.equal(JSON.stringify(parseEnvelope(events[1]).payload), after);
            assertIncreasing([first.id, events[1].id]);
            assert.equal(c.ended, false);
        } finally {
            c.close();
        }
    });
});

describe('overlapping subscriptions', () => {
    const own = { redis: null, sluice: null, pub: null };
    before(async () => {
        own.redis = await startRedis();
        own.sluice = await startSluice(redisConfig(own.redis.port,
            { channels: ['orders:eu'], patterns: ['orders:*'] }));
        own.pub = await connectRedis(own.redis.port);
    });
    after(async () => {
        own.pub?.close();
        await own.sluice?.stop();
        await own.redis?.stop();
    });

    test('channel + pattern matching one PUBLISH give exactly one event', withLog(() => own.sluice, async () => {
        const eu = await open(own.sluice, '/orders/eu');
        const all = await open(own.sluice, '/all');
        try {
            const receivers = await own.pub.publish('orders:eu', '"one"');
            assert.equal(receivers, 2, 'redis delivered it to both subscriptions');
            await own.pub.publish('orders:eu', '"marker"');
            /* A second copy of "one" or "marker" (redis sends each twice)
             * would reach sluice before "end": "end" ends the check. */
            await own.pub.publish('orders:eu', '"end"');
            await eu.waitUntil(() => eu.events.some((e) => parseEnvelope(e).payload === 'end'), 'the end marker');
            await all.waitUntil(() => all.events.some((e) => parseEnvelope(e).payload === 'end'), 'the end marker');
            assert.deepEqual(eu.events.map((e) => parseEnvelope(e).payload), ['one', 'marker', 'end'], eu.describe());
            assert.deepEqual(all.events.map((e) => e.id), eu.events.map((e) => e.id), all.describe());
        } finally {
            eu.close();
            all.close();
        }
    }));
});

describe('max_payload (default 1 MiB)', () => {
    it('drops a 2 MiB message and delivers the next small one', async () => {
        const c = await open(ctx.sluice, '/orders/big');
        try {
            await ctx.pub.publish('orders:big', Buffer.alloc(2 << 20, 'x'));
            await ctx.pub.publish('orders:big', '"small"');
            await ctx.pub.publish('orders:big', '"marker"');
            await c.waitUntil(() => c.events.some((e) => parseEnvelope(e).payload === 'marker'), 'the marker');
            assert.deepEqual(c.events.map((e) => parseEnvelope(e).payload), ['small', 'marker'], c.describe());
            assert.equal((await httpRequest(ctx.sluice.port, '/healthz')).status, 200);
        } finally {
            c.close();
        }
    });

    it('delivers a payload just under 1 MiB', async () => {
        const c = await open(ctx.sluice, '/raw/nearlimit');
        try {
            const body = 'y'.repeat((1 << 20) - 1024);
            await ctx.pub.publish('nearlimit', body);
            const [ev] = await c.waitForEvents(1);
            assert.equal(ev.data.length, body.length);
            assert.equal(ev.data, body);
        } finally {
            c.close();
        }
    });
});
