'use strict';
/*
 * resume.test.js - Last-Event-ID resume (SPEC 4): exact replay with no
 * duplicate and no gap, the header against ?lastEventId=, "reset" for
 * unknown, expired and lost ids, filtered streams, and the npm
 * EventSource reconnecting by itself across max_lifetime closes.
 */
const assert = require('node:assert/strict');
const { after, before, describe, test } = require('node:test');
const { EventSource } = require('eventsource');
const { openSse } = require('./lib/sse');
const { sleep, waitFor } = require('./lib/procs');
const { connectRedis, startRedis } = require('./lib/redis');
const { startSluice, withLog } = require('./lib/sluice');
const { contentFrames, parseEnvelope, redisConfig, uniquePayload } = require('./lib/fixtures');

const ctx = { redis: null, pub: null, main: null, small: null, lifetime: null };

before(async () => {
    ctx.redis = await startRedis();
    ctx.pub = await connectRedis(ctx.redis.port);
    [ctx.main, ctx.small, ctx.lifetime] = await Promise.all([
        startSluice(redisConfig(ctx.redis.port)),
        startSluice(redisConfig(ctx.redis.port, { maxEvents: 3 })),
        startSluice(redisConfig(ctx.redis.port, { maxLifetime: '2s' })),
    ]);
});

after(async () => {
    ctx.pub?.close();
    await Promise.all([ctx.main, ctx.small, ctx.lifetime].map((s) => s?.stop()));
    await ctx.redis?.stop();
});

const it = (name, getSluice, fn) => test(name, withLog(getSluice, fn));

async function open(sluice, path, headers) {
    const c = await openSse(sluice.port, path, { headers });
    assert.equal(c.status, 200, `GET ${path}: ${c.raw}`);
    await c.waitForFrame((f) => f.retry !== null, 'the retry frame');
    return c;
}

/* Publishes n unique payloads to channel and returns them as received
 * (frames) on an already open stream c, checking the order. */
async function publishAndRead(c, channel, n) {
    const before = c.events.length;
    const sent = [];
    for (let i = 0; i < n; i++) {
        sent.push(uniquePayload({ i }));
        await ctx.pub.publish(channel, sent[i]);
    }
    const events = await c.waitForEvents(before + n);
    const got = events.slice(before);
    assert.deepEqual(got.map((e) => e.data && JSON.stringify(JSON.parse(e.data).payload)), sent);
    return got;
}

const payloadOf = (frame) => JSON.stringify(parseEnvelope(frame).payload);

/* Asserts that stream c starts with exactly `expected` (frames from an
 * earlier stream) and then delivers a live event, with nothing between;
 * a marker published after the live event ends the check. */
async function assertReplayThenLive(c, expected, channel) {
    const replay = await c.waitForEvents(expected.length);
    assert.deepEqual(replay.map((e) => e.id), expected.map((e) => e.id));
    assert.deepEqual(replay.map(payloadOf), expected.map(payloadOf));
    const live = uniquePayload({ live: true });
    const marker = uniquePayload({ marker: true });
    await ctx.pub.publish(channel, live);
    await ctx.pub.publish(channel, marker);
    await c.waitUntil(() => c.events.some((e) => payloadOf(e) === marker), 'the marker after the live event');
    assert.deepEqual(c.events.map(payloadOf), [...expected.map(payloadOf), live, marker],
        `the replay, the live event, the marker, nothing else: ${c.describe()}`);
    assert.ok(!contentFrames(c).some((f) => f.event === 'reset'), 'no reset');
}

describe('resume by id', () => {
    it('Last-Event-ID replays exactly the later events, then live ones', () => ctx.main, async () => {
        const first = await open(ctx.main, '/orders/r1');
        const ev = await publishAndRead(first, 'orders:r1', 5);
        first.close();
        const c = await open(ctx.main, '/orders/r1', { 'Last-Event-ID': ev[1].id });
        try {
            await assertReplayThenLive(c, ev.slice(2), 'orders:r1');
        } finally {
            c.close();
        }
    });

    it('?lastEventId= does the same', () => ctx.main, async () => {
        const first = await open(ctx.main, '/orders/r2');
        const ev = await publishAndRead(first, 'orders:r2', 5);
        first.close();
        const c = await open(ctx.main, `/orders/r2?lastEventId=${encodeURIComponent(ev[1].id)}`);
        try {
            await assertReplayThenLive(c, ev.slice(2), 'orders:r2');
        } finally {
            c.close();
        }
    });

    it('the header wins over the query parameter', () => ctx.main, async () => {
        const first = await open(ctx.main, '/orders/r3');
        const ev = await publishAndRead(first, 'orders:r3', 5);
        first.close();
        const c = await open(ctx.main, `/orders/r3?lastEventId=${encodeURIComponent(ev[0].id)}`,
            { 'Last-Event-ID': ev[2].id });
        try {
            await assertReplayThenLive(c, ev.slice(3), 'orders:r3');
        } finally {
            c.close();
        }
    });

    it('resuming from the newest id replays nothing', () => ctx.main, async () => {
        const first = await open(ctx.main, '/orders/r4');
        const ev = await publishAndRead(first, 'orders:r4', 2);
        first.close();
        const c = await open(ctx.main, '/orders/r4', { 'Last-Event-ID': ev[1].id });
        try {
            await assertReplayThenLive(c, [], 'orders:r4');
        } finally {
            c.close();
        }
    });

    it('a filtered stream resumes with only its own later events', () => ctx.main, async () => {
        const eu = await open(ctx.main, '/orders/feu');
        const sent = [];
        for (let i = 0; i < 3; i++) {
            sent.push(uniquePayload({ region: 'feu', i }));
            await ctx.pub.publish('orders:feu', sent[i]);
            await ctx.pub.publish('orders:fus', uniquePayload({ region: 'fus', i }));
        }
        const ev = await eu.waitForEvents(3);
        eu.close();
        const c = await open(ctx.main, '/orders/feu', { 'Last-Event-ID': ev[0].id });
        try {
            await assertReplayThenLive(c, ev.slice(1), 'orders:feu');
        } finally {
            c.close();
        }
    });
});

