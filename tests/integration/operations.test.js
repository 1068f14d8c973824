'use strict';
/*
 * operations.test.js - what an operator sees (SPEC 2, 3 `logging` and
 * `shutdown_grace`, 3.6, 5): /healthz, /readyz across a redis-server
 * death and restart, /metrics (format and values), JSON logs, SIGHUP
 * reloads (routes, formats, a broken file, a changed listen address),
 * SIGTERM draining with spread retry values and exit 0, and the embedded
 * default config.
 *
 * `--check` exit codes and FILE:LINE:COL errors are check.test.js's.
 */
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const { execFile } = require('node:child_process');
const { after, before, describe, test } = require('node:test');
const { httpRequest, openSse } = require('./lib/sse');
const { freePort, makeTempDir, sleep, spawnTracked, stopProcess, waitFor, withTimeout } = require('./lib/procs');
const { connectRedis, startRedis } = require('./lib/redis');
const { requireBinary, startSluice, withLog } = require('./lib/sluice');
const { parseEnvelope, uniquePayload } = require('./lib/fixtures');

/*
 * A config (without "listen:") for the redis source "cache" on redisPort
 * with the given route lines; opts: {retry, grace, logFormat, maxPending}.
 */
function opsConfig(redisPort, routeLines, opts = {}) {
    return [
        'sources:',
        '  - name: cache',
        '    type: redis',
        `    url: redis://127.0.0.1:${redisPort}`,
        'routes:',
        ...routeLines,
        'stream:',
        `  retry: ${opts.retry || '2s'}`,
        '  heartbeat: 15s',
        ...(opts.maxPending ? [`  max_pending: ${opts.maxPending}`] : []),
        `shutdown_grace: ${opts.grace || '5s'}`,
        `logging: {level: info, format: ${opts.logFormat || 'text'}}`,
        '',
    ].join('\n');
}

const ROUTE_A_JSON = ['  - path: /a', '    topics: ["cache:a"]'];
const ROUTE_A_RAW = ['  - path: /a', '    topics: ["cache:a"]', '    format: raw'];
const ROUTE_B = ['  - path: /b', '    topics: ["cache:b"]'];
const ROUTE_C = ['  - path: /c', '    topics: ["cache:c"]'];

/* Opens a stream, checks 200 and waits for its retry frame. */
async function open(sluice, path, headers) {
    const c = await openSse(sluice.port, path, { headers });
    assert.equal(c.status, 200, `GET ${path}: ${c.raw}`);
    await c.waitForFrame((f) => f.retry !== null, 'the retry frame');
    return c;
}

/*
 * Parses the Prometheus text of /metrics into {samples: Map(series ->
 * number), help: Set, type: Map(name -> type), body}, asserting that
 * every line is a comment or "SERIES VALUE".
 */
async function scrape(sluice) {
    const res = await httpRequest(sluice.port, '/metrics');
    assert.equal(res.status, 200);
    const samples = new Map();
    const help = new Set();
    const type = new Map();
    for (const line of res.body.split('\n')) {
        if (line === '') {
            continue;
        }
        let m = /^# HELP ([a-z_:][a-z0-9_:]*) \S.*$/i.exec(line);
        if (m) {
            help.add(m[1]);
            continue;
        }
        m = /^# TYPE ([a-z_:][a-z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/i.exec(line);
        if (m) {
            type.set(m[1], m[2]);
            continue;
        }
        m = /^([a-z_:][a-z0-9_:]*(?:\{[a-z_]+="[^"\\]*"(?:,[a-z_]+="[^"\\]*")*\})?) (-?[0-9.e+]+|NaN|[+-]Inf)$/i.exec(line);
        assert.ok(m, `not a Prometheus text line: ${JSON.stringify(line)}`);
        samples.set(m[1], Number(m[2]));
    }
    return { samples, help, type, body: res.body };
}

async function sample(sluice, series) {
    const { samples, body } = await scrape(sluice);
    assert.ok(samples.has(series), `${series} in /metrics:\n${body}`);
    return samples.get(series);
}

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

/* Writes the running sluice's config file anew (same listen address
 * unless listen is given). */
function rewriteConfig(sluice, text, listen = `127.0.0.1:${sluice.port}`) {
    fs.writeFileSync(sluice.configFile, `listen: ${listen}\n${text}`);
}

/* Sends SIGHUP and waits for a stderr line matching re after the current
 * end of stderr. */
async function reload(sluice, re, what) {
    const from = sluice.stderr.length;
    sluice.child.kill('SIGHUP');
    return waitFor(() => re.exec(sluice.stderr.slice(from)), what);
}

