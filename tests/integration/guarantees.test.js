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
 *     a changed broker URL, or only changed credentials in it, is logged
 *     as needing a restart, and the running connection keeps the old ones;
 *   - history.dir: 16 MiB journal segments, and eviction deletes whole
 *     segments (only those holding nothing the history still holds).
 */
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { after, before, describe, test } = require('node:test');
const { httpRequest, openSse } = require('./lib/sse');
const { makeTempDir, waitFor } = require('./lib/procs');
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

/* One series of /metrics ("name" or 'name{label="v"}'), as a number. */
async function metric(s, series) {
    const res = await httpRequest(s.port, '/metrics');
    const line = res.body.split('\n').find((l) => l.startsWith(`${series} `));
    return line === undefined ? null : Number(line.slice(series.length + 1));
}

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

describe('SIGHUP: changed credentials', () => {
    const own = { s: null };
    it('only the password in the URL changed: logged as needing a restart, the running one is kept', () => own.s, async () => {
        /* An ACL user that knows only the old password: if the reload
         * applied the new one, the reconnect forced below would fail. */
        const OLD = 'pw-old-5f1c9e', NEW = 'pw-new-77ab20';
        await ctx.pub.command('ACL', 'SETUSER', 'sluice', 'on', `>${OLD}`, '~*', '&*', '+@all');
        const url = (pw) => `redis://sluice:${pw}@127.0.0.1:${ctx.redis.port}`;
        own.s = await launch({ url: url(OLD) });
        const c = await open(own.s, '/c/cred');
        try {
            const before = own.s.stderr.length;
            fs.writeFileSync(own.s.configFile,
                `listen: 127.0.0.1:${own.s.port}\n${config({ url: url(NEW) })}`);
            own.s.child.kill('SIGHUP');
            await waitFor(() => /connection settings changed/.test(own.s.stderr.slice(before)),
                'a log line saying the connection settings changed', 10000);
            assert.match(own.s.stderr.slice(before), /reload: source cache: connection settings changed; restart/);
            /* Drop sluice's connections: it reconnects with what it runs
             * with, which must still be the old password. */
            const killedAt = own.s.stderr.length;
            await ctx.pub.command('CLIENT', 'KILL', 'USER', 'sluice');
            await waitFor(() => /source cache: up/.test(own.s.stderr.slice(killedAt)),
                'sluice to reconnect with the old credentials', 20000, 100);
            await waitFor(async () => (await ctx.pub.publish('c:cred', '"after"')) > 0,
                'sluice to subscribe again', 10000, 100);
            const [ev] = await c.waitForEvents(1, 10000);
            assert.equal(JSON.parse(ev.data).payload, 'after');
            assert.ok(!own.s.stderr.includes(OLD) && !own.s.stderr.includes(NEW),
                'no password in the log');
        } finally {
            c.close();
        }
    });
});

describe('history.dir: 16 MiB journal segments', () => {
    const own = { s: null };
    const SEGMENT = 16 * 1024 * 1024;
    const SEGMENT_RE = /^(\d{20})\.log$/;
    /* [{first, size}], oldest first. */
    const segmentsOf = (dir) => fs.readdirSync(dir).map((n) => SEGMENT_RE.exec(n)).filter(Boolean)
        .map((m) => ({ first: Number(m[1]), size: fs.statSync(path.join(dir, m[0])).size }))
        .sort((a, b) => a.first - b.first);

    it('a full segment is within one record of 16 MiB, the next starts at the next seq; eviction deletes whole segments only', () => own.s, async (t) => {
        const dir = path.join(makeTempDir('sluice-seg-'), 'history');
        const PAYLOAD = 300000;           /* bytes: about 55 records a segment */
        own.s = await launch({ history: [`dir: ${dir}`, 'fsync: never', 'max_bytes: 24MiB', 'max_events: 100000'] });
        const big = JSON.stringify('s'.repeat(PAYLOAD - 2));
        let published = 0;
        const publish = async (n) => {
            for (let i = 0; i < n; i++) {
                assert.ok(await ctx.pub.publish('c:seg', big) >= 1, 'sluice is subscribed');
            }
            published += n;
            await waitFor(async () => (await metric(own.s, 'sluice_events_received_total{source="cache"}')) === published,
                `sluice to receive ${published} events`, 20000, 100);
        };

        /* 60 events, 18 MB: one full segment and the start of the next,
         * nothing evicted yet (24 MiB held). */
        await publish(60);
        let segs = segmentsOf(dir);
        t.diagnostic(`after 60: ${JSON.stringify(segs)}`);
        assert.equal(segs.length, 2, `two segments: ${JSON.stringify(segs)}`);
        assert.equal(segs[0].first, 1, 'a fresh history starts at seq 1');
        const perSegment = segs[1].first - segs[0].first;
        const record = segs[0].size / perSegment;
        assert.ok(Number.isInteger(record) && record >= PAYLOAD && record < PAYLOAD + 256,
            `segment 1 holds ${perSegment} whole records of ${PAYLOAD} bytes + a header (${record})`);
        assert.ok(segs[0].size <= SEGMENT && segs[0].size > SEGMENT - record,
            `segment 1 is filled to within one record of 16 MiB: ${segs[0].size}`);
        assert.equal(segs[1].size, (published - perSegment) * record, 'the rest is in segment 2');
        assert.equal(await metric(own.s, 'sluice_history_events'), published, 'nothing evicted yet');

        /* 100 more: 48 MB in all, about 24 MiB held, so the oldest held
         * event is past segment 1 but inside segment 2. */
        await publish(100);
        const held = await metric(own.s, 'sluice_history_events');
        const firstHeld = published - held + 1;
        segs = segmentsOf(dir);
        t.diagnostic(`after ${published}: held ${held} (from seq ${firstHeld}), ${JSON.stringify(segs)}`);
        assert.ok(firstHeld > 1 + perSegment && firstHeld < 1 + 2 * perSegment,
            `the history starts inside segment 2 (seq ${firstHeld}); the test's sizes assume it`);
        assert.ok(!segs.some((x) => x.first === 1), 'segment 1, all evicted, is deleted');
        assert.equal(segs[0].first, 1 + perSegment, 'segment 2, which still holds events, is kept');
        assert.equal(segs[0].size, perSegment * record, '... whole');
        for (let i = 0; i + 1 < segs.length; i++) {
            assert.equal(segs[i + 1].first - segs[i].first, perSegment, 'every full segment holds as many records');
            assert.ok(segs[i].size <= SEGMENT, `no segment passes 16 MiB: ${segs[i].size}`);
        }
        assert.equal(segs[segs.length - 1].first + Math.round(segs[segs.length - 1].size / record), published + 1,
            'the last segment ends with the last event');
    });
});