/* Waits for a reset frame and checks it is the first content frame. */
async function expectReset(c, reason, lastId) {
    const reset = await c.waitForFrame((f) => f.event === 'reset', 'event: reset');
    assert.equal(contentFrames(c)[0], reset, `reset comes first: ${c.describe()}`);
    let data;
    assert.doesNotThrow(() => { data = JSON.parse(reset.data); }, `reset data is JSON: ${JSON.stringify(reset.data)}`);
    assert.deepEqual(data, { reason, last_id: lastId });
    return reset;
}

/* After a reset: no replay, then a live event arrives (the marker: a
 * replay would come between the reset and it). */
async function expectFreshLive(c, channel) {
    const live = uniquePayload({ live: true });
    await ctx.pub.publish(channel, live);
    const events = await c.waitForEvents(2);
    assert.equal(payloadOf(events[1]), live, `the live event right after the reset: ${c.describe()}`);
    assert.equal(contentFrames(c).filter((f) => f.data !== null).length, 2, `no replay: ${c.describe()}`);
}

describe('reset', () => {
    it('an unknown id starts with reset "unknown-id", then live events', () => ctx.main, async () => {
        const first = await open(ctx.main, '/orders/u1');
        await publishAndRead(first, 'orders:u1', 2);
        first.close();
        const c = await open(ctx.main, '/orders/u1', { 'Last-Event-ID': 'zzz-1' });
        try {
            await expectReset(c, 'unknown-id', 'zzz-1');
            await expectFreshLive(c, 'orders:u1');
        } finally {
            c.close();
        }
    });

    it('an evicted id starts with reset "expired" (max_events: 3)', () => ctx.small, async () => {
        const first = await open(ctx.small, '/orders/x1');
        const ev = await publishAndRead(first, 'orders:x1', 10);
        first.close();
        const c = await open(ctx.small, '/orders/x1', { 'Last-Event-ID': ev[0].id });
        try {
            await expectReset(c, 'expired', ev[0].id);
            await expectFreshLive(c, 'orders:x1');
        } finally {
            c.close();
        }
    });

    it('an id still held after eviction resumes exactly (max_events: 3)', () => ctx.small, async () => {
        const first = await open(ctx.small, '/orders/x2');
        const ev = await publishAndRead(first, 'orders:x2', 10);
        first.close();
        const c = await open(ctx.small, '/orders/x2', { 'Last-Event-ID': ev[7].id });
        try {
            await assertReplayThenLive(c, ev.slice(8), 'orders:x2');
        } finally {
            c.close();
        }
    });

    it('an id from before a restart (history lost) gives reset "unknown-id"', () => ctx.small, async () => {
        const first = await open(ctx.small, '/orders/x3');
        const before = await publishAndRead(first, 'orders:x3', 2);
        first.close();
        await ctx.small.restart();
        const probe = await open(ctx.small, '/orders/x3');
        const afterRestart = await publishAndRead(probe, 'orders:x3', 3);
        probe.close();
        const oldIds = before.map((e) => e.id);
        for (const e of afterRestart) {
            assert.ok(!oldIds.includes(e.id), `id ${e.id} reused after a restart`);
        }
        const c = await open(ctx.small, '/orders/x3', { 'Last-Event-ID': before[1].id });
        try {
            await expectReset(c, 'unknown-id', before[1].id);
            await expectFreshLive(c, 'orders:x3');
        } finally {
            c.close();
        }
    });
});

describe('max_lifetime: 2s', () => {
    it('closes a stream after 80-100% of max_lifetime', () => ctx.lifetime, async () => {
        const started = Date.now();
        const c = await open(ctx.lifetime, '/orders/life');
        await c.waitForEnd(4000);
        const lived = Date.now() - started;
        assert.ok(lived >= 1500 && lived <= 2600, `stream lived ${lived} ms`);
    });

    it('npm EventSource reconnects with Last-Event-ID and loses nothing', () => ctx.lifetime, async () => {
        const es = new EventSource(ctx.lifetime.url('/orders/flow'));
        const received = [];
        let opens = 0;
        es.onopen = () => { opens += 1; };
        es.onmessage = (e) => received.push({ id: e.lastEventId, data: e.data });
        try {
            await waitFor(() => opens > 0, 'the EventSource to open');
            const sent = [];
            const stop = Date.now() + 5000;
            while (Date.now() < stop) {
                sent.push(uniquePayload({ flow: sent.length }));
                await ctx.pub.publish('orders:flow', sent[sent.length - 1]);
                await sleep(100);
            }
            /* A marker after the flow ends the check. */
            const marker = uniquePayload({ marker: true });
            await ctx.pub.publish('orders:flow', marker);
            await waitFor(() => received.some((r) => JSON.stringify(JSON.parse(r.data).payload) === marker),
                `the marker after ${sent.length} events (have ${received.length})`, 8000);
            assert.ok(opens >= 2, `the stream was reopened (opens: ${opens})`);
            const payloads = received.map((r) => JSON.stringify(JSON.parse(r.data).payload));
            assert.deepEqual(payloads, [...sent, marker], 'every event exactly once, in order, then the marker');
            assert.deepEqual(received.map((r) => r.id), received.map((r) => JSON.parse(r.data).id));
        } finally {
            es.close();
        }
    });
});