/* Resolves with the error code of a TCP connect to port (null when it
 * connected). */
function connectError(port) {
    return new Promise((resolve) => {
        const sock = net.connect(port, '127.0.0.1');
        sock.once('connect', () => { sock.destroy(); resolve(null); });
        sock.once('error', (err) => resolve(err.code));
    });
}

describe('health, readiness and metrics', () => {
    const own = { redis: null, sluice: null, pub: null };
    before(async () => {
        own.redis = await startRedis();
        own.sluice = await startSluice(opsConfig(own.redis.port, [...ROUTE_A_JSON, ...ROUTE_B]));
        own.pub = await connectRedis(own.redis.port);
    });
    after(async () => {
        own.pub?.close();
        await own.sluice?.stop();
        await own.redis?.stop();
    });
    const it = (name, fn) => test(name, withLog(() => own.sluice, fn));

    it('/healthz answers 200 ok', async () => {
        const res = await httpRequest(own.sluice.port, '/healthz');
        assert.equal(res.status, 200);
        assert.equal(res.body.trim(), 'ok');
    });

    it('/readyz answers 200 while redis is up', async () => {
        const res = await httpRequest(own.sluice.port, '/readyz');
        assert.equal(res.status, 200, res.body);
    });

    it('/metrics is Prometheus text with HELP and TYPE for every required series', async () => {
        const res = await httpRequest(own.sluice.port, '/metrics');
        assert.match(res.headers['content-type'], /^text\/plain/);
        const { samples, help, type, body } = await scrape(own.sluice);
        const required = {
            sluice_connections: 'gauge',
            sluice_events_received_total: 'counter',
            sluice_events_delivered_total: 'counter',
            sluice_clients_dropped_total: 'counter',
            sluice_replayed_events_total: 'counter',
            sluice_history_events: 'gauge',
            sluice_history_bytes: 'gauge',
            sluice_source_up: 'gauge',
        };
        for (const [name, kind] of Object.entries(required)) {
            assert.ok(help.has(name), `# HELP ${name}`);
            assert.equal(type.get(name), kind, `# TYPE ${name} ${kind}`);
        }
        for (const series of ['sluice_connections', 'sluice_events_received_total{source="cache"}',
            'sluice_events_delivered_total', 'sluice_replayed_events_total', 'sluice_history_events',
            'sluice_history_bytes', 'sluice_source_up{source="cache"}']) {
            assert.ok(samples.has(series), `${series} in:\n${body}`);
        }
        assert.ok([...samples.keys()].some((k) => /^sluice_clients_dropped_total\{reason="[a-z_]+"\}$/.test(k)),
            `sluice_clients_dropped_total{reason=...} in:\n${body}`);
        assert.ok(samples.has('sluice_clients_dropped_total{reason="slow"}'), 'a "slow" reason');
        assert.equal(samples.get('sluice_source_up{source="cache"}'), 1);
        assert.equal(samples.get('sluice_connections'), 0);
    });

    it('the values move: connections, received, delivered, history, replayed', async () => {
        const before0 = (await scrape(own.sluice)).samples;
        const s1 = await open(own.sluice, '/a');
        const s2 = await open(own.sluice, '/a');
        let ids;
        try {
            assert.equal(await sample(own.sluice, 'sluice_connections'), 2, 'two open streams');
            for (let i = 0; i < 3; i++) {
                await own.pub.publish('a', uniquePayload({ i }));
            }
            const events = await s1.waitForEvents(3);
            await s2.waitForEvents(3);
            ids = events.map((e) => e.id);
            const now = (await scrape(own.sluice)).samples;
            const grew = (k) => now.get(k) - before0.get(k);
            assert.equal(grew('sluice_events_received_total{source="cache"}'), 3, 'received counts each PUBLISH once');
            assert.equal(grew('sluice_events_delivered_total'), 6, '3 events x 2 streams delivered');
            assert.equal(grew('sluice_history_events'), 3);
            assert.ok(grew('sluice_history_bytes') > 0, 'history bytes grew');
        } finally {
            s1.close();
            s2.close();
        }
        await waitFor(async () => (await sample(own.sluice, 'sluice_connections')) === 0,
            'sluice_connections back to 0 after both closed');

        const replayedBefore = await sample(own.sluice, 'sluice_replayed_events_total');
        const back = await open(own.sluice, '/a', { 'Last-Event-ID': ids[0] });
        try {
            await back.waitForEvents(2);
            assert.equal(await sample(own.sluice, 'sluice_replayed_events_total'), replayedBefore + 2);
        } finally {
            back.close();
        }
    });

    it('/readyz 503 naming the source and source_up 0 while redis is down, then 200 again', async () => {
        own.pub.close();
        own.pub = null;
        await own.redis.stop('SIGKILL');
        const down = await waitFor(async () => {
            const res = await httpRequest(own.sluice.port, '/readyz');
            return res.status === 503 && res;
        }, '/readyz 503 after redis-server died', 10000, 100);
        const lines = down.body.trim().split('\n');
        assert.equal(lines.length, 1, `one line per source that is not ready: ${down.body}`);
        assert.match(lines[0], /\bcache\b/, `the line names the source: ${down.body}`);
        assert.equal(await sample(own.sluice, 'sluice_source_up{source="cache"}'), 0);
        assert.equal((await httpRequest(own.sluice.port, '/healthz')).status, 200, '/healthz stays 200');

        own.redis = await startRedis(own.redis.port);
        own.pub = await connectRedis(own.redis.port);
        await waitFor(async () => (await httpRequest(own.sluice.port, '/readyz')).status === 200,
            '/readyz 200 after redis-server came back', 15000, 100);
        assert.equal(await sample(own.sluice, 'sluice_source_up{source="cache"}'), 1);
    });

    it('stops cleanly after all this (exit 0, no sanitizer report)', async () => {
        await stopCleanly(own.sluice);
    });
});

