'use strict';
/*
 * durability.test.js - what history.dir promises across stops, crashes
 * and damaged files (SPEC 3, 4 "Resume", 6), seen by a raw SSE client:
 *
 *   - a torn tail (garbage after the last record) is cut at start, logged,
 *     and starts a new id epoch (old ids reset once, never reused)
 *     as "corrupt or torn record", and every good event still resumes;
 *   - a corrupt byte inside a record keeps the events before it, drops it
 *     and everything after, and the ids of the dropped events are never
 *     handed out again;
 *   - "event: reset" reasons: unknown id, evicted id, an id from a history
 *     dir that was deleted, and the snapshot that follows a reset;
 *   - a restart without history.dir: old ids reset, new ids are new;
 *   - fsync never / batch / always: a kill -9 loses nothing already
 *     accepted (the journal is written before any browser sees an event);
 *   - a slow reader cut at max_pending resumes by id and ends with every
 *     event exactly once, in order.
 *
 * The journal format (record header of 44 bytes, see bridge/journal.c) is
 * used here only to find the byte to damage. Figures (restore times,
 * journal sizes) are printed as test diagnostics.
 */
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { after, before, describe, test } = require('node:test');
const { httpRequest, openSse } = require('./lib/sse');
const { makeTempDir, waitFor } = require('./lib/procs');
const { connectRedis, startRedis } = require('./lib/redis');
const { startSluice, withLog } = require('./lib/sluice');
const { assertIncreasing, contentFrames, parseEnvelope, readResuming } = require('./lib/fixtures');

const RETRY_MS = 500;
const RECORD_HEADER = 44;           /* bridge/journal.c: HEADER_SIZE */
const SEGMENT_RE = /^\d{20}\.log$/;

/*
 * The config (without "listen:") of every sluice here: the redis source
 * "cache" and three routes. opts: {dir, fsync, maxEvents, maxPending}.
 */
