'use strict';
/*
 * tls_h2.test.js - HTTP/2 (issue 16) against the real binary: ALPN h2 on
 * the TLS port (curl --http2, node's http2 client) next to HTTP/1.1 on
 * the same port, h2c with prior knowledge on a cleartext port, the same
 * status codes, auth, CORS, compression, heartbeats, resume and reset as
 * over HTTP/1.1, many streams on one connection, a stream that stops
 * reading cut with RST_STREAM while its siblings go on, and SIGTERM's
 * final retry. Certificates are made here with `openssl req -x509`.
 */
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http2 = require('node:http2');
const path = require('node:path');
const zlib = require('node:zlib');
const { execFileSync, spawn } = require('node:child_process');
const { after, before, describe, test } = require('node:test');
const { makeTempDir, sleep, waitFor } = require('./lib/procs');
const { connectRedis, startRedis } = require('./lib/redis');
const { SseParser, httpRequest } = require('./lib/sse');
const { startSluice, withLog } = require('./lib/sluice');
const { metricValue } = require('./lib/attack');

const dir = makeTempDir('sluice-h2-');
const cert = path.join(dir, 'tls.crt');
const key = path.join(dir, 'tls.key');
execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
    '-keyout', key, '-out', cert, '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });

const ctx = { redis: null, pub: null, tls: null, clear: null };

function config(redisPort, extra) {
    return [
        'sources:',
        '  - name: redis',
        '    type: redis',
        `    url: redis://127.0.0.1:${redisPort}`,
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
        '  - path: /r/{channel}',
        '    topics: ["redis:{channel}"]',
        '    public: true',
        '  - path: /private/{channel}',
        '    topics: ["redis:{channel}"]',
        '  - path: /off',
        '    topics: ["redis:off"]',
        '    enabled: false',
        '    public: true',
        'auth:',
        '  tokens: [{name: t, token: secret-token-1, allow: ["/private/*"]}]',
        'cors:',
        '  origins: ["https://app.example"]',
        'stream:',
        '  heartbeat: 1s',
        '  compression: true',
        '  max_pending: 64KiB',
        '  retry: 1s',
        ...extra,
        '',
    ].join('\n');
}

before(async () => {
    ctx.redis = await startRedis();
    ctx.pub = await connectRedis(ctx.redis.port);
    ctx.tls = await startSluice(config(ctx.redis.port, [
        'tls:', `  cert_file: ${cert}`, `  key_file: ${key}`,
        'http2:', '  enabled: true', '  max_concurrent_streams: 100',
    ]), { tls: true });
    ctx.clear = await startSluice(config(ctx.redis.port, [
        'http2:', '  enabled: true', '  cleartext: true',
    ]));
});

after(async () => {
    ctx.pub?.close();
    await ctx.tls?.stop();
    await ctx.clear?.stop();
    await ctx.redis?.stop();
});

const it = (name, fn) => test(name, { timeout: 40000 }, withLog(() => ctx.tls, fn));

/* An HTTP/2 session to sluice (https, or h2c prior knowledge). */
function connect(s) {
    const url = s.tls ? `https://127.0.0.1:${s.port}` : `http://127.0.0.1:${s.port}`;
    const session = http2.connect(url, { rejectUnauthorized: false });
    session.on('error', () => {});
    return session;
}

/* A whole response on session: {status, headers, body (Buffer)}. */
function request(session, p, headers = {}) {
    return new Promise((resolve, reject) => {
        const req = session.request({ ':path': p, ...headers });
        const chunks = [];
        let head = null;
        req.on('response', (h) => { head = h; });
        req.on('data', (c) => chunks.push(c));
        req.on('end', () => resolve({ status: head[':status'], headers: head, body: Buffer.concat(chunks) }));
        req.on('error', reject);
        req.end();
    });
}

/* An open SSE stream on session: parsed events in .events, raw text. */
function openStream(session, p, headers = {}) {
    const st = { events: [], comments: 0, text: '', status: null, headers: null, ended: false, rstCode: null };
    const parser = new SseParser((f) => { if (f.data !== null) st.events.push(f); else if (f.retry !== null) st.retries = (st.retries || 0) + 1; },
        () => { st.comments += 1; });
    const req = session.request({ ':path': p, accept: 'text/event-stream', ...headers });
    st.req = req;
    req.on('response', (h) => { st.status = h[':status']; st.headers = h; });
    req.on('data', (c) => { st.text += c.toString('utf8'); parser.feed(c); });
    req.on('end', () => { st.ended = true; });
    req.on('close', () => { st.closed = true; st.rstCode = req.rstCode; });
    req.on('error', () => {});
    return st;
}