describe('logging.format: json', () => {
    const local = { redis: null, sluice: null };
    after(async () => {
        await local.sluice?.stop();
        await local.redis?.stop();
    });

    test('every stderr line is a JSON object with time, level and msg', withLog(() => local.sluice, async () => {
        local.redis = await startRedis();
        local.sluice = await startSluice(opsConfig(local.redis.port, ROUTE_A_JSON, { logFormat: 'json' }));
        /* More records: a source going down, a reload, a drain, a stop. */
        await local.redis.stop('SIGKILL');
        await waitFor(async () => (await httpRequest(local.sluice.port, '/readyz')).status === 503,
            '/readyz 503', 10000, 100);
        await reload(local.sluice, /reloaded/, 'the reload record');
        const { code } = await local.sluice.stop('SIGTERM');
        assert.equal(code, 0);
        const lines = local.sluice.stderr.split('\n').filter((l) => l !== '');
        assert.ok(lines.length >= 4, `several records: ${local.sluice.stderr}`);
        for (const line of lines) {
            let rec;
            assert.doesNotThrow(() => { rec = JSON.parse(line); }, `not JSON: ${line}`);
            assert.equal(typeof rec, 'object');
            assert.match(rec.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/, line);
            assert.ok(['debug', 'info', 'warn', 'error'].includes(rec.level), line);
            assert.equal(typeof rec.msg, 'string', line);
            assert.ok(rec.msg.length > 0, line);
        }
        assert.ok(lines.some((l) => ['warn', 'error'].includes(JSON.parse(l).level)),
            'the source failure is logged (as JSON too)');
    }));
});

