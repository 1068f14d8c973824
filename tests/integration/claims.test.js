'use strict';
/*
 * claims.test.js - three README claims that had no end-to-end test (see
 * tests/GUARANTEES.md), each against the real binary and redis-server:
 *
 *   - "Memory per compressed stream is bounded by a 1 KiB window and
 *     memLevel 2: zlib's buffers take 6 KiB plus its ~6 KiB state, about
 *     12 KiB per stream." Measured as sluice's RSS growth over N gzip
 *     streams minus its growth over N identical uncompressed streams.
 *   - "Quiet filtered streams get id:-only heartbeats when the history
 *     moves on, so their position keeps up and a resume after unrelated
 *     events were evicted is still exact."
 *   - "A slow browser (more than stream.max_pending unsent bytes) is cut;
 *     it reconnects with its last id and replays from the history, so it
 *     loses nothing while that id is still held" - and when the id was
 *     evicted meanwhile it gets `event: reset` "expired" (SPEC 3.4).
 *
 * Every "nothing else arrived" check ends on a marker event published
 * after the events under test on the same channel, not on a time window.
 */
const assert = require('node:assert/strict');
const http = require('node:http');
const zlib = require('node:zlib');
const { after, before, describe, test } = require('node:test');
const { httpRequest, openSse, rawRequest } = require('./lib/sse');
const { waitFor } = require('./lib/procs');
const { connectRedis, startRedis } = require('./lib/redis');
const { sluiceBin, startSluice, withLog } = require('./lib/sluice');
const { contentFrames, parseEnvelope, uniquePayload } = require('./lib/fixtures');
const { sanitizedBinary, vmRssKiB } = require('./lib/attack');

/* RSS bounds hold for a release build; an ASan build (redzones, shadow
 * memory, quarantine) reports its figures only. */
const SANITIZED = sanitizedBinary(sluiceBin());

function claimsConfig(redisPort, stream = [], history = []) {
    return [
        'sources:',
        '  - name: cache',
        '    type: redis',
        `    url: redis://127.0.0.1:${redisPort}`,
        'routes:',
        '  - path: /c/{ch}',
        '    topics: ["cache:c:{ch}"]',
        '  - path: /orders/{region}',
        '    topics: ["cache:orders:{region}"]',
        'stream:',
        '  retry: 2s',
        ...stream.map((l) => `  ${l}`),
        ...(history.length ? ['history:', ...history.map((l) => `  ${l}`)] : []),
        'shutdown_grace: 2s',
        'logging: {level: info, format: text}',
        '',
    ].join('\n');
}

const ctx = { redis: null, pub: null };

before(async () => {
    ctx.redis = await startRedis();
    ctx.pub = await connectRedis(ctx.redis.port);
});

after(async () => {
    ctx.pub?.close();
    await ctx.redis?.stop();
});

/* Starts a sluice for one describe block; stops it after (exit 0). */
function useSluice(stream, history) {
    const own = { sluice: null };
    before(async () => {
        own.sluice = await startSluice(claimsConfig(ctx.redis.port, stream, history));
    });
    after(async () => {
        if (own.sluice) {
            const result = await own.sluice.stop('SIGTERM');
            assert.doesNotMatch(own.sluice.stderr, /ERROR: \w*Sanitizer/, own.sluice.stderrTail(60));
            assert.deepEqual(result, { code: 0, signal: null }, own.sluice.stderrTail());
        }
    });
    return own;
}

async function open(sluice, path, headers) {
    const c = await openSse(sluice.port, path, { headers });
    assert.equal(c.status, 200, `GET ${path}: ${c.raw}`);
    await c.waitForFrame((f) => f.retry !== null, 'the retry frame');
    return c;
}

async function metric(sluice, series) {
    const res = await httpRequest(sluice.port, '/metrics');
    const line = res.body.split('\n').find((l) => l.startsWith(`${series} `));
    return line === undefined ? null : Number(line.slice(series.length + 1));
}

function payloadOf(frame) {
    return JSON.stringify(parseEnvelope(frame).payload);
}

