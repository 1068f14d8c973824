'use strict';
/*
 * tls.test.js - sluice serving TLS itself (issue 16): the tls block's
 * startup checks, curl over TLS (HTTP/1.1; without http2.enabled an
 * --http2 client is answered in HTTP/1.1, as ALPN offers only http/1.1), compression and resume by
 * Last-Event-ID over TLS, max_pending on a TLS stream that stops reading,
 * every byte kept for one that pauses past full socket buffers,
 * handshake failures counted (not TLS at all; never finishing the
 * handshake, dropped at the slowloris deadline), and SIGHUP loading a
 * new certificate for new handshakes while an open stream goes on.
 *
 * Certificates are made here with `openssl req -x509` in a temp dir.
 */
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const tls = require('node:tls');
const { execFileSync, spawn } = require('node:child_process');
const { after, before, describe, test } = require('node:test');
const { makeTempDir, sleep, waitFor } = require('./lib/procs');
const { connectRedis, startRedis } = require('./lib/redis');
const { httpRequest, openSse } = require('./lib/sse');
const { runSluice, startSluice, withLog, writeConfig } = require('./lib/sluice');
const { metricValue } = require('./lib/attack');

const dir = makeTempDir('sluice-tls-');
const ctx = { redis: null, pub: null, sluice: null };

/* A self-signed certificate for 127.0.0.1 and localhost; returns paths. */
function makeCert(name, cn) {
    const cert = path.join(dir, `${name}.crt`);
    const key = path.join(dir, `${name}.key`);
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
        '-keyout', key, '-out', cert, '-subj', `/CN=${cn}`,
        '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'ignore' });
    return { cert, key };
}

const certA = makeCert('a', 'sluice-a');
const certB = makeCert('b', 'sluice-b');
/* The files sluice reads; SIGHUP tests overwrite them in place. */
const live = { cert: path.join(dir, 'tls.crt'), key: path.join(dir, 'tls.key') };

function useCert(c) {
    fs.copyFileSync(c.cert, live.cert);
    fs.copyFileSync(c.key, live.key);
}

function config(redisPort) {
    return [
        'sources:',
        '  - name: redis',
        '    type: redis',
        `    url: redis://127.0.0.1:${redisPort}`,
        'routes:',
        '  - path: /r/{channel}',
        '    topics: ["redis:{channel}"]',
        '    public: true',
        'tls:',
        `  cert_file: ${live.cert}`,
        `  key_file: ${live.key}`,
        'stream:',
        '  heartbeat: 1s',
        '  compression: true',
        '  max_pending: 64KiB',
        'logging: {level: info}',
        '',
    ].join('\n');
}

/* The SHA-256 fingerprint of the certificate a new handshake gets. */
function peerFingerprint(port) {
    return new Promise((resolve, reject) => {
        const sock = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
            const fp = sock.getPeerCertificate().fingerprint256;
            sock.destroy();
            resolve(fp);
        });
        sock.on('error', reject);
    });
}

function fileFingerprint(file) {
    return new (require('node:crypto').X509Certificate)(fs.readFileSync(file)).fingerprint256;
}

/* Runs curl with args; resolves with {code, stdout} when it exits. */
function curl(args, timeoutMs = 10000) {
    return new Promise((resolve) => {
        const child = spawn('curl', ['-sk', ...args]);
        let stdout = '';
        child.stdout.on('data', (d) => { stdout += d; });
        const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
        child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout }); });
    });
}

/*
 * Streams route p with curl (extra args first) while publish() runs once
 * the stream is open; resolves with curl's output once it contains want.
 */