describe('SIGHUP reload', () => {
    const own = { redis: null, sluice: null, pub: null };
    before(async () => {
        own.redis = await startRedis();
        own.sluice = await startSluice(opsConfig(own.redis.port, [...ROUTE_A_JSON, ...ROUTE_B]));
        own.pub = await connectRedis(own.redis.port);
    });
    after(async () => {
        own.pub?.close();
        await own.sluice?.stop();
        await own.redis?.stop();
    });
    const it = (name, fn) => test(name, withLog(() => own.sluice, fn));

    it('a removed route closes its streams; a kept one stays open and takes the new format; a new route works', async () => {
        const a = await open(own.sluice, '/a');
        const b = await open(own.sluice, '/b');
        try {
            const p1 = uniquePayload({ before: true });
            await own.pub.publish('a', p1);
            const [e1] = await a.waitForEvents(1);
            assert.equal(JSON.stringify(parseEnvelope(e1, { topic: 'a' }).payload), p1, 'json before the reload');

            rewriteConfig(own.sluice, opsConfig(own.redis.port, [...ROUTE_A_RAW, ...ROUTE_C]));
            await reload(own.sluice, /reloaded/, 'the "reloaded" log line');
            await b.waitForEnd(3000);
            assert.equal(a.ended, false, '/a stays open');

            const p2 = uniquePayload({ after: true });
            await own.pub.publish('a', p2);
            const [, e2] = await a.waitForEvents(2);
            assert.equal(e2.data, p2, 'raw format after the reload: the payload itself, no envelope');
            assert.ok(e2.id !== null && e2.id !== e1.id);
            assert.equal(a.ended, false);

            assert.equal((await httpRequest(own.sluice.port, '/b')).status, 404, '/b is gone');
            const c = await open(own.sluice, '/c');
            try {
                const p3 = uniquePayload({ c: true });
                await own.pub.publish('c', p3);
                const [e3] = await c.waitForEvents(1);
                assert.equal(JSON.stringify(parseEnvelope(e3, { topic: 'c' }).payload), p3);
            } finally {
                c.close();
            }
        } finally {
            a.close();
            b.close();
        }
    });

    it('a config with a syntax error keeps everything running and logs FILE:LINE:COL', async () => {
        const a = await open(own.sluice, '/a');
        try {
            const good = opsConfig(own.redis.port, [...ROUTE_A_RAW, ...ROUTE_C]);
            rewriteConfig(own.sluice, good.replace('topics: ["cache:c"]', 'topics: ["cache:c"'));
            const file = own.sluice.configFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
            const m = await reload(own.sluice, new RegExp(`${file}:(\\d+):(\\d+): *\\S.*`), 'a FILE:LINE:COL error');
            assert.ok(Number(m[1]) >= 1 && Number(m[2]) >= 1, m[0]);
            await sleep(200);
            assert.equal(own.sluice.child.exitCode, null, 'still running');
            assert.equal(a.ended, false, 'the stream stays open');
            assert.equal((await httpRequest(own.sluice.port, '/healthz')).status, 200);

            const p = uniquePayload({ broken: true });
            await own.pub.publish('a', p);
            const [ev] = await a.waitForEvents(1);
            assert.equal(ev.data, p, 'the running (raw) config still applies');
            const c = await open(own.sluice, '/c');
            c.close();
        } finally {
            a.close();
            rewriteConfig(own.sluice, opsConfig(own.redis.port, [...ROUTE_A_RAW, ...ROUTE_C]));
        }
    });

    it('a changed listen address is logged as needing a restart, and the old address keeps serving', async () => {
        const other = await freePort();
        rewriteConfig(own.sluice, opsConfig(own.redis.port, [...ROUTE_A_RAW, ...ROUTE_C]), `127.0.0.1:${other}`);
        try {
            await reload(own.sluice, /listen[^\n]*restart|restart[^\n]*listen/i, 'a "restart needed" line for listen');
            assert.equal((await httpRequest(own.sluice.port, '/healthz')).status, 200, 'the old port still serves');
            assert.equal(await connectError(other), 'ECONNREFUSED', 'nothing listens on the new port');
            const a = await open(own.sluice, '/a');
            a.close();
        } finally {
            rewriteConfig(own.sluice, opsConfig(own.redis.port, [...ROUTE_A_RAW, ...ROUTE_C]));
        }
    });

    it('stops cleanly after the reloads (exit 0, no sanitizer report)', async () => {
        await stopCleanly(own.sluice);
    });
});

describe('SIGTERM', () => {
    const local = { redis: null, sluice: null };
    after(async () => {
        await local.sluice?.stop();
        await local.redis?.stop();
    });

    /*
     * Three reading streams and one client that stopped reading with
     * megabytes unsent (max_pending is raised so it is not cut first):
     * the reading ones get their final retry and close at once; the stuck
     * one keeps sluice draining, which is when new connections must be
     * refused, until shutdown_grace ends it.
     */
    test('drains: a final retry in [1, 3] x stream.retry on each stream, close, exit 0 within grace + 1 s',
        withLog(() => local.sluice, async () => {
            local.redis = await startRedis();
            local.sluice = await startSluice(opsConfig(local.redis.port, ROUTE_A_JSON,
                { retry: '1s', grace: '2s', maxPending: '64MiB' }));
            const pub = await connectRedis(local.redis.port);
            const streams = [];
            const stuck = net.connect(local.sluice.port, '127.0.0.1');
            try {
                for (let i = 0; i < 3; i++) {
                    streams.push(await open(local.sluice, '/a'));
                }
                let stuckText = '';
                stuck.on('data', (d) => { stuckText += d.toString('latin1'); });
                stuck.on('error', () => {});
                stuck.write('GET /a HTTP/1.1\r\nHost: x\r\n\r\n');
                await waitFor(() => stuckText.includes('retry: 1000'), 'the stuck client\'s retry frame');
                stuck.pause();
                const filler = JSON.stringify('y'.repeat(4096));
                for (let i = 0; i < 1000; i += 100) {
                    const replies = [];
                    for (let j = 0; j < 100; j++) {
                        replies.push(pub.publish('a', filler));
                    }
                    await Promise.all(replies);
                    await Promise.all(streams.map((s) => s.waitForEvents(i + 100, 10000)));
                }

                const child = local.sluice.child;
                const t0 = Date.now();
                child.kill('SIGTERM');
                await Promise.all(streams.map((s) => s.waitForEnd(3000)));
                assert.equal(child.exitCode, null, 'still draining the stuck client');
                const refused = await connectError(local.sluice.port);
                assert.equal(refused, 'ECONNREFUSED', 'a new connection while draining is refused');
                for (const s of streams) {
                    const last = s.frames[s.frames.length - 1];
                    assert.equal(s.events.length, 1000, 'every event before the final frame');
                    assert.ok(last.retry !== null && last.data === null && last.id === null,
                        `a final retry frame: ${s.describe()}`);
                    assert.ok(last.retry >= 1000 && last.retry <= 3000, `retry ${last.retry} in [1000, 3000]`);
                }
                const result = await child.exited;
                const elapsed = Date.now() - t0;
                assert.deepEqual(result, { code: 0, signal: null }, 'exit status 0');
                assert.doesNotMatch(child.stderrText, /ERROR: \w*Sanitizer/);
                assert.ok(elapsed <= 3000, `exited ${elapsed} ms after SIGTERM (grace 2 s + 1 s)`);
            } finally {
                stuck.destroy();
                streams.forEach((s) => s.close());
                pub.close();
            }
        }));
});

