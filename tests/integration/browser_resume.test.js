'use strict';
/*
 * browser_resume.test.js - the kill -9 demo of SPEC 6 in a real browser:
 * headless Chromium's own EventSource, reconnecting by itself, must end
 * with every message exactly once, in order, and no "event: reset",
 * across a kill -9 of sluice with messages published while it is down.
 *
 *   1. MQTT (qos 1, clean_session false, fixed client_id): 1..5 live,
 *      kill -9, 6..10 queued by the broker, restart on the same port,
 *      11..15 live;
 *   2. Redis Streams: XADD 1..5, kill -9, XADD 6..10, restart, XADD
 *      11..15 (sluice resumes XREAD after the newest entry it stored).
 *
 * sluice serves no static files, so a tiny page is served by a node http
 * server on another port, and sluice's cors.origins names that origin.
 * The page records each message's payload (and envelope id and stream
 * id) and each reset in window.received / window.resets.
 * Needs /usr/bin/chromium (or CHROMIUM) and playwright-core from
 * tests/node_modules.
 */
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { startPageServer } = require('./lib/fixtures');
const path = require('node:path');
const { after, before, describe, test } = require('node:test');
const { freePort, makeTempDir, sleep, waitFor } = require('./lib/procs');
const { connectRedis, startRedis } = require('./lib/redis');
const { mqttPublish, startMosquitto } = require('./lib/mosquitto');
const { requireBinary, startSluice, withLog } = require('./lib/sluice');

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
    '--no-first-run', '--disable-background-networking', '--disable-component-update',
    '--disable-sync'];
const RETRY_MS = 500;
const STEP_MS = 15000;

/* The page: one EventSource on ?url=, everything it sees kept on window. */
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>sluice resume</title></head>
<body><pre id="log"></pre>
<script>
window.received = [];
window.ids = [];
window.streamIds = [];
window.resets = [];
window.opens = 0;
window.errors = 0;
const es = new EventSource(new URLSearchParams(location.search).get('url'));
es.onopen = () => { window.opens += 1; };
es.onerror = () => { window.errors += 1; };
es.onmessage = (e) => {
    const env = JSON.parse(e.data);
    window.received.push(env.payload);
    window.ids.push(e.lastEventId);
    window.streamIds.push(env.stream_id === undefined ? null : env.stream_id);
    document.getElementById('log').textContent += e.data + '\\n';
};
es.addEventListener('reset', (e) => { window.resets.push(JSON.parse(e.data)); });
</script></body></html>
`;

const ctx = {
    redis: null,
    mosquitto: null,
    xadd: null,
    sluice: null,
    server: null,
    pageOrigin: null,
    context: null,
    pageErrors: [],
};

function sluiceConfig(historyDir) {
    return [
        'sources:',
        '  - name: plant',
        '    type: mqtt',
        `    url: mqtt://127.0.0.1:${ctx.mosquitto.port}`,
        '    qos: 1',
        `    client_id: sluice-it-resume-${process.pid}`,
        '    clean_session: false',
        '  - name: audit',
        '    type: redis-stream',
        `    url: redis://127.0.0.1:${ctx.redis.port}`,
        '    streams: ["audit"]',
        'routes:',
        '  - path: /plant/{site}',
        '    topics: ["plant:factory/{site}/+"]',
        '  - path: /audit',
        '    topics: ["audit:audit"]',
        'history:',
        `  dir: ${historyDir}`,
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

before(async () => {
    assert.ok(fs.existsSync(CHROMIUM), `chromium not found at ${CHROMIUM} (set CHROMIUM)`);
    requireBinary();
    [ctx.redis, ctx.mosquitto] = await Promise.all([startRedis(), startMosquitto()]);
    ctx.xadd = await connectRedis(ctx.redis.port);
    const pagePort = await freePort();
    ctx.pageOrigin = `http://127.0.0.1:${pagePort}`;
    ctx.server = await startPageServer(pagePort, PAGE);
    const historyDir = path.join(makeTempDir('sluice-browser-resume-'), 'history');
    ctx.sluice = await startSluice(sluiceConfig(historyDir));

    const { chromium } = require('playwright-core');
    ctx.context = await chromium.launchPersistentContext(makeTempDir('sluice-chromium-'), {
        executablePath: CHROMIUM,
        headless: true,
        args: CHROMIUM_ARGS,
    });
});

after(async () => {
    if (ctx.context) {
        await ctx.context.close();
    }
    if (ctx.server) {
        ctx.server.closeAllConnections();
        await new Promise((resolve) => ctx.server.close(resolve));
    }
    ctx.xadd?.close();
    await ctx.sluice?.stop('SIGKILL');
    await Promise.all([ctx.mosquitto?.stop(), ctx.redis?.stop()]);
});

/* Opens a new page on the EventSource of sluice route p. */
async function openPage(p) {
    const page = await ctx.context.newPage();
    page.on('pageerror', (err) => ctx.pageErrors.push(err.message));
    const url = `${ctx.pageOrigin}/?url=${encodeURIComponent(ctx.sluice.url(p))}`;
    await page.goto(url);
    await waitFor(() => page.evaluate(() => window.opens >= 1), `the EventSource on ${p} to open`,
        STEP_MS, 50);
    return page;
}

