'use strict';
/*
 * faults.test.js - brokers that die, hang or refuse (SPEC 5 /readyz, 6
 * "a broker that goes away is reconnected ... streams stay open"):
 *   - redis-server killed (SIGKILL) and restarted 5 times while streams
 *     are open and a publisher publishes every 50 ms;
 *   - the same with mosquitto (MQTT source, route /mqtt/{topic*}, QoS 1
 *     publishes through mosquitto_pub);
 *   - a "broker" that accepts TCP and never answers (Redis and MQTT);
 *   - a wrong Redis password (requirepass).
 *
 * Pub/sub keeps nothing for an absent subscriber, so only some publishes
 * must arrive. For Redis the PUBLISH reply says it exactly (the number of
 * subscribers that got it: sluice is the only one). For MQTT a publish
 * must arrive when mosquitto_pub succeeded and ran entirely inside an "up
 * window": from the moment /readyz was seen 200 (sluice subscribed) to the
 * moment the broker was killed. Everything that arrives must be a
 * successful publish, in order, once.
 *
 * The last test stops every sluice with SIGTERM and checks exit 0 and no
 * sanitizer report.
 */
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const net = require('node:net');
const { after, describe, test } = require('node:test');
const { httpRequest, openSse } = require('./lib/sse');
const { freePort, sleep, spawnTracked, stopProcess, waitFor } = require('./lib/procs');
const { connectRedis, startRedis } = require('./lib/redis');
const { mqttPublish, startMosquitto } = require('./lib/mosquitto');
const { startSluice, withLog } = require('./lib/sluice');
const { redisConfig } = require('./lib/fixtures');

const CYCLES = 5;
const UP_MS = 1000;   /* publishing with the broker up, per cycle */
const DOWN_MS = 500;  /* broker down, per cycle */
const PERIOD_MS = 50; /* one publish every 50 ms */

/* Every sluice and broker of this file, for the final checks and cleanup. */
const sluices = [];
const cleanups = [];
after(async () => {
    for (const fn of cleanups.reverse()) {
        await fn();
    }
    for (const s of sluices) {
        await s.stop();
    }
});

async function sluiceFor(config, opts) {
    const s = await startSluice(config, opts);
    sluices.push(s);
    return s;
}

async function readyz(sluice) {
    return httpRequest(sluice.port, '/readyz', { timeoutMs: 2000 });
}

/*
 * Publishes with publishOne(seq) every PERIOD_MS until stop(); every
 * attempt is recorded as {seq, t0, t1, ok, receivers}. publishOne
 * resolves with the receivers count (or true) and throws on failure.
 */
function startPublisher(publishOne) {
    const log = [];
    let running = true;
    const done = (async () => {
        for (let seq = 1; running; seq++) {
            const t0 = Date.now();
            const rec = { seq, t0, t1: 0, ok: false, receivers: null };
            try {
                const r = await publishOne(seq);
                rec.ok = true;
                rec.receivers = typeof r === 'number' ? r : null;
            } catch {
                rec.ok = false;
            }
            rec.t1 = Date.now();
            log.push(rec);
            await sleep(Math.max(0, PERIOD_MS - (rec.t1 - t0)));
        }
    })();
    return { log, stop: async () => { running = false; await done; } };
}

/*
 * Kills and restarts a broker CYCLES times while the publisher runs; each
 * time /readyz must go 503 (naming `source`) and come back 200. Returns
 * the up windows [{from, to}] (from: /readyz 200 seen; to: the kill).
 */
async function killRestartCycles(sluice, source, { kill, restart }) {
    const windows = [];
    let from = Date.now();
    for (let i = 0; i < CYCLES; i++) {
        await sleep(UP_MS);
        windows.push({ from, to: Date.now() });
        await kill();
        const down = await waitFor(async () => {
            const r = await readyz(sluice);
            return r.status === 503 && r;
        }, `/readyz 503 after broker kill ${i + 1}`, 5000, 50);
        assert.match(down.body, new RegExp(`source ${source}:`), `503 body names the source: ${down.body}`);
        await sleep(DOWN_MS);
        await restart();
        await waitFor(async () => (await readyz(sluice)).status === 200,
            `/readyz 200 after broker restart ${i + 1}`, 15000, 50);
        from = Date.now();
    }
    await sleep(UP_MS);
    windows.push({ from, to: Date.now() });
    return windows;
}

/*
 * Checks what one stream got (seqs, in arrival order) against the
 * publisher's log: strictly increasing, only successful publishes, and
 * every must-arrive publish present. Returns the number of must-arrive
 * publishes.
 */
