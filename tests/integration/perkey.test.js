'use strict';
/*
 * perkey.test.js - per-key redis-stream routes (README "Resumable AI
 * responses and job streams"): a {param} in a stream key reads that key
 * on demand; the entry id is the SSE id; Last-Event-ID resumes with
 * XRANGE on any sluice process; the end entry is sent as "event: end",
 * then the stream closes and the reconnect gets 204; trimmed ids get a
 * reset; stream.max_keys answers overload; many keys share a handful of
 * Redis connections; auth binds a key to its owner; config errors carry
 * positions. Real redis-server, the real sluice, a raw SSE client.
 */
const assert = require('node:assert/strict');
const { after, before, describe, test } = require('node:test');
const { sleep, waitFor } = require('./lib/procs');
const { connectRedis, startRedis } = require('./lib/redis');
const { httpRequest, openSse } = require('./lib/sse');
const { nowSeconds, signJwt } = require('./lib/jwt');
const { runSluice, startSluice, withLog, writeConfig } = require('./lib/sluice');

const JWT_SECRET = 'perkey-test-secret-0123456789abcdef';
/* Deadlines sized for a loaded 2-core machine under ASan. */
const STEP_MS = 20000;

function config(redisPort, extra = {}) {
    return [
        'sources:',
        '  - name: ai',
        '    type: redis-stream',
        `    url: redis://127.0.0.1:${redisPort}`,
        'routes:',
        '  - path: /chat/{id}',
        '    topics: ["ai:chat:{id}"]',
        '    format: raw',
        '    data_field: t',
        '    end: {field: type, value: done}',
        '    public: true',
        '  - path: /job/{id}',
        '    topics: ["ai:job:{id}"]',
        '    public: true',
        '  - path: /live/{id}',
        '    topics: ["ai:live:{id}"]',
        '    format: raw',
        '    data_field: t',
        '    from: live',
        '    public: true',
        '  - path: /users/{user}/chat/{id}',
        '    topics: ["ai:user:{user}:{id}"]',
        '    format: raw',
        '    data_field: t',
        'auth:',
        '  jwt:',
        `    secret: ${JWT_SECRET}`,
        '    allow: ["/users/{sub}/*"]',
        'stream:',
        '  retry: 500ms',
        '  heartbeat: 1s',
        `  max_keys: ${extra.maxKeys || 10000}`,
        '  retry_overload: 7s',
        '  max_connections: 5000',
        'logging: {level: info, format: text}',
        '',
    ].join('\n');
}

const ctx = { redis: null, pub: null, sluice: null, other: null };

before(async () => {
    ctx.redis = await startRedis();
    ctx.pub = await connectRedis(ctx.redis.port);
    ctx.sluice = await startSluice(config(ctx.redis.port));
    ctx.other = await startSluice(config(ctx.redis.port));
});

after(async () => {
    if (ctx.pub) ctx.pub.close();
    for (const s of [ctx.sluice, ctx.other]) {
        if (s) await s.stop();
    }
    if (ctx.redis) await ctx.redis.stop();
});

let keySeq = 0;
function newId(prefix = 'k') {
    keySeq += 1;
    return `${prefix}${process.pid}x${keySeq}`;
}

async function xadd(key, ...fields) {
    return ctx.pub.command('XADD', key, '*', ...fields);
}

/* XADDs n tokens "t<i>" (1-based) to key every intervalMs; resolves
 * with their ids. */
async function produce(key, from, to, intervalMs) {
    const ids = [];
    for (let i = from; i <= to; i++) {
        ids.push(await xadd(key, 't', `t${i}`));
        if (intervalMs > 0) await sleep(intervalMs);
    }
    return ids;
}

const tokens = (client) => client.events.filter((e) => e.event === null);