/* ------------------------------------------------------------------ */
describe('memory per compressed stream (README: about 17 KiB, zlib 12 KiB + a 4 KiB chunk)', () => {
    /* Two sluices with the same config, so that each one's RSS growth
     * belongs to one kind of stream only. */
    const gz = useSluice(['compression: true', 'heartbeat: 15s']);
    const plain = useSluice(['compression: true', 'heartbeat: 15s']);
    const it = (name, fn) => test(name, withLog(() => gz.sluice, fn));
    const N = 200;
    const EVENTS = 3;
    const STATED_KIB = 12;
    /* Not in the README's figure: each compressed write reserves a 4 KiB
     * output chunk (COMPRESS_CHUNK in lib/compress.c) in the stream's
     * output buffer, held until the socket takes it. */
    const CHUNK_KIB = 4;
    /* Tolerance: the allocator's rounding and fragmentation of zlib's
     * five allocations, and RSS noise over N streams. */
    const TOLERANCE_KIB = 2;

    /* Opens n streams on channel, each reading (and, when gzip, inflating)
     * what it receives; resolves with {counts(), close()}. */
    async function openMany(sluice, channel, n, gzip) {
        const streams = [];
        for (let i = 0; i < n; i++) {
            streams.push(await new Promise((resolve, reject) => {
                const req = http.request({
                    host: '127.0.0.1', port: sluice.port, path: `/c/${channel}`, agent: false,
                    headers: { Accept: 'text/event-stream', ...(gzip ? { 'Accept-Encoding': 'gzip' } : {}) },
                });
                req.on('response', (res) => {
                    assert.equal(res.statusCode, 200);
                    assert.equal(res.headers['content-encoding'], gzip ? 'gzip' : undefined);
                    const s = { req, res, text: '' };
                    const body = gzip ? res.pipe(zlib.createGunzip({ flush: zlib.constants.Z_SYNC_FLUSH })) : res;
                    body.on('data', (d) => { s.text += d.toString('latin1'); });
                    body.on('error', () => {});
                    res.on('error', () => {});
                    resolve(s);
                });
                req.on('error', reject);
                req.end();
            }));
        }
        return {
            count: (marker) => streams.filter((s) => s.text.includes(marker)).length,
            close: () => streams.forEach((s) => { s.req.destroy(); s.res.destroy(); }),
        };
    }

    /* RSS growth (KiB) of sluice over n streams that each received
     * EVENTS events (so every buffer a stream uses has been written). */
    async function growth(sluice, channel, gzip) {
        /* Warm-up: one stream of the kind, opened and closed. */
        const warm = await openMany(sluice, `${channel}w`, 4, gzip);
        const wm = uniquePayload({ warm: true });
        await ctx.pub.publish(`c:${channel}w`, wm);
        await waitFor(() => warm.count(wm) === 4, 'the warm-up streams to get their event');
        warm.close();
        await waitFor(async () => (await metric(sluice, 'sluice_connections')) === 0, 'sluice_connections 0');
        const rss0 = vmRssKiB(sluice.child.pid);
        const many = await openMany(sluice, channel, N, gzip);
        try {
            await waitFor(async () => (await metric(sluice, 'sluice_connections')) === N, `sluice_connections ${N}`);
            /* One event at a time, each read by every stream before the
             * next: a stream holds at most one write's output at once. */
            for (let i = 0; i < EVENTS; i++) {
                const ev = uniquePayload({ i, pad: 'x'.repeat(200) });
                await ctx.pub.publish(`c:${channel}`, ev);
                await waitFor(() => many.count(ev) === N, `all ${N} streams to get event ${i}`, 15000);
            }
            return vmRssKiB(sluice.child.pid) - rss0;
        } finally {
            many.close();
        }
    }

    it(`${N} gzip streams cost at most ${STATED_KIB} + ${CHUNK_KIB} + ${TOLERANCE_KIB} KiB each more than ${N} plain ones`, async (t) => {
        const gzKiB = await growth(gz.sluice, 'mem', true);
        const plainKiB = await growth(plain.sluice, 'mem', false);
        const perStream = (gzKiB - plainKiB) / N;
        const report = `RSS growth over ${N} streams: gzip ${gzKiB} KiB, plain ${plainKiB} KiB; ` +
            `compression costs ${perStream.toFixed(1)} KiB per stream (stated: about ${STATED_KIB} KiB)` +
            `${SANITIZED ? ' (ASan build: figures only)' : ''}`;
        t.diagnostic(report);
        if (!SANITIZED) {
            assert.ok(perStream <= STATED_KIB + CHUNK_KIB + TOLERANCE_KIB, report);
            /* The measurement sees the compressors at all (a stream that
             * silently did not compress would cost nothing extra). */
            assert.ok(perStream >= 4, report);
        }
    });
});

