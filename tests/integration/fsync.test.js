'use strict';
/*
 * fsync.test.js - what each history.fsync mode does, observed at the
 * system-call level, and what a reboot does to ids (README "Resuming and
 * durability", the table by setting).
 *
 * A kill -9 cannot tell the modes apart (the page cache survives it), so
 * sluice runs with tests/preload/fsync_trace.c preloaded: it logs every
 * fsync/fdatasync/sync_file_range/syncfs/sync/msync with CLOCK_MONOTONIC
 * start and end times and the path of the fd, and can replace what sluice
 * reads as /proc/sys/kernel/random/boot_id. The raw SSE client stamps each
 * frame with process.hrtime.bigint(), the same clock (checked at every
 * start against the shim's "init" line).
 *
 *   - always: every event is fdatasync'ed to its segment before any client
 *     receives it (each sync is slowed by 30 ms, so a sync after the send
 *     would be seen finishing after the client had the event);
 *   - batch: segments are synced on a 100 ms timer while events flow: far
 *     fewer syncs than events, never more than one per ~100 ms, and every
 *     event is covered by a sync that starts within ~100 ms of it;
 *   - never: no sync of journal data while events flow (only the one
 *     directory fsync that makes a new segment's name durable);
 *   - reboot (another boot id) with batch or never: a new id epoch, the
 *     browser's old id gets reset "unknown-id", new ids differ from old
 *     ones; the same boot id, or fsync always, resumes exactly.
 *
 * The shim is $SLUICE_FSYNC_TRACE_LIB (CTest sets it), else
 * tests/libfsync_trace.so in the build dir of $SLUICE_BIN.
 */
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { after, before, describe, test } = require('node:test');
const { openSse } = require('./lib/sse');
const { makeTempDir, waitFor } = require('./lib/procs');
const { connectRedis, startRedis } = require('./lib/redis');
const { sluiceBin, startSluice, withLog } = require('./lib/sluice');
const { parseEnvelope } = require('./lib/fixtures');

const SEGMENT_RE = /\/\d{20}\.log$/;
const BATCH_MS = 100;            /* bridge/journal.h: JOURNAL_BATCH_MS */
const SYNC_DELAY_MS = 30;

function shimPath() {
    const lib = process.env.SLUICE_FSYNC_TRACE_LIB ||
        path.join(path.dirname(path.resolve(sluiceBin())), 'tests', 'libfsync_trace.so');
    assert.ok(fs.existsSync(lib),
        `the fsync trace shim is not at ${lib}: build the target fsync_trace (tests/CMakeLists.txt) ` +
        'or set SLUICE_FSYNC_TRACE_LIB');
    return lib;
}

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

function config(opts) {
    return [
        'sources:',
        '  - name: cache',
        '    type: redis',
        `    url: redis://127.0.0.1:${ctx.redis.port}`,
        'routes:',
        '  - path: /c/{ch}',
        '    topics: ["cache:c:{ch}"]',
        'history:',
        '  max_events: 100000',
        `  dir: ${opts.dir}`,
        `  fsync: ${opts.fsync}`,
        'stream: {retry: 500ms, heartbeat: 15s}',
        'shutdown_grace: 1s',
        'logging: {level: info, format: text}',
        '',
    ].join('\n');
}

/* [{call, fd, start, end, path}] of the trace file (times as BigInt ns). */
function readTrace(file) {
    if (!fs.existsSync(file)) {
        return [];
    }
    return fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => {
        const [call, fd, start, end, ...p] = l.split(' ');
        return { call, fd: Number(fd), start: BigInt(start), end: BigInt(end), path: p.join(' ') };
    });
}

/*
 * Starts a traced sluice. opts: {fsync, dir, bootIdFile, delayMs}. Returns
 * {s, trace, dir, lines()}. Checks that the shim ran in this process and
 * that its clock is node's hrtime clock (its init time lies between the
 * spawn and the first answer).
 */