describe('per-key routes', () => {
    test('a stream opened half-way through a generation gets every token from the start, ids = entry ids',
        withLog(() => ctx.sluice, async () => {
            const id = newId();
            const key = `chat:${id}`;
            const producing = produce(key, 1, 200, 5);
            await waitFor(async () => Number(await ctx.pub.command('XLEN', key)) >= 100,
                '100 entries', STEP_MS);
            const client = await openSse(ctx.sluice.port, `/chat/${id}`);
            assert.equal(client.status, 200);
            const ids = await producing;
            const got = await client.waitUntil(() => {
                const ev = tokens(client);
                return ev.length >= 200 ? ev : null;
            }, '200 tokens', STEP_MS);
            assert.deepEqual(got.map((e) => e.data), ids.map((_, i) => `t${i + 1}`));
            assert.deepEqual(got.map((e) => e.id), ids);
            client.close();
        }));

    test('Last-Event-ID = the 100th id on another sluice process gets 101..200 exactly, then the end',
        withLog(() => ctx.other, async () => {
            const id = newId();
            const key = `chat:${id}`;
            const ids = await produce(key, 1, 200, 0);
            const endId = await xadd(key, 'type', 'done', 't', '');
            const client = await openSse(ctx.other.port, `/chat/${id}`,
                { headers: { 'Last-Event-ID': ids[99] } });
            await client.waitForEnd(STEP_MS);
            const ev = client.events;
            assert.deepEqual(ev.slice(0, 100).map((e) => e.data),
                ids.slice(100).map((_, i) => `t${i + 101}`));
            assert.deepEqual(ev.slice(0, 100).map((e) => e.id), ids.slice(100));
            assert.equal(ev.length, 101, client.describe());
            assert.equal(ev[100].event, 'end');
            assert.equal(ev[100].id, endId);
        }));

    test('the end entry is sent as "event: end", the stream closes, and the reconnect gets 204',
        withLog(() => ctx.sluice, async () => {
            const id = newId();
            const key = `chat:${id}`;
            const client = await openSse(ctx.sluice.port, `/chat/${id}`);
            const a = await xadd(key, 't', 'hello');
            await client.waitForEvents(1, STEP_MS);
            const end = await xadd(key, 'type', 'done', 't', 'bye');
            await client.waitForEnd(STEP_MS);
            const ev = client.events;
            assert.deepEqual(ev.map((e) => [e.id, e.event, e.data]),
                [[a, null, 'hello'], [end, 'end', 'bye']]);
            const again = await httpRequest(ctx.sluice.port, `/chat/${id}`,
                { headers: { 'Last-Event-ID': end } });
            assert.equal(again.status, 204);
            /* A fresh "from: start" connect would only replay an ended key. */
            const fresh = await httpRequest(ctx.sluice.port, `/chat/${id}`);
            assert.equal(fresh.status, 204);
            /* A resume from before the end still gets the rest. */
            const late = await openSse(ctx.other.port, `/chat/${id}`,
                { headers: { 'Last-Event-ID': a } });
            await late.waitForEnd(STEP_MS);
            assert.deepEqual(late.events.map((e) => e.event), ['end']);
        }));

    test('a key created after the stream connected is waited for (heartbeats) and delivered',
        withLog(() => ctx.sluice, async () => {
            const id = newId();
            const client = await openSse(ctx.sluice.port, `/chat/${id}`);
            await client.waitUntil(() => client.comments.length >= 1, 'a heartbeat', STEP_MS);
            assert.equal(client.events.length, 0);
            const x = await xadd(`chat:${id}`, 't', 'first');
            const [ev] = await client.waitForEvents(1, STEP_MS);
            assert.equal(ev.id, x);
            assert.equal(ev.data, 'first');
            client.close();
        }));

    test('json format: the envelope with the entry fields as an object; from: live skips the past',
        withLog(() => ctx.sluice, async () => {
            const id = newId();
            await xadd(`job:${id}`, 'step', '1', 'of', '3');
            const job = await openSse(ctx.sluice.port, `/job/${id}`);
            const [ev] = await job.waitForEvents(1, STEP_MS);
            const env = JSON.parse(ev.data);
            assert.deepEqual(env.payload, { step: '1', of: '3' });
            assert.equal(env.id, ev.id);
            assert.equal(env.topic, `job:${id}`);
            job.close();

            await xadd(`live:${id}`, 't', 'old');
            const live = await openSse(ctx.sluice.port, `/live/${id}`);
            await sleep(300);
            const x = await xadd(`live:${id}`, 't', 'new');
            const [lv] = await live.waitForEvents(1, STEP_MS);
            assert.deepEqual([lv.id, lv.data], [x, 'new']);
            live.close();
        }));

    test('a trimmed key gives reset "expired"; a malformed id gives "unknown-id"',
        withLog(() => ctx.sluice, async () => {
            const id = newId();
            const key = `chat:${id}`;
            const ids = await produce(key, 1, 10, 0);
            await ctx.pub.command('XTRIM', key, 'MAXLEN', '5');
            const client = await openSse(ctx.sluice.port, `/chat/${id}`,
                { headers: { 'Last-Event-ID': ids[1] } });
            const reset = await client.waitForFrame((f) => f.event === 'reset', 'reset', STEP_MS);
            assert.deepEqual(JSON.parse(reset.data), { reason: 'expired', last_id: ids[1] });
            /* Then as a fresh "from: start" connect: what the key holds. */
            const got = await client.waitUntil(() => {
                const ev = tokens(client).filter((e) => e.event !== 'reset');
                return ev.length >= 5 ? ev : null;
            }, 'the 5 kept entries', STEP_MS);
            assert.deepEqual(got.map((e) => e.id), ids.slice(5));
            client.close();

            const bad = await openSse(ctx.sluice.port, `/chat/${id}`,
                { headers: { 'Last-Event-ID': 'not-an-id' } });
            const r2 = await bad.waitForFrame((f) => f.event === 'reset', 'reset', STEP_MS);
            assert.equal(JSON.parse(r2.data).reason, 'unknown-id');
            bad.close();

            /* A key that expired altogether. */
            await ctx.pub.command('DEL', key);
            const gone = await openSse(ctx.sluice.port, `/chat/${id}`,
                { headers: { 'Last-Event-ID': ids[9] } });
            const r3 = await gone.waitForFrame((f) => f.event === 'reset', 'reset', STEP_MS);
            assert.equal(JSON.parse(r3.data).reason, 'expired');
            gone.close();
        }));

    test('auth binds a key to its owner (JWT sub)', withLog(() => ctx.sluice, async () => {
        const token = signJwt('HS256', JWT_SECRET, { sub: 'alice', exp: nowSeconds() + 600 });
        const mine = await openSse(ctx.sluice.port, `/users/alice/chat/j1?token=${token}`);
        assert.equal(mine.status, 200);
        const x = await xadd('user:alice:j1', 't', 'hi alice');
        const [ev] = await mine.waitForEvents(1, STEP_MS);
        assert.deepEqual([ev.id, ev.data], [x, 'hi alice']);
        mine.close();
        const theirs = await httpRequest(ctx.sluice.port, `/users/bob/chat/j1?token=${token}`);
        assert.equal(theirs.status, 403);
        const none = await httpRequest(ctx.sluice.port, '/users/alice/chat/j1');
        assert.equal(none.status, 401);
    }));

    test('1000 keys with one client each: every entry within a second, on a handful of Redis connections',
        withLog(() => ctx.sluice, async () => {
            const n = 1000;
            const base = newId('many');
            const clients = [];
            for (let i = 0; i < n; i += 50) {
                clients.push(...await Promise.all(Array.from({ length: Math.min(50, n - i) },
                    (_, j) => openSse(ctx.sluice.port, `/chat/${base}-${i + j}`))));
            }
            await waitFor(async () => {
                const m = (await httpRequest(ctx.sluice.port, '/metrics')).body;
                return /sluice_perkey_keys (\d+)/.exec(m)[1] >= n;
            }, `${n} keys read`, STEP_MS);
            const list = await ctx.pub.command('CLIENT', 'LIST');
            const conns = String(list).trim().split('\n').length;
            /* Two sluice processes, each: the source's reader + two per-key
             * connections; plus this test's own client. */
            assert.ok(conns <= 8, `${conns} Redis connections for ${n} keys`);
            const sent = Date.now();
            const writer = await connectRedis(ctx.redis.port);
            await Promise.all(clients.map((_, i) =>
                writer.command('XADD', `chat:${base}-${i}`, '*', 't', `v${i}`)));
            writer.close();
            await Promise.all(clients.map((c, i) => c.waitUntil(
                () => tokens(c).find((e) => e.data === `v${i}`), `entry of key ${i}`, STEP_MS)));
            const took = Date.now() - sent;
            for (const c of clients) c.close();
            assert.ok(took < 1000, `all ${n} entries took ${took} ms`);
        }));
});