async function curlStream(args, p, want, publish) {
    const child = spawn('curl', ['-skN', '--max-time', '20', ...args, ctx.sluice.url(p)]);
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

async function metrics() {
    return (await httpRequest(ctx.sluice.port, '/metrics', { tls: true })).body;
}

before(async () => {
    useCert(certA);
    ctx.redis = await startRedis();
    ctx.pub = await connectRedis(ctx.redis.port);
    ctx.sluice = await startSluice(config(ctx.redis.port), { tls: true });
});

after(async () => {
    ctx.pub?.close();
    await ctx.sluice?.stop();
    await ctx.redis?.stop();
});

const it = (name, fn) => test(name, { timeout: 40000 }, withLog(() => ctx.sluice, fn));

describe('tls block: startup checks (--check)', () => {
    const check = async (tlsLines) => {
        const file = writeConfig([
            'sources: [{name: redis, type: redis, url: "redis://127.0.0.1:6379"}]',
            'routes: [{path: /r, topics: ["redis:x"]}]',
            ...tlsLines, '',
        ].join('\n'));
        return { file, ...(await runSluice(['--check', '-c', file])) };
    };

    it('a valid pair passes', async () => {
        const r = await check(['tls:', `  cert_file: ${certA.cert}`, `  key_file: ${certA.key}`,
            '  min_version: "1.3"']);
        assert.equal(r.code, 0, r.stderr);
    });

    it('a missing certificate file is FILE:LINE:COL with the reason', async () => {
        const r = await check(['tls:', `  cert_file: ${dir}/nope.crt`, `  key_file: ${certA.key}`]);
        assert.equal(r.code, 1);
        assert.match(r.stderr, new RegExp(`^${r.file}:4:14: tls.cert_file: cannot read .*nope.crt: No such file`));
    });

    it('a file that is not PEM, and a key of another certificate, are refused', async () => {
        let r = await check(['tls:', `  cert_file: ${certA.key}`, `  key_file: ${certA.key}`]);
        assert.equal(r.code, 1);
        assert.match(r.stderr, /:4:14: tls.cert_file: .* is not a usable PEM certificate/);
        r = await check(['tls:', `  cert_file: ${certA.cert}`, `  key_file: ${certB.key}`]);
        assert.equal(r.code, 1);
        assert.match(r.stderr, /:5:13: tls.key_file: .*b.key does not match the certificate/);
        assert.doesNotMatch(r.stderr, /PRIVATE KEY/, 'never the key itself');
    });

    it('schema: both files required, min_version 1.2 or 1.3, http2 keys checked', async () => {
        let r = await check(['tls:', `  cert_file: ${certA.cert}`, '  min_version: "1.1"']);
        assert.equal(r.code, 1);
        assert.match(r.stderr, /:4:3: missing key 'key_file' in tls/);
        assert.match(r.stderr, /:5:16: min_version: /);
        r = await check(['http2:', '  max_concurrent_streams: 0', '  bogus: 1']);
        assert.equal(r.code, 1);
        assert.match(r.stderr, /:4:27: max_concurrent_streams: must be from 1 to 10000/);
        assert.match(r.stderr, /:5:3: unknown key 'bogus' in http2/);
    });

});

describe('HTTP over TLS', () => {
    it('curl --http1.1 over TLS: healthz, then a stream with live events', async () => {
        const h = await curl(['--http1.1', '-w', ' %{http_version} %{ssl_verify_result}', ctx.sluice.url('/healthz')]);
        assert.match(h.stdout, /^ok\n 1\.1 /);
        const out = await curlStream(['--http1.1'], '/r/c1', 'tls-h1-1',
            () => ctx.pub.publish('c1', '"tls-h1-1"'));
        assert.match(out, /^retry: \d+\n\nid: [^\n]+\ndata: \{[^\n]*"payload":"tls-h1-1"/m);
    });

    it('without http2.enabled, curl --http2 over TLS is answered in HTTP/1.1 (ALPN offers http/1.1 only)', async () => {
        const h = await curl(['--http2', '-w', ' %{http_version}', ctx.sluice.url('/healthz')]);
        assert.match(h.stdout, /^ok\n 1\.1$/);
        await curlStream(['--http2'], '/r/c2', 'tls-h2c-1', () => ctx.pub.publish('c2', '"tls-h2c-1"'));
    });

    it('compression over TLS: curl --compressed gets the events inflated', async () => {
        const out = await curlStream(['--http1.1', '--compressed'], '/r/c3', 'tls-z-2', async () => {
            await ctx.pub.publish('c3', '"tls-z-1"');
            await ctx.pub.publish('c3', '"tls-z-2"');
        });
        assert.ok(out.indexOf('tls-z-1') < out.indexOf('tls-z-2'), out);
    });

    it('resume by Last-Event-ID over TLS replays exactly what was missed', async () => {
        const first = await openSse(ctx.sluice.port, '/r/c4', { tls: true });
        await first.waitForFrame((f) => f.retry !== null, 'the retry frame');
        await ctx.pub.publish('c4', '"m1"');
        await first.waitForEvents(1);
        first.close();
        const lastId = first.events[0].id;
        await ctx.pub.publish('c4', '"m2"');
        await ctx.pub.publish('c4', '"m3"');
        await sleep(100);
        const again = await openSse(ctx.sluice.port, '/r/c4', { tls: true, headers: { 'Last-Event-ID': lastId } });
        try {
            await again.waitForEvents(2);
            assert.deepEqual(again.events.map((e) => JSON.parse(e.data).payload), ['m2', 'm3']);
        } finally {
            again.close();
        }
    });

    it('a TLS client that stops reading is cut at max_pending; others stay served', async () => {
        const before = metricValue(await metrics(), 'sluice_clients_dropped_total{reason="slow"}');
        const sock = tls.connect({ host: '127.0.0.1', port: ctx.sluice.port, rejectUnauthorized: false });
        await new Promise((resolve, reject) => { sock.once('secureConnect', resolve); sock.once('error', reject); });
        let got = '';
        sock.on('data', (d) => { got += d.toString('latin1'); });
        sock.on('error', () => {});
        sock.write('GET /r/slow HTTP/1.1\r\nHost: x\r\n\r\n');
        await waitFor(() => got.includes('retry:'), 'the slow stream to open');
        sock.pause();
        const big = JSON.stringify('x'.repeat(60000));
        const dropped = async () =>
            metricValue(await metrics(), 'sluice_clients_dropped_total{reason="slow"}') > before;
        try {
            await waitFor(async () => {
                for (let i = 0; i < 20; i++) {
                    await ctx.pub.publish('slow', big);
                }
                return dropped();
            }, 'the paused TLS stream to be cut as slow', 30000, 100);
            const h = await httpRequest(ctx.sluice.port, '/healthz', { tls: true });
            assert.equal(h.status, 200);
        } finally {
            sock.destroy();
        }
    });

    /*
     * 24 MB while the client reads nothing: more than the kernel's socket
     * buffers hold, so a write over TLS meets a full socket and must be
     * retried with the same bytes once the client reads again. Every event
     * then arrives whole, in order, once.
     */
    it('a TLS client that pauses past a full socket, then reads, gets every event whole', async () => {
        const s = await startSluice(config(ctx.redis.port).replace('max_pending: 64KiB', 'max_pending: 64MiB'),
            { tls: true });
        const sock = tls.connect({ host: '127.0.0.1', port: s.port, rejectUnauthorized: false });
        try {
            await new Promise((resolve, reject) => { sock.once('secureConnect', resolve); sock.once('error', reject); });
            const parts = [];
            let size = 0;
            sock.on('data', (d) => { parts.push(d); size += d.length; });
            sock.write('GET /r/paused HTTP/1.1\r\nHost: x\r\n\r\n');
            await waitFor(() => Buffer.concat(parts).includes('retry:'), 'the stream to open');
            sock.pause();
            const n = 400;
            const pad = 'x'.repeat(60000);
            for (let i = 0; i < n; i++) {
                await ctx.pub.publish('paused', JSON.stringify({ n: i, pad }));
            }
            await sleep(500);
            sock.resume();
            await waitFor(() => Buffer.concat(parts).includes(`{"n":${n - 1},`) && size > n * 60000,
                'the last event', 30000);
            const text = Buffer.concat(parts).toString('latin1');
            const seen = [...text.matchAll(/"n":(\d+),"pad":"(x*)"/g)];
            assert.deepEqual(seen.map((m) => Number(m[1])), [...Array(n).keys()], 'every event once, in order');
            assert.ok(seen.every((m) => m[2].length === 60000), 'every payload whole');
            assert.equal(metricValue((await httpRequest(s.port, '/metrics', { tls: true })).body,
                'sluice_clients_dropped_total{reason="slow"}'), 0);
        } finally {
            sock.destroy();
            await s.stop();
        }
    });
});

describe('TLS handshakes', () => {
    it('a plain HTTP request on the TLS port is a counted handshake failure', async () => {
        const before = metricValue(await metrics(), 'sluice_tls_handshake_failures_total{reason="error"}');
        const res = await httpRequest(ctx.sluice.port, '/healthz').catch((err) => err);
        assert.ok(res instanceof Error, 'no HTTP answer in cleartext');
        await waitFor(async () => metricValue(await metrics(),
            'sluice_tls_handshake_failures_total{reason="error"}') > before, 'the failure counted', 5000);
        /* stderr comes through a pipe: it may trail the metric a little. */
        await waitFor(async () => /TLS handshake failed: /.test(ctx.sluice.stderr),
            'the failure logged', 5000);
    });

    it('a client that never finishes its handshake is dropped at the request deadline', async () => {
        const before = metricValue(await metrics(), 'sluice_tls_handshake_failures_total{reason="timeout"}');
        const sock = net.connect(ctx.sluice.port, '127.0.0.1');
        const start = Date.now();
        const closed = new Promise((resolve) => sock.on('close', resolve));
        sock.on('error', () => {});
        /* The first bytes of a ClientHello record, then nothing. */
        sock.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]));
        await closed;
        const took = Date.now() - start;
        assert.ok(took >= 9000 && took < 20000, `closed after ${took} ms (deadline 10 s)`);
        await waitFor(async () => metricValue(await metrics(),
            'sluice_tls_handshake_failures_total{reason="timeout"}') > before, 'the timeout counted', 5000);
    });
});