/* What the page recorded so far. */
function readPage(page) {
    return page.evaluate(() => ({
        received: window.received,
        ids: window.ids,
        streamIds: window.streamIds,
        resets: window.resets,
        opens: window.opens,
        errors: window.errors,
    }));
}

/* Waits until the page has received n messages; returns its record. */
async function waitForReceived(page, n, what) {
    let last = null;
    try {
        return await waitFor(async () => {
            last = await readPage(page);
            return last.received.length >= n ? last : null;
        }, what, STEP_MS, 50);
    } catch (err) {
        err.message += `; the page has ${JSON.stringify(last)}`;
        throw err;
    }
}

/* kill -9, then waits until the page noticed (EventSource error).
 * Returns the page's error count at the kill. */
async function killSluice(page) {
    const errorsBefore = (await readPage(page)).errors;
    const result = await ctx.sluice.stop('SIGKILL');
    assert.deepEqual(result, { code: null, signal: 'SIGKILL' });
    await waitFor(async () => (await readPage(page)).errors > errorsBefore,
        'the page to see the connection drop', STEP_MS, 50);
    return errorsBefore;
}

/* Waits until the page's EventSource has also failed a reconnect (the
 * port refuses while sluice is down): it must keep trying, not give up. */
async function waitForRefusedReconnect(page, errorsBefore) {
    await waitFor(async () => (await readPage(page)).errors >= errorsBefore + 2,
        'a refused reconnect while sluice is down', STEP_MS, 50);
}

/* Restarts sluice on the same port and config; returns the restore line. */
async function restartSluice() {
    const started = Date.now();
    await ctx.sluice.start();
    const took = Date.now() - started;
    const m = /restored (\d+) events in (\d+) ms/.exec(ctx.sluice.child.stderrText);
    assert.ok(m, `no restore line in:\n${ctx.sluice.child.stderrText}`);
    return { events: Number(m[1]), restoreMs: Number(m[2]), readyMs: took };
}

/* Asserts the page ended with exactly `expected`, each once, no reset. */
async function assertExactlyOnce(page, expected, toNumber) {
    const seen = await waitForReceived(page, expected.length, `${expected.length} messages in the page`);
    await sleep(2 * RETRY_MS); /* anything extra (a duplicate) would show up by now */
    const final = await readPage(page);
    assert.deepEqual(final.received.map(toNumber), expected,
        `the page received exactly 1..${expected.length} in order; ids ${JSON.stringify(final.ids)}`);
    assert.deepEqual(final.resets, [], 'no reset');
    assert.equal(new Set(final.ids).size, final.ids.length, 'no id twice');
    assert.ok(final.opens >= 2, `the EventSource reconnected by itself (opens ${final.opens})`);
    assert.deepEqual(ctx.pageErrors, [], 'no uncaught errors in the page');
    return { ...final, firstComplete: seen };
}

const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
const it = (name, fn) => test(name, { timeout: 40000 }, withLog(() => ctx.sluice, fn));

describe('Chromium EventSource across kill -9 of sluice (history.dir)', () => {
    it('MQTT qos 1, clean_session false: 1..15 exactly once, in order, no reset', async (t) => {
        const page = await openPage('/plant/s1');
        const publish = async (from, to) => {
            for (const n of range(from, to)) {
                await mqttPublish(ctx.mosquitto.port, 'factory/s1/value', String(n), { qos: 1 });
            }
        };
        try {
            await publish(1, 5);
            await waitForReceived(page, 5, 'messages 1..5 in the page');

            const errorsBefore = await killSluice(page);
            await publish(6, 10);
            await waitForRefusedReconnect(page, errorsBefore);
            const restart = await restartSluice();
            t.diagnostic(`mqtt: restart restored ${restart.events} events in ${restart.restoreMs} ms; ` +
                `healthy and ready ${restart.readyMs} ms after the start`);
            assert.equal(restart.events, 5, 'the five events before the kill were restored');
            await publish(11, 15);

            const final = await assertExactlyOnce(page, range(1, 15), Number);
            t.diagnostic(`mqtt: page opened the stream ${final.opens} times, saw ${final.errors} errors`);
        } finally {
            await page.close();
        }
    });

    it('Redis Streams: XADD 1..15 around the kill, exactly once, in order, no reset', async (t) => {
        const page = await openPage('/audit');
        const entryIds = [];
        const xadd = async (from, to) => {
            for (const n of range(from, to)) {
                entryIds.push(await ctx.xadd.xadd('audit', ['n', String(n)]));
            }
        };
        try {
            await xadd(1, 5);
            await waitForReceived(page, 5, 'entries 1..5 in the page');

            const errorsBefore = await killSluice(page);
            await xadd(6, 10);
            await waitForRefusedReconnect(page, errorsBefore);
            const restart = await restartSluice();
            t.diagnostic(`redis-stream: restart restored ${restart.events} events in ${restart.restoreMs} ms; ` +
                `healthy and ready ${restart.readyMs} ms after the start`);
            await xadd(11, 15);

            const final = await assertExactlyOnce(page, range(1, 15), (p) => Number(p.n));
            assert.deepEqual(final.received.map((p) => Object.keys(p)), range(1, 15).map(() => ['n']),
                'payload = the entry\'s fields');
            assert.deepEqual(final.streamIds, entryIds, 'stream_id = the XADD entry id, in order');
        } finally {
            await page.close();
        }
    });
});
