'use strict';
/*
 * replicas.test.js - three sluice replicas sharing one history in a Redis
 * Stream (history.redis), behind a real round-robin proxy (nginx), read
 * by headless Chromium's own EventSource (issue #11).
 *
 * Real parts only: redis-server with AOF (the history, and the pub/sub
 * bus), mosquitto (the MQTT bus, QoS 1, persistent session), three sluice
 * processes with the same config on three ports, nginx balancing round
 * robin over them with no upstream keepalive (every EventSource reconnect
 * is balanced anew), and Chromium. SLUICE_INGEST_LEASE_MS=1000.
 *
 * One page stays open through every scenario on /plant/s1 (MQTT), and
 * MQTT messages carry 1, 2, 3, ... After each scenario the page holds
 * exactly 1..N, in order, once each, with no "event: reset":
 *
 *   1. ids: the same event has the same id on every replica (a raw SSE
 *      client on each replica's own port) and in the page; exactly one
 *      replica is ingest leader per source;
 *   2. kill -9 the replica serving the page (the one whose
 *      sluice_connections is 1), publish while it is down, restart it;
 *   3. kill -9 the MQTT ingest leader while publishing (the next leader
 *      takes the persistent session: nothing is lost), and the Redis
 *      pub/sub leader while publishing on a second page (messages
 *      published during the takeover are lost: only order and no
 *      duplicate are asserted; the gap is measured and printed);
 *   4. rolling restart: each replica SIGTERM'd and started again in turn;
 *   5. redis-server kill -9 and restarted on its port (AOF): /readyz is
 *      503 meanwhile, the page's stream stays open, MQTT messages
 *      published meanwhile arrive, old ids still resume.
 *
 * A second test: two sluice processes with a local history (no
 * history.redis) started in the same millisecond (libfaketime freezes
 * their wall clock at one instant) must not issue ids that the other
 * accepts: resuming on one with the other's id gives reset unknown-id.
 *
 * The "nothing more arrived" check uses the sequence itself: the page's
 * list is compared once its last number N has arrived, and N is always
 * published after the rest (one publisher, one topic, QoS 1).
 * Needs /usr/bin/chromium, nginx, faketime and playwright-core.
 */
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { startPageServer } = require('./lib/fixtures');
const { after, before, describe, test } = require('node:test');
const { freePort, makeTempDir, waitFor } = require('./lib/procs');
const { connectRedis, startRedis } = require('./lib/redis');
const { mqttPublish, startMosquitto } = require('./lib/mosquitto');
const { startNginx } = require('./lib/nginx');
const { httpRequest, openSse } = require('./lib/sse');
const { Sluice, requireBinary, startSluice } = require('./lib/sluice');

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
    '--no-first-run', '--disable-background-networking', '--disable-component-update',
    '--disable-sync'];
const FAKETIME_LIB = process.env.FAKETIME_LIB || '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';
const LEASE_MS = 1000;
const RETRY_MS = 500;
/* Deadlines for one step on a loaded two-core machine: generous, since
 * every wait polls and returns as soon as its condition holds. */
const STEP_MS = 20000;