const payloads = (st) => st.events.map((e) => JSON.parse(e.data).payload);

/* Runs curl; resolves with {code, stdout}. */
function curl(args, timeoutMs = 10000) {
    return new Promise((resolve) => {
        const child = spawn('curl', ['-sk', ...args]);
        let stdout = '';
        child.stdout.on('data', (d) => { stdout += d; });
        const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
        child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout }); });
    });
}

async function curlStream(args, url, want, publish) {
    const child = spawn('curl', ['-skN', '--max-time', '20', ...args, url]);
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    try {
        await waitFor(() => out.includes('retry:'), `curl ${args.join(' ')}: the retry frame`);
        await publish();
        await waitFor(() => out.includes(want), `curl ${args.join(' ')}: ${want} in ${JSON.stringify(out)}`);
        return out;
    } finally {
        child.kill('SIGKILL');
    }
}

describe('protocols on one port', () => {
    it('curl --http2 over TLS negotiates h2; curl --http1.1 on the same port gets HTTP/1.1', async () => {
        let r = await curl(['--http2', '-w', ' %{http_version}', ctx.tls.url('/healthz')]);
        assert.equal(r.stdout, 'ok\n 2');
        r = await curl(['--http1.1', '-w', ' %{http_version}', ctx.tls.url('/healthz')]);
        assert.equal(r.stdout, 'ok\n 1.1');
        const out = await curlStream(['--http2'], ctx.tls.url('/r/cu2'), 'via-h2',
            () => ctx.pub.publish('cu2', '"via-h2"'));
        assert.match(out, /^retry: 1000\n\nid: [^\n]+\ndata: \{[^\n]*"payload":"via-h2"/m);
        await curlStream(['--http1.1'], ctx.tls.url('/r/cu1'), 'via-h1',
            () => ctx.pub.publish('cu1', '"via-h1"'));
    });

    it('h2c with prior knowledge (http2.cleartext); HTTP/1.1 on the same cleartext port still works', async () => {
        let r = await curl(['--http2-prior-knowledge', '-w', ' %{http_version}', ctx.clear.url('/healthz')]);
        assert.equal(r.stdout, 'ok\n 2');
        r = await curl(['--http1.1', '-w', ' %{http_version}', ctx.clear.url('/healthz')]);
        assert.equal(r.stdout, 'ok\n 1.1');
        await curlStream(['--http2-prior-knowledge'], ctx.clear.url('/r/h2c'), 'via-h2c',
            () => ctx.pub.publish('h2c', '"via-h2c"'));
    });

    it('compression over h2: curl --http2 --compressed gets the events inflated', async () => {
        const out = await curlStream(['--http2', '--compressed'], ctx.tls.url('/r/z2'), 'z-2', async () => {
            await ctx.pub.publish('z2', '"z-1"');
            await ctx.pub.publish('z2', '"z-2"');
        });
        assert.ok(out.indexOf('z-1') < out.indexOf('z-2'), out);
    });
});

describe('the same answers as over HTTP/1.1', () => {
    it('status codes, headers, auth, CORS and preflight', async () => {
        const session = connect(ctx.tls);
        try {
            let r = await request(session, '/nope');
            assert.equal(r.status, 404);
            assert.equal(r.body.toString(), 'not found\n');
            r = await request(session, '/private/a');
            assert.equal(r.status, 401);
            assert.equal(r.headers['www-authenticate'], 'Bearer');
            r = await request(session, '/private/a?token=wrong');
            assert.equal(r.status, 401);
            assert.doesNotMatch(r.body.toString(), /wrong/);
            r = await request(session, '/off');
            assert.equal(r.status, 204);
            r = await request(session, '/r/a', { ':method': 'POST' });
            assert.equal(r.status, 405);
            assert.equal(r.headers.allow, 'GET, HEAD, OPTIONS');
            r = await request(session, '/r/a', { ':method': 'OPTIONS', origin: 'https://app.example' });
            assert.equal(r.status, 204);
            assert.equal(r.headers['access-control-allow-origin'], 'https://app.example');
            r = await request(session, '/r/a?snapshot=2');
            assert.equal(r.status, 400);
            r = await request(session, '/r/a', { ':method': 'HEAD' });
            assert.equal(r.status, 200);
            assert.match(r.headers['content-type'], /^text\/event-stream/);
            assert.equal(r.body.length, 0);
            r = await request(session, '/metrics');
            assert.equal(r.status, 200);
            assert.ok(metricValue(r.body.toString(), 'sluice_h2_connections') >= 1);
            const st = openStream(session, '/private/a', { authorization: 'Bearer secret-token-1', origin: 'https://app.example' });
            await waitFor(() => st.text.includes('retry:'), 'the authorized stream');
            assert.equal(st.status, 200);
            assert.equal(st.headers['cache-control'], 'no-store');
            assert.equal(st.headers['referrer-policy'], 'no-referrer');
            assert.equal(st.headers['x-accel-buffering'], 'no');
            assert.equal(st.headers['access-control-allow-origin'], 'https://app.example');
            assert.equal(st.headers['transfer-encoding'], undefined);
            assert.equal(st.headers.connection, undefined);
            st.req.close();
        } finally {
            session.close();
        }
    });

    it('heartbeats, gzip, resume by Last-Event-ID and reset for an unknown id', async () => {
        const session = connect(ctx.tls);
        try {
            const a = openStream(session, '/r/res');
            await waitFor(() => a.text.includes('retry:'), 'stream a');
            await ctx.pub.publish('res', '"r1"');
            await waitFor(() => a.events.length === 1, 'r1');
            await waitFor(() => a.comments >= 1, 'a heartbeat comment', 5000);
            const lastId = a.events[0].id;
            a.req.close();
            await ctx.pub.publish('res', '"r2"');
            await ctx.pub.publish('res', '"r3"');
            await sleep(100);
            const b = openStream(session, '/r/res', { 'last-event-id': lastId });
            await waitFor(() => b.events.length >= 2, 'the replay');
            assert.deepEqual(payloads(b), ['r2', 'r3']);
            const c = openStream(session, '/r/res', { 'last-event-id': 'nope-1' });
            await waitFor(() => c.events.length >= 1, 'the reset');
            assert.equal(c.events[0].event, 'reset');
            assert.equal(JSON.parse(c.events[0].data).reason, 'unknown-id');

            const z = session.request({ ':path': '/r/gz', 'accept-encoding': 'gzip' });
            const gunzip = zlib.createGunzip();
            gunzip.on('error', () => {}); /* the stream is closed unfinished */
            let ztext = '';
            let zhead = null;
            z.on('response', (h) => { zhead = h; });
            z.pipe(gunzip);
            gunzip.on('data', (d) => { ztext += d.toString(); });
            await waitFor(() => ztext.includes('retry:'), 'the gzip stream');
            assert.equal(zhead['content-encoding'], 'gzip');
            await ctx.pub.publish('gz', '"zipped"');
            await waitFor(() => ztext.includes('"payload":"zipped"'), 'a gzip event, flushed at once');
            z.close();
        } finally {
            session.close();
        }
    });
});

describe('per-key routes over h2', () => {
    it('a chat stream replays from the start, goes live, ends at its end entry; reconnecting after it gets 204', async () => {
        const session = connect(ctx.tls);
        try {
            await ctx.pub.xadd('chat:h2', ['t', 'Hel']);
            const st = openStream(session, '/chat/h2');
            await waitFor(() => st.events.length === 1, 'the replayed entry');
            await ctx.pub.xadd('chat:h2', ['t', 'lo']);
            await waitFor(() => st.events.length === 2, 'the live entry');
            await ctx.pub.xadd('chat:h2', ['type', 'done']);
            await waitFor(() => st.ended, 'the end entry to end the stream');
            assert.deepEqual(st.events.map((e) => e.data), ['Hel', 'lo', '']);
            assert.equal(st.events[2].event, 'end');
            const again = await request(session, '/chat/h2', { 'last-event-id': st.events[2].id });
            assert.equal(again.status, 204);
            /* A client that leaves while its key is probed: nothing left behind. */
            const left = session.request({ ':path': '/chat/never' });
            left.on('error', () => {});
            left.close(http2.constants.NGHTTP2_CANCEL);
            assert.equal((await request(session, '/healthz')).status, 200);
        } finally {
            session.close();
        }
    });
});

describe('many streams on one connection', () => {
    it('50 streams on one h2 connection all get each event', async () => {
        const session = connect(ctx.tls);
        try {
            const streams = Array.from({ length: 50 }, (_, i) => openStream(session, `/r/many${i % 5}`));
            await waitFor(() => streams.every((st) => st.text.includes('retry:')), 'all 50 open');
            for (let i = 0; i < 5; i++) {
                await ctx.pub.publish(`many${i}`, `"m${i}"`);
            }
            await waitFor(() => streams.every((st) => st.events.length === 1), 'one event on each');
            streams.forEach((st, i) => assert.deepEqual(payloads(st), [`m${i % 5}`]));
            const m = (await httpRequest(ctx.tls.port, '/metrics', { tls: true })).body;
            assert.ok(metricValue(m, 'sluice_streams{protocol="h2",tls="true"}') >= 50);
        } finally {
            session.close();
        }
    });

    it('a stream that stops reading is reset at max_pending; its siblings go on', async () => {
        const session = connect(ctx.tls);
        try {
            const slow = openStream(session, '/r/slowh2');
            const sib = openStream(session, '/r/sibh2');
            await waitFor(() => slow.text.includes('retry:') && sib.text.includes('retry:'), 'both open');
            slow.req.pause(); /* no more WINDOW_UPDATE for it: its window runs out */
            const big = JSON.stringify('y'.repeat(30000));
            await waitFor(async () => {
                for (let i = 0; i < 10; i++) {
                    await ctx.pub.publish('slowh2', big);
                }
                return slow.closed;
            }, 'the slow stream to be reset', 30000, 50);
            assert.equal(slow.rstCode, http2.constants.NGHTTP2_CANCEL);
            await ctx.pub.publish('sibh2', '"still-here"');
            await waitFor(() => payloads(sib).includes('still-here'), 'the sibling still served');
            assert.equal(session.closed, false);
        } finally {
            session.close();
        }
    });
});

/*
 * The same as tls.test.js's paused TLS client, over HTTP/2: curl holds
 * three streams on one connection and is stopped (SIGSTOP) while 12 MB
 * per stream are published, within its flow-control windows but more
 * than the kernel's socket buffers hold. sluice's write over TLS meets a
 * full socket (the test checks the socket's send queue), must be retried
 * with the same bytes, and the turns that follow must not join or reorder
 * what waits. After SIGCONT every stream has every event whole, in order,
 * once.
 */
describe('a connection whose socket fills', () => {
    it('curl stopped past a full socket, then resumed, gets every event on every stream', async () => {
        const s = await startSluice(config(ctx.redis.port, [
            'tls:', `  cert_file: ${cert}`, `  key_file: ${key}`,
            'http2:', '  enabled: true',
        ]).replace('max_pending: 64KiB', 'max_pending: 64MiB'), { tls: true });
        const url = `https://127.0.0.1:${s.port}/r/fullh2`;
        const files = [0, 1, 2].map((i) => path.join(dir, `full${i}.txt`));
        const child = spawn('curl', ['-skN', '--http2', '--parallel', '--parallel-max', '3',
            ...files.flatMap((f) => [url, '-o', f])]);
        const read = (f) => (fs.existsSync(f) ? fs.readFileSync(f, 'latin1') : '');
        /* Send queues (bytes) of sluice's established sockets on its port,
         * from /proc/net/tcp: local address, state 01, tx_queue. */
        const port = s.port.toString(16).toUpperCase().padStart(4, '0');
        const sendQueue = () => fs.readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)
            .map((l) => l.trim().split(/\s+/))
            .filter((f) => f.length > 4 && f[1].endsWith(`:${port}`) && f[3] === '01')
            .map((f) => parseInt(f[4].split(':')[0], 16));
        try {
            await waitFor(() => files.every((f) => read(f).includes('retry:')), 'three streams open');
            const m = (await httpRequest(s.port, '/metrics', { tls: true })).body;
            assert.equal(metricValue(m, 'sluice_streams{protocol="h2",tls="true"}'), 3);
            assert.equal(metricValue(m, 'sluice_connections_accepted_total{protocol="h2",tls="true"}'), 1,
                'curl multiplexed the three on one connection');
            child.kill('SIGSTOP');
            const n = 200;
            const pad = 'x'.repeat(60000);
            for (let i = 0; i < n; i++) {
                await ctx.pub.publish('fullh2', JSON.stringify({ n: i, pad }));
            }
            await waitFor(() => sendQueue().some((q) => q > 1000000), 'the socket to fill', 10000, 100);
            child.kill('SIGCONT');
            await waitFor(() => files.every((f) => read(f).includes(`{"n":${n - 1},`)), 'the last event on every stream', 30000);
            for (const f of files) {
                const seen = [...read(f).matchAll(/"n":(\d+),"pad":"(x*)"/g)];
                assert.deepEqual(seen.map((x) => Number(x[1])), [...Array(n).keys()], `${f}: every event once, in order`);
                assert.ok(seen.every((x) => x[2].length === 60000), `${f}: every payload whole`);
            }
            assert.equal(metricValue((await httpRequest(s.port, '/metrics', { tls: true })).body,
                'sluice_clients_dropped_total{reason="slow"}'), 0);
        } finally {
            child.kill('SIGCONT');
            child.kill('SIGKILL');
            await s.stop();
        }
    });
});