async function launchTraced(opts) {
    const tmp = makeTempDir('sluice-fsync-');
    const dir = opts.dir || path.join(tmp, 'history');
    const trace = path.join(tmp, 'trace.log');
    const env = {
        ...process.env,
        LD_PRELOAD: shimPath(),
        SLUICE_SYNC_TRACE: trace,
        ...(opts.bootIdFile ? { SLUICE_BOOT_ID_FILE: opts.bootIdFile } : {}),
        ...(opts.delayMs ? { SLUICE_SYNC_DELAY_MS: String(opts.delayMs) } : {}),
    };
    const t0 = process.hrtime.bigint();
    const s = await startSluice(config({ dir, fsync: opts.fsync }), { env });
    const t1 = process.hrtime.bigint();
    ctx.sluices.push(s);
    const h = { s, trace, dir, lines: () => readTrace(trace) };
    checkClock(h, t0, t1);
    return h;
}

/* The latest "init" line of the shim lies in [t0, t1] (same clock). */
function checkClock(h, t0, t1) {
    const inits = h.lines().filter((l) => l.call === 'init');
    assert.ok(inits.length > 0, `the shim did not run in sluice (no init line in ${h.trace})`);
    const init = inits[inits.length - 1].start;
    assert.ok(init >= t0 && init <= t1,
        `the shim's CLOCK_MONOTONIC ${init} is not within node's hrtime [${t0}, ${t1}]: not the same clock`);
}

async function restartTraced(h) {
    await h.s.stop('SIGTERM');
    const t0 = process.hrtime.bigint();
    await h.s.start();
    checkClock(h, t0, process.hrtime.bigint());
}

const segmentSyncs = (lines) => lines.filter((l) => SEGMENT_RE.test(l.path) &&
    ['fsync', 'fdatasync', 'sync_file_range'].includes(l.call));
const allSyncs = (lines) => lines.filter((l) => l.call !== 'init');

async function open(h, p, headers = {}) {
    const c = await openSse(h.s.port, p, { headers });
    assert.equal(c.status, 200, `GET ${p}: ${c.raw}`);
    await c.waitForFrame((f) => f.retry !== null, `the retry frame of ${p}`);
    return c;
}

const RUN = `${process.pid}-${Date.now()}`;
const payload = (tag, i) => JSON.stringify({ run: RUN, tag, i });
const payloadText = (frame) => JSON.stringify(parseEnvelope(frame).payload);
const ms = (ns) => Number(ns) / 1e6;

const it = (name, get, fn) => test(name, withLog(() => get()?.s, fn));

describe('fsync: always', () => {
    const own = { h: null };
    it('each event is fdatasync\'ed to its segment before a client receives it', () => own.h, async (t) => {
        own.h = await launchTraced({ fsync: 'always', delayMs: SYNC_DELAY_MS });
        const c = await open(own.h, '/c/always');
        try {
            const N = 15;
            const stamps = [];
            for (let i = 0; i < N; i++) {
                const published = process.hrtime.bigint();
                await ctx.pub.publish('c:always', payload('always', i));
                const [ev] = (await c.waitForEvents(i + 1, 10000)).slice(i);
                assert.equal(payloadText(ev), payload('always', i));
                stamps.push({ published, received: ev.atNs, id: ev.id });
            }
            const syncs = segmentSyncs(own.h.lines());
            const lags = [];
            for (const [i, e] of stamps.entries()) {
                /* A sync of the segment that began after the event was
                 * published and had returned when the client got it. */
                const covering = syncs.filter((s) => s.start >= e.published && s.end <= e.received);
                assert.ok(covering.length >= 1,
                    `event ${i} (${e.id}) reached the client at ${e.received} with no segment sync ` +
                    `finished in [publish ${e.published}, receive]; syncs after publish: ` +
                    `${JSON.stringify(syncs.filter((s) => s.start >= e.published).slice(0, 3)
                        .map((s) => [s.call, String(s.start), String(s.end)]))}`);
                lags.push(ms(e.received - covering[0].end));
            }
            t.diagnostic(`always: ${syncs.length} segment syncs for ${N} events; client received ` +
                `${Math.min(...lags).toFixed(2)}..${Math.max(...lags).toFixed(2)} ms after its sync returned`);
        } finally {
            c.close();
        }
    });
});