function durabilityConfig(redisPort, opts = {}) {
    const lines = [
        'sources:',
        '  - name: cache',
        '    type: redis',
        `    url: redis://127.0.0.1:${redisPort}`,
        'routes:',
        '  - path: /c/{ch}',
        '    topics: ["cache:c:{ch}"]',
        '  - path: /f',
        '    topics: ["cache:f:*"]',
        '  - path: /snap',
        '    topics: ["cache:snap:*"]',
        '    snapshot: true',
        'history:',
        `  max_events: ${opts.maxEvents || 100000}`,
    ];
    if (opts.dir) {
        lines.push(`  dir: ${opts.dir}`);
    }
    if (opts.fsync) {
        lines.push(`  fsync: ${opts.fsync}`);
    }
    lines.push('stream:', `  retry: ${RETRY_MS}ms`, '  heartbeat: 15s');
    if (opts.maxPending) {
        lines.push(`  max_pending: ${opts.maxPending}`);
    }
    lines.push('shutdown_grace: 1s', 'logging: {level: info, format: text}', '');
    return lines.join('\n');
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

/* Starts a sluice with durabilityConfig(opts); stopped by the after hook. */
async function launch(opts) {
    const s = await startSluice(durabilityConfig(ctx.redis.port, opts));
    ctx.sluices.push(s);
    return s;
}

/* The stderr of the current run only (not of earlier runs). */
function runLog(sluice) {
    return sluice.child ? sluice.child.stderrText : '';
}

/* {count, ms} from this run's "restored N events in M ms" line. */
function restoredLine(sluice) {
    const m = /restored (\d+) events in (\d+) ms/.exec(runLog(sluice));
    assert.ok(m, `no "restored N events in M ms" line in:\n${runLog(sluice)}`);
    return { count: Number(m[1]), ms: Number(m[2]) };
}

/* The value of one sample "SERIES VALUE" of /metrics, or null. */
async function metric(sluice, series) {
    const res = await httpRequest(sluice.port, '/metrics');
    assert.equal(res.status, 200);
    const line = res.body.split('\n').find((l) => l.startsWith(`${series} `));
    return line === undefined ? null : Number(line.slice(series.length + 1));
}

/* Opens a stream, checks 200 and waits for its retry frame. */
async function open(sluice, p, headers = {}) {
    const c = await openSse(sluice.port, p, { headers });
    assert.equal(c.status, 200, `GET ${p}: ${c.raw}`);
    await c.waitForFrame((f) => f.retry !== null, `the retry frame of ${p}`);
    return c;
}

/* Publishes every payload (pipelined, in order) to channel. */
async function publishAll(channel, payloads) {
    await Promise.all(payloads.map((p) => ctx.pub.publish(channel, p)));
}

/* JSON payload texts {"run":..., "i": from..to}. */
const RUN = `${process.pid}-${Date.now()}`;
function payloads(tag, from, to) {
    const out = [];
    for (let i = from; i <= to; i++) {
        out.push(JSON.stringify({ run: RUN, tag, i }));
    }
    return out;
}

const payloadText = (frame) => JSON.stringify(parseEnvelope(frame).payload);

/* Opens p, publishes `sent` to channel and returns the n events read. */
async function publishAndCollect(sluice, p, channel, sent) {
    const c = await open(sluice, p);
    try {
        await publishAll(channel, sent);
        const events = await c.waitForEvents(sent.length, 10000);
        assert.deepEqual(events.map(payloadText), sent, 'events arrive as published');
        assertIncreasing(events.map((e) => e.id));
        return events;
    } finally {
        c.close();
    }
}

/*
 * Resumes p from lastId and asserts that the stream replays exactly
 * `expected` (frames of an earlier stream: same ids, same payloads), with
 * no reset, then delivers one live event on channel right after them.
 * Returns the live event.
 */
async function assertResume(sluice, p, lastId, expected, channel) {
    const c = await open(sluice, p, { 'Last-Event-ID': lastId });
    try {
        const replay = await c.waitForEvents(expected.length, 10000);
        assert.deepEqual(replay.map((e) => e.id), expected.map((e) => e.id), 'replayed ids');
        assert.deepEqual(replay.map(payloadText), expected.map(payloadText), 'replayed payloads');
        const [live] = payloads('live', 0, 0);
        const [marker] = payloads('marker', 0, 0);
        await ctx.pub.publish(channel, live);
        await ctx.pub.publish(channel, marker);
        await c.waitUntil(() => c.events.some((e) => payloadText(e) === marker), 'the marker after the live event');
        const got = c.events[expected.length];
        assert.equal(payloadText(got), live, 'the live event follows the replay');
        assert.deepEqual(c.events.map(payloadText), [...expected.map(payloadText), live, marker],
            `the replay, the live event, the marker, nothing else: ${c.describe()}`);
        assert.ok(!contentFrames(c).some((f) => f.event === 'reset'), `no reset: ${c.describe()}`);
        return got;
    } finally {
        c.close();
    }
}

/*
 * Opens p with lastId and returns {reset, stream}: the parsed data of the
 * first content frame, which must be an "event: reset", and the open
 * stream (the caller closes it).
 */
async function openExpectingReset(sluice, p, lastId) {
    const c = await open(sluice, p, { 'Last-Event-ID': lastId });
    try {
        const first = await c.waitForFrame((f) => f.data !== null, 'the first event');
        assert.equal(first.event, 'reset', `a reset first: ${c.describe()}`);
        return { reset: JSON.parse(first.data), stream: c };
    } catch (err) {
        c.close();
        throw err;
    }
}

/* The journal segments of dir, oldest first (full paths). */
function segments(dir) {
    return fs.readdirSync(dir).filter((n) => SEGMENT_RE.test(n)).sort()
        .map((n) => path.join(dir, n));
}

function lastSegment(dir) {
    const segs = segments(dir);
    assert.ok(segs.length > 0, `no journal segment in ${dir}: ${fs.readdirSync(dir)}`);
    return segs[segs.length - 1];
}

/*
 * Walks the records of one segment (layout in bridge/journal.c): returns
 * [{offset, length, payloadOffset, payload}].
 */
function journalRecords(buf) {
    const records = [];
    let off = 0;
    while (off + RECORD_HEADER <= buf.length) {
        const length = buf.readUInt32LE(off + 4);
        assert.ok(length >= RECORD_HEADER && off + length <= buf.length,
            `bad record length ${length} at ${off}`);
        const sourceLen = buf.readUInt16LE(off + 32);
        const topicLen = buf.readUInt32LE(off + 36);
        const payloadLen = buf.readUInt32LE(off + 40);
        const payloadOffset = off + RECORD_HEADER + sourceLen + topicLen;
        records.push({
            offset: off,
            length,
            payloadOffset,
            payload: buf.toString('utf8', payloadOffset, payloadOffset + payloadLen),
        });
        off += length;
    }
    assert.equal(off, buf.length, 'the segment ends with a whole record');
    return records;
}

const it = (name, getSluice, fn) => test(name, withLog(getSluice, fn));

describe('a damaged journal', () => {
    const own = { tail: null, middle: null };

    it('a torn tail (17 garbage bytes) is cut at start; every good event resumes', () => own.tail, async (t) => {
        const dir = path.join(makeTempDir('sluice-dur-tail-'), 'history');
        own.tail = await launch({ dir });
        const sent = payloads('tail', 1, 10);
        const events = await publishAndCollect(own.tail, '/c/tail', 'c:tail', sent);
        assert.deepEqual(await own.tail.stop('SIGTERM'), { code: 0, signal: null }, 'clean stop');

        const seg = lastSegment(dir);
        const goodSize = fs.statSync(seg).size;
        assert.equal(journalRecords(fs.readFileSync(seg)).length, 10, 'ten records on disk');
        fs.appendFileSync(seg, Buffer.from('GARBAGE-NOT-A-REC', 'latin1'));
        assert.equal(fs.statSync(seg).size, goodSize + 17);

        await own.tail.start();
        assert.match(runLog(own.tail), /corrupt or torn record/, 'the cut is logged');
        const restored = restoredLine(own.tail);
        t.diagnostic(`torn tail: restored ${restored.count} events in ${restored.ms} ms`);
        assert.equal(restored.count, 10);
        assert.equal(fs.statSync(seg).size, goodSize, 'the tail was truncated back');

        /* The cut bytes may have been a record whose id a browser saw, so
         * sluice starts a new id epoch: old ids get one reset, never a
         * silent continuation. */
        assert.match(runLog(own.tail), /new id epoch/, 'the new epoch is logged');
        const { reset, stream } = await openExpectingReset(own.tail, '/c/tail', events[2].id);
        stream.close();
        assert.deepEqual(reset, { reason: 'unknown-id', last_id: events[2].id });
        const [live] = await publishAndCollect(own.tail, '/c/tail', 'c:tail', payloads('tail-live', 1, 1));
        assert.ok(!events.some((e) => e.id === live.id), 'the new event has a new id');
    });

    /* Shared by the two tests below: the events before the damage. */
    const middle = { events: null, live: null };

    it('a corrupt byte inside record 6 keeps 1..5 and drops the rest', () => own.middle, async (t) => {
        const dir = path.join(makeTempDir('sluice-dur-mid-'), 'history');
        own.middle = await launch({ dir });
        const sent = payloads('middle', 1, 10);
        const events = await publishAndCollect(own.middle, '/c/mid', 'c:mid', sent);
        middle.events = events;
        assert.deepEqual(await own.middle.stop('SIGTERM'), { code: 0, signal: null }, 'clean stop');

        const seg = lastSegment(dir);
        const buf = fs.readFileSync(seg);
        const records = journalRecords(buf);
        const sixth = records.find((r) => r.payload === sent[5]);
        assert.ok(sixth, `record 6 (${sent[5]}) is in ${seg}`);
        const at = sixth.payloadOffset + Math.floor(sent[5].length / 2);
        buf[at] ^= 0x01;
        fs.writeFileSync(seg, buf);

        await own.middle.start();
        assert.match(runLog(own.middle), /corrupt or torn record/, 'the damage is logged');
        const restored = restoredLine(own.middle);
        t.diagnostic(`corrupt record 6: restored ${restored.count} events in ${restored.ms} ms; ` +
            `segment ${buf.length} -> ${fs.statSync(seg).size} bytes`);
        assert.equal(restored.count, 5, 'events 1..5 remain');
        assert.equal(fs.statSync(seg).size, sixth.offset, 'the segment is cut before record 6');
        assert.equal(await metric(own.middle, 'sluice_history_events'), 5);

        /* The lost events are gone: resuming after event 8 cannot be
         * honoured (checked before any new event exists). */
        const { reset, stream } = await openExpectingReset(own.middle, '/c/mid', events[7].id);
        stream.close();
        assert.equal(reset.last_id, events[7].id);
        assert.ok(['unknown-id', 'expired'].includes(reset.reason), JSON.stringify(reset));

        /* Even an id before the damage resets: after a cut, sluice cannot
         * prove which ids it had issued, so it starts a new epoch. */
        const before = await openExpectingReset(own.middle, '/c/mid', events[1].id);
        before.stream.close();
        assert.deepEqual(before.reset, { reason: 'unknown-id', last_id: events[1].id });
        [middle.live] = await publishAndCollect(own.middle, '/c/mid', 'c:mid', payloads('middle-live', 1, 1));
    });

    it('ids of the dropped events 6..10 are never issued again', () => own.middle, async () => {
        assert.ok(middle.events && middle.live, 'the previous test ran');
        const lost = middle.events.slice(5);
        const sent = payloads('after-damage', 1, 6);
        const fresh = [middle.live, ...await publishAndCollect(own.middle, '/c/mid', 'c:mid', sent)];
        const reused = fresh.filter((e) => lost.some((l) => l.id === e.id));
        assert.deepEqual(reused.map((e) => e.id), [],
            `new events reuse ids of lost ones (SPEC 3.2: never reused); lost ${lost.map((e) => e.id)}, ` +
            `new ${fresh.map((e) => e.id)}`);

        /* A browser that saw lost event 6 must get a reset, not a silent
         * continuation that skips whatever now sits behind that id. */
        const { reset, stream } = await openExpectingReset(own.middle, '/c/mid', lost[0].id);
        stream.close();
        assert.equal(reset.last_id, lost[0].id);
    });
});

describe('reset reasons', () => {
    const own = { mem: null, small: null, deleted: null };
    before(async () => {
        [own.mem, own.small] = await Promise.all([launch({}), launch({ maxEvents: 5 })]);
    });

    it('an unknown id ("zzz-1") gives reset "unknown-id", then live events', () => own.mem, async () => {
        const { reset, stream } = await openExpectingReset(own.mem, '/c/unk', 'zzz-1');
        try {
            assert.deepEqual(reset, { reason: 'unknown-id', last_id: 'zzz-1' });
            const [live] = payloads('unknown', 1, 1);
            await ctx.pub.publish('c:unk', live);
            const ev = await stream.waitForEvents(2);
            assert.equal(payloadText(ev[1]), live);
        } finally {
            stream.close();
        }
    });

    it('an evicted id (max_events 5, 20 published) gives reset "expired"', () => own.small, async () => {
        const events = await publishAndCollect(own.small, '/c/evict', 'c:evict', payloads('evict', 1, 20));
        const { reset, stream } = await openExpectingReset(own.small, '/c/evict', events[0].id);
        try {
            assert.deepEqual(reset, { reason: 'expired', last_id: events[0].id });
            const [live] = payloads('evict-live', 1, 1);
            await ctx.pub.publish('c:evict', live);
            const ev = await stream.waitForEvents(2);
            assert.equal(payloadText(ev[1]), live, 'a fresh connect: no replay, then live');
        } finally {
            stream.close();
        }
    });

    it('after a reset on a snapshot route the snapshot follows', () => own.mem, async () => {
        const sent = payloads('snap', 1, 3);
        const received = 'sluice_events_received_total{source="cache"}';
        const before = await metric(own.mem, received);
        await ctx.pub.publish('snap:a', sent[0]);
        await ctx.pub.publish('snap:a', sent[1]);
        await ctx.pub.publish('snap:b', sent[2]);
        await waitFor(async () => (await metric(own.mem, received)) >= before + 3,
            'sluice received the three snapshot events');
        const { reset, stream } = await openExpectingReset(own.mem, '/snap', 'zzz-1');
        try {
            assert.equal(reset.reason, 'unknown-id');
            const ev = await stream.waitForEvents(3);
            assert.deepEqual(ev.slice(1).map(payloadText), [sent[1], sent[2]],
                'the latest event of each topic, oldest first');
            assert.deepEqual(ev.slice(1).map((e) => parseEnvelope(e).topic), ['snap:a', 'snap:b']);
        } finally {
            stream.close();
        }
    });

    it('an id from a deleted history dir gives reset "unknown-id"', () => own.deleted, async () => {
        const dir = path.join(makeTempDir('sluice-dur-del-'), 'history');
        own.deleted = await launch({ dir });
        const old = await publishAndCollect(own.deleted, '/c/del', 'c:del', payloads('del', 1, 3));
        assert.deepEqual(await own.deleted.stop('SIGTERM'), { code: 0, signal: null });
        fs.rmSync(dir, { recursive: true, force: true });
        await own.deleted.start();
        assert.equal(restoredLine(own.deleted).count, 0, 'nothing to restore');

        const { reset, stream } = await openExpectingReset(own.deleted, '/c/del', old[2].id);
        stream.close();
        assert.deepEqual(reset, { reason: 'unknown-id', last_id: old[2].id });
        const fresh = await publishAndCollect(own.deleted, '/c/del', 'c:del', payloads('del2', 1, 3));
        for (const e of fresh) {
            assert.ok(!old.some((o) => o.id === e.id), `id ${e.id} reused from the lost history`);
        }
    });
});

describe('restart without history.dir', () => {
    const own = { s: null };

    it('an old id gets reset "unknown-id"; new ids differ from every old id', () => own.s, async () => {
        own.s = await launch({});
        const old = await publishAndCollect(own.s, '/c/mem', 'c:mem', payloads('mem', 1, 10));
        await own.s.stop('SIGKILL');
        await own.s.start();

        for (const id of [old[9].id, old[0].id]) {
            const { reset, stream } = await openExpectingReset(own.s, '/c/mem', id);
            stream.close();
            assert.deepEqual(reset, { reason: 'unknown-id', last_id: id });
        }
        const fresh = await publishAndCollect(own.s, '/c/mem', 'c:mem', payloads('mem2', 1, 10));
        const oldIds = new Set(old.map((e) => e.id));
        assert.deepEqual(fresh.filter((e) => oldIds.has(e.id)).map((e) => e.id), [], 'no id reused');
    });
});

describe('kill -9 with each fsync mode loses nothing', () => {
    for (const fsync of ['always', 'never', 'batch']) {
        const own = { s: null };
        it(`fsync: ${fsync}`, () => own.s, async (t) => {
            const dir = path.join(makeTempDir(`sluice-dur-${fsync}-`), 'history');
            own.s = await launch({ dir, fsync });
            /* One channel per event, so a snapshot holds all 50. */
            const sent = payloads(`fsync-${fsync}`, 1, 50);
            const c = await open(own.s, '/f');
            let events;
            try {
                for (let i = 0; i < sent.length; i++) {
                    await ctx.pub.publish(`f:${i + 1}`, sent[i]);
                }
                events = await c.waitForEvents(50, 10000);
            } finally {
                c.close();
            }
            assert.deepEqual(events.map(payloadText), sent);
            assert.deepEqual(await own.s.stop('SIGKILL'), { code: null, signal: 'SIGKILL' });

            await own.s.start();
            const restored = restoredLine(own.s);
            const bytes = segments(dir).reduce((n, f) => n + fs.statSync(f).size, 0);
            t.diagnostic(`fsync ${fsync}: kill -9, restored ${restored.count} events in ${restored.ms} ms ` +
                `(${bytes} journal bytes)`);
            assert.equal(restored.count, 50);
            assert.equal(await metric(own.s, 'sluice_history_events'), 50);

            const snap = await open(own.s, '/f?snapshot=1');
            try {
                const got = await snap.waitForEvents(50);
                assert.deepEqual(got.map((e) => e.id), events.map((e) => e.id), 'same ids after the crash');
                assert.deepEqual(got.map(payloadText), sent);
            } finally {
                snap.close();
            }
            await assertResume(own.s, '/f', events[0].id, events.slice(1), 'f:live');
        });
    }

    const big = { s: null };
    const BIG = 20000;
    it(`a larger journal (${BIG} events) restores fully after kill -9`, () => big.s, async (t) => {
        const dir = path.join(makeTempDir('sluice-dur-big-'), 'history');
        big.s = await launch({ dir });
        const sent = payloads('big', 1, BIG);
        /* The reader is what a browser is: under load (ASan, ctest -j2 on
         * 2 cores) it can fall more than stream.max_pending (1 MiB) behind
         * this 4 MB burst and be cut by the server's slow-client policy;
         * then it resumes by id, and must still end with every event once. */
        const c = await open(big.s, '/c/big');
        const reading = readResuming(big.s.port, '/c/big', BIG, { first: c, timeoutMs: 120000 });
        /* 1000 pipelined PUBLISHes at a time while this process also reads
         * the 4 MB burst: on a loaded machine a reply can take longer than
         * the default 5 s without anything being wrong. */
        ctx.pub.timeoutMs = 60000;
        try {
            for (let i = 0; i < BIG; i += 1000) {
                await publishAll('c:big', sent.slice(i, i + 1000));
            }
        } finally {
            ctx.pub.timeoutMs = undefined;
        }
        const { events, cuts } = await reading;
        t.diagnostic(`the reader was cut ${cuts} time(s) (sluice_clients_dropped_total{reason="slow"} = ` +
            `${await metric(big.s, 'sluice_clients_dropped_total{reason="slow"}')})`);
        assert.ok(events.map(payloadText).every((p, i) => p === sent[i]),
            'every event once, in publish order');
        await big.s.stop('SIGKILL');
        await big.s.start();
        const restored = restoredLine(big.s);
        const bytes = segments(dir).reduce((n, f) => n + fs.statSync(f).size, 0);
        t.diagnostic(`${BIG} events: kill -9, restored ${restored.count} events in ${restored.ms} ms ` +
            `(${bytes} journal bytes)`);
        assert.equal(restored.count, BIG);
        await assertResume(big.s, '/c/big', events[BIG - 11].id, events.slice(BIG - 10), 'c:big');
    });
});

describe('a slow reader cut at max_pending resumes without loss', () => {
    const own = { s: null };
    const N = 3000;

    /* Reads one stream until it ends or holds `want` events in total. */
    async function readUntil(c, collected, want, timeoutMs) {
        await c.waitUntil(() => collected.length + c.events.length >= want || c.ended,
            `${want} events or the end of the stream`, timeoutMs).catch((err) => {
            if (!c.ended) {
                throw err;
            }
        });
    }

    it(`a paused client is cut, reconnects with its last id and gets all ${N} + 10 exactly once`, () => own.s, async (t) => {
        own.s = await launch({ maxPending: '64KiB', maxEvents: 100000 });
        const warm = payloads('warm', 1, 10);
        const filler = 'x'.repeat(2048);
        const bulk = [];
        for (let i = 1; i <= N; i++) {
            bulk.push(JSON.stringify({ run: RUN, tag: 'bulk', i, filler }));
        }
        const expected = [...warm, ...bulk];

        const slow = await open(own.s, '/c/slow');
        await publishAll('c:slow', warm);
        await slow.waitForEvents(10);
        slow.res.socket.pause();

        const started = Date.now();
        for (let i = 0; i < N; i += 200) {
            await publishAll('c:slow', bulk.slice(i, i + 200));
        }
        t.diagnostic(`published ${N} x ${filler.length + 40} B in ${Date.now() - started} ms`);
        await waitFor(async () => (await metric(own.s, 'sluice_clients_dropped_total{reason="slow"}')) >= 1,
            'sluice_clients_dropped_total{reason="slow"} >= 1', 15000, 100);

        /* Drain what the kernel still holds, up to the cut. */
        slow.res.socket.resume();
        await slow.waitForEnd(15000);
        const collected = slow.events.slice();
        t.diagnostic(`the slow client had ${collected.length} events when it was cut`);
        assert.ok(collected.length < expected.length, 'it was cut before the end');

        let reconnects = 0;
        while (collected.length < expected.length) {
            assert.ok(reconnects < 5, `too many reconnects (${reconnects})`);
            reconnects += 1;
            const lastId = collected[collected.length - 1].id;
            const c = await open(own.s, '/c/slow', { 'Last-Event-ID': lastId });
            try {
                await readUntil(c, collected, expected.length, 20000);
                assert.ok(!contentFrames(c).some((f) => f.event === 'reset'), `no reset: ${c.describe()}`);
                collected.push(...c.events);
            } finally {
                c.close();
            }
        }
        t.diagnostic(`complete after ${reconnects} reconnect(s)`);
        assert.equal(collected.length, expected.length, 'every event once');
        assert.ok(collected.map(payloadText).every((p, i) => p === expected[i]),
            'payloads in publish order, none missing or repeated');
        assertIncreasing(collected.map((e) => e.id));
        assert.equal(new Set(collected.map((e) => e.id)).size, collected.length, 'no duplicate id');
    });
});