/* ------------------------------------------------------------------ */
describe('id-only heartbeats keep a quiet filtered stream resumable', () => {
    const MAX_EVENTS = 5;
    const own = useSluice(['heartbeat: 1s'], [`max_events: ${MAX_EVENTS}`]);
    const it = (name, fn) => test(name, withLog(() => own.sluice, fn));

    it('after unrelated events evicted its last event, a resume from the checkpoint id is exact (no reset)', async () => {
        const quiet = await open(own.sluice, '/orders/quiet');
        const busy = await open(own.sluice, '/orders/busy');
        let back = null;
        let old = null;
        try {
            /* The quiet stream's own event, then 4 x max_events unrelated
             * ones: its event is evicted long before the end. */
            const own1 = uniquePayload({ quiet: 1 });
            await ctx.pub.publish('orders:quiet', own1);
            const [ownEvent] = await quiet.waitForEvents(1);
            assert.equal(payloadOf(ownEvent), own1);
            for (let i = 0; i < 4 * MAX_EVENTS; i++) {
                await ctx.pub.publish('orders:busy', uniquePayload({ busy: i }));
            }
            const busyEvents = await busy.waitForEvents(4 * MAX_EVENTS);
            const head = busyEvents[busyEvents.length - 1].id;

            /* Within a few heartbeats: an id-only frame naming the head. */
            const checkpoint = await quiet.waitForFrame((f) => f.id === head,
                `an id-only checkpoint with the head id ${head}`, 5000);
            assert.equal(checkpoint.data, null, 'the checkpoint carries no data');
            assert.equal(checkpoint.event, null);
            assert.equal(quiet.events.length, 1, `no event but its own: ${quiet.describe()}`);
            quiet.close();

            /* Without the checkpoint the stream's last id would be its own
             * event's, now evicted: that id gets reset "expired". */
            old = await open(own.sluice, '/orders/quiet', { 'Last-Event-ID': ownEvent.id });
            const reset = await old.waitForFrame((f) => f.event === 'reset', 'event: reset');
            assert.equal(contentFrames(old)[0], reset, old.describe());
            assert.deepEqual(JSON.parse(reset.data), { reason: 'expired', last_id: ownEvent.id });
            old.close();

            /* More events while it is away (fewer than max_events, so the
             * checkpoint id stays held): the resume gets exactly its own. */
            const a = uniquePayload({ quiet: 'a' });
            const b = uniquePayload({ quiet: 'b', marker: true });
            await ctx.pub.publish('orders:busy', uniquePayload({ away: 1 }));
            await ctx.pub.publish('orders:quiet', a);
            await ctx.pub.publish('orders:busy', uniquePayload({ away: 2 }));
            await ctx.pub.publish('orders:quiet', b); /* the marker: last */
            back = await open(own.sluice, '/orders/quiet', { 'Last-Event-ID': checkpoint.id });
            await back.waitUntil(() => back.events.some((e) => e.data.includes('"marker":true')),
                'the marker event on the resumed stream');
            const content = contentFrames(back).filter((f) => f.data !== null || f.event !== null);
            assert.ok(!content.some((f) => f.event === 'reset'), `no reset: ${back.describe()}`);
            assert.deepEqual(content.map(payloadOf), [a, b], `exactly the two later events: ${back.describe()}`);
        } finally {
            quiet.close();
            busy.close();
            old?.close();
            back?.close();
        }
    });
});