/* The page: one EventSource on ?url=, everything it sees kept on window. */
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>sluice replicas</title></head>
<body><script>
window.received = [];
window.ids = [];
window.resets = [];
window.opens = 0;
window.errors = 0;
const es = new EventSource(new URLSearchParams(location.search).get('url'));
es.onopen = () => { window.opens += 1; };
es.onerror = () => { window.errors += 1; };
es.onmessage = (e) => {
    window.received.push(Number(JSON.parse(e.data).payload));
    window.ids.push(e.lastEventId);
};
es.addEventListener('reset', (e) => { window.resets.push(e.data); });
</script></body></html>
`;

const ctx = {
    aofDir: null,
    redis: null,
    mosquitto: null,
    pub: null,
    replicas: [],
    nginx: null,
    server: null,
    pageOrigin: null,
    browser: null,
    pageErrors: [],
    historyKey: `sluice-it-replicas-${process.pid}`,
};

const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
const replicaEnv = () => ({ ...process.env, SLUICE_INGEST_LEASE_MS: String(LEASE_MS) });

function replicaConfig() {
    return [
        'sources:',
        '  - name: plant',
        '    type: mqtt',
        `    url: mqtt://127.0.0.1:${ctx.mosquitto.port}`,
        '    qos: 1',
        `    client_id: sluice-it-replicas-${process.pid}`,
        '    clean_session: false',
        '  - name: shop',
        '    type: redis',
        `    url: redis://127.0.0.1:${ctx.redis.port}`,
        'routes:',
        '  - path: /plant/{site}',
        '    topics: ["plant:factory/{site}/+"]',
        '  - path: /orders/{region}',
        '    topics: ["shop:orders:{region}"]',
        'history:',
        `  redis: redis://127.0.0.1:${ctx.redis.port}/0`,
        `  key: ${ctx.historyKey}`,
        '  max_events: 10000',
        'stream:',
        `  retry: ${RETRY_MS}ms`,
        '  heartbeat: 15s',
        'cors:',
        `  origins: ["${ctx.pageOrigin}"]`,
        'shutdown_grace: 1s',
        'logging: {level: info, format: text}',
        '',
    ].join('\n');
}

/* ---- replicas and their metrics */

const alive = (r) => r.child !== null && r.child.exitCode === null && r.child.signalCode === null;