function checkDelivery(name, got, log, mustArrive) {
    for (let i = 1; i < got.length; i++) {
        assert.ok(got[i] > got[i - 1], `${name}: out of order or duplicate at ${i}: ${got.slice(Math.max(0, i - 3), i + 2)}`);
    }
    const ok = new Set(log.filter((r) => r.ok).map((r) => r.seq));
    const bogus = got.filter((s) => !ok.has(s));
    assert.deepEqual(bogus, [], `${name}: received publishes that failed`);
    const have = new Set(got);
    const missing = mustArrive.filter((s) => !have.has(s));
    assert.deepEqual(missing, [], `${name}: ${missing.length} of ${mustArrive.length} publishes made while the ` +
        `broker was up and sluice subscribed did not arrive`);
    return mustArrive.length;
}

describe('redis-server killed and restarted 5 times', () => {
    const own = { redis: null, sluice: null };
    const it = (name, fn) => test(name, withLog(() => own.sluice, fn));

    it('streams stay open, /readyz flips, every publish that reached sluice arrives', async (t) => {
        own.redis = await startRedis();
        cleanups.push(() => own.redis.stop());
        own.sluice = await sluiceFor(redisConfig(own.redis.port));
        const streams = [
            await openSse(own.sluice.port, '/orders/faults'),
            await openSse(own.sluice.port, '/orders/faults'),
            await openSse(own.sluice.port, '/all'),
        ];
        let pub = null;
        const publisher = startPublisher(async (seq) => {
            if (pub === null) {
                const c = await connectRedis(own.redis.port);
                c.socket.on('close', () => {
                    if (pub === c) {
                        pub = null;
                    }
                });
                pub = c;
            }
            return pub.publish('orders:faults', String(seq));
        });
        try {
            for (const c of streams) {
                assert.equal(c.status, 200);
                await c.waitForFrame((f) => f.retry !== null, 'the retry frame');
            }
            const windows = await killRestartCycles(own.sluice, 'cache', {
                kill: () => own.redis.stop('SIGKILL'),
                restart: async () => { own.redis = await startRedis(own.redis.port); },
            });
            await publisher.stop();
            const log = publisher.log;
            const reached = log.filter((r) => r.ok && r.receivers >= 1).map((r) => r.seq);
            /* Inside an up window, Redis itself must count sluice as a
             * subscriber: /readyz 200 means subscribed. */
            const inWindow = log.filter((r) => r.ok && windows.some((w) => r.t0 >= w.from && r.t1 <= w.to));
            const unsubscribed = inWindow.filter((r) => r.receivers < 1).map((r) => r.seq);
            assert.deepEqual(unsubscribed, [], 'publishes made while /readyz said 200 found no subscriber');
            /* A marker after the last publish ends the check: once it is
             * on every stream, nothing published before it is still due. */
            const markerPub = await connectRedis(own.redis.port);
            try {
                assert.ok(await markerPub.publish('orders:faults', '"end"') >= 1, 'the marker reached sluice');
            } finally {
                markerPub.close();
            }
            for (const c of streams) {
                await c.waitUntil(() => c.events.some((e) => JSON.parse(e.data).payload === 'end'),
                    'the marker after the last publish', 5000);
            }
            streams.forEach((c, i) => {
                assert.equal(c.ended, false, `stream ${i} stayed open`);
                const got = c.events.map((e) => JSON.parse(e.data).payload);
                assert.equal(got.pop(), 'end', `stream ${i}: the marker comes last, once`);
                checkDelivery(`stream ${i}`, got, log, reached);
            });
            t.diagnostic(`${log.length} publishes, ${log.filter((r) => r.ok).length} accepted by redis, ` +
                `${reached.length} reached sluice and arrived on all 3 streams; ${CYCLES} restarts`);
        } finally {
            await publisher.stop();
            pub?.close();
            streams.forEach((c) => c.close());
        }
    });
});

