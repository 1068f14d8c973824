'use strict';
/*
 * replica_log.test.js - the shared history (history.redis) at the edges:
 * a redis-stream source across a leader kill (nothing lost, nothing
 * repeated: its read position is stored with each append), a SIGTERM that
 * hands the lease over at once, resets that stay exact (an id older than
 * the log's first entry: expired; another log's id, or one from before
 * Redis lost the log: unknown-id), Redis down and back (streams stay
 * open, /readyz 503 then 200), and the config errors. The browser and
 * proxy scenarios are in replicas.test.js.
 */
const assert = require('node:assert/strict');
const { after, before, describe, test } = require('node:test');
const { httpRequest, openSse } = require('./lib/sse');
const fs = require('node:fs');
const { makeTempDir, waitFor } = require('./lib/procs');

const AOF = ['--appendfsync', 'always'];
const { connectRedis, startRedis } = require('./lib/redis');
const { runSluice, startSluice, writeConfig } = require('./lib/sluice');

const LEASE_MS = 1000;
const env = { ...process.env, SLUICE_INGEST_LEASE_MS: String(LEASE_MS), SLUICE_REDIS_KEEPALIVE_MS: '1500' };

function config(redisPort, key, extra = '') {
    return [
        'sources:',
        '  - name: audit',
        '    type: redis-stream',
        `    url: redis://127.0.0.1:${redisPort}`,
        '    streams: ["audit"]',
        'routes:',
        '  - path: /audit',
        '    topics: ["audit:audit"]',
        '  - path: /job/{id}',
        '    topics: ["audit:job:{id}"]',
        'history:',
        `  redis: redis://127.0.0.1:${redisPort}/0`,
        `  key: ${key}`,
        extra,
        'stream:',
        '  retry: 200ms',
        'shutdown_grace: 1s',
        '',
    ].join('\n');
}

async function open(port, headers = {}) {
    const c = await openSse(port, '/audit', { headers });
    assert.equal(c.status, 200);
    await c.waitForFrame((f) => f.retry !== null, 'the retry frame');
    return c;
}

function payloadN(ev) {
    return Number(JSON.parse(JSON.parse(ev.data).payload.n));
}

/* Entries of the audit source this replica has read from the log. */
async function received(port) {
    const res = await httpRequest(port, '/metrics');
    const m = /^sluice_events_received_total\{source="audit"\} (\d+)$/m.exec(res.body);
    return m ? Number(m[1]) : 0;
}

async function leaderOf(replicas) {
    const flags = await Promise.all(replicas.map(async (s) => {
        const res = await httpRequest(s.port, '/metrics');
        return /^sluice_ingest_leader\{source="audit"\} 1$/m.test(res.body);
    }));
    return flags;
}