describe('per-key limits and metrics', () => {
    const lim = { redis: null, sluice: null };
    before(async () => {
        lim.redis = await startRedis();
        lim.sluice = await startSluice(config(lim.redis.port, { maxKeys: 2 }));
    });
    after(async () => {
        if (lim.sluice) await lim.sluice.stop();
        if (lim.redis) await lim.redis.stop();
    });

    test('beyond stream.max_keys: 200, retry: retry_overload, close; a key already read still opens',
        withLog(() => lim.sluice, async () => {
            const a = await openSse(lim.sluice.port, '/chat/a');
            const b = await openSse(lim.sluice.port, '/chat/b');
            await waitFor(async () => /sluice_perkey_keys 2/.test(
                (await httpRequest(lim.sluice.port, '/metrics')).body), '2 keys', STEP_MS);
            const c = await httpRequest(lim.sluice.port, '/chat/c');
            assert.equal(c.status, 200);
            assert.equal(c.body, 'retry: 7000\n\n');
            const a2 = await openSse(lim.sluice.port, '/chat/a');
            await a2.waitUntil(() => a2.raw.includes('retry: 500'), 'stream start', STEP_MS);
            const m = (await httpRequest(lim.sluice.port, '/metrics')).body;
            assert.match(m, /sluice_perkey_xread_total\{source="ai"\} \d+/);
            assert.match(m, /sluice_perkey_entries_total\{source="ai"\} 0/);
            assert.match(m, /sluice_clients_dropped_total\{reason="overload"\} 1/);
            for (const s of [a, b, a2]) s.close();
            await waitFor(async () => /sluice_perkey_keys 0/.test(
                (await httpRequest(lim.sluice.port, '/metrics')).body), 'keys released', STEP_MS);
        }));
});

