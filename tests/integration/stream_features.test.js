'use strict';
/*
 * stream_features.test.js - the stream settings of SPEC 3 `stream` and
 * the stream behaviour of SPEC 4 against the real binary: gzip/deflate
 * with a Z_SYNC_FLUSH per event, the padding comment, retry:, overload
 * (max_connections), enabled: false, HEAD, HTTP/1.0 close-delimited
 * streams, snapshots, and slow clients cut at max_pending that resume
 * from the history without a gap.
 *
 * One redis-server is shared; each feature group runs its own sluice with
 * the settings it needs, so the groups cannot disturb each other's
 * counters and connection limits.
 */
const assert = require('node:assert/strict');
const zlib = require('node:zlib');
const http = require('node:http');
const { after, before, describe, test } = require('node:test');
const { httpRequest, openSse, rawRequest } = require('./lib/sse');
const { waitFor, withTimeout } = require('./lib/procs');
const { connectRedis, startRedis } = require('./lib/redis');
const { startSluice, withLog } = require('./lib/sluice');
const { assertIncreasing, contentFrames, parseEnvelope, uniquePayload } = require('./lib/fixtures');

const RETRY_MS = 3000;
const RETRY_OVERLOAD_MS = 7000;

/*
 * A config (without "listen:") for the redis source "cache" with the
 * routes every group uses and `stream` settings from opts (YAML scalars:
 * {compression, padding, maxConnections, maxPending}), plus optional
 * history max_events.
 */