describe('fsync: batch', () => {
    const own = { h: null };
    it('segments are synced on a ~100 ms timer while events flow, not per event', () => own.h, async (t) => {
        own.h = await launchTraced({ fsync: 'batch' });
        const c = await open(own.h, '/c/batch');
        try {
            const N = 150;
            const published = [];
            const began = process.hrtime.bigint();
            for (let i = 0; i < N; i++) {
                published.push(process.hrtime.bigint());
                await ctx.pub.publish('c:batch', payload('batch', i));
                await new Promise((r) => setTimeout(r, 10));
            }
            const events = await c.waitForEvents(N, 20000);
            assert.deepEqual(events.map(payloadText), published.map((_, i) => payload('batch', i)));
            /* The last batch is synced by the next timer tick. */
            await waitFor(() => segmentSyncs(own.h.lines()).some((s) => s.start >= published[N - 1]),
                'a segment sync after the last publish', 5000, 20);
            const syncs = segmentSyncs(own.h.lines()).filter((s) => s.start >= began);
            const spanMs = ms(syncs[syncs.length - 1].start - began);
            /* Coverage: each event is made durable by a sync that starts
             * after it was published, soon after the client saw it. */
            const lags = events.map((e, i) => {
                const s = syncs.find((x) => x.start >= published[i] && x.start >= e.atNs - 1000000000n);
                assert.ok(s, `no sync after event ${i}`);
                return Math.max(0, ms(s.start - e.atNs));
            }).sort((a, b) => a - b);
            const gaps = syncs.slice(1).map((s, i) => ms(s.start - syncs[i].start));
            t.diagnostic(`batch: ${syncs.length} segment syncs over ${spanMs.toFixed(0)} ms for ${N} events; ` +
                `gap between syncs min ${Math.min(...gaps).toFixed(1)} ms, median ` +
                `${gaps.sort((a, b) => a - b)[gaps.length >> 1].toFixed(1)} ms; event -> sync lag median ` +
                `${lags[N >> 1].toFixed(1)} ms, max ${lags[N - 1].toFixed(1)} ms`);
            assert.ok(syncs.length <= Math.ceil(spanMs / BATCH_MS) + 2,
                `at most one sync per ${BATCH_MS} ms: ${syncs.length} syncs in ${spanMs.toFixed(0)} ms`);
            assert.ok(syncs.length >= Math.floor(spanMs / BATCH_MS / 3),
                `syncs keep happening while events flow: ${syncs.length} in ${spanMs.toFixed(0)} ms`);
            assert.ok(lags[N >> 1] <= BATCH_MS, `median event -> sync lag ${lags[N >> 1]} ms > ${BATCH_MS} ms`);
            assert.ok(lags[N - 1] <= BATCH_MS + 400,
                `worst event -> sync lag ${lags[N - 1]} ms (100 ms + 400 ms scheduling slack)`);
        } finally {
            c.close();
        }
    });
});

describe('fsync: never', () => {
    const own = { h: null };
    it('no sync of journal data while events flow', () => own.h, async (t) => {
        own.h = await launchTraced({ fsync: 'never' });
        const atStart = allSyncs(own.h.lines());
        const c = await open(own.h, '/c/never');
        try {
            const from = process.hrtime.bigint();
            const N = 200;
            for (let i = 0; i < N; i += 50) {
                await Promise.all(Array.from({ length: 50 },
                    (_, k) => ctx.pub.publish('c:never', payload('never', i + k))));
            }
            const events = await c.waitForEvents(N, 20000);
            assert.equal(payloadText(events[N - 1]), payload('never', N - 1));
            /* Three batch periods with nothing written: a timer would have
             * synced by now. Then a marker event, to know the loop ran. */
            await new Promise((r) => setTimeout(r, 3 * BATCH_MS));
            await ctx.pub.publish('c:never', payload('never-marker', 0));
            await c.waitForEvents(N + 1);
            const during = allSyncs(own.h.lines()).filter((l) => l.start >= from);
            t.diagnostic(`never: ${atStart.length} sync calls at start (${[...new Set(atStart.map((l) => l.call))]}), ` +
                `${during.length} while ${N + 1} events flowed`);
            assert.ok(atStart.length > 0, 'the shim sees the start-up directory fsync (it is not blind)');
            assert.deepEqual(segmentSyncs(during).map((l) => `${l.call} ${l.path}`), [],
                'no sync of journal data during operation');
            /* The only other call allowed: one fsync of the directory per
             * segment created (its name made durable, journal_roll). */
            const segs = fs.readdirSync(own.h.dir).filter((n) => /^\d{20}\.log$/.test(n));
            const others = during.filter((l) => !(l.call === 'fsync' && l.path === own.h.dir));
            assert.deepEqual(others.map((l) => `${l.call} ${l.path}`), [], 'nothing but directory fsyncs');
            assert.ok(during.length <= segs.length,
                `${during.length} directory fsyncs for ${segs.length} segment(s) created`);
        } finally {
            c.close();
        }
    });
});