describe('per-key config errors', () => {
    const head = [
        'listen: 127.0.0.1:18081',
        'sources:',
        '  - name: ai',
        '    type: redis-stream',
        '    url: redis://127.0.0.1:6379',
        '  - name: cache',
        '    type: redis',
        '    url: redis://127.0.0.1:6379',
        'routes:',
    ];
    async function check(lines) {
        const file = writeConfig([...head, ...lines, ''].join('\n'), 'perkey.yaml');
        const r = await runSluice(['--check', '-c', file]);
        return { code: r.code, out: `${r.stdout}${r.stderr}`, file };
    }

    test('a per-key topic mixed with other topics, with its position', async () => {
        const r = await check([
            '  - path: /chat/{id}',
            '    topics: ["ai:chat:{id}", "cache:other"]',
        ]);
        assert.equal(r.code, 1);
        assert.match(r.out, /perkey\.yaml:11:14: a per-key topic .* must be the route's only topic/);
    });

    test('a bad from, and end without field', async () => {
        const r = await check([
            '  - path: /chat/{id}',
            '    topics: ["ai:chat:{id}"]',
            '    from: middle',
            '    end: {value: done}',
        ]);
        assert.equal(r.code, 1);
        assert.match(r.out, /perkey\.yaml:12:11: .*from.*start.*live/);
        assert.match(r.out, /perkey\.yaml:13:10: .*field/);
    });

    test('from and end on a route that is not per-key', async () => {
        const r = await check([
            '  - path: /orders',
            '    topics: ["cache:orders"]',
            '    from: live',
            '    end: {field: type, value: done}',
        ]);
        assert.equal(r.code, 1);
        assert.match(r.out, /perkey\.yaml:12:5: from: only for a per-key route/);
        assert.match(r.out, /perkey\.yaml:13:10: end: only for a per-key route/);
    });

    test('data_field without format: raw', async () => {
        const r = await check([
            '  - path: /chat/{id}',
            '    topics: ["ai:chat:{id}"]',
            '    data_field: t',
        ]);
        assert.equal(r.code, 1);
        assert.match(r.out, /perkey\.yaml:12:5: data_field: needs format: raw/);
    });

    test('a per-key route passes --check', async () => {
        const r = await check([
            '  - path: /chat/{id}',
            '    topics: ["ai:chat:{id}"]',
            '    format: raw',
            '    data_field: t',
            '    from: live',
            '    end: {field: type, value: done}',
        ]);
        assert.equal(r.code, 0, r.out);
    });
});