describe('a redis-stream source on two replicas', () => {
    const ctx = { redis: null, pub: null, a: null, b: null };
    before(async () => {
        ctx.redis = await startRedis();
        ctx.pub = await connectRedis(ctx.redis.port);
        const cfg = config(ctx.redis.port, 'it-rs');
        ctx.a = await startSluice(cfg, { env });
        ctx.b = await startSluice(cfg, { env });
    });
    after(async () => {
        ctx.pub?.close();
        await ctx.a?.stop();
        await ctx.b?.stop();
        await ctx.redis?.stop();
    });

    test('one leader; the same ids on both; a leader kill loses and repeats nothing', async () => {
        await waitFor(async () => {
            const flags = await leaderOf([ctx.a, ctx.b]);
            return flags.filter(Boolean).length === 1;
        }, 'exactly one ingest leader');
        const [aLeads] = await leaderOf([ctx.a, ctx.b]);
        const leader = aLeads ? ctx.a : ctx.b;
        const follower = aLeads ? ctx.b : ctx.a;

        const onA = await open(ctx.a.port);
        const onB = await open(ctx.b.port);
        const N = 300;
        let killed = false;
        for (let i = 1; i <= N; i++) {
            await ctx.pub.xadd('audit', ['n', String(i)]);
            if (i === 100) {
                const first = await onB.waitForEvents(50);
                assert.equal(payloadN(first[0]), 1);
                await leader.stop('SIGKILL');
                killed = true;
            }
        }
        assert.ok(killed);
        const events = await onB.waitForEvents(N, 20000);
        assert.deepEqual(events.map(payloadN), Array.from({ length: N }, (_, k) => k + 1),
            'every entry once, in order, across the takeover');
        /* The killed replica's stream saw a prefix with the very same ids. */
        const seenOnA = onA.events;
        assert.ok(seenOnA.length >= 1);
        seenOnA.forEach((ev, k) => assert.equal(ev.id, events[k].id, `id ${k} the same on both`));
        onA.close();
        onB.close();
        assert.match((await httpRequest(follower.port, '/metrics')).body,
            /^sluice_ingest_leader\{source="audit"\} 1$/m);

        /* The killed one comes back as a follower and resumes a browser
         * from an id the other one gave out. */
        await leader.start();
        const resumed = await open(leader.port, { 'Last-Event-ID': events[N - 11].id });
        const rest = await resumed.waitForEvents(10);
        assert.deepEqual(rest.map(payloadN), Array.from({ length: 10 }, (_, k) => N - 9 + k));
        assert.ok(!resumed.frames.some((f) => f.event === 'reset'));
        resumed.close();
    });

    test('per-key routes work on every replica, the leader or not', async () => {
        for (const s of [ctx.a, ctx.b]) {
            const key = `job:${s.port}`;
            await ctx.pub.xadd(key, ['t', 'one']);
            const c = await openSse(s.port, `/job/${s.port}`);
            assert.equal(c.status, 200);
            const [ev] = await c.waitForEvents(1);
            assert.match(ev.data, /"t":"one"/);
            c.close();
        }
        /* The follower reads no configured stream: it appended nothing. */
        const flags = await leaderOf([ctx.a, ctx.b]);
        const follower = flags[0] ? ctx.b : ctx.a;
        const m = (await httpRequest(follower.port, '/metrics')).body;
        assert.match(m, /^sluice_history_append_dropped_total 0$/m);
    });

    test('SIGTERM hands the lease over without waiting for it to expire', async () => {
        const flags = await leaderOf([ctx.a, ctx.b]);
        const leader = flags[0] ? ctx.a : ctx.b;
        const other = flags[0] ? ctx.b : ctx.a;
        const t0 = Date.now();
        await leader.stop('SIGTERM');
        await waitFor(async () => (await leaderOf([other]))[0], 'the other replica to lead', 5000, 20);
        const took = Date.now() - t0;
        assert.ok(took < LEASE_MS, `took over in ${took} ms (lease ${LEASE_MS} ms)`);
        assert.match(leader.stderr, /history: lost the lease for source audit/);
        await leader.start();
    });
});

