'use strict';
/*
 * security.test.js - resource and disclosure attacks on the real sluice
 * (SPEC 5, 6: "every per-client resource is bounded", "/readyz shows no
 * broker address", "a slow client that is cut is reset").
 *
 * Each attack is bounded in bytes and time (see lib/attack.js) and judged
 * by what an operator would see: sluice's resident memory (VmRSS), the
 * /healthz latency of another client during the attack, the kernel's
 * socket queues, the log, the HTTP answers. Measured figures are printed
 * with t.diagnostic.
 */
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { after, before, describe, test } = require('node:test');
const { flood, healthzOnce, metricValue, rawGet, startProbe, tcpSockets, vmRssKiB, connect } =
    require('./lib/attack');
const { httpRequest, openSse } = require('./lib/sse');
const { freePort, makeTempDir, sleep, waitFor } = require('./lib/procs');
const { connectRedis, startRedis } = require('./lib/redis');
const { runSluice, startSluice, withLog, writeConfig } = require('./lib/sluice');

const MiB = 1024 * 1024;
/* Memory and latency bounds hold for a release build; a sanitizer build
 * reports its figures only (see sanitizedBinary). */
const SANITIZED = require('./lib/attack').sanitizedBinary(require('./lib/sluice').sluiceBin());
function assertBound(ok, message) {
    if (!SANITIZED) {
        assert.ok(ok, message);
    }
}

function baseConfig(redisPort, extra = '') {
    return [
        'sources:',
        '  - name: cache',
        '    type: redis',
        `    url: redis://127.0.0.1:${redisPort}`,
        'routes:',
        '  - path: /orders/{region}',
        '    topics: ["cache:orders:{region}"]',
        '  - path: /all',
        '    topics: ["cache:*"]',
        'logging: {level: info, format: text}',
        extra,
        '',
    ].join('\n');
}

async function metrics(port) {
    return (await httpRequest(port, '/metrics')).body;
}