/* GET /metrics of replica r as {name{labels}: number}. */
async function metrics(r) {
    const res = await httpRequest(r.port, '/metrics', { timeoutMs: 2000 });
    assert.equal(res.status, 200, `/metrics on ${r.port}`);
    const out = {};
    for (const line of res.body.split('\n')) {
        const m = /^([a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
        if (m) {
            out[m[1]] = Number(m[2]);
        }
    }
    return out;
}

const leaderKey = (source) => `sluice_ingest_leader{source="${source}"}`;

/* The live replicas' leader gauges for source: [{r, value}]. */
async function leaderGauges(source) {
    const live = ctx.replicas.filter(alive);
    return Promise.all(live.map(async (r) => ({ r, value: (await metrics(r))[leaderKey(source)] })));
}

/* Waits until exactly one live replica says 1 for source and every other
 * says 0; returns that replica. */
async function waitForOneLeader(source, what = `exactly one ingest leader for ${source}`) {
    let last = null;
    try {
        return await waitFor(async () => {
            last = await leaderGauges(source);
            const ones = last.filter((g) => g.value === 1);
            const zeros = last.filter((g) => g.value === 0);
            return ones.length === 1 && zeros.length === last.length - 1 ? ones[0].r : null;
        }, what, STEP_MS, 100);
    } catch (err) {
        err.message += `; gauges ${JSON.stringify((last || []).map((g) => [g.r.port, g.value]))}`;
        throw err;
    }
}

/* Waits until the open streams over all live replicas add up to `total`
 * and returns the replicas that hold any. */
async function streamHolders(total) {
    return waitFor(async () => {
        const live = ctx.replicas.filter(alive);
        const counts = await Promise.all(live.map(async (r) => (await metrics(r)).sluice_connections));
        const sum = counts.reduce((a, b) => a + b, 0);
        return sum === total ? live.filter((r, i) => counts[i] > 0) : null;
    }, `${total} open stream(s) over the replicas`, STEP_MS, 100);
}

const name = (r) => `replica :${r.port}`;

/* ---- the page */

async function openPage(p) {
    const page = await ctx.browser.newPage();
    page.on('pageerror', (err) => ctx.pageErrors.push(err.message));
    await page.goto(`${ctx.pageOrigin}/?url=${encodeURIComponent(ctx.nginx.url(p))}`);
    await waitFor(() => page.evaluate(() => window.opens >= 1), `the EventSource on ${p} to open`,
        STEP_MS, 50);
    return page;
}

function readPage(page) {
    return page.evaluate(() => ({
        received: window.received.slice(),
        ids: window.ids.slice(),
        resets: window.resets.slice(),
        opens: window.opens,
        errors: window.errors,
    }));
}

/* Waits until `last` has arrived in the page; returns the page's record. */
async function waitForNumber(page, last, what) {
    let seen = null;
    try {
        return await waitFor(async () => {
            seen = await readPage(page);
            return seen.received.includes(last) ? seen : null;
        }, what, STEP_MS, 50);
    } catch (err) {
        err.message += `; the page has ${JSON.stringify(seen)}`;
        throw err;
    }
}

/* Waits for n, then asserts the page holds exactly 1..n once each, in
 * order, with unique ids and no reset. Returns the page's record. */
async function assertExactly(page, n, what) {
    const seen = await waitForNumber(page, n, `${n} in the page (${what})`);
    assert.deepEqual(seen.received, range(1, n),
        `${what}: the page holds exactly 1..${n}, in order, once each; ids ${JSON.stringify(seen.ids)}`);
    assert.deepEqual(seen.resets, [], `${what}: no reset`);
    assert.equal(new Set(seen.ids).size, seen.ids.length, `${what}: no id twice`);
    assert.deepEqual(ctx.pageErrors, [], 'no uncaught errors in the page');
    return seen;
}

/* Waits until the page's EventSource reported an error after `before`. */
async function waitForPageError(page, before) {
    await waitFor(async () => (await readPage(page)).errors > before,
        'the page to see its stream drop', STEP_MS, 50);
}

/* ---- publishers */

let published = 0;

/* Publishes the next numbers up to `to` on MQTT (QoS 1), one at a time. */
async function publishTo(to) {
    while (published < to) {
        published += 1;
        await mqttPublish(ctx.mosquitto.port, 'factory/s1/value', String(published), { qos: 1 });
    }
}

/* For a failure message: each live replica's gauges and counters that
 * tell where an event stopped, and the log's newest entries in Redis. */
async function describeState() {
    const lines = [];
    for (const r of ctx.replicas.filter(alive)) {
        try {
            const m = await metrics(r);
            const keep = Object.entries(m).filter(([k]) => /leader|received|connections|history_events|source_up/.test(k));
            lines.push(`${name(r)}: ${keep.map(([k, v]) => `${k}=${v}`).join(' ')}`);
        } catch (err) {
            lines.push(`${name(r)}: /metrics failed: ${err.message}`);
        }
    }
    try {
        const c = await connectRedis(ctx.redis.port);
        try {
            const tail = await c.command('XREVRANGE', `${ctx.historyKey}:log`, '+', '-', 'COUNT', '5');
            lines.push(`log tail: ${JSON.stringify(tail)}`);
        } finally {
            c.close();
        }
    } catch (err) {
        lines.push(`log tail: ${err.message}`);
    }
    lines.push(`published: ${published}`);
    return lines.join('\n');
}

/* A failing step ends with every replica's stderr tail and nginx's log. */
function withLogs(fn) {
    return async (t) => {
        try {
            await fn(t);
        } catch (err) {
            const tails = ctx.replicas.map((r) => `--- ${name(r)} stderr (tail) ---\n${r.stderrTail(15)}`);
            const nginxLog = ctx.nginx ? ctx.nginx.errorLog().split('\n').slice(-10).join('\n') : '';
            try {
                err.message += `\n${tails.join('\n')}\n--- nginx error.log (tail) ---\n${nginxLog}` +
                    `\n--- state ---\n${await describeState()}`;
            } catch { /* read-only message */ }
            throw err;
        }
    };
}

describe('three replicas, one history in Redis, behind nginx, read by Chromium', () => {
    before(async () => {
        assert.ok(fs.existsSync(CHROMIUM), `chromium not found at ${CHROMIUM} (set CHROMIUM)`);
        requireBinary();
        ctx.aofDir = makeTempDir('sluice-replicas-aof-');
        [ctx.redis, ctx.mosquitto] = await Promise.all([
            startRedis(undefined, { aofDir: ctx.aofDir }), startMosquitto()]);
        ctx.pub = await connectRedis(ctx.redis.port);
        const pagePort = await freePort();
        ctx.pageOrigin = `http://127.0.0.1:${pagePort}`;
        ctx.server = await startPageServer(pagePort, PAGE);

        const ports = await Promise.all([freePort(), freePort(), freePort()]);
        ctx.replicas = ports.map((port) => new Sluice(replicaConfig(), port, replicaEnv()));
        await Promise.all(ctx.replicas.map((r) => r.start()));
        ctx.nginx = await startNginx(ports);

        const { chromium } = require('playwright-core');
        ctx.browser = await chromium.launchPersistentContext(makeTempDir('sluice-chromium-'), {
            executablePath: CHROMIUM,
            headless: true,
            args: CHROMIUM_ARGS,
        });
    });

    after(async () => {
        await ctx.browser?.close();
        if (ctx.server) {
            ctx.server.closeAllConnections();
            await new Promise((resolve) => ctx.server.close(resolve));
        }
        ctx.pub?.close();
        await ctx.nginx?.stop();
        await Promise.all(ctx.replicas.map((r) => r.stop('SIGKILL')));
        await Promise.all([ctx.mosquitto?.stop(), ctx.redis?.stop()]);
    });

    let page = null;

    test('the same id on every replica; one ingest leader per source', { timeout: 60000 },
        withLogs(async (t) => {
            await waitForOneLeader('plant');
            await waitForOneLeader('shop');
            page = await openPage('/plant/s1');
            const direct = await Promise.all(ctx.replicas.map((r) => openSse(r.port, '/plant/s1')));
            try {
                direct.forEach((c) => assert.equal(c.status, 200));
                await publishTo(5);
                const lists = await Promise.all(direct.map((c) => c.waitForEvents(5, STEP_MS)));
                const ids = lists.map((evs) => evs.map((e) => e.id));
                const payloads = lists.map((evs) => evs.map((e) => Number(JSON.parse(e.data).payload)));
                payloads.forEach((p) => assert.deepEqual(p, range(1, 5)));
                assert.deepEqual(ids[1], ids[0], 'replicas 1 and 2 give the same ids');
                assert.deepEqual(ids[2], ids[0], 'replicas 1 and 3 give the same ids');
                const seen = await assertExactly(page, 5, 'start');
                assert.deepEqual(seen.ids, ids[0], 'the page (through nginx) has the same ids');
                t.diagnostic(`ids of 1..5 on every replica: ${ids[0].join(' ')}`);
            } finally {
                direct.forEach((c) => c.close());
            }
        }));

    test('kill -9 of the replica serving the page', { timeout: 60000 }, withLogs(async (t) => {
        const [serving] = await streamHolders(1);
        const leader = await waitForOneLeader('plant');
        t.diagnostic(`the page is on ${name(serving)}; the MQTT leader is ${name(leader)}`);
        const before = (await readPage(page)).errors;
        await serving.stop('SIGKILL');
        await waitForPageError(page, before);
        await publishTo(10);
        await assertExactly(page, 10, 'after kill -9 of the serving replica');
        await serving.start();
        await publishTo(12);
        await assertExactly(page, 12, 'after its restart');
        await waitForOneLeader('plant');
    }));

    test('kill -9 of the MQTT ingest leader while publishing', { timeout: 60000 }, withLogs(async (t) => {
        const leader = await waitForOneLeader('plant');
        const publishing = publishTo(40);
        await waitFor(() => published >= 20, 'the publisher at 20', STEP_MS, 10);
        const killedAt = Date.now();
        await leader.stop('SIGKILL');
        const next = await waitForOneLeader('plant', 'a new MQTT ingest leader');
        const takeoverMs = Date.now() - killedAt;
        await publishing;
        await assertExactly(page, 40, 'after kill -9 of the MQTT leader');
        t.diagnostic(`mqtt: ${name(next)} took the lease ${takeoverMs} ms after the kill of ` +
            `${name(leader)} (lease ${LEASE_MS} ms); nothing lost`);
        await waitFor(async () => /history: ingest leader for source plant/.test(next.stderr),
            'the new leader logged', STEP_MS);
        await leader.start();
        await waitForOneLeader('plant');
    }));

    test('kill -9 of the Redis pub/sub ingest leader while publishing', { timeout: 60000 },
        withLogs(async (t) => {
            const orders = await openPage('/orders/eu');
            try {
                const leader = await waitForOneLeader('shop');
                /* One PUBLISH every 20 ms; kill the leader at the 30th. */
                const sent = [];
                const total = 150;
                let next = null;
                let killedAt = 0;
                for (let n = 1; n <= total; n++) {
                    const receivers = await ctx.pub.publish('orders:eu', String(n));
                    sent.push({ n, at: Date.now(), receivers });
                    if (n === 30) {
                        killedAt = Date.now();
                        await leader.stop('SIGKILL');
                    }
                    await new Promise((resolve) => setTimeout(resolve, 20));
                }
                next = await waitForOneLeader('shop', 'a new pub/sub ingest leader');
                /* After the takeover, publish until one arrives: the marker. */
                let marker = total;
                await waitFor(async () => {
                    marker += 1;
                    await ctx.pub.publish('orders:eu', String(marker));
                    const seen = await readPage(orders);
                    return seen.received.length > 0 && seen.received[seen.received.length - 1] > total;
                }, 'a message published after the takeover to arrive', STEP_MS, 200);
                const seen = await readPage(orders);
                const got = seen.received;
                for (let i = 1; i < got.length; i++) {
                    assert.ok(got[i] > got[i - 1], `in order, no duplicate at ${i}: ${JSON.stringify(got)}`);
                }
                assert.deepEqual(seen.resets, [], 'no reset');
                assert.deepEqual(got.slice(0, 29), range(1, 29), 'everything before the kill arrived');
                const lost = sent.filter((s) => !got.includes(s.n));
                const gapMs = lost.length === 0 ? 0
                    : sent[sent.indexOf(lost[lost.length - 1]) + 1].at - lost[0].at;
                t.diagnostic(`pub/sub: ${lost.length} of ${total} messages lost across the takeover ` +
                    `(${lost.length ? `${lost[0].n}..${lost[lost.length - 1].n}` : 'none'}), ` +
                    `window ${gapMs} ms; PUBLISH had 0 receivers for ` +
                    `${sent.filter((s) => s.receivers === 0).length}; new leader ${name(next)}`);
                /* Lost messages are one contiguous run around the kill. */
                if (lost.length) {
                    const first = sent.indexOf(lost[0]);
                    assert.deepEqual(lost.map((s) => s.n), range(lost[0].n, lost[0].n + lost.length - 1),
                        'the lost messages are one run');
                    assert.ok(sent[first].at >= killedAt - 1000, 'the loss started at the kill');
                }
                assert.ok(gapMs < 10 * LEASE_MS, `takeover window ${gapMs} ms below ${10 * LEASE_MS} ms`);
                await leader.start();
                await waitForOneLeader('shop');
            } finally {
                await orders.close();
            }
            await assertExactly(page, 40, 'the MQTT page meanwhile');
        }));

    test('rolling restart of the three replicas', { timeout: 90000 }, withLogs(async (t) => {
        const opensBefore = (await readPage(page)).opens;
        for (const r of ctx.replicas) {
            const result = await r.stop('SIGTERM');
            assert.equal(result.code, 0, `${name(r)} drained and exited 0 on SIGTERM`);
            await publishTo(published + 3);
            await r.start();
            await assertExactly(page, published, `rolling restart, ${name(r)} back`);
        }
        await waitForOneLeader('plant');
        await waitForOneLeader('shop');
        const seen = await assertExactly(page, published, 'after the rolling restart');
        t.diagnostic(`rolling restart: the page reconnected ${seen.opens - opensBefore} times`);
    }));

    test('redis-server kill -9 and restart (AOF)', { timeout: 90000 }, withLogs(async (t) => {
        const opensBefore = (await readPage(page)).opens;
        const firstIds = (await readPage(page)).ids;
        await ctx.redis.stop('SIGKILL');
        for (const r of ctx.replicas) {
            await waitFor(async () => (await httpRequest(r.port, '/readyz')).status === 503,
                `${name(r)} /readyz 503 while Redis is down`, STEP_MS, 100);
        }
        /* The MQTT leader receives these while it cannot append. */
        const fromBefore = published;
        await publishTo(published + 5);
        const down = await readPage(page);
        t.diagnostic(`while Redis was down the page got ${down.received.length - fromBefore} of 5 new events`);

        ctx.redis = await startRedis(ctx.redis.port, { aofDir: ctx.aofDir });
        ctx.pub.close();
        ctx.pub = await connectRedis(ctx.redis.port);
        for (const r of ctx.replicas) {
            await waitFor(async () => (await httpRequest(r.port, '/readyz')).status === 200,
                `${name(r)} /readyz 200 once Redis is back`, STEP_MS, 100);
        }
        await publishTo(published + 5);
        const seen = await assertExactly(page, published, 'after the Redis restart');
        assert.equal(seen.opens, opensBefore, 'the page\'s stream stayed open');

        /* The log kept its entries: resuming from the page's first id on
         * each replica replays 2..N with the same ids. */
        for (const r of ctx.replicas) {
            const c = await openSse(r.port, '/plant/s1', { headers: { 'Last-Event-ID': firstIds[0] } });
            try {
                const evs = await c.waitForEvents(published - 1, STEP_MS);
                assert.deepEqual(evs.map((e) => e.id), seen.ids.slice(1), `${name(r)} replays 2..N`);
                assert.equal(c.frames.filter((f) => f.event === 'reset').length, 0, 'no reset');
            } finally {
                c.close();
            }
        }
    }));
});

/* libfaketime and AddressSanitizer's start-up deadlock (the process hangs
 * before main); the release build runs this, the ASan pass skips it. */
const UNDER_ASAN = /asan/.test(process.env.SLUICE_BIN || '');

describe('local histories started in the same millisecond', () => {
    test('two processes issue ids the other refuses', {
        timeout: 60000,
        skip: UNDER_ASAN && 'libfaketime hangs an ASan build at start; the release pass runs it',
    }, withLogs(async (t) => {
        assert.ok(fs.existsSync(FAKETIME_LIB), `libfaketime not found at ${FAKETIME_LIB} (apt-get install faketime)`);
        const redis = await startRedis();
        const config = [
            'sources:',
            '  - name: shop',
            '    type: redis',
            `    url: redis://127.0.0.1:${redis.port}`,
            'routes:',
            '  - path: /orders/{region}',
            '    topics: ["shop:orders:{region}"]',
            'logging: {level: info, format: text}',
            '',
        ].join('\n');
        /* Both see the same frozen wall clock (libevent's timers use the
         * monotonic clock, which stays real). An epoch made of the start
         * time alone would be the same in both. */
        const env = {
            ...process.env,
            LD_PRELOAD: FAKETIME_LIB,
            FAKETIME: '2030-01-01 00:00:00',
            FAKETIME_DONT_FAKE_MONOTONIC: '1',
            FAKETIME_NO_CACHE: '1',
            /* An ASan build must accept a preload listed before it. */
            ASAN_OPTIONS: `${process.env.ASAN_OPTIONS ? `${process.env.ASAN_OPTIONS}:` : ''}verify_asan_link_order=0`,
        };
        const [a, b] = await Promise.all([startSluice(config, { env }), startSluice(config, { env })]);
        const pub = await connectRedis(redis.port);
        try {
            const [ca, cb] = await Promise.all([openSse(a.port, '/orders/eu'), openSse(b.port, '/orders/eu')]);
            await waitFor(async () => (await pub.publish('orders:eu', '"one"')) === 2,
                'both processes subscribed', STEP_MS, 100);
            const [[ea], [eb]] = await Promise.all([ca.waitForEvents(1, STEP_MS), cb.waitForEvents(1, STEP_MS)]);
            ca.close();
            cb.close();
            const timeA = JSON.parse(ea.data).time;
            assert.equal(timeA, '2030-01-01T00:00:00.000Z', 'the wall clock was frozen for the process');
            assert.notEqual(ea.id, eb.id, 'two histories started at one instant issue different ids');
            t.diagnostic(`ids of the same first event: ${ea.id} and ${eb.id}`);
            for (const [own, other] of [[a, eb.id], [b, ea.id]]) {
                const c = await openSse(own.port, '/orders/eu', { headers: { 'Last-Event-ID': other } });
                try {
                    const reset = await c.waitForFrame((f) => f.event === 'reset',
                        `a reset for the other process's id ${other}`, STEP_MS);
                    assert.match(reset.data, /unknown-id/);
                } finally {
                    c.close();
                }
            }
        } finally {
            pub.close();
            await Promise.all([a.stop('SIGKILL'), b.stop('SIGKILL'), redis.stop()]);
        }
    }));
});