function featureConfig(redisPort, opts = {}) {
    const lines = [
        'sources:',
        '  - name: cache',
        '    type: redis',
        `    url: redis://127.0.0.1:${redisPort}`,
        'routes:',
        '  - path: /c/{ch}',
        '    topics: ["cache:c:{ch}"]',
        '  - path: /off',
        '    topics: ["cache:off"]',
        '    enabled: false',
        '  - path: /snap',
        '    topics: ["cache:snap:*"]',
        '    snapshot: true',
        '  - path: /other',
        '    topics: ["cache:other"]',
        'stream:',
        `  retry: ${RETRY_MS}ms`,
        '  heartbeat: 15s',
        `  retry_overload: ${RETRY_OVERLOAD_MS}ms`,
    ];
    if (opts.compression !== undefined) {
        lines.push(`  compression: ${opts.compression}`);
    }
    if (opts.padding !== undefined) {
        lines.push(`  padding: ${opts.padding}`);
    }
    if (opts.maxConnections !== undefined) {
        lines.push(`  max_connections: ${opts.maxConnections}`);
    }
    if (opts.maxPending !== undefined) {
        lines.push(`  max_pending: ${opts.maxPending}`);
    }
    if (opts.maxEvents !== undefined) {
        lines.push('history:', `  max_events: ${opts.maxEvents}`);
    }
    lines.push('shutdown_grace: 2s', 'logging: {level: info, format: text}', '');
    return lines.join('\n');
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

/*
 * Stops sluice with SIGTERM and asserts a clean exit: status 0 and no
 * sanitizer report (with an ASan/LSan build as SLUICE_BIN, a leak makes
 * the exit status non-zero and prints "ERROR: LeakSanitizer").
 */
async function stopCleanly(sluice) {
    const result = await sluice.stop('SIGTERM');
    assert.doesNotMatch(sluice.stderr, /ERROR: \w*Sanitizer/, sluice.stderrTail(60));
    assert.deepEqual(result, { code: 0, signal: null }, `clean exit; stderr:\n${sluice.stderrTail()}`);
}

/*
 * Registers before/after hooks for one sluice with featureConfig(opts) in
 * the current describe block; returns {sluice} filled by the hook. The
 * after hook fails the block when sluice does not stop cleanly.
 */
function useSluice(opts) {
    const own = { sluice: null };
    before(async () => {
        own.sluice = await startSluice(featureConfig(ctx.redis.port, opts));
    });
    after(async () => {
        if (own.sluice) {
            await stopCleanly(own.sluice);
        }
    });
    return own;
}

/* Opens a stream, checks 200 and waits for its retry frame. */
async function open(sluice, path, headers) {
    const c = await openSse(sluice.port, path, { headers });
    assert.equal(c.status, 200, `GET ${path}: ${c.raw}`);
    await c.waitForFrame((f) => f.retry !== null, 'the retry frame');
    return c;
}

/* The value of one sample "SERIES VALUE" of /metrics, or null. */
async function metric(sluice, series) {
    const res = await httpRequest(sluice.port, '/metrics');
    assert.equal(res.status, 200);
    const line = res.body.split('\n').find((l) => l.startsWith(`${series} `));
    return line === undefined ? null : Number(line.slice(series.length + 1));
}

/*
 * A GET whose body is kept as raw (still compressed) bytes, and also
 * piped into sink when one is given (from the first byte on). Resolves
 * once the headers arrived with {res, bytes(): Buffer, close()}.
 */
function openRaw(port, path, headers, sink = null) {
    return withTimeout(new Promise((resolve, reject) => {
        const req = http.request({
            host: '127.0.0.1', port, path, method: 'GET', agent: false,
            headers: { Accept: 'text/event-stream', ...headers },
        });
        req.on('response', (res) => {
            const parts = [];
            res.on('data', (d) => parts.push(d));
            res.on('error', () => {});
            if (sink) {
                res.pipe(sink);
            }
            resolve({
                res,
                bytes: () => Buffer.concat(parts),
                close: () => { req.destroy(); res.destroy(); },
            });
        });
        req.on('error', reject);
        req.end();
    }), `response headers for ${path}`);
}

/*
 * Decodes everything received so far with a sync-flush finish, so only
 * data the server has flushed is visible: a frame is readable here
 * exactly when the server sent a Z_SYNC_FLUSH (or finished) after it.
 */
function decodeSoFar(buf, encoding) {
    const opts = { finishFlush: zlib.constants.Z_SYNC_FLUSH };
    const out = encoding === 'gzip' ? zlib.gunzipSync(buf, opts) : zlib.inflateSync(buf, opts);
    return out.toString('utf8');
}

describe('compression', () => {
    const own = useSluice({ compression: true });
    const it = (name, fn) => test(name, withLog(() => own.sluice, fn));

    /* Opens a compressed stream, waits for its retry frame, then checks
     * that each published event decodes within 500 ms of its PUBLISH. */
    async function assertFlushedPerEvent(encoding, acceptEncoding, channel) {
        const s = await openRaw(own.sluice.port, `/c/${channel}`, { 'Accept-Encoding': acceptEncoding });
        try {
            assert.equal(s.res.statusCode, 200);
            assert.equal(s.res.headers['content-encoding'], encoding);
            assert.match(s.res.headers.vary || '', /accept-encoding/i);
            assert.match(s.res.headers['content-type'], /^text\/event-stream/);
            await waitFor(() => s.bytes().length > 0 &&
                decodeSoFar(s.bytes(), encoding).startsWith(`retry: ${RETRY_MS}\n\n`),
            `the compressed retry frame (${encoding})`);
            for (let i = 0; i < 3; i++) {
                const payload = uniquePayload({ encoding, i });
                const t0 = Date.now();
                await ctx.pub.publish(`c:${channel}`, payload);
                const text = await waitFor(() => {
                    const t = decodeSoFar(s.bytes(), encoding);
                    return t.includes(`"payload":${payload}}\n\n`) && t;
                }, `event ${i} to decode from the bytes received (Z_SYNC_FLUSH)`, 500, 5);
                assert.ok(Date.now() - t0 <= 600, `event ${i} decoded after ${Date.now() - t0} ms`);
                const frames = text.split('\n\n').filter((f) => f.startsWith('id: '));
                assert.equal(frames.length, i + 1, `one frame per event: ${text}`);
            }
        } finally {
            s.close();
        }
    }

    it('gzip: Content-Encoding, Vary, and each event flushed on its own', async () => {
        await assertFlushedPerEvent('gzip', 'gzip, deflate, br', 'gz');
    });

    it('gzip also decodes as a stream with zlib.createGunzip()', async () => {
        const gunzip = zlib.createGunzip({ flush: zlib.constants.Z_SYNC_FLUSH });
        let text = '';
        gunzip.on('data', (d) => { text += d.toString('utf8'); });
        gunzip.on('error', () => {});
        const s = await openRaw(own.sluice.port, '/c/gzs', { 'Accept-Encoding': 'gzip' }, gunzip);
        try {
            assert.equal(s.res.headers['content-encoding'], 'gzip');
            await waitFor(() => text.startsWith(`retry: ${RETRY_MS}\n\n`), 'the retry frame through createGunzip');
            const payload = uniquePayload({ streamed: true });
            await ctx.pub.publish('c:gzs', payload);
            await waitFor(() => text.includes(`"payload":${payload}}\n\n`),
                'the event through createGunzip without more data', 500, 5);
        } finally {
            s.res.unpipe(gunzip);
            gunzip.destroy();
            s.close();
        }
    });

    it('deflate when only deflate is accepted (zlib format)', async () => {
        await assertFlushedPerEvent('deflate', 'deflate', 'df');
    });

    it('gzip;q=0 refuses gzip: deflate is used when it is also offered', async () => {
        await assertFlushedPerEvent('deflate', 'gzip;q=0, deflate', 'dq');
    });

    it('no compression without Accept-Encoding, or with identity, br or gzip;q=0 only', async () => {
        for (const accept of [undefined, 'identity', 'gzip;q=0', 'br']) {
            const headers = accept === undefined ? {} : { 'Accept-Encoding': accept };
            const c = await open(own.sluice, '/c/plain', headers);
            try {
                assert.equal(c.headers['content-encoding'], undefined, `Accept-Encoding: ${accept}`);
                assert.ok(c.raw.startsWith(`retry: ${RETRY_MS}\n\n`), `plain body for ${accept}: ${JSON.stringify(c.raw)}`);
                const payload = uniquePayload({ accept });
                await ctx.pub.publish('c:plain', payload);
                const [ev] = await c.waitForEvents(1);
                assert.equal(JSON.stringify(parseEnvelope(ev, { topic: 'c:plain' }).payload), payload);
            } finally {
                c.close();
            }
        }
    });

    describe('with compression: false', () => {
        const off = useSluice({ compression: false, padding: 2048 });
        const itOff = (name, fn) => test(name, withLog(() => off.sluice, fn));

        itOff('the stream is not compressed even when gzip is accepted', async () => {
            const c = await open(off.sluice, '/c/nz', { 'Accept-Encoding': 'gzip, deflate' });
            try {
                assert.equal(c.headers['content-encoding'], undefined);
                const payload = uniquePayload();
                await ctx.pub.publish('c:nz', payload);
                const [ev] = await c.waitForEvents(1);
                assert.equal(JSON.stringify(parseEnvelope(ev).payload), payload);
            } finally {
                c.close();
            }
        });

        itOff('padding: 2048 sends a 2048-byte ":" comment line before retry:', async () => {
            const c = await open(off.sluice, '/c/pad');
            try {
                const nl = c.raw.indexOf('\n');
                assert.equal(nl, 2048, 'the comment line is 2048 bytes before its newline');
                assert.equal(c.raw.slice(0, 2048), `:${' '.repeat(2047)}`);
                assert.ok(c.raw.slice(2049).startsWith(`retry: ${RETRY_MS}\n\n`),
                    `retry: follows the padding: ${JSON.stringify(c.raw.slice(2049, 2100))}`);
                const payload = uniquePayload();
                await ctx.pub.publish('c:pad', payload);
                const [ev] = await c.waitForEvents(1);
                assert.equal(JSON.stringify(parseEnvelope(ev).payload), payload);
            } finally {
                c.close();
            }
        });
    });
});

describe('retry, enabled: false, HEAD', () => {
    const own = useSluice({});
    const it = (name, fn) => test(name, withLog(() => own.sluice, fn));

    it('retry: is stream.retry in milliseconds, in the first frame', async () => {
        const c = await open(own.sluice, '/c/retry');
        try {
            assert.equal(c.frames[0].retry, RETRY_MS);
            assert.ok(c.raw.startsWith(`retry: ${RETRY_MS}\n\n`), JSON.stringify(c.raw));
        } finally {
            c.close();
        }
    });

    it('a route with enabled: false answers 204 with no body', async () => {
        for (const method of ['GET', 'HEAD']) {
            const res = await httpRequest(own.sluice.port, '/off', { method });
            assert.equal(res.status, 204, method);
            assert.equal(res.body, '');
            assert.doesNotMatch(res.headers['content-type'] || '', /event-stream/);
        }
    });

    it('HEAD on a route: 200, the stream headers, no body, no open stream', async () => {
        const res = await httpRequest(own.sluice.port, '/c/head', { method: 'HEAD' });
        assert.equal(res.status, 200);
        assert.match(res.headers['content-type'], /^text\/event-stream/);
        assert.equal(res.headers['cache-control'], 'no-store');
        assert.equal(res.headers['x-accel-buffering'], 'no');
        assert.equal(res.body, '');
        await waitFor(async () => (await metric(own.sluice, 'sluice_connections')) === 0,
            'sluice_connections 0 after HEAD');
    });

    it('HEAD /healthz: 200 and no body (raw wire view)', async () => {
        /* Raw socket: a body after a HEAD response would corrupt the
         * connection, and node's parser would only say "Parse Error". */
        /* A GET pipelined after it is the marker: its response starts
         * right where the HEAD response's head ends, or a body came between. */
        const { sock, state } = await rawRequest(own.sluice.port,
            'HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
        try {
            await waitFor(() => state.ended, 'both responses and the close');
            const sep = state.text.indexOf('\r\n\r\n');
            assert.match(state.text, /^HTTP\/1\.1 200 /);
            assert.match(state.text.slice(sep + 4), /^HTTP\/1\.1 200 /,
                `no body after a HEAD response: ${JSON.stringify(state.text)}`);
        } finally {
            sock.destroy();
        }
    });
});

describe('overload (max_connections: 2)', () => {
    const own = useSluice({ maxConnections: 2 });
    const it = (name, fn) => test(name, withLog(() => own.sluice, fn));

    it('the third stream gets 200, retry: retry_overload, and is closed', async () => {
        const a = await open(own.sluice, '/c/ov1');
        const b = await open(own.sluice, '/c/ov2');
        try {
            const third = await openSse(own.sluice.port, '/c/ov3');
            await third.waitForEnd();
            assert.equal(third.status, 200);
            assert.match(third.headers['content-type'], /^text\/event-stream/);
            assert.equal(third.raw, `retry: ${RETRY_OVERLOAD_MS}\n\n`);
            assert.ok(await metric(own.sluice, 'sluice_clients_dropped_total{reason="overload"}') >= 1);

            /* The two open streams still work. */
            const payload = uniquePayload();
            await ctx.pub.publish('c:ov1', payload);
            const [ev] = await a.waitForEvents(1);
            assert.equal(JSON.stringify(parseEnvelope(ev).payload), payload);
            assert.equal(b.ended, false);

            /* After one closes, a new stream is accepted again. */
            a.close();
            const fresh = await waitFor(async () => {
                const c = await openSse(own.sluice.port, '/c/ov4');
                const first = await c.waitForFrame((f) => f.retry !== null, 'a retry frame');
                if (first.retry === RETRY_MS) {
                    return c;
                }
                c.close();
                return null;
            }, 'a stream accepted after one of the two closed', 5000, 100);
            try {
                assert.equal(fresh.ended, false);
                const p2 = uniquePayload();
                await ctx.pub.publish('c:ov4', p2);
                const [ev2] = await fresh.waitForEvents(1);
                assert.equal(JSON.stringify(parseEnvelope(ev2).payload), p2);
            } finally {
                fresh.close();
            }
        } finally {
            a.close();
            b.close();
        }
    });
});

describe('HTTP/1.0', () => {
    const local = { sluice: null };
    after(async () => {
        await local.sluice?.stop();
    });

    test('a close-delimited stream, plain SSE, closed by the server on SIGTERM', withLog(() => local.sluice, async () => {
        local.sluice = await startSluice(featureConfig(ctx.redis.port, {}));
        const { sock, state } = await rawRequest(local.sluice.port,
            'GET /c/h10 HTTP/1.0\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n');
        try {
            await waitFor(() => state.text.includes(`retry: ${RETRY_MS}\n\n`), 'the retry frame over HTTP/1.0');
            const payload = uniquePayload({ h10: true });
            await ctx.pub.publish('c:h10', payload);
            await waitFor(() => state.text.includes(`"payload":${payload}}\n\n`), 'the event over HTTP/1.0');
            const sep = state.text.indexOf('\r\n\r\n');
            const head = state.text.slice(0, sep);
            const body = state.text.slice(sep + 4);
            assert.match(head, /^HTTP\/1\.[01] 200 /);
            assert.doesNotMatch(head, /^transfer-encoding:/im);
            assert.match(head, /^content-type: text\/event-stream/im);
            assert.match(body, new RegExp(`^retry: ${RETRY_MS}\\n\\nid: [^\\n]+\\ndata: \\{[^\\n]*\\}\\n\\n$`),
                `plain SSE text, no chunk framing: ${JSON.stringify(body)}`);
            /* It stays open: a second event (the marker) arrives on it. */
            const marker = uniquePayload({ h10: 'marker' });
            await ctx.pub.publish('c:h10', marker);
            await waitFor(() => state.text.includes(`"payload":${marker}}\n\n`) || state.ended, 'the marker over HTTP/1.0');
            assert.equal(state.ended, false, 'the stream stays open');
            const events = state.text.slice(sep + 4);
            assert.match(events.slice(body.length), /^id: [^\n]+\ndata: \{[^\n]*\}\n\n$/, 'one more event');

            const { code } = await local.sluice.stop('SIGTERM');
            assert.equal(code, 0);
            await waitFor(() => state.ended, 'the server to close the HTTP/1.0 stream', 3000);
            assert.match(state.text.slice(sep + 4 + events.length), /^retry: \d+\n\n$/,
                'a final retry frame, then the close');
        } finally {
            sock.destroy();
        }
    }));
});

describe('snapshot', () => {
    const own = useSluice({});
    const it = (name, fn) => test(name, withLog(() => own.sluice, fn));

    it('sends the latest event per topic oldest first, then the head id; ?snapshot=0 and resumes do not', async () => {
        /* Observers: one on /snap without snapshot, one on /other. */
        const obs = await open(own.sluice, '/snap?snapshot=0');
        const other = await open(own.sluice, '/other');
        try {
            assert.equal(contentFrames(obs).length, 0, `?snapshot=0 on an empty history: ${obs.describe()}`);
            const order = [['snap:a', 'a1'], ['snap:b', 'b1'], ['snap:a', 'a2'], ['snap:c', 'c1']];
            for (const [ch, tag] of order) {
                await ctx.pub.publish(ch, JSON.stringify({ tag }));
            }
            const seen = await obs.waitForEvents(4);
            const byTag = Object.fromEntries(seen.map((e) => [parseEnvelope(e).payload.tag, e]));
            await ctx.pub.publish('other', '"head"');
            const [head] = await other.waitForEvents(1);
            assertIncreasing([byTag.c1.id, head.id]);

            /* Fresh connect: b1, a2, c1 (by last update), then id: <head>. */
            const fresh = await open(own.sluice, '/snap');
            try {
                const idOnly = await fresh.waitForFrame((f) => f.data === null && f.id !== null && f.retry === null,
                    'the id-only frame after the snapshot');
                assert.equal(idOnly.id, head.id, 'the snapshot ends with the head id');
                const events = fresh.events;
                assert.deepEqual(events.map((e) => parseEnvelope(e).payload.tag), ['b1', 'a2', 'c1'],
                    fresh.describe());
                assert.deepEqual(events.map((e) => e.id), [byTag.b1.id, byTag.a2.id, byTag.c1.id],
                    'snapshot events keep their ids');
                assert.deepEqual(events.map((e) => parseEnvelope(e).topic), ['snap:b', 'snap:a', 'snap:c']);
                const content = contentFrames(fresh);
                assert.equal(content[content.length - 1], idOnly, 'the id-only frame comes last');
                /* Then live events. */
                await ctx.pub.publish('snap:d', '{"tag":"d1"}');
                const all = await fresh.waitForEvents(4);
                assert.equal(parseEnvelope(all[3]).payload.tag, 'd1');
            } finally {
                fresh.close();
            }
            await obs.waitForEvents(5);

            /* The last snapshot event is the head: no id-only frame. */
            await ctx.pub.publish('snap:b', '{"tag":"b2"}');
            const [, , , , , b2] = await obs.waitForEvents(6);
            /* Each check below ends on a live event (the marker): whatever
             * the stream was due to send first would come before it. */
            const atHead = await open(own.sluice, '/snap');
            try {
                const events = await atHead.waitForEvents(4);
                assert.deepEqual(events.map((e) => parseEnvelope(e).payload.tag), ['a2', 'c1', 'd1', 'b2']);
                assert.equal(events[3].id, b2.id);
                await ctx.pub.publish('snap:e', '{"tag":"e1"}');
                await atHead.waitForEvents(5);
                assert.deepEqual(contentFrames(atHead).map((f) => f.data !== null && parseEnvelope(f).payload.tag),
                    ['a2', 'c1', 'd1', 'b2', 'e1'], `no id-only frame after the snapshot: ${atHead.describe()}`);
            } finally {
                atHead.close();
            }
            await obs.waitForEvents(7);

            /* ?snapshot=0 disables it on a snapshot route. */
            const none = await open(own.sluice, '/snap?snapshot=0');
            try {
                await ctx.pub.publish('snap:c', '{"tag":"c2"}');
                await none.waitForEvents(1);
                assert.deepEqual(contentFrames(none).map((f) => f.data !== null && parseEnvelope(f).payload.tag),
                    ['c2'], `no snapshot with ?snapshot=0: ${none.describe()}`);
            } finally {
                none.close();
            }
            const [, , , , , , , c2] = await obs.waitForEvents(8);

            /* A resume with Last-Event-ID replays, without a snapshot. */
            const resumed = await open(own.sluice, '/snap', { 'Last-Event-ID': byTag.a2.id });
            try {
                const replay = await resumed.waitForEvents(5);
                assert.deepEqual(replay.map((e) => parseEnvelope(e).payload.tag), ['c1', 'd1', 'b2', 'e1', 'c2']);
                assert.deepEqual(replay.map((e) => e.id), obs.events.slice(3, 8).map((e) => e.id));
                assert.equal(replay[4].id, c2.id);
                await ctx.pub.publish('snap:f', '{"tag":"f1"}');
                await resumed.waitForEvents(6);
                assert.deepEqual(contentFrames(resumed).map((f) => f.data !== null && parseEnvelope(f).payload.tag),
                    ['c1', 'd1', 'b2', 'e1', 'c2', 'f1'], `only the replay, then live: ${resumed.describe()}`);
            } finally {
                resumed.close();
            }
        } finally {
            obs.close();
            other.close();
        }
    });
});

describe('slow client (max_pending: 64KiB)', () => {
    const own = useSluice({ maxPending: '64KiB', maxEvents: 10000 });
    const it = (name, fn) => test(name, withLog(() => own.sluice, fn));
    const N = 2000;
    const BATCH = 50;

    it('a client that stops reading is cut, the others get everything, and it resumes without a gap', async () => {
        const normal = await open(own.sluice, '/c/slow');
        const slow = await rawRequest(own.sluice.port,
            'GET /c/slow HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n');
        try {
            await waitFor(() => slow.state.text.includes(`retry: ${RETRY_MS}`), 'the slow client\'s retry frame');
            const marker = uniquePayload({ marker: true });
            await ctx.pub.publish('c:slow', marker);
            const [first] = await normal.waitForEvents(1);
            await waitFor(() => slow.state.text.includes(marker), 'the marker on the slow client');
            assert.ok(slow.state.text.includes(`id: ${first.id}\n`));
            slow.sock.pause();

            /* Pipelined batches; the normal client must keep up with
             * each batch, so only the paused client falls behind (the
             * test process itself must not be the slow reader). */
            const filler = 'x'.repeat(4096);
            const sent = [];
            for (let i = 0; i < N; i += BATCH) {
                const replies = [];
                for (let j = i; j < i + BATCH; j++) {
                    sent.push(`${j}:${filler}`);
                    replies.push(ctx.pub.publish('c:slow', JSON.stringify(sent[j])));
                }
                await Promise.all(replies);
                await normal.waitForEvents(i + BATCH + 1, 5000);
            }

            await waitFor(async () => (await metric(own.sluice, 'sluice_clients_dropped_total{reason="slow"}')) >= 1,
                'sluice_clients_dropped_total{reason="slow"} >= 1', 10000, 100);
            const all = await normal.waitForEvents(N + 1, 20000);
            assert.deepEqual(all.slice(1).map((e) => parseEnvelope(e).payload), sent, 'the normal client got every event');
            assert.equal(normal.ended, false, 'the normal client was not cut');
            assertIncreasing(all.map((e) => e.id));
            await waitFor(async () => (await metric(own.sluice, 'sluice_connections')) === 1,
                'sluice_connections 1 (only the normal client left)');

            /* sluice closed it: reading again drains what the kernel still
             * held, then the connection ends. */
            slow.sock.resume();
            await waitFor(() => slow.state.ended, 'the end of the cut connection', 10000);

            /* The slow client comes back with the last id it had read
             * completely before the cut (not the first one): the last
             * whole "id:/data:" frame in what it received. */
            const whole = [...slow.state.text.matchAll(/id: ([^\r\n]+)\ndata: ([^\r\n]*)\n\n/g)];
            const cutId = whole[whole.length - 1][1];
            const cutAt = all.findIndex((e) => e.id === cutId);
            assert.ok(cutAt >= 1, `the cut id ${cutId} is one of the events after the marker`);
            assert.equal(whole[whole.length - 1][2], all[cutAt].data, 'the slow client read that frame intact');
            const back = await open(own.sluice, '/c/slow', { 'Last-Event-ID': cutId });
            try {
                const rest = all.slice(cutAt + 1);
                const replay = await back.waitForEvents(rest.length, 20000);
                assert.deepEqual(replay.map((e) => e.id), rest.map((e) => e.id), 'replay from the cut with no gap');
                assert.deepEqual(replay.map((e) => parseEnvelope(e).payload), sent.slice(cutAt));
                assert.ok(!contentFrames(back).some((f) => f.event === 'reset'), 'no reset');
                const live = uniquePayload({ live: true });
                await ctx.pub.publish('c:slow', live);
                const withLive = await back.waitForEvents(rest.length + 1);
                assert.equal(JSON.stringify(parseEnvelope(withLive[rest.length]).payload), live);
                assert.ok(await metric(own.sluice, 'sluice_replayed_events_total') >= rest.length);
            } finally {
                back.close();
            }
        } finally {
            slow.sock.destroy();
            normal.close();
        }
    });
});