describe('SIGHUP reloads the certificate', () => {
    it('new handshakes get the new certificate; an open stream goes on; a bad pair keeps the old', async () => {
        const fpA = fileFingerprint(certA.cert);
        const fpB = fileFingerprint(certB.cert);
        assert.equal(await peerFingerprint(ctx.sluice.port), fpA);
        const open = await openSse(ctx.sluice.port, '/r/hup', { tls: true });
        await open.waitForFrame((f) => f.retry !== null, 'the retry frame');
        try {
            useCert(certB);
            ctx.sluice.child.kill('SIGHUP');
            await waitFor(async () => (await peerFingerprint(ctx.sluice.port)) === fpB,
                'the new certificate on new handshakes');
            await ctx.pub.publish('hup', '"after-reload"');
            await open.waitForEvents(1);
            assert.equal(JSON.parse(open.events[0].data).payload, 'after-reload');
            assert.equal(open.ended, false, 'the open stream was not touched');

            /* A key that does not match: the running pair stays. */
            fs.copyFileSync(certA.key, live.key);
            ctx.sluice.child.kill('SIGHUP');
            await waitFor(() => /reload: .*tls.key_file: .*does not match/.test(ctx.sluice.stderr),
                'the reload error in the log');
            assert.equal(await peerFingerprint(ctx.sluice.port), fpB);
        } finally {
            open.close();
            useCert(certA);
        }
    });
});

describe('SIGTERM over TLS (last: it stops this sluice)', () => {
    it('an open TLS stream gets its final retry: and a clean end (no reset); exit 0', async () => {
        const sock = tls.connect({ host: '127.0.0.1', port: ctx.sluice.port, rejectUnauthorized: false });
        const state = { text: '', end: false, error: null };
        sock.on('data', (d) => { state.text += d.toString('latin1'); });
        sock.on('end', () => { state.end = true; });
        sock.on('error', (err) => { state.error = err; });
        const closed = new Promise((resolve) => sock.on('close', resolve));
        await new Promise((resolve) => sock.once('secureConnect', resolve));
        sock.write('GET /r/term HTTP/1.1\r\nHost: x\r\n\r\n');
        await waitFor(() => state.text.includes('retry:'), 'the stream to open');
        const stopped = ctx.sluice.stop('SIGTERM');
        await closed;
        assert.equal((state.text.match(/retry: \d+/g) || []).length, 2, `a final retry: ${state.text}`);
        assert.equal(state.error, null, 'no reset');
        assert.equal(state.end, true, 'ended with a FIN');
        assert.deepEqual(await stopped, { code: 0, signal: null });
    });
});