describe('SIGHUP with HTTP/2 streams open', () => {
    /* Reloads s with its config text transformed by edit; waits for the
     * n-th "reloaded" line. */
    async function reload(s, edit, n) {
        const text = fs.readFileSync(s.configFile, 'utf8');
        fs.writeFileSync(s.configFile, edit(text));
        s.child.kill('SIGHUP');
        await waitFor(() => (s.stderr.match(/reloaded /g) || []).length >= n, `reload ${n}`);
        return text;
    }

    it('a kept route\'s h2 stream stays and goes on; a removed route\'s ends cleanly (END_STREAM, as HTTP/1.1 closes)', async () => {
        const session = connect(ctx.clear);
        try {
            const original = await reload(ctx.clear, (t) => t.replace('routes:\n',
                'routes:\n  - path: /off2\n    topics: ["redis:off2"]\n    public: true\n'), 1);
            const kept = openStream(session, '/r/hup');
            const gone = openStream(session, '/off2');
            await waitFor(() => kept.text.includes('retry:') && gone.text.includes('retry:'), 'both open');
            await ctx.pub.publish('hup', '"after-1"');
            await waitFor(() => payloads(kept).includes('after-1'), 'an event on the kept stream');
            await reload(ctx.clear, () => original, 2);
            await waitFor(() => gone.ended, 'the removed route\'s stream to end (END_STREAM)');
            await waitFor(() => gone.closed, 'the stream closed');
            assert.equal(gone.rstCode, http2.constants.NGHTTP2_NO_ERROR, 'ended, not reset');
            await ctx.pub.publish('hup', '"after-2"');
            await waitFor(() => payloads(kept).includes('after-2'), 'the kept stream still served');
            assert.equal(kept.ended, false);
        } finally {
            session.close();
        }
    });
});