describe('mosquitto killed and restarted 5 times', () => {
    const own = { mosq: null, sluice: null };
    const it = (name, fn) => test(name, withLog(() => own.sluice, fn));

    it('streams stay open, /readyz flips, every QoS 1 publish made while subscribed arrives', async (t) => {
        own.mosq = await startMosquitto();
        cleanups.push(() => own.mosq.stop());
        own.sluice = await sluiceFor([
            'sources:',
            '  - name: mqtt',
            '    type: mqtt',
            `    url: mqtt://127.0.0.1:${own.mosq.port}`,
            '    qos: 1',
            'routes:',
            '  - path: /mqtt/{topic*}',
            '    topics: ["mqtt:{topic}"]',
            '    format: raw',
            'stream:',
            '  retry: 2s',
            '  heartbeat: 15s',
            'logging: {level: info, format: text}',
            '',
        ].join('\n'));
        const streams = [];
        for (let i = 0; i < 3; i++) {
            streams.push(await openSse(own.sluice.port, '/mqtt/plant/faults/a'));
        }
        const publisher = startPublisher((seq) => mqttPublish(own.mosq.port, 'plant/faults/a', String(seq), { qos: 1 }));
        try {
            for (const c of streams) {
                assert.equal(c.status, 200);
                await c.waitForFrame((f) => f.retry !== null, 'the retry frame');
            }
            const windows = await killRestartCycles(own.sluice, 'mqtt', {
                kill: () => own.mosq.stop('SIGKILL'),
                restart: async () => { own.mosq = await startMosquitto(own.mosq.port); },
            });
            await publisher.stop();
            const log = publisher.log;
            const must = log.filter((r) => r.ok && windows.some((w) => r.t0 >= w.from && r.t1 <= w.to))
                .map((r) => r.seq);
            assert.ok(must.length >= CYCLES * 5, `too few publishes inside up windows: ${must.length}`);
            /* A marker after the last publish ends the check (QoS 1 from
             * a later client: the broker forwards it after the others). */
            await mqttPublish(own.mosq.port, 'plant/faults/a', 'end', { qos: 1 });
            for (const c of streams) {
                await c.waitUntil(() => c.events.some((e) => e.data === 'end'), 'the marker after the last publish', 5000);
            }
            streams.forEach((c, i) => {
                assert.equal(c.ended, false, `stream ${i} stayed open`);
                const got = c.events.map((e) => e.data);
                assert.equal(got.pop(), 'end', `stream ${i}: the marker comes last, once`);
                checkDelivery(`stream ${i}`, got.map(Number), log, must);
            });
            t.diagnostic(`${log.length} publishes, ${log.filter((r) => r.ok).length} accepted by mosquitto, ` +
                `${must.length} inside up windows, all arrived on 3 streams; ${CYCLES} restarts`);
        } finally {
            await publisher.stop();
            streams.forEach((c) => c.close());
        }
    });
});

/* A TCP server that accepts and never writes; counts connections. */
async function blackHole() {
    const port = await freePort();
    const hole = { port, accepted: 0, open: new Set() };
    hole.server = net.createServer((sock) => {
        hole.accepted += 1;
        hole.open.add(sock);
        sock.on('error', () => {});
        sock.on('close', () => hole.open.delete(sock));
        sock.resume(); /* read (and drop) what comes, so a FIN is seen */
    });
    await new Promise((resolve) => hole.server.listen(port, '127.0.0.1', resolve));
    hole.close = () => new Promise((resolve) => {
        hole.open.forEach((s) => s.destroy());
        hole.server.close(() => resolve());
    });
    cleanups.push(hole.close);
    return hole;
}