/* ------------------------------------------------------------------ */
describe('only ids as issued resume', () => {
    const own = useSluice(['heartbeat: 15s'], []);

    /* README: "unknown-id: not an id of this history: malformed, never
     * issued, ...". "<epoch>-0004" was never issued ("<epoch>-4" was),
     * and lib/ring.c refuses it (it used to read the digits as seq 4;
     * found by fuzz_headers). */
    test('an id whose seq has leading zeros was never issued: reset "unknown-id"',
        withLog(() => own.sluice, async () => {
            const first = await open(own.sluice, '/orders/lz');
            let c = null;
            try {
                await ctx.pub.publish('orders:lz', uniquePayload({ lz: 1 }));
                await ctx.pub.publish('orders:lz', uniquePayload({ lz: 2 }));
                const [one] = await first.waitForEvents(2);
                const padded = one.id.replace(/-(\d+)$/, '-00$1');
                assert.notEqual(padded, one.id);
                c = await open(own.sluice, '/orders/lz', { 'Last-Event-ID': padded });
                const marker = uniquePayload({ marker: true });
                await ctx.pub.publish('orders:lz', marker);
                await c.waitUntil(() => c.events.some((e) => e.data.includes('"marker":true')), 'the marker');
                const content = contentFrames(c).filter((f) => f.data !== null || f.event !== null);
                assert.equal(content[0].event, 'reset', `reset first: ${c.describe()}`);
                assert.deepEqual(JSON.parse(content[0].data), { reason: 'unknown-id', last_id: padded });
            } finally {
                first.close();
                c?.close();
            }
        }));
});

describe('a slow client cut at max_pending whose id was evicted meanwhile', () => {
    const MAX_EVENTS = 100;
    const own = useSluice(['heartbeat: 15s', 'max_pending: 64KiB'], [`max_events: ${MAX_EVENTS}`]);
    const it = (name, fn) => test(name, withLog(() => own.sluice, fn));
    const N = 1500;
    const BATCH = 50;

    it('gets event: reset "expired" with its id, then live events (no replay)', async () => {
        const normal = await open(own.sluice, '/c/slowx');
        const slow = await rawRequest(own.sluice.port,
            'GET /c/slowx HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n');
        let back = null;
        try {
            await waitFor(() => slow.state.text.includes('retry: 2000'), 'the slow client\'s retry frame');
            const first = uniquePayload({ first: true });
            await ctx.pub.publish('c:slowx', first);
            await normal.waitForEvents(1);
            await waitFor(() => slow.state.text.includes(first), 'the first event on the slow client');
            slow.sock.pause();

            const filler = 'x'.repeat(4096);
            for (let i = 0; i < N; i += BATCH) {
                const replies = [];
                for (let j = i; j < i + BATCH; j++) {
                    replies.push(ctx.pub.publish('c:slowx', JSON.stringify(`${j}:${filler}`)));
                }
                await Promise.all(replies);
                await normal.waitForEvents(i + BATCH + 1, 5000);
            }
            await waitFor(async () => (await metric(own.sluice, 'sluice_clients_dropped_total{reason="slow"}')) >= 1,
                'sluice_clients_dropped_total{reason="slow"} >= 1', 10000, 100);
            const all = await normal.waitForEvents(N + 1, 20000);
            assert.equal(normal.ended, false, 'the normal client was not cut');

            slow.sock.resume();
            await waitFor(() => slow.state.ended, 'the end of the cut connection', 10000);
            const whole = [...slow.state.text.matchAll(/id: ([^\r\n]+)\ndata: ([^\r\n]*)\n\n/g)];
            const cutId = whole[whole.length - 1][1];
            const cutAt = all.findIndex((e) => e.id === cutId);
            assert.ok(cutAt >= 0, `the cut id ${cutId} is one of the published events`);
            /* The situation under test: what followed the cut id is no
             * longer held (only the last max_events are). */
            assert.ok(cutAt < all.length - MAX_EVENTS - 1,
                `the cut came at event ${cutAt} of ${all.length}: too late for it to be evicted`);

            back = await open(own.sluice, '/c/slowx', { 'Last-Event-ID': cutId });
            const marker = uniquePayload({ marker: true });
            await ctx.pub.publish('c:slowx', marker);
            await back.waitUntil(() => back.events.some((e) => e.data.includes('"marker":true')),
                'the live marker after the reset', 10000);
            const content = contentFrames(back).filter((f) => f.data !== null || f.event !== null);
            assert.equal(content[0].event, 'reset', `reset first: ${back.describe()}`);
            assert.deepEqual(JSON.parse(content[0].data), { reason: 'expired', last_id: cutId });
            /* A fresh connect (no snapshot on this route): no replay of the
             * held events, only the live marker. */
            assert.deepEqual(content.slice(1).map(payloadOf), [marker], back.describe());
        } finally {
            slow.sock.destroy();
            normal.close();
            back?.close();
        }
    });
});