describe('resets stay exact with a shared log', () => {
    const ctx = { redis: null, pub: null, s: null };
    before(async () => {
        ctx.redis = await startRedis();
        ctx.pub = await connectRedis(ctx.redis.port);
        ctx.s = await startSluice(config(ctx.redis.port, 'it-reset', '  max_events: 10'), { env });
    });
    after(async () => {
        ctx.pub?.close();
        await ctx.s?.stop();
        await ctx.redis?.stop();
    });

    test('an id trimmed out of the log: expired; another log\'s: unknown-id', async () => {
        /* One event first, to have its id; then 200 more, 5 at a time,
         * each batch read before the next: max_events 10 trims hard, and
         * a reader that fell behind it would (rightly) cut its streams.
         * A batch must stay under max_events: the leader may append a
         * whole batch in one go, and MAXLEN ~ 10 then keeps only the
         * newest 10 or a few more. */
        const c = await open(ctx.s.port);
        await ctx.pub.xadd('audit', ['n', '1']);
        const [first] = await c.waitForEvents(1);
        c.close();
        for (let i = 2; i <= 200; i++) {
            await ctx.pub.xadd('audit', ['n', String(i)]);
            if (i % 5 === 0) {
                await waitFor(async () => (await received(ctx.s.port)) >= i,
                    `the replica to read ${i} entries`, 20000, 20);
            }
        }
        const live = await open(ctx.s.port);
        await ctx.pub.xadd('audit', ['n', '201']);
        const [last] = await live.waitForEvents(1);
        live.close();
        const events = [first];
        events[199] = last;
        /* MAXLEN ~ 10 keeps at least 10, a few more (whole nodes). */
        const len = await ctx.pub.command('XLEN', 'it-reset:log');
        assert.ok(len >= 10 && len < 200, `XLEN ${len}`);

        const old = await open(ctx.s.port, { 'Last-Event-ID': events[0].id });
        const reset = await old.waitForFrame((f) => f.event === 'reset', 'a reset');
        assert.equal(JSON.parse(reset.data).reason, 'expired');
        old.close();

        const tag = events[0].id.split('.')[0];
        const other = await open(ctx.s.port, { 'Last-Event-ID': events[199].id.replace(tag, 'zz9') });
        const r2 = await other.waitForFrame((f) => f.event === 'reset', 'a reset');
        assert.equal(JSON.parse(r2.data).reason, 'unknown-id');
        other.close();

        /* Newer than the log's last entry (never issued): unknown-id. */
        const future = await open(ctx.s.port, { 'Last-Event-ID': `${tag}.99999999999999-0` });
        const r3 = await future.waitForFrame((f) => f.event === 'reset', 'a reset');
        assert.equal(JSON.parse(r3.data).reason, 'unknown-id');
        future.close();
    });

    test('Redis down: streams stay open, /readyz 503; a log lost with it resets old ids', async () => {
        const c = await open(ctx.s.port);
        await ctx.pub.xadd('audit', ['n', '1000']);
        const [before] = await c.waitForEvents(1);
        ctx.pub.close();
        await ctx.redis.stop('SIGKILL');
        await waitFor(async () => (await httpRequest(ctx.s.port, '/readyz')).status === 503,
            '/readyz 503 while Redis is down');
        const body = (await httpRequest(ctx.s.port, '/readyz')).body;
        assert.match(body, /^history: down$/m);
        assert.match((await httpRequest(ctx.s.port, '/metrics')).body, /^sluice_history_log_up 0$/m);

        /* No persistence: Redis comes back empty, the log gets a new tag. */
        ctx.redis = await startRedis(ctx.redis.port);
        ctx.pub = await connectRedis(ctx.redis.port);
        await waitFor(async () => (await httpRequest(ctx.s.port, '/readyz')).status === 200,
            '/readyz 200 when Redis is back', 20000, 100);
        assert.equal(c.ended, false, 'the stream stayed open');
        await ctx.pub.xadd('audit', ['n', '1001']);
        const events = await c.waitForEvents(2);
        assert.equal(payloadN(events[1]), 1001);
        assert.notEqual(events[1].id.split('.')[0], before.id.split('.')[0], 'a new tag');
        c.close();
        await waitFor(async () => /the log in Redis was recreated/.test(ctx.s.stderr), 'the new log logged', 5000);

        const stale = await open(ctx.s.port, { 'Last-Event-ID': before.id });
        const reset = await stale.waitForFrame((f) => f.event === 'reset', 'a reset');
        assert.equal(JSON.parse(reset.data).reason, 'unknown-id');
        stale.close();
    });
});

describe('a replica that falls behind the trimming', () => {
    const ctx = { redis: null, pub: null, a: null, b: null };
    before(async () => {
        ctx.redis = await startRedis();
        ctx.pub = await connectRedis(ctx.redis.port);
        const cfg = config(ctx.redis.port, 'it-gap', '  max_events: 10');
        ctx.a = await startSluice(cfg, { env });
        await waitFor(async () => (await leaderOf([ctx.a]))[0], 'the first replica to lead');
        ctx.b = await startSluice(cfg, { env });
    });
    after(async () => {
        ctx.pub?.close();
        ctx.b?.child?.kill('SIGCONT');
        await ctx.a?.stop();
        await ctx.b?.stop();
        await ctx.redis?.stop();
    });

    test('cuts its streams, which resume with a reset, never with a silent gap', async () => {
        const c = await open(ctx.b.port);
        await ctx.pub.xadd('audit', ['n', '1']);
        const [first] = await c.waitForEvents(1);
        ctx.b.child.kill('SIGSTOP');
        try {
            for (let i = 2; i <= 500; i++) {
                await ctx.pub.xadd('audit', ['n', String(i)]);
            }
            /* The leader appended them all, and trimmed most. */
            await waitFor(async () => Number(await ctx.pub.command('HGET', 'it-gap:meta', 'seq')) === 500,
                'the leader to append 500 entries');
        } finally {
            ctx.b.child.kill('SIGCONT');
        }
        await c.waitForEnd(10000);
        const seen = c.events.map(payloadN);
        seen.forEach((n, k) => assert.equal(n, k + 1, `no event skipped before the cut: ${seen}`));
        await waitFor(async () => /entries of the log were trimmed before this replica read them/.test(ctx.b.stderr),
            'the gap logged', 5000);
        assert.match((await httpRequest(ctx.b.port, '/metrics')).body, /^sluice_history_gaps_total 1$/m);
        const last = c.events[c.events.length - 1] || first;
        const again = await open(ctx.b.port, { 'Last-Event-ID': last.id });
        const reset = await again.waitForFrame((f) => f.event === 'reset', 'a reset');
        assert.equal(JSON.parse(reset.data).reason, 'expired');
        again.close();
    });
});