describe('embedded default', () => {
    /* Runs sluice with args in cwd, without SLUICE_CONFIG. */
    function runIn(cwd, args) {
        const env = { ...process.env };
        delete env.SLUICE_CONFIG;
        return new Promise((resolve) => {
            execFile(requireBinary(), args, { cwd, env, timeout: 5000 }, (err, stdout, stderr) => {
                resolve({ code: err ? err.code : 0, stdout, stderr });
            });
        });
    }

    test('--check without -c in an empty dir resolves the embedded default', async () => {
        const dir = makeTempDir('sluice-empty-');
        const res = await runIn(dir, ['--check']);
        assert.equal(res.code, 0, res.stderr);
        assert.match(res.stdout, /\/redis\/\{channel\}/, res.stdout);
        assert.match(res.stdout, /\/mqtt\/\{topic\*\}/, res.stdout);
        assert.match(res.stdout, /redis:\{channel\}/, res.stdout);
        assert.match(res.stdout, /mqtt:\{topic\}/, res.stdout);
    });

    /* Port 8080 may be taken on a shared machine (not by this suite: it
     * uses free ports): then the claim is checked through the bind error,
     * which must name 127.0.0.1:8080; never skipped. */
    test('without a config it says so and listens on 127.0.0.1:8080', async (t) => {
        const free = await new Promise((resolve) => {
            const srv = net.createServer();
            srv.once('error', () => resolve(false));
            srv.listen(8080, '127.0.0.1', () => srv.close(() => resolve(true)));
        });
        const dir = makeTempDir('sluice-empty-');
        const env = { ...process.env };
        delete env.SLUICE_CONFIG;
        const child = spawnTracked(requireBinary(), [], { cwd: dir, env });
        try {
            if (!free) {
                t.diagnostic('port 8080 is taken: checking the default through the bind error');
                const { code } = await withTimeout(child.exited, 'sluice to exit on a taken 8080', 10000);
                await withTimeout(new Promise((r) => (child.stderr.readableEnded ? r() : child.stderr.once('end', r))),
                    'the end of its stderr', 5000);
                assert.ok(code > 0, `exit code ${code}: ${child.stderrText}`);
                assert.match(child.stderrText, /embedded default/i, child.stderrText);
                assert.match(child.stderrText, /127\.0\.0\.1:8080/, `the bind error names the default: ${child.stderrText}`);
                return;
            }
            await waitFor(async () => {
                if (child.exitCode !== null) {
                    throw new Error(`sluice exited: ${child.output}`);
                }
                const res = await httpRequest(8080, '/healthz', { timeoutMs: 1000 });
                return res.status === 200;
            }, 'sluice on 127.0.0.1:8080', 15000);
            assert.match(child.stderrText, /embedded default/i, child.stderrText);
            const res = await httpRequest(8080, '/healthz');
            assert.equal(res.body.trim(), 'ok');
            const { code } = await stopProcess(child, 'SIGTERM');
            assert.equal(code, 0, child.stderrText);
        } finally {
            await stopProcess(child, 'SIGKILL');
        }
    });

});