describe('a broker that accepts TCP and never answers', () => {
    const own = { sluice: null };
    const it = (name, fn) => test(name, withLog(() => own.sluice, fn));

    it('/readyz 503 names each silent source; sluice keeps serving', async (t) => {
        const rhole = await blackHole();
        const mhole = await blackHole();
        own.sluice = await sluiceFor([
            'sources:',
            '  - name: silentredis',
            '    type: redis',
            `    url: redis://127.0.0.1:${rhole.port}`,
            '  - name: silentmqtt',
            '    type: mqtt',
            `    url: mqtt://127.0.0.1:${mhole.port}`,
            'routes:',
            '  - path: /r/{ch}',
            '    topics: ["silentredis:{ch}"]',
            '  - path: /m/{t*}',
            '    topics: ["silentmqtt:{t}"]',
            '# the reasons on /readyz are opt-in (default: "NAME: down" only)',
            'readyz_details: true',
            'logging: {level: info, format: text}',
            '',
        ].join('\n'), { ready: false, env: { ...process.env, SLUICE_REDIS_HANDSHAKE_MS: '1000' } });
        const t0 = Date.now();
        /* /healthz is polled throughout: every answer within 500 ms. */
        let healthRuns = true;
        const healthLog = [];
        const health = (async () => {
            while (healthRuns) {
                const s = Date.now();
                const r = await httpRequest(own.sluice.port, '/healthz', { timeoutMs: 500 })
                    .catch((err) => ({ status: err.message }));
                healthLog.push({ status: r.status, ms: Date.now() - s });
                await sleep(100);
            }
        })();
        try {
            const first = await readyz(own.sluice);
            assert.equal(first.status, 503);
            assert.match(first.body, /source silentredis:/, first.body);
            assert.match(first.body, /source silentmqtt:/, first.body);

            /* A stream on a route of a silent source still opens. */
            const c = await openSse(own.sluice.port, '/r/x');
            assert.equal(c.status, 200);
            await c.waitForFrame((f) => f.retry !== null, 'the retry frame');
            c.close();

            const timedOut = await waitFor(async () => {
                const r = await readyz(own.sluice);
                return r.status === 503 && /source silentredis: .*(handshake timeout|no answer)/.test(r.body) && r;
            }, 'the redis handshake timeout (SLUICE_REDIS_HANDSHAKE_MS=1000) in /readyz', 5000, 100);
            /* The MQTT adapter's CONNACK deadline is 5 s: wait for a retry. */
            await waitFor(() => mhole.accepted >= 2, 'a second MQTT connection attempt', 12000, 100);
            const final = await readyz(own.sluice);
            assert.equal(final.status, 503);
            assert.match(final.body, /source silentmqtt:/, final.body);
            assert.ok(rhole.accepted >= 2, `redis attempts: ${rhole.accepted}`);
            /* Each failed attempt is closed, not left open. */
            assert.ok(rhole.open.size <= 1, `open redis-side sockets: ${rhole.open.size}`);
            assert.ok(mhole.open.size <= 1, `open mqtt-side sockets: ${mhole.open.size}`);
            t.diagnostic(`after ${Date.now() - t0} ms: redis attempts ${rhole.accepted}, mqtt attempts ` +
                `${mhole.accepted}; /readyz: ${JSON.stringify(timedOut.body)} then ${JSON.stringify(final.body)}`);
        } finally {
            healthRuns = false;
            await health;
        }
        const bad = healthLog.filter((h) => h.status !== 200);
        assert.deepEqual(bad, [], `/healthz failures among ${healthLog.length} polls`);
        assert.ok(healthLog.length >= 10, `only ${healthLog.length} /healthz polls`);
    });
});

describe('wrong Redis password', () => {
    const own = { sluice: null };
    const it = (name, fn) => test(name, withLog(() => own.sluice, fn));

    it('/readyz 503 with an AUTH message; the password appears nowhere', async () => {
        const port = await freePort();
        const right = `right-${crypto.randomBytes(8).toString('hex')}`;
        const wrong = `wrong-${crypto.randomBytes(8).toString('hex')}`;
        const redis = spawnTracked('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '',
            '--appendonly', 'no', '--loglevel', 'warning', '--requirepass', right]);
        cleanups.push(() => stopProcess(redis, 'SIGKILL'));
        await waitFor(async () => {
            const c = await connectRedis(port);
            try {
                return (await c.command('AUTH', right)) === 'OK';
            } finally {
                c.close();
            }
        }, `redis-server with requirepass on ${port}`);

        own.sluice = await sluiceFor([
            'sources:',
            '  - name: cache',
            '    type: redis',
            `    url: redis://:${wrong}@127.0.0.1:${port}`,
            'routes:',
            '  - path: /a/{ch}',
            '    topics: ["cache:{ch}"]',
            'readyz_details: true',
            'logging: {level: debug, format: text}',
            '',
        ].join('\n'), { ready: false });
        const r = await waitFor(async () => {
            const res = await readyz(own.sluice);
            return res.status === 503 && /AUTH/.test(res.body) && res;
        }, '/readyz 503 with an AUTH message', 5000, 100);
        assert.match(r.body, /^source cache: .*AUTH/m, r.body);
        await sleep(1500); /* a few retries, each logged or not */
        const metrics = (await httpRequest(own.sluice.port, '/metrics')).body;
        assert.match(metrics, /^sluice_source_up\{source="cache"\} 0$/m);
        assert.match(own.sluice.stderr, /AUTH/, 'the log says why');
        for (const [what, text] of [['stderr', own.sluice.stderr], ['/readyz', r.body], ['/metrics', metrics]]) {
            assert.ok(!text.includes(wrong), `the configured password appears in ${what}`);
            assert.ok(!text.includes(right), `the server's password appears in ${what}`);
        }
    });
});

test('SIGTERM: every sluice exits 0 with no sanitizer report', async () => {
    for (const s of sluices) {
        const res = await s.stop('SIGTERM');
        assert.deepEqual(res, { code: 0, signal: null }, `sluice on port ${s.port}: exit status\n${s.stderrTail()}`);
        assert.doesNotMatch(s.stderr, /ERROR: AddressSanitizer|LeakSanitizer|runtime error:/);
    }
});