/*
 * Starts Redis (AOF, fsync always) and a sluice with log KEY into
 * ctx.redis / ctx.s; appends 1..5, saves the AOF as it is then, restarts
 * Redis and appends 6..8, with a stream reading all of it. Restoring
 * `snapshot` later takes the log back to after 5: a failover to a replica
 * that lagged, made exact. Returns {c, kept (events 1..5), seen (1..8),
 * snapshot}.
 */
async function withTailToLose(ctx, key) {
    const aofDir = makeTempDir('sluice-aof-');
    ctx.redis = await startRedis(undefined, { aofDir, args: AOF });
    const port = ctx.redis.port;
    ctx.s = await startSluice(config(port, key), { env });
    let pub = await connectRedis(port);
    const c = await open(ctx.s.port);
    for (let i = 1; i <= 5; i++) {
        await pub.xadd('audit', ['n', String(i)]);
    }
    const kept = await c.waitForEvents(5);
    pub.close();
    await ctx.redis.stop('SIGKILL');
    const snapshot = makeTempDir('sluice-aof-snap-');
    fs.cpSync(aofDir, snapshot, { recursive: true });
    ctx.redis = await startRedis(port, { aofDir, args: AOF });
    pub = await connectRedis(port);
    await waitFor(async () => (await httpRequest(ctx.s.port, '/readyz')).status === 200,
        '/readyz 200 after the first restart', 20000, 100);
    for (let i = 6; i <= 8; i++) {
        await pub.xadd('audit', ['n', String(i)]);
    }
    const seen = await c.waitForEvents(8);
    assert.deepEqual(seen.map(payloadN), [1, 2, 3, 4, 5, 6, 7, 8]);
    pub.close();
    return { c, kept, seen, snapshot };
}

describe('a Redis that comes back without the log\'s tail', () => {
    const ctx = { redis: null, s: null, kept: null };
    after(async () => {
        await ctx.s?.stop();
        await ctx.redis?.stop();
    });

    test('streams that saw the lost entries are cut; their ids are unknown-id', async () => {
        /* What a failover to a replica that lagged does, made exact: the
         * AOF of a moment ago brought back under the running replicas. */
        const { c, kept, seen, snapshot } = await withTailToLose(ctx, 'it-roll');

        /* Redis comes back as it was after 5. */
        const port = ctx.redis.port;
        await ctx.redis.stop('SIGKILL');
        ctx.redis = await startRedis(port, { aofDir: snapshot, args: AOF });
        await waitFor(async () => /a failover lost its tail/.test(ctx.s.stderr),
            'sluice to see that the log lost its tail', 20000, 50);
        await c.waitForEnd(10000);
        assert.ok(!c.frames.some((f) => f.event === 'reset'));

        const lost = await open(ctx.s.port, { 'Last-Event-ID': seen[7].id });
        const reset = await lost.waitForFrame((f) => f.event === 'reset', 'a reset');
        assert.equal(JSON.parse(reset.data).reason, 'unknown-id');
        lost.close();

        ctx.kept = kept;
    });

    /*
     * What comes next is what the log now holds after that id. Usually
     * that is 9 alone; but when Redis died before the leader read the
     * reply to the append of 8, the leader sends that batch again (an
     * append it never saw confirmed), and the log now holds 8 again,
     * under a new entry id, before 9. Either way the stream gets the
     * log's entries in order, and no reset.
     */
    test('an id from before the loss resumes with what the log holds after it', async () => {
        const pub = await connectRedis(ctx.redis.port);
        try {
            const resumed = await open(ctx.s.port, { 'Last-Event-ID': ctx.kept[4].id });
            await pub.xadd('audit', ['n', '9']);
            await resumed.waitForFrame((f) => f.data !== null && payloadN(f) === 9, 'event 9');
            const tag = ctx.kept[4].id.split('.')[0];
            const after = ctx.kept[4].id.split('.')[1];
            const log = await pub.command('XRANGE', 'it-roll:log', `(${after}`, '+');
            const expected = log.map(([id, fields]) => ({
                id: `${tag}.${id}`,
                n: Number(JSON.parse(fields[fields.indexOf('p') + 1]).n),
            }));
            assert.deepEqual(resumed.events.map((e) => ({ id: e.id, n: payloadN(e) })), expected);
            assert.ok([1, 2].includes(expected.length) && expected[expected.length - 1].n === 9,
                `the log after 5 is [9] or [8, 9]: ${JSON.stringify(expected)}`);
            assert.ok(!resumed.frames.some((f) => f.event === 'reset'));
            resumed.close();
        } finally {
            pub.close();
        }
    });
});