describe('idle connections', () => {
    it('a connection with no stream for 10 s gets GOAWAY (NO_ERROR)', async () => {
        const session = connect(ctx.clear);
        try {
            const start = Date.now();
            const goaway = new Promise((resolve) => session.on('goaway', (code) => resolve(code)));
            assert.equal((await request(session, '/healthz')).status, 200);
            const code = await Promise.race([goaway, sleep(20000).then(() => 'none')]);
            const took = Date.now() - start;
            assert.equal(code, http2.constants.NGHTTP2_NO_ERROR);
            assert.ok(took >= 9000 && took < 20000, `GOAWAY after ${took} ms`);
        } finally {
            session.destroy();
        }
    });
});

describe('SIGTERM over h2 (last: stops both sluices)', () => {
    it('open h2 streams get a final retry: and END_STREAM; exit 0', async () => {
        const session = connect(ctx.tls);
        const st = openStream(session, '/r/term');
        await waitFor(() => st.text.includes('retry:'), 'the stream');
        const stopped = ctx.tls.stop('SIGTERM');
        await waitFor(() => st.ended, 'the stream to end', 10000);
        assert.equal((st.text.match(/retry: \d+/g) || []).length, 2, st.text);
        assert.deepEqual(await stopped, { code: 0, signal: null });
        session.destroy();
        const clear = await ctx.clear.stop('SIGTERM');
        assert.deepEqual(clear, { code: 0, signal: null }, ctx.clear.stderrTail());
        for (const s of [ctx.tls, ctx.clear]) {
            assert.doesNotMatch(s.stderr, /Sanitizer|runtime error/);
        }
    });
});