describe('a reboot (another boot id)', () => {
    /*
     * Starts with fsync mode and boot id "A", delivers 5 events, stops,
     * sets the boot id to `second`, starts again and opens the stream
     * with the last id seen. Returns {h, old, stream}.
     */
    async function rebootCase(fsync, second, tag) {
        const bootIdFile = path.join(makeTempDir('sluice-boot-'), 'boot_id');
        fs.writeFileSync(bootIdFile, `aaaaaaaa-0000-4000-8000-${tag.padEnd(12, '0').slice(0, 12)}\n`);
        const h = await launchTraced({ fsync, bootIdFile });
        const c = await open(h, `/c/${tag}`);
        let old;
        try {
            for (let i = 0; i < 5; i++) {
                await ctx.pub.publish(`c:${tag}`, payload(tag, i));
            }
            old = await c.waitForEvents(5);
        } finally {
            c.close();
        }
        fs.writeFileSync(bootIdFile, second === 'same' ? fs.readFileSync(bootIdFile)
            : `bbbbbbbb-0000-4000-8000-${tag.padEnd(12, '0').slice(0, 12)}\n`);
        await restartTraced(h);
        const stream = await open(h, `/c/${tag}`, { 'Last-Event-ID': old[2].id });
        return { h, old, stream };
    }

    for (const fsync of ['batch', 'never']) {
        const own = { h: null };
        it(`fsync ${fsync}: old ids get reset "unknown-id" once, new ids are new`, () => own.h, async () => {
            const r = await rebootCase(fsync, 'other', `rb${fsync}`);
            own.h = r.h;
            try {
                const first = await r.stream.waitForFrame((f) => f.data !== null, 'the first event');
                assert.equal(first.event, 'reset', `a reset first: ${r.stream.describe()}`);
                assert.deepEqual(JSON.parse(first.data), { reason: 'unknown-id', last_id: r.old[2].id });
                assert.match(r.h.s.stderr, /machine restarted/, 'the new epoch is logged');
                await ctx.pub.publish(`c:rb${fsync}`, payload('after', 0));
                const [, fresh] = await r.stream.waitForEvents(2);
                assert.equal(payloadText(fresh), payload('after', 0));
                assert.ok(!r.old.some((o) => o.id === fresh.id), `id ${fresh.id} reused`);
            } finally {
                r.stream.close();
            }
            /* Once: resuming from the new id is exact, no second reset. */
            const again = await open(own.h, `/c/rb${fsync}`, { 'Last-Event-ID': (await lastId(own.h, `rb${fsync}`)) });
            try {
                await ctx.pub.publish(`c:rb${fsync}`, payload('after', 1));
                const [ev] = await again.waitForEvents(1);
                assert.equal(ev.event, null, `no reset: ${again.describe()}`);
                assert.equal(payloadText(ev), payload('after', 1));
            } finally {
                again.close();
            }
        });
    }

    for (const [fsync, boot] of [['always', 'other'], ['batch', 'same']]) {
        const own = { h: null };
        it(`fsync ${fsync}, ${boot === 'same' ? 'same boot id' : 'another boot id'}: exact resume`, () => own.h, async () => {
            const tag = `ok${fsync}${boot}`;
            const r = await rebootCase(fsync, boot, tag);
            own.h = r.h;
            try {
                const replay = await r.stream.waitForEvents(2);
                assert.deepEqual(replay.map((e) => e.id), r.old.slice(3).map((e) => e.id),
                    `exact replay, no reset: ${r.stream.describe()}`);
                assert.doesNotMatch(r.h.s.stderr, /machine restarted/);
            } finally {
                r.stream.close();
            }
        });
    }

    /* The id of the newest event of channel c:<tag> (a fresh stream with
     * snapshot would do too; here: publish nothing, read /metrics-free). */
    async function lastId(h, tag) {
        const c = await open(h, `/c/${tag}`);
        try {
            await ctx.pub.publish(`c:${tag}`, payload('probe', 0));
            const [ev] = await c.waitForEvents(1);
            return ev.id;
        } finally {
            c.close();
        }
    }
});