/*
 * The same loss, but by the time this replica looks, the log has taken a
 * new entry (another replica led meanwhile): the log's newest id is then
 * past the last one read, and only the missing entry shows the loss.
 */
describe('a Redis that lost the log\'s tail, then took new entries before this replica looked', () => {
    const ctx = { redis: null, s: null };
    after(async () => {
        ctx.s?.child?.kill('SIGCONT');
        await ctx.s?.stop();
        await ctx.redis?.stop();
    });

    test('the lost entries are still seen: streams that saw them are cut; older ids resume exactly', async () => {
        const { c, kept, seen, snapshot } = await withTailToLose(ctx, 'it-roll2');
        const port = ctx.redis.port;
        let pub;

        /* This replica sleeps through the failover; meanwhile the log
         * (back as it was after 5) takes entry 9, as a new leader's
         * append would write it. */
        ctx.s.child.kill('SIGSTOP');
        try {
            await ctx.redis.stop('SIGKILL');
            ctx.redis = await startRedis(port, { aofDir: snapshot, args: AOF });
            pub = await connectRedis(port);
            const seq = await pub.command('HINCRBY', 'it-roll2:meta', 'seq', '1');
            await pub.xadd('it-roll2:log', ['s', 'audit', 't', 'audit', 'p', '{"n":"9"}',
                'ts', String(Date.now()), 'e', '0-1', 'c', String(seq)]);
        } finally {
            ctx.s.child.kill('SIGCONT');
        }
        await waitFor(async () => /a failover lost its tail/.test(ctx.s.stderr),
            'sluice to see that the log lost its tail', 20000, 50);
        await c.waitForEnd(10000);
        assert.deepEqual(c.events.map(payloadN), [1, 2, 3, 4, 5, 6, 7, 8], 'nothing after the loss on the cut stream');

        const lost = await open(ctx.s.port, { 'Last-Event-ID': seen[7].id });
        const reset = await lost.waitForFrame((f) => f.event === 'reset', 'a reset');
        assert.equal(JSON.parse(reset.data).reason, 'unknown-id');
        lost.close();

        const older = await open(ctx.s.port, { 'Last-Event-ID': kept[4].id });
        const [next] = await older.waitForEvents(1);
        assert.equal(payloadN(next), 9);
        assert.ok(!older.frames.some((f) => f.event === 'reset'));
        older.close();
        pub.close();
    });
});

describe('history.redis in the config', () => {
    test('with history.dir: an error with its position; --check reads the URL', async () => {
        const both = writeConfig(config(6379, 'x', '  dir: /tmp'));
        const r = await runSluice(['--check', '-c', both]);
        assert.notEqual(r.code, 0);
        assert.match(r.stderr, /:14:3: history\.dir and history\.redis exclude each other/);

        const bad = writeConfig(config(6379, 'x').replace('redis://127.0.0.1:6379/0',
            'redis+sentinel://:secret@h1,h2/'));
        const r2 = await runSluice(['--check', '-c', bad]);
        assert.notEqual(r2.code, 0);
        assert.match(r2.stderr, /:12:10: history\.redis: redis\+sentinel URL: the path must be/);
        assert.doesNotMatch(r2.stderr, /secret/);
    });
});