/* ------------------------------------------------------------------ */
describe('client input is bounded', () => {
    const ctx = {};
    before(async () => {
        ctx.redis = await startRedis();
        ctx.sluice = await startSluice(baseConfig(ctx.redis.port));
        ctx.pub = await connectRedis(ctx.redis.port);
    });
    after(async () => {
        ctx.pub?.close();
        await ctx.sluice?.stop();
        await ctx.redis?.stop();
    });
    const it = (name, fn) => test(name, withLog(() => ctx.sluice, fn));

    it('200 MB sent after a stream GET: RSS stays small, /healthz stays fast, the stream is cut', async (t) => {
        const { port } = ctx.sluice;
        const pid = ctx.sluice.child.pid;
        const rss0 = vmRssKiB(pid);
        const probe = startProbe(port, pid);
        const budget = 200 * MiB;
        const deadline = Date.now() + 8000;
        let sent = 0;
        let connections = 0;
        /* Reconnect after every cut: a sustained attack, not one burst. */
        while (sent < budget && Date.now() < deadline) {
            const { sock } = await rawGet(port, '/orders/eu');
            connections++;
            const r = await flood(sock, budget - sent, deadline - Date.now());
            sent += r.written;
            sock.destroy();
        }
        const p = await probe.stop();
        const dropped = metricValue(await metrics(port), 'sluice_clients_dropped_total{reason="client_input"}');
        t.diagnostic(`sent ${(sent / MiB).toFixed(0)} MiB over ${connections} connections; ` +
            `RSS ${rss0} KiB before, max ${p.rssMaxKiB} KiB; /healthz p50 ${p.p50.toFixed(1)} ms, ` +
            `p99 ${p.p99.toFixed(1)} ms, max ${p.max.toFixed(1)} ms over ${p.latencies.length}; ` +
            `cut for input: ${dropped}`);
        assertBound(p.rssMaxKiB - rss0 < 32 * 1024, `RSS grew by ${p.rssMaxKiB - rss0} KiB`);
        assertBound(p.p99 < 50, `/healthz p99 ${p.p99} ms`);
        assert.ok(dropped >= 1, 'streams cut for their input');
    });

    it('a few bytes after the GET are ignored: the stream keeps working', async () => {
        const { sock } = await rawGet(ctx.sluice.port, '/orders/keep');
        sock.write('x'.repeat(100));
        let body = '';
        sock.on('data', (c) => { body += c.toString('latin1'); });
        await sleep(100);
        await ctx.pub.publish('orders:keep', '{"n":1}');
        await waitFor(() => body.includes('"n":1'), 'the event after junk input');
        sock.destroy();
    });

    it('a client that closes (after sending junk, or not) frees its stream at once', async () => {
        const { port } = ctx.sluice;
        await waitFor(async () => metricValue(await metrics(port), 'sluice_connections') === 0,
            'no streams left from earlier tests');
        const a = await rawGet(port, '/orders/close-a');
        const b = await rawGet(port, '/orders/close-b');
        b.sock.write('junk');
        assert.equal(metricValue(await metrics(port), 'sluice_connections'), 2);
        a.sock.destroy();
        b.sock.end();
        const t0 = Date.now();
        await waitFor(async () => metricValue(await metrics(port), 'sluice_connections') === 0,
            'both streams freed', 1000, 10);
        assert.ok(Date.now() - t0 < 1000);
    });

    it('pipelined requests whose answers are never read: RSS stays small', async (t) => {
        const { port } = ctx.sluice;
        const pid = ctx.sluice.child.pid;
        const rss0 = vmRssKiB(pid);
        const probe = startProbe(port, pid);
        const sock = await connect(port);
        sock.on('error', () => {});
        sock.pause(); /* never read the answers */
        const req = Buffer.from('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(2000));
        const r = await flood(sock, 200 * MiB, 4000, 0, req);
        const p = await probe.stop();
        sock.destroy();
        t.diagnostic(`wrote ${(r.written / MiB).toFixed(1)} MiB of pipelined requests; RSS ${rss0} KiB ` +
            `before, max ${p.rssMaxKiB} KiB; /healthz p99 ${p.p99.toFixed(1)} ms`);
        assertBound(p.rssMaxKiB - rss0 < 32 * 1024, `RSS grew by ${p.rssMaxKiB - rss0} KiB`);
        assertBound(p.p99 < 50, `/healthz p99 ${p.p99} ms`);
    });

    it('oversized headers and bodies are refused on every path', async () => {
        const { port } = ctx.sluice;
        for (const target of ['/healthz', '/orders/eu', '/nope']) {
            const big = await httpRequest(port, target, {
                headers: { 'X-Pad': 'a'.repeat(64 * 1024) },
            }).catch((err) => ({ status: err.code || 'closed' }));
            assert.notEqual(big.status, 200, `64 KiB header on ${target}`);
            const body = await httpRequest(port, target, {
                method: 'POST', body: 'b'.repeat(64 * 1024),
            }).catch((err) => ({ status: err.code || 'closed' }));
            assert.ok(body.status === 413 || typeof body.status === 'string',
                `64 KiB body on ${target}: ${body.status}`);
        }
        assert.ok((await healthzOnce(port)) < 1000);
    });
});

/* ------------------------------------------------------------------ */
describe('a slow client that is cut is reset', () => {
    const ctx = {};
    before(async () => {
        ctx.redis = await startRedis();
        ctx.sluice = await startSluice(baseConfig(ctx.redis.port, 'stream: {max_pending: 64KiB}'));
        ctx.pub = await connectRedis(ctx.redis.port);
    });
    after(async () => {
        ctx.pub?.close();
        await ctx.sluice?.stop();
        await ctx.redis?.stop();
    });
    const it = (name, fn) => test(name, withLog(() => ctx.sluice, fn));

    it('max_pending: the client is reset and sluice keeps no Send-Q', async (t) => {
        const { port } = ctx.sluice;
        const { sock } = await rawGet(port, '/orders/slow');
        const clientPort = sock.localPort;
        sock.pause(); /* stop reading: the kernel buffers fill, then sluice's */
        const payload = JSON.stringify({ pad: 'p'.repeat(16 * 1024) });
        const name = 'sluice_clients_dropped_total{reason="slow"}';
        let published = 0;
        /* Bounded: at most 2,000 events of 16 KiB (32 MiB). */
        while (metricValue(await metrics(port), name) < 1 && published < 2000) {
            for (let i = 0; i < 50; i++) {
                await ctx.pub.publish('orders:slow', payload);
            }
            published += 50;
        }
        assert.ok(metricValue(await metrics(port), name) >= 1, `cut after ${published} events`);
        await sleep(200);
        const left = tcpSockets(port).filter((s) => s.remotePort === clientPort);
        t.diagnostic(`cut after ${published} events of 16 KiB; sluice sockets to the client ` +
            `after the cut: ${JSON.stringify(left)}`);
        assert.deepEqual(left.filter((s) => s.txQueue > 0), [],
            'no send queue left on sluice\'s side');
        /* The client's kernel got the reset: its socket is closed although
         * the client has not read what it holds (after a FIN it would stay
         * ESTABLISHED until it had read megabytes). node reports the
         * reset as an end once it reads again (libuv consumes the error),
         * so the kernel's view is the evidence here. */
        const mine = tcpSockets(clientPort).filter((s) => s.remotePort === port);
        t.diagnostic(`client socket after the cut: ${JSON.stringify(mine)}`);
        assert.deepEqual(mine, [], 'the client socket was reset');
        sock.resume();
        await waitFor(() => sock.failure || sock.ended, 'the client to see the cut');
        t.diagnostic(`client read ${sock.received} bytes in all, then ${sock.failure?.code || 'end'}`);
        assert.ok(sock.received < published * 16 * 1024 / 4, 'the queued bytes were dropped');
        sock.destroy();
    });
});

/* ------------------------------------------------------------------ */
describe('/readyz does not disclose broker addresses or error texts', () => {
    const it = (name, fn) => test(name, fn);

    async function downSluice(extra) {
        const deadPort = await freePort(); /* nothing listens there */
        const cfg = baseConfig(deadPort, extra).replace(
            'url: redis://127.0.0.1', 'url: redis://:hunter2@127.0.0.1');
        const s = await startSluice(cfg, { ready: false });
        await waitFor(async () => (await httpRequest(s.port, '/readyz')).status === 503, '/readyz 503');
        /* A connect attempt has failed (its log line names the address),
         * so /readyz has a status text to show or to hide. */
        await waitFor(() => s.stderr.includes(`127.0.0.1:${deadPort}`), 'a failed connect attempt in the log', 10000);
        return { s, deadPort };
    }

    it('by default: one "down" line per source, nothing else', async (t) => {
        const { s, deadPort } = await downSluice('');
        try {
            const res = await httpRequest(s.port, '/readyz');
            t.diagnostic(`/readyz: ${JSON.stringify(res.body)}`);
            assert.equal(res.status, 503);
            assert.equal(res.body, 'source cache: down\n');
            /* The details are in the log, without the password. */
            await waitFor(() => s.stderr.includes(`127.0.0.1:${deadPort}`), 'the address in the log');
            assert.ok(!s.stderr.includes('hunter2'), 'no password in the log');
            const m = await httpRequest(s.port, '/metrics');
            assert.ok(!m.body.includes(String(deadPort)) && !m.body.includes('hunter2'),
                '/metrics names no address');
        } finally {
            await s.stop();
        }
    });

    it('readyz_details: true shows the status text', async () => {
        const { s, deadPort } = await downSluice('readyz_details: true');
        try {
            const res = await httpRequest(s.port, '/readyz');
            assert.equal(res.status, 503);
            assert.match(res.body, new RegExp(`^source cache: .*127\\.0\\.0\\.1:${deadPort}`));
            assert.ok(!res.body.includes('hunter2'));
        } finally {
            await s.stop();
        }
    });

    it('readyz_details must be a boolean (FILE:LINE:COL)', async () => {
        const file = writeConfig(baseConfig(6379, 'readyz_details: maybe'));
        const r = await runSluice(['--check', '-c', file]);
        assert.equal(r.code, 1);
        assert.match(r.stderr, /sluice\.yaml:\d+:\d+: .*readyz_details/);
    });
});

/* ------------------------------------------------------------------ */
describe('client-supplied topic patterns are bounded', () => {
    const ctx = {};
    const EVENTS = 50000;
    before(async () => {
        ctx.redis = await startRedis();
        ctx.sluice = await startSluice(baseConfig(ctx.redis.port, 'history: {max_events: 60000}'));
        ctx.pub = await connectRedis(ctx.redis.port);
    });
    after(async () => {
        ctx.pub?.close();
        await ctx.sluice?.stop();
        await ctx.redis?.stop();
    });
    const it = (name, fn) => test(name, withLog(() => ctx.sluice, fn));

    it('over-long, too many and too costly ?topic= values get 400 with a reason', async () => {
        const { port } = ctx.sluice;
        const q = (v) => `topic=${encodeURIComponent(v)}`;
        const cases = [
            [q(`*[${'a'.repeat(7000)}]Z`), /longer than 256 bytes/],
            [q('a'.repeat(257)), /longer than 256 bytes/],
            [Array(17).fill(q('orders:eu')).join('&'), /more than 16 topic/],
            [q('*a*b*c*d*e'), /more than 4 '\*'/],
            [q('orders:[abc'), /unterminated/],
            [q(`orders:[${'a'.repeat(15)}]`), /over 16 bytes/],
            [[q('[ab]'), q('[cd]'), q('[ef]')].join('&'), /more than 2 \[classes\]/],
            [q(''), /empty topic/],
        ];
        for (const [query, reason] of cases) {
            const res = await httpRequest(port, `/all?${query}`);
            assert.equal(res.status, 400, query.slice(0, 60));
            assert.match(res.body, reason);
            assert.ok(res.body.length < 100, 'a short reason');
        }
        /* Right at the limits: accepted. */
        const ok = await openSse(port, `/all?${[q('*[abcdefghijklmn]*'), q(`a*b*c*d*${'e'.repeat(248)}`)].join('&')}`);
        assert.equal(ok.status, 200);
        ok.close();
    });

    it('the worst legal patterns over a 50,000-event replay keep /healthz fast', async (t) => {
        const { port } = ctx.sluice;
        const pid = ctx.sluice.child.pid;
        let batch = [];
        for (let i = 0; i < EVENTS; i++) {
            batch.push(ctx.pub.publish(`orders:eu-${10000000 + i}`, '1'));
            if (batch.length === 1000) {
                await Promise.all(batch);
                batch = [];
            }
        }
        await Promise.all(batch);
        /* The epoch of this history, from a live event. */
        const live = await openSse(port, '/all');
        await ctx.pub.publish('orders:probe', '1');
        const [ev] = await live.waitForEvents(1);
        live.close();
        const firstId = ev.id.replace(/-\d+$/, '-1');
        const cls = '[ordes:u0-9-xyz]'; /* 16 bytes, matches every topic byte */
        const sets = {
            'two classes and stars': [`*${cls}*${cls}${'orders:eu-1'.repeat(18)}Z`],
            '16 patterns of 4 stars': Array(16).fill('*r*s*e*1Z'),
            '16 long literal tails': Array(16).fill(`*${'orders:eu-1'.repeat(23)}`),
        };
        for (const [name, topics] of Object.entries(sets)) {
            const query = topics.map((v) => `topic=${encodeURIComponent(v)}`).join('&');
            const probe = startProbe(port, pid, 5);
            await sleep(50);
            const s = await openSse(port, `/all?${query}`, { headers: { 'Last-Event-ID': firstId } });
            assert.equal(s.status, 200, name);
            await sleep(1500);
            s.close();
            const p = await probe.stop();
            t.diagnostic(`${name}: /healthz p50 ${p.p50.toFixed(1)} ms, p99 ${p.p99.toFixed(1)} ms, ` +
                `max ${p.max.toFixed(1)} ms over ${p.latencies.length} probes`);
            /* Quiet, this is p99 < 5 ms. Under ctest -j2 on 2 cores the
             * probe also measures the scheduler, so the bounds are sized
             * to what a loop held by one client looks like instead: a
             * replay that yielded by bytes only held it for 350 ms and
             * more (the bound is not enforced under sanitizers). */
            assertBound(p.p99 < 60, `${name}: /healthz p99 ${p.p99} ms`);
            assertBound(p.max < 300, `${name}: /healthz max ${p.max} ms`);
        }
    });
});

/* ------------------------------------------------------------------ */
describe('history.dir is not trusted blindly', () => {
    const ctx = {};
    before(async () => {
        ctx.redis = await startRedis();
    });
    after(async () => {
        await ctx.redis?.stop();
    });

    function historyConfig(dir) {
        return baseConfig(ctx.redis.port, `history: {dir: ${JSON.stringify(dir)}}`);
    }

    /* Runs sluice on cfg expecting it to refuse to start; returns stderr. */
    async function refusedStart(cfg) {
        const port = await freePort();
        const file = writeConfig(`listen: 127.0.0.1:${port}\n${cfg}`);
        const r = await runSluice(['-c', file], 5000);
        assert.equal(r.code, 1, `exit status (stderr: ${r.stderr})`);
        assert.ok(!r.stderr.includes('listening on'), 'refused before listening');
        return r.stderr;
    }

    test('a segment that is a symlink is not followed: its target is untouched', async (t) => {
        const dir = path.join(makeTempDir('sluice-sec-'), 'history');
        const s = await startSluice(historyConfig(dir));
        const pub = await connectRedis(ctx.redis.port);
        const live = await openSse(s.port, '/orders/eu');
        await pub.publish('orders:eu', '{"n":1}');
        await live.waitForEvents(1);
        live.close();
        pub.close();
        await s.stop();
        const segment = fs.readdirSync(dir).find((n) => n.endsWith('.log'));
        assert.ok(segment, 'a segment was written');
        /* Someone swaps the segment for a link to a file of the same user. */
        const victim = path.join(makeTempDir('sluice-victim-'), 'precious.txt');
        fs.writeFileSync(victim, 'precious data, not a journal\n');
        fs.rmSync(path.join(dir, segment));
        fs.symlinkSync(victim, path.join(dir, segment));
        const stderr = await refusedStart(historyConfig(dir));
        t.diagnostic(stderr.trim().split('\n').slice(-2).join(' | '));
        assert.match(stderr, new RegExp(`${segment}.*symbolic link`));
        assert.equal(fs.readFileSync(victim, 'utf8'), 'precious data, not a journal\n');
    });

    test('the epoch and boot_id files are not followed either', async () => {
        const dir = path.join(makeTempDir('sluice-sec-'), 'history');
        fs.mkdirSync(dir, { mode: 0o700 });
        const victim = path.join(makeTempDir('sluice-victim-'), 'precious.txt');
        fs.writeFileSync(victim, '1700000000000\n');
        fs.symlinkSync(victim, path.join(dir, 'epoch'));
        const stderr = await refusedStart(historyConfig(dir));
        assert.match(stderr, /epoch file: a symbolic link/);
        fs.rmSync(path.join(dir, 'epoch'));
        /* boot_id.tmp is written at every start: a link there is left alone. */
        fs.symlinkSync(victim, path.join(dir, 'boot_id.tmp'));
        const s = await startSluice(historyConfig(dir));
        await s.stop();
        assert.equal(fs.readFileSync(victim, 'utf8'), '1700000000000\n');
    });

    for (const mode of [0o777, 0o770, 0o702]) {
        test(`a history.dir with mode ${mode.toString(8)} is refused with the reason`, async (t) => {
            const dir = path.join(makeTempDir('sluice-sec-'), 'history');
            fs.mkdirSync(dir);
            fs.chmodSync(dir, mode);
            const stderr = await refusedStart(historyConfig(dir));
            t.diagnostic(stderr.trim().split('\n').pop());
            assert.ok(stderr.includes(`history.dir ${dir} is writable by group or others`), stderr);
        });
    }

    test('a history.dir owned by another user is refused', { skip: process.getuid() !== 0 && 'needs root' }, async () => {
        const dir = path.join(makeTempDir('sluice-sec-'), 'history');
        fs.mkdirSync(dir, { mode: 0o755 });
        fs.chownSync(dir, 65534, 65534);
        const stderr = await refusedStart(historyConfig(dir));
        assert.ok(stderr.includes(`history.dir ${dir} is owned by uid 65534`), stderr);
    });
});

/* ------------------------------------------------------------------ */
describe('smaller issues', () => {
    test('a busy listen port: the error says why', async () => {
        const busy = require('node:net').createServer();
        await new Promise((resolve) => busy.listen(0, '127.0.0.1', resolve));
        const port = busy.address().port;
        try {
            const file = writeConfig(`listen: 127.0.0.1:${port}\n${baseConfig(1)}`);
            const r = await runSluice(['-c', file], 5000);
            assert.equal(r.code, 1);
            assert.match(r.stderr, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}: bind: Address already in use`));
        } finally {
            busy.close();
        }
    });
});

/*
 * A deflate() that fails part way, loaded into sluice with LD_PRELOAD:
 * on a z_stream whose input held the marker, the call after one that
 * filled its output buffer fails, so the failed write leaves a chunk of
 * output behind in sluice's shared compression scratch buffer.
 */
const DEFLATE_SHIM = `
#define _GNU_SOURCE
#include <dlfcn.h>
#include <string.h>
#include <zlib.h>
static void *armed;
int deflate(z_streamp s, int flush) {
    static int (*real)(z_streamp, int);
    if (!real) real = (int (*)(z_streamp, int))dlsym(RTLD_NEXT, "deflate");
    if (armed == s) { armed = 0; return Z_STREAM_ERROR; }
    if (s->avail_in > 11 && memmem(s->next_in, s->avail_in, "FAILDEFLATE", 11)) {
        int rc = real(s, flush);
        if (s->avail_out == 0) armed = s;
        return rc;
    }
    return real(s, flush);
}
`;

function buildShim() {
    const dir = makeTempDir('sluice-shim-');
    fs.writeFileSync(path.join(dir, 'shim.c'), DEFLATE_SHIM);
    const r = require('node:child_process').spawnSync('cc',
        ['-shared', '-fPIC', '-o', path.join(dir, 'shim.so'), path.join(dir, 'shim.c'), '-ldl'],
        { encoding: 'utf8' });
    return r.status === 0 ? path.join(dir, 'shim.so') : null;
}

describe('a compression failure never leaks into another stream', () => {
    const ctx = {};
    before(async () => {
        ctx.shim = buildShim();
        ctx.redis = await startRedis();
        if (ctx.shim) {
            ctx.sluice = await startSluice(baseConfig(ctx.redis.port, 'stream: {compression: true}'),
                { env: { ...process.env, LD_PRELOAD: ctx.shim } }).catch(() => null);
        }
        ctx.pub = await connectRedis(ctx.redis.port);
    });
    after(async () => {
        ctx.pub?.close();
        await ctx.sluice?.stop();
        await ctx.redis?.stop();
    });

    test('the failing stream is cut; the other one decodes cleanly', async (t) => {
        if (!ctx.sluice) {
            t.skip('no cc, or sluice will not start with LD_PRELOAD (sanitizer build)');
            return;
        }
        const zlib = require('node:zlib');
        const { port } = ctx.sluice;
        const open = async (p) => {
            const { sock } = await rawGet(port, p, 'Accept-Encoding: gzip\r\n');
            return sock;
        };
        const bad = await open('/orders/bad');
        const good = await open('/orders/good');
        /* The good stream's body, de-chunked, through gunzip. */
        let goodRaw = good.rest;
        good.on('data', (c) => { goodRaw = Buffer.concat([goodRaw, c]); });
        const random = require('node:crypto').randomBytes(48 * 1024).toString('base64');
        await ctx.pub.publish('orders:bad', `FAILDEFLATE${random}`);
        await sleep(200);
        await ctx.pub.publish('orders:good', '{"n":"fine"}');
        const dechunk = (buf) => {
            const parts = [];
            let pos = 0;
            while (pos < buf.length) {
                const eol = buf.indexOf('\r\n', pos);
                const n = parseInt(buf.slice(pos, eol).toString(), 16);
                if (!(n > 0)) {
                    break;
                }
                parts.push(buf.slice(eol + 2, eol + 2 + n));
                pos = eol + 2 + n + 2;
            }
            return Buffer.concat(parts);
        };
        const decoded = () => zlib.gunzipSync(dechunk(goodRaw), { finishFlush: zlib.constants.Z_SYNC_FLUSH }).toString();
        /* Wait for the good event itself, not a fixed time. */
        await waitFor(() => decoded().includes('"n":"fine"'), 'the good stream\'s event', 10000);
        const text = decoded();
        t.diagnostic(`good stream: ${JSON.stringify(text.slice(0, 120))}`);
        assert.match(text, /"n":"fine"/);
        assert.ok(!text.includes('FAILDEFLATE'));
        await waitFor(async () => metricValue(await metrics(port),
            'sluice_clients_dropped_total{reason="compression_error"}') >= 1, 'the failing stream cut');
        bad.destroy();
        good.destroy();
    });
});

describe('a Redis that refuses sluice', () => {
    test('wrong credentials: the log says why, once, and never "connected"', async (t) => {
        const { spawnTracked, stopProcess } = require('./lib/procs');
        const port = await freePort();
        const redis = spawnTracked('redis-server', ['--port', String(port), '--bind', '127.0.0.1',
            '--save', '', '--appendonly', 'no', '--requirepass', 'sekrit']);
        let s = null;
        try {
            await waitFor(async () => {
                const c = await connect(port).catch(() => null);
                c?.destroy();
                return c !== null;
            }, 'redis-server with requirepass');
            s = await startSluice(baseConfig(port), { ready: false });
            await sleep(3500); /* several reconnect attempts (backoff from 100 ms) */
            const log = s.stderr;
            const lines = log.split('\n').filter((l) => l.includes('source cache'));
            t.diagnostic(lines.slice(0, 6).join(' | '));
            assert.ok(!/connected to/.test(log), 'never "connected"');
            const why = lines.filter((l) => / warn .*NOAUTH/.test(l));
            assert.equal(why.length, 1, `the reason once at warn level: ${lines.join('\n')}`);
            assert.ok(!log.includes('sekrit'));
            assert.equal((await httpRequest(s.port, '/readyz')).status, 503);
        } finally {
            await s?.stop();
            await stopProcess(redis, 'SIGKILL');
        }
    });
});

describe('max_payload is checked before a message is built', () => {
    test('a payload over max_payload is dropped and counted once', async () => {
        const redis = await startRedis();
        const s = await startSluice(baseConfig(redis.port, 'max_payload: 64KiB'));
        const pub = await connectRedis(redis.port);
        try {
            const live = await openSse(s.port, '/orders/big');
            await pub.publish('orders:big', 'x'.repeat(256 * 1024));
            await pub.publish('orders:big', '{"small":1}');
            const [ev] = await live.waitForEvents(1);
            assert.match(ev.data, /"small":1/);
            live.close();
            const m = await metrics(s.port);
            assert.match(m, /too_large.*\{source="cache"\} 1\b|too_large\{source="cache"\} 1\b/);
        } finally {
            pub.close();
            await s.stop();
            await redis.stop();
        }
    });
});
